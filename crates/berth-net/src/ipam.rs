//! Address management: which subnet a new network gets, and which address a new endpoint
//! gets in it.
//!
//! Subnets come from address pools as Docker's `default-address-pools` describe them (a
//! base range cut into subnets of one size), skipping every subnet that overlaps a route
//! of the host or another network. Addresses are handed out round-robin after the last
//! one given, so that an address just released is not given again at once (a peer may
//! still hold it in its ARP cache or a connection).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Docker's default pools: 172.17–31.0.0/16, then 192.168.0.0/16 cut into /20s.
pub fn default_pools() -> Vec<(Ipv4Net, u8)> {
    let mut pools: Vec<(Ipv4Net, u8)> = (17..=31)
        .map(|b| {
            (
                Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("valid"),
                16,
            )
        })
        .collect();
    pools.push((
        Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16).expect("valid"),
        20,
    ));
    pools
}

/// The first subnet of `pools` that overlaps nothing in `taken`.
pub fn choose_subnet(pools: &[(Ipv4Net, u8)], taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    pools.iter().find_map(|(base, size)| {
        base.subnets(*size)
            .ok()?
            .find(|s| !taken.iter().any(|t| overlaps(s, t)))
    })
}

/// Whether two subnets share an address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Why no address could be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("address {0} is already in use")]
    InUse(Ipv4Addr),
    #[error("address {ip} does not belong to the network's subnet {subnet}")]
    OutOfSubnet { ip: Ipv4Addr, subnet: Ipv4Net },
    #[error("address {0} is reserved (network, broadcast or gateway address)")]
    Reserved(Ipv4Addr),
    #[error("no available IPv4 addresses in {0}")]
    Exhausted(Ipv4Net),
}

/// One network's addresses.
#[derive(Debug, Clone)]
pub struct Pool {
    pub subnet: Ipv4Net,
    /// Where automatic addresses come from (`--ip-range`; the subnet by default).
    pub range: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The last address handed out.
    pub last: Option<Ipv4Addr>,
}

impl Pool {
    fn reserved(&self, ip: Ipv4Addr) -> bool {
        ip == self.gateway
            || (self.subnet.prefix_len() < 31
                && (ip == self.subnet.network() || ip == self.subnet.broadcast()))
    }

    /// Give an address: `wanted` if it is free, otherwise the next free one of the range
    /// after the last given.
    pub fn allocate(
        &mut self,
        used: &BTreeSet<Ipv4Addr>,
        wanted: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = wanted {
            if !self.subnet.contains(&ip) {
                return Err(IpamError::OutOfSubnet {
                    ip,
                    subnet: self.subnet,
                });
            }
            if self.reserved(ip) {
                return Err(IpamError::Reserved(ip));
            }
            if used.contains(&ip) {
                return Err(IpamError::InUse(ip));
            }
            return Ok(ip);
        }
        let first = u32::from(self.range.network());
        let last = u32::from(self.range.broadcast());
        let size = u64::from(last - first) + 1;
        let start = match self.last {
            Some(l) if self.range.contains(&l) => u32::from(l) - first + 1,
            _ => 0,
        };
        for i in 0..size {
            let ip = Ipv4Addr::from(first + ((u64::from(start) + i) % size) as u32);
            if !self.reserved(ip) && !used.contains(&ip) {
                self.last = Some(ip);
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted(self.range))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_skip_what_is_taken() {
        let pools = default_pools();
        assert_eq!(choose_subnet(&pools, &[]), Some(net("172.17.0.0/16")));
        assert_eq!(
            choose_subnet(&pools, &[net("172.17.5.0/24"), net("172.18.0.0/16")]),
            Some(net("172.19.0.0/16"))
        );
        // A wide host route covering the whole first pool moves to the second.
        assert_eq!(
            choose_subnet(&pools, &[net("172.16.0.0/12"), net("192.168.0.0/20")]),
            Some(net("192.168.16.0/20"))
        );
        let all: Vec<Ipv4Net> = vec![net("172.16.0.0/12"), net("192.168.0.0/16")];
        assert_eq!(choose_subnet(&pools, &all), None);
    }

    #[test]
    fn addresses_are_given_round_robin_and_never_twice() {
        let mut p = Pool {
            subnet: net("10.5.0.0/29"),
            range: net("10.5.0.0/29"),
            gateway: Ipv4Addr::new(10, 5, 0, 1),
            last: None,
        };
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        for _ in 0..5 {
            let ip = p.allocate(&used, None).unwrap();
            used.insert(ip);
            got.push(ip.octets()[3]);
        }
        assert_eq!(
            got,
            [2, 3, 4, 5, 6],
            "network .0, gateway .1, broadcast .7 skipped"
        );
        assert_eq!(
            p.allocate(&used, None),
            Err(IpamError::Exhausted(net("10.5.0.0/29")))
        );
        // A released address is not given again while others are free.
        used.remove(&Ipv4Addr::new(10, 5, 0, 3));
        used.remove(&Ipv4Addr::new(10, 5, 0, 5));
        assert_eq!(p.allocate(&used, None).unwrap(), Ipv4Addr::new(10, 5, 0, 3));
        used.insert(Ipv4Addr::new(10, 5, 0, 3));
        assert_eq!(p.allocate(&used, None).unwrap(), Ipv4Addr::new(10, 5, 0, 5));
    }

    #[test]
    fn wanted_addresses_are_checked() {
        let mut p = Pool {
            subnet: net("10.6.0.0/24"),
            range: net("10.6.0.128/25"),
            gateway: Ipv4Addr::new(10, 6, 0, 1),
            last: None,
        };
        let used: BTreeSet<_> = [Ipv4Addr::new(10, 6, 0, 9)].into();
        assert_eq!(
            p.allocate(&used, Some(Ipv4Addr::new(10, 6, 0, 9))),
            Err(IpamError::InUse(Ipv4Addr::new(10, 6, 0, 9)))
        );
        assert!(matches!(
            p.allocate(&used, Some(Ipv4Addr::new(10, 7, 0, 9))),
            Err(IpamError::OutOfSubnet { .. })
        ));
        assert_eq!(
            p.allocate(&used, Some(Ipv4Addr::new(10, 6, 0, 1))),
            Err(IpamError::Reserved(Ipv4Addr::new(10, 6, 0, 1)))
        );
        // Outside --ip-range but inside the subnet is allowed when asked for.
        assert_eq!(
            p.allocate(&used, Some(Ipv4Addr::new(10, 6, 0, 10))),
            Ok(Ipv4Addr::new(10, 6, 0, 10))
        );
        assert_eq!(p.allocate(&used, None), Ok(Ipv4Addr::new(10, 6, 0, 128)));
    }
}
