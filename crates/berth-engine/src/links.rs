//! Legacy links (`--link name[:alias]`) on the default bridge: the environment variables
//! and /etc/hosts lines Docker gives a container about each container it links to.

use std::net::Ipv4Addr;

use crate::container::Container;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// One resolved link: what the linking container learns about the linked one.
pub struct Link {
    /// `/web/db`: the linking container's name, then the alias.
    pub full_name: String,
    pub alias: String,
    pub ip: Ipv4Addr,
    /// Exposed ports as (number, protocol).
    pub ports: Vec<(u16, String)>,
    pub env: Vec<String>,
    pub hostname: String,
    pub name: String,
}

/// Split a link as the CLI sends it (`db`, `db:alias`) or as stored (`/db:/web/alias`)
/// into (linked container, alias).
pub fn parse(link: &str) -> Result<(String, String)> {
    let (child, alias) = link.split_once(':').unwrap_or((link, link));
    let child = child.trim_start_matches('/');
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    if child.is_empty() || alias.is_empty() {
        return Err(EngineError::invalid(format!(
            "invalid link {link:?}: expected name[:alias]"
        )));
    }
    Ok((child.to_string(), alias.to_string()))
}

impl Link {
    /// `ALIAS_PORT`, `ALIAS_PORT_<n>_<PROTO>[_ADDR|_PORT|_PROTO]` (and `_START`… for
    /// runs of consecutive ports), `ALIAS_NAME`, `ALIAS_ENV_<VAR>`, in Docker's order.
    pub fn env(&self) -> Vec<String> {
        let alias = self.alias.to_ascii_uppercase().replace('-', "_");
        let mut ports = self.ports.clone();
        ports.sort_by(|a, b| a.0.cmp(&b.0).then((a.1 != "tcp").cmp(&(b.1 != "tcp"))));
        let ip = self.ip;
        let mut out = Vec::new();
        if let Some((p, proto)) = ports.first() {
            out.push(format!("{alias}_PORT={proto}://{ip}:{p}"));
        }
        let range = |out: &mut Vec<String>, start: &(u16, String), end: &(u16, String)| {
            if start.0 != end.0 {
                let prefix = format!("{alias}_PORT_{}_{}", start.0, start.1.to_ascii_uppercase());
                out.push(format!("{prefix}_START={}://{ip}:{}", start.1, start.0));
                out.push(format!("{prefix}_ADDR={ip}"));
                out.push(format!("{prefix}_PROTO={}", start.1));
                out.push(format!("{prefix}_PORT_START={}", start.0));
                out.push(format!("{prefix}_PORT_END={}", end.0));
            }
        };
        let mut run: Option<((u16, String), (u16, String))> = None;
        for p in &ports {
            run = match run.take() {
                Some((s, e)) if p.0 == e.0 + 1 && p.1 == e.1 => Some((s, p.clone())),
                Some((s, e)) => {
                    range(&mut out, &s, &e);
                    Some((p.clone(), p.clone()))
                }
                None => Some((p.clone(), p.clone())),
            };
        }
        if let Some((s, e)) = run {
            range(&mut out, &s, &e);
        }
        for (p, proto) in &ports {
            let prefix = format!("{alias}_PORT_{p}_{}", proto.to_ascii_uppercase());
            out.push(format!("{prefix}={proto}://{ip}:{p}"));
            out.push(format!("{prefix}_ADDR={ip}"));
            out.push(format!("{prefix}_PORT={p}"));
            out.push(format!("{prefix}_PROTO={proto}"));
        }
        out.push(format!("{alias}_NAME={}", self.full_name));
        for e in &self.env {
            if let Some((k, v)) = e.split_once('=') {
                if k != "HOME" && k != "PATH" {
                    out.push(format!("{alias}_ENV_{k}={v}"));
                }
            }
        }
        out
    }

    /// The /etc/hosts line: the alias, the linked container's hostname, and its name
    /// when that differs from the alias.
    pub fn hosts_line(&self) -> String {
        let mut names = format!("{} {}", self.alias, self.hostname);
        if self.alias != self.name {
            names.push(' ');
            names.push_str(&self.name);
        }
        format!("{}\t{names}\n", self.ip)
    }
}

impl Engine {
    /// Store links as Docker shows them: `/db:/web/alias`; the linked containers must
    /// exist.
    pub(crate) fn normalize_links(&self, name: &str, links: &[String]) -> Result<Vec<String>> {
        links
            .iter()
            .map(|l| {
                let (child, alias) = parse(l)?;
                let c = self.container(&child).map_err(|_| {
                    EngineError::invalid(format!("could not get container for {child}"))
                })?;
                Ok(format!("/{}:/{name}/{alias}", c.with(|c| c.name.clone())))
            })
            .collect()
    }

    /// Resolve `c`'s links at start: each linked container must be running on the default
    /// bridge.
    pub(crate) fn resolve_links(&self, c: &Container) -> Result<Vec<Link>> {
        let mut out = Vec::new();
        for l in c.host_config.links.iter().flatten() {
            let (child, alias) = parse(l)?;
            let full_name = format!("/{}/{alias}", c.name);
            let h = self.container(&child).map_err(|_| {
                EngineError::invalid(format!("Cannot link to /{child}, as it does not exist"))
            })?;
            let o = h.get();
            let ip = o
                .network
                .as_ref()
                .filter(|_| o.is_running())
                .and_then(|a| a.endpoints.iter().find(|e| e.network_name == "bridge"))
                .map(|e| e.ip)
                .ok_or_else(|| {
                    EngineError::invalid(format!(
                        "Cannot link to a non running container: /{} AS {full_name}",
                        o.name
                    ))
                })?;
            let ports = o
                .config
                .exposed_ports
                .iter()
                .flat_map(|m| m.keys())
                .filter_map(|k| berth_net::ports::parse_container_port(k).ok())
                .collect();
            out.push(Link {
                full_name,
                alias,
                ip,
                ports,
                env: o.config.env.clone().unwrap_or_default(),
                hostname: o.config.hostname.clone(),
                name: o.name.clone(),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_both_forms() {
        assert_eq!(parse("db").unwrap(), ("db".into(), "db".into()));
        assert_eq!(parse("db:base").unwrap(), ("db".into(), "base".into()));
        assert_eq!(
            parse("/db:/web/base").unwrap(),
            ("db".into(), "base".into())
        );
        assert!(parse(":x").is_err());
    }

    #[test]
    fn environment_matches_docker() {
        let l = Link {
            full_name: "/web/db-main".into(),
            alias: "db-main".into(),
            ip: Ipv4Addr::new(172, 17, 0, 2),
            ports: vec![
                (5433, "tcp".into()),
                (53, "udp".into()),
                (5432, "tcp".into()),
                (53, "tcp".into()),
            ],
            env: vec!["PATH=/bin".into(), "PGUSER=me".into(), "HOME=/root".into()],
            hostname: "abc".into(),
            name: "db".into(),
        };
        let env = l.env();
        let want = [
            "DB_MAIN_PORT=tcp://172.17.0.2:53",
            "DB_MAIN_PORT_5432_TCP_START=tcp://172.17.0.2:5432",
            "DB_MAIN_PORT_5432_TCP_ADDR=172.17.0.2",
            "DB_MAIN_PORT_5432_TCP_PROTO=tcp",
            "DB_MAIN_PORT_5432_TCP_PORT_START=5432",
            "DB_MAIN_PORT_5432_TCP_PORT_END=5433",
            "DB_MAIN_PORT_53_TCP=tcp://172.17.0.2:53",
            "DB_MAIN_PORT_53_TCP_ADDR=172.17.0.2",
            "DB_MAIN_PORT_53_TCP_PORT=53",
            "DB_MAIN_PORT_53_TCP_PROTO=tcp",
            "DB_MAIN_PORT_53_UDP=udp://172.17.0.2:53",
        ];
        for w in want {
            assert!(env.contains(&w.to_string()), "{w} missing from {env:#?}");
        }
        assert_eq!(
            env[0], want[0],
            "the lowest port, tcp first, is the default"
        );
        assert!(env.contains(&"DB_MAIN_NAME=/web/db-main".to_string()));
        assert!(env.contains(&"DB_MAIN_ENV_PGUSER=me".to_string()));
        assert!(!env
            .iter()
            .any(|e| e.contains("ENV_PATH") || e.contains("ENV_HOME")));
        assert_eq!(l.hosts_line(), "172.17.0.2\tdb-main abc db\n");
    }
}
