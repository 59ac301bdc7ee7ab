//! Published ports: what a container asked for (`PortBindings`, `-P`), and the host
//! ports berth holds for it.
//!
//! A published port is a DNAT rule (see [`crate::firewall`]), but berth also binds the
//! host port itself and keeps the socket (bound, never listening) for as long as the
//! container runs, as Docker does without its userland proxy: another program cannot take
//! the port from under the container, and a port that is taken fails the start with an
//! error naming it instead of silently losing to the other program.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;

use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

/// One port as requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub proto: String,
    pub container_port: u16,
    /// The host address; unspecified for every address.
    pub host_ip: Ipv4Addr,
    /// The host ports it may use (`0..=0` for any free one).
    pub host_ports: (u16, u16),
}

/// Parse `80/tcp` (the protocol defaults to tcp).
pub fn parse_container_port(key: &str) -> Result<(u16, String), String> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid port {key}: the protocol must be tcp, udp or sctp"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, proto)),
        _ => Err(format!(
            "invalid port {key}: expected a container port between 1 and 65535, optionally followed by /tcp, /udp or /sctp"
        )),
    }
}

/// Parse one binding: `host_ip` (empty for all addresses) and `host_port` (empty, a
/// port or a range `a-b`).
pub fn parse_binding(
    key: &str,
    host_ip: &str,
    host_port: &str,
) -> Result<Option<PortRequest>, String> {
    let (container_port, proto) = parse_container_port(key)?;
    let host_ip = match host_ip {
        "" | "0.0.0.0" => Ipv4Addr::UNSPECIFIED,
        // IPv6 host addresses: berth's networks are IPv4 only.
        ip if ip.contains(':') => return Ok(None),
        ip => ip.parse().map_err(|_| {
            format!("invalid host address {ip:?} for port {key}: expected an IPv4 address")
        })?,
    };
    let port = |s: &str| -> Result<u16, String> {
        s.parse::<u16>().map_err(|_| {
            format!("invalid host port {host_port:?} for port {key}: expected a port or a range such as 8000-8010")
        })
    };
    let host_ports = match host_port.split_once('-') {
        _ if host_port.is_empty() => (0, 0),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a == 0 || a > b {
                return Err(format!(
                    "invalid host port range {host_port} for port {key}"
                ));
            }
            (a, b)
        }
        None => {
            let p = port(host_port)?;
            (p, p)
        }
    };
    Ok(Some(PortRequest {
        proto,
        container_port,
        host_ip,
        host_ports,
    }))
}

/// Bind the host port for `req` (the first free one of its range), returning the socket
/// that holds it and the port.
pub fn reserve(req: &PortRequest) -> Result<(OwnedFd, u16), String> {
    let (lo, hi) = req.host_ports;
    let ty = if req.proto == "udp" {
        SockType::Datagram
    } else {
        SockType::Stream
    };
    let mut last_err = None;
    for port in lo..=hi {
        let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| format!("creating a socket: {e}"))?;
        let addr = SockaddrIn::from(SocketAddrV4::new(req.host_ip, port));
        match bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => {
                let got: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))
                    .map_err(|e| format!("reading the bound port: {e}"))?;
                return Ok((fd, got.port()));
            }
            Err(e) => last_err = Some(e),
        }
    }
    let what = if lo == hi {
        format!("{}:{lo}", req.host_ip)
    } else {
        format!("{}:{lo}-{hi}", req.host_ip)
    };
    Err(match last_err {
        Some(nix::errno::Errno::EADDRINUSE) => format!(
            "Bind for {what} failed: port is already allocated (another container or program on the host uses it); publish on another host port"
        ),
        Some(nix::errno::Errno::EADDRNOTAVAIL) => format!(
            "Bind for {what} failed: {} is not an address of this host",
            req.host_ip
        ),
        Some(e) => format!("Bind for {what} failed: {e}"),
        None => format!("Bind for {what} failed: empty port range"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_parse_like_docker() {
        let r = parse_binding("80", "", "8080").unwrap().unwrap();
        assert_eq!(
            r,
            PortRequest {
                proto: "tcp".into(),
                container_port: 80,
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_ports: (8080, 8080)
            }
        );
        let r = parse_binding("53/udp", "127.0.0.1", "").unwrap().unwrap();
        assert_eq!(
            (r.proto.as_str(), r.host_ip, r.host_ports),
            ("udp", Ipv4Addr::LOCALHOST, (0, 0))
        );
        let r = parse_binding("80/tcp", "0.0.0.0", "8000-8010")
            .unwrap()
            .unwrap();
        assert_eq!(r.host_ports, (8000, 8010));
        assert_eq!(parse_binding("80/tcp", "::", "8080").unwrap(), None);
        for (k, ip, p) in [
            ("80/icmp", "", "1"),
            ("0", "", "1"),
            ("x", "", "1"),
            ("80", "1.2.3", "1"),
            ("80", "", "99999"),
            ("80", "", "9-8"),
        ] {
            assert!(parse_binding(k, ip, p).is_err(), "{k} {ip} {p}");
        }
    }

    #[test]
    fn a_taken_port_is_named_in_the_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let req = PortRequest {
            proto: "tcp".into(),
            container_port: 80,
            host_ip: Ipv4Addr::LOCALHOST,
            host_ports: (port, port),
        };
        let e = reserve(&req).unwrap_err();
        assert!(
            e.contains(&format!("127.0.0.1:{port}")) && e.contains("already allocated"),
            "{e}"
        );
        // Any free port: the kernel picks one, and it is then held.
        let (fd, got) = reserve(&PortRequest {
            host_ports: (0, 0),
            ..req.clone()
        })
        .unwrap();
        assert!(got > 0);
        let e = reserve(&PortRequest {
            host_ports: (got, got),
            ..req
        })
        .unwrap_err();
        assert!(e.contains("already allocated"), "{e}");
        drop(fd);
    }
}
