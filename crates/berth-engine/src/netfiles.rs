//! The `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` berthd writes for each
//! container and bind-mounts into it, as Docker does.

use std::io;

use crate::container::Container;

/// Write the three files of `c`; `links` are /etc/hosts lines for its linked containers.
pub fn write_all(c: &Container, links: &str) -> io::Result<()> {
    let host_net = c.host_config.network_mode == "host";
    let mut hostname = c.config.hostname.clone();
    if !c.config.domainname.is_empty() {
        hostname = format!("{}.{}", hostname, c.config.domainname);
    }
    std::fs::write(&c.hostname_path, format!("{}\n", c.config.hostname))?;
    let mut hosts = if host_net {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        let mut h = String::from(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
        );
        // The container's own address on its first network, as Docker writes it.
        match c.network.as_ref().and_then(|a| a.endpoints.first()) {
            Some(ep) => h.push_str(&format!("{}\t{hostname}\n", ep.ip)),
            None => h.push_str(&format!("127.0.1.1\t{hostname}\n")),
        }
        h
    };
    for extra in c.host_config.extra_hosts.iter().flatten() {
        // `name:ip` (CLI) or `name=ip`.
        let (name, ip) = extra
            .split_once('=')
            .or_else(|| extra.split_once(':'))
            .unwrap_or((extra.as_str(), ""));
        // The host as the container reaches it: its bridge's address.
        let gateway = c
            .network
            .as_ref()
            .and_then(|a| a.endpoints.first())
            .map(|e| e.gateway.to_string());
        let ip = if ip == "host-gateway" {
            gateway.as_deref().unwrap_or("127.0.0.1")
        } else {
            ip
        };
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    hosts.push_str(links);
    std::fs::write(&c.hosts_path, hosts)?;
    std::fs::write(&c.resolv_conf_path, resolv_conf(c, host_net))?;
    Ok(())
}

/// The host's resolv.conf with loopback name servers replaced (they do not exist in the
/// container's network namespace), and `--dns`, `--dns-search`, `--dns-option` applied.
fn resolv_conf(c: &Container, host_net: bool) -> String {
    let mut host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    // systemd-resolved's stub (127.0.0.53) is unreachable from a container: its real
    // upstreams are in the file it keeps beside it, which Docker reads instead.
    if !host_net && host.lines().any(|l| l.trim() == "nameserver 127.0.0.53") {
        if let Ok(real) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
            host = real;
        }
    }
    let mut servers: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                if let Some(s) = w.next() {
                    if host_net || !(s.starts_with("127.") || s == "::1") {
                        servers.push(s.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => search.extend(w.map(String::from)),
            Some("options") => options.extend(w.map(String::from)),
            _ => {}
        }
    }
    if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    if let Some(d) = c.host_config.dns.as_ref().filter(|d| !d.is_empty()) {
        servers = d.clone();
    }
    // On a user-defined network the embedded DNS server answers (and forwards to the
    // servers above from the host's namespace).
    let embedded = c
        .network
        .as_ref()
        .is_some_and(|a| a.endpoints.iter().any(|e| e.network_name != "bridge"));
    if embedded {
        servers = vec!["127.0.0.11".into()];
        if !options.iter().any(|o| o.starts_with("ndots:")) {
            options.push("ndots:0".into());
        }
    }
    if let Some(s) = c.host_config.dns_search.as_ref().filter(|d| !d.is_empty()) {
        search = s.iter().filter(|x| x.as_str() != ".").cloned().collect();
    }
    if let Some(o) = c.host_config.dns_options.as_ref().filter(|d| !d.is_empty()) {
        options = o.clone();
    }
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}
