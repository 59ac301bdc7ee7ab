//! The few rtnetlink requests berth needs (bridges, veth pairs, addresses, routes), sent
//! synchronously on a socket of the namespace it was opened in.
//!
//! Synchronous on purpose: a netlink socket belongs to the network namespace of the thread
//! that opened it, so a container's namespace is configured through a socket opened by a
//! short-lived thread that entered it (see [`crate::netns`]); the requests themselves are a
//! handful of round trips of a few microseconds each.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A route netlink socket in one network namespace.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

/// A link as berth needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// The index of the bridge it is a port of.
    pub master: Option<u32>,
}

fn ctx(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Netlink {
    /// Open a socket in the calling thread's network namespace.
    pub fn new() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let _ = sock.set_ext_ack(true);
        Ok(Netlink { sock, seq: 0 })
    }

    /// Send one request and collect the replies (a dump's messages, or nothing for an
    /// acknowledged change). A kernel error becomes an `io::Error` with its errno.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        let mut rx = Vec::with_capacity(64 * 1024);
        loop {
            rx.clear();
            let n = self.sock.recv(&mut rx, 0)?;
            let mut off = 0;
            while off < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                // Messages in one datagram are 4-byte aligned.
                let len = (reply.header.length as usize + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    off += len;
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
                off += len;
            }
        }
    }

    fn change(&mut self, msg: RouteNetlinkMessage, create: bool) -> io::Result<()> {
        let flags = NLM_F_ACK | if create { NLM_F_CREATE | NLM_F_EXCL } else { 0 };
        self.request(msg, flags).map(|_| ())
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })
            .collect())
    }

    /// The link called `name`, if there is one.
    pub fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_ACK) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn index_of(&mut self, name: &str) -> io::Result<u32> {
        self.link(name)?
            .map(|l| l.index)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no link {name}")))
    }

    /// Create a bridge (down, no address yet) and return its index.
    pub fn create_bridge(&mut self, name: &str, mtu: u32) -> io::Result<u32> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        if mtu > 0 {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.change(RouteNetlinkMessage::NewLink(msg), true)
            .map_err(ctx(format_args!("creating bridge {name}")))?;
        self.index_of(name)
    }

    /// Create a veth pair: `host` here as a port of bridge `master`, up, with hairpin on
    /// (so a container reaches its own published ports), and `peer` created directly in
    /// the namespace `peer_netns` with `mac` (still down there).
    pub fn create_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_netns: RawFd,
        mac: [u8; 6],
        mtu: u32,
    ) -> io::Result<u32> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_owned()));
        peer_msg.attributes.push(LinkAttribute::NetNsFd(peer_netns));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(mac.to_vec()));
        if mtu > 0 {
            peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host.to_owned()));
        if mtu > 0 {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.change(RouteNetlinkMessage::NewLink(msg), true)
            .map_err(ctx(format_args!("creating veth pair {host}")))?;
        let index = self.index_of(host)?;
        let mut port = LinkMessage::default();
        port.header.index = index;
        port.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        self.change(RouteNetlinkMessage::SetLink(port), false)
            .map_err(ctx(format_args!("turning hairpin mode on for {host}")))?;
        self.set_up(index)?;
        Ok(index)
    }

    /// Bring a link up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.change(RouteNetlinkMessage::SetLink(msg), false)
            .map_err(ctx(format_args!("bringing link {index} up")))
    }

    /// Bring the link called `name` up.
    pub fn set_up_by_name(&mut self, name: &str) -> io::Result<u32> {
        let index = self.index_of(name)?;
        self.set_up(index)?;
        Ok(index)
    }

    /// Add `ip/prefix` to a link (an existing identical address is fine).
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(ip.into()));
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        if prefix < 31 {
            let bcast = u32::from(ip) | (u32::MAX >> prefix);
            msg.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(bcast)));
        }
        match self.change(RouteNetlinkMessage::NewAddress(msg), true) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r.map_err(ctx(format_args!("adding address {ip}/{prefix}"))),
        }
    }

    /// The IPv4 addresses (with prefix) of a link.
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(std::net::IpAddr::V4(ip)) => {
                            Some((*ip, a.header.prefix_len))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 route destination of the main table (to find subnets in use).
    pub fn route_destinations(&mut self) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let replies = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.table == RouteHeader::RT_TABLE_MAIN
                        && r.header.destination_prefix_length > 0 =>
                {
                    r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => {
                            Some((*d, r.header.destination_prefix_length))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Add the default route through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.change(RouteNetlinkMessage::NewRoute(msg), true)
            .map_err(ctx(format_args!("adding the default route via {gateway}")))
    }

    /// Delete a link by name; a missing one is not an error.
    pub fn delete_link(&mut self, name: &str) -> io::Result<()> {
        let Some(link) = self.link(name)? else {
            return Ok(());
        };
        let mut msg = LinkMessage::default();
        msg.header.index = link.index;
        match self.change(RouteNetlinkMessage::DelLink(msg), false) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            r => r.map_err(ctx(format_args!("deleting link {name}"))),
        }
    }
}

fn to_link(l: LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        master: None,
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Controller(m) => link.master = Some(m),
            _ => {}
        }
    }
    link
}

/// Docker's MAC for an address: 02:42 followed by the four bytes of the IP.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff` (a unicast address, as `--mac-address` must be).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    (parts.next().is_none() && mac[0] & 1 == 0).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let m = mac_for(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(format_mac(m), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02:42:ac:11:00:02"), Some(m));
        assert_eq!(parse_mac("01:42:ac:11:00:02"), None, "multicast");
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:02:03"), None);
        assert_eq!(parse_mac("zz:42:ac:11:00:02"), None);
    }
}
