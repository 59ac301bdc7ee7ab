//! Networks and the containers attached to them.
//!
//! Network records (`<data-root>/network/<id>.json`) are durable: they are the user's
//! configuration. What a running container holds (its namespace, addresses, veths, host
//! ports) is kept as one attachment file per container in the exec root: it only means
//! something while the container runs, and it is how berthd finds, after a restart, what
//! to keep (containers still running) and what to tear down (containers that ended while
//! it was away). Addresses in use are the union of the attachments' addresses, so an
//! address is never given twice, also across restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::firewall::{self, BridgeRules, PortRule};
use crate::ipam::{self, Pool};
use crate::netlink::{self, Netlink};
use crate::netns;
use crate::ports::{self, PortRequest};

/// What went wrong, sorted the way the API answers it.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, NetError>;

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> NetError {
    move |e| NetError::Io(format!("{what}: {e}"))
}

/// The daemon's networking settings (daemon.json's `bridge`, `bip`, `mtu`,
/// `default-address-pools`).
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Network records (`<data-root>/network`).
    pub data_dir: PathBuf,
    /// Attachments and namespaces (`<exec-root>/network`, `<exec-root>/netns`).
    pub run_dir: PathBuf,
    pub netns_dir: PathBuf,
    /// The default bridge's interface name.
    pub bridge: String,
    /// The default bridge's address and prefix (`bip`).
    pub bip: Option<Ipv4Net>,
    pub pools: Vec<(Ipv4Net, u8)>,
    pub mtu: u32,
    /// berth's nftables table (`ip <table>`).
    pub table: String,
}

/// A network's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    /// The bridge interface (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    /// Whether the user gave the IPAM configuration.
    #[serde(default)]
    pub user_ipam: bool,
}

impl Network {
    /// The default bridge, `host` and `none`.
    pub fn is_builtin(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }

    /// `GET /networks/{id}`; `containers` are its attached endpoints.
    pub fn inspect(&self, containers: &[(String, String, Endpoint)]) -> Value {
        let config: Vec<Value> = self
            .subnet
            .iter()
            .map(|s| {
                let mut c = json!({"Subnet": s.to_string()});
                if let Some(g) = self.gateway {
                    c["Gateway"] = json!(g.to_string());
                }
                if let Some(r) = self.ip_range {
                    c["IPRange"] = json!(r.to_string());
                }
                c
            })
            .collect();
        let mut ctrs = serde_json::Map::new();
        for (id, name, ep) in containers {
            ctrs.insert(
                id.clone(),
                json!({
                    "Name": name,
                    "EndpointID": ep.endpoint_id,
                    "MacAddress": ep.mac,
                    "IPv4Address": format!("{}/{}", ep.ip, ep.prefix),
                    "IPv6Address": "",
                }),
            );
        }
        let mut options = self.options.clone();
        if self.driver == "bridge" {
            options.insert("com.docker.network.bridge.name".into(), self.bridge.clone());
            if self.name == "bridge" {
                options.insert(
                    "com.docker.network.bridge.default_bridge".into(),
                    "true".into(),
                );
            }
        }
        json!({
            "Name": self.name,
            "Id": self.id,
            "Created": self.created,
            "Scope": "local",
            "Driver": self.driver,
            "EnableIPv4": true,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": self.internal,
            "Attachable": self.attachable,
            "Ingress": false,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": false,
            "Containers": ctrs,
            "Options": options,
            "Labels": self.labels,
        })
    }
}

/// `POST /networks/create`, after the API has parsed it.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
}

/// A container's endpoint on one network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    pub network_name: String,
    pub endpoint_id: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The interface inside the container (`eth0`, `eth1`, ...).
    pub iface: String,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A port as published.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedPort {
    pub proto: String,
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
}

/// What a running container holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub name: String,
    /// Its network namespace (`<exec-root>/netns/<id>`).
    pub netns: PathBuf,
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    /// Where the embedded DNS server forwards other names (`--dns`; the host's
    /// resolvers when empty).
    #[serde(default)]
    pub upstreams: Vec<std::net::SocketAddr>,
}

/// One network to join.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    /// A network name, ID or ID prefix.
    pub network: String,
    pub ip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// `--mac-address` (sent per endpoint by API 1.44 and later).
    pub mac: Option<[u8; 6]>,
}

/// Everything a container start asks of the network.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    pub container_id: String,
    pub name: String,
    /// In order: the first has the default route and the published ports.
    pub networks: Vec<EndpointRequest>,
    pub ports: Vec<PortRequest>,
    /// `--mac-address` for the first endpoint.
    pub mac: Option<[u8; 6]>,
    /// `--dns`: the embedded DNS server's upstreams.
    pub upstreams: Vec<std::net::SocketAddr>,
}

struct State {
    nets: BTreeMap<String, Network>,
    /// Where the last address was given, per network (round-robin).
    last: HashMap<String, Ipv4Addr>,
    attachments: BTreeMap<String, Attachment>,
    /// The sockets holding published host ports, per container.
    reservations: HashMap<String, Vec<OwnedFd>>,
    /// Embedded DNS servers, per container.
    dns: HashMap<String, crate::dns::Server>,
}

/// berthd's networks.
pub struct Networks {
    cfg: NetConfig,
    state: Mutex<State>,
    runtime: Option<tokio::runtime::Handle>,
    me: std::sync::Weak<Networks>,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn save(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        io::Write::write_all(&mut f, data)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

fn sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), value)
        .map_err(|e| io::Error::new(e.kind(), format!("setting {path}: {e}")))
}

/// The bridge interface of a user-defined network.
fn bridge_name(id: &str) -> String {
    format!("br-{}", &id[..12])
}

impl Networks {
    /// Load the networks, create the built-in ones on first use, bring the default bridge
    /// up and write the firewall. Call [`Networks::reconcile`] once the running containers
    /// are known.
    pub fn open(cfg: NetConfig) -> Result<Arc<Networks>> {
        for d in [&cfg.data_dir, &cfg.run_dir, &cfg.netns_dir] {
            std::fs::create_dir_all(d).map_err(io_err(format_args!("creating {}", d.display())))?;
        }
        let mut nets = BTreeMap::new();
        for e in std::fs::read_dir(&cfg.data_dir)
            .map_err(io_err("reading the network records"))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                match std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Network>(&b).ok())
                {
                    Some(n) => {
                        nets.insert(n.id.clone(), n);
                    }
                    None => {
                        tracing::warn!(file = %p.display(), "skipping an unreadable network record")
                    }
                }
            }
        }
        let mut attachments = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(cfg.run_dir.join("containers")) {
            for e in rd.flatten() {
                if let Some(a) = std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Attachment>(&b).ok())
                {
                    attachments.insert(a.container_id.clone(), a);
                }
            }
        }
        let me = Arc::new_cyclic(|me| Networks {
            cfg,
            state: Mutex::new(State {
                nets,
                last: HashMap::new(),
                attachments,
                reservations: HashMap::new(),
                dns: HashMap::new(),
            }),
            runtime: tokio::runtime::Handle::try_current().ok(),
            me: me.clone(),
        });
        me.ensure_builtins()?;
        let _ = sysctl("net/ipv4/ip_forward", "1");
        let bridges: Vec<Network> = me
            .lock()
            .nets
            .values()
            .filter(|n| n.driver == "bridge")
            .cloned()
            .collect();
        let mut nl = Netlink::new().map_err(io_err("opening netlink"))?;
        for n in &bridges {
            me.ensure_bridge(&mut nl, n)?;
        }
        me.apply_firewall(&me.lock())?;
        Ok(me)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join(format!("{id}.json"))
    }

    fn attachment_path(&self, id: &str) -> PathBuf {
        self.cfg
            .run_dir
            .join("containers")
            .join(format!("{id}.json"))
    }

    /// Where a container's namespace is kept.
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        self.cfg.netns_dir.join(container_id)
    }

    fn persist(&self, n: &Network) -> Result<()> {
        let data = serde_json::to_vec_pretty(n).map_err(|e| NetError::Io(e.to_string()))?;
        save(&self.record_path(&n.id), &data, true).map_err(io_err("writing the network record"))
    }

    fn ensure_builtins(&self) -> Result<()> {
        let mut st = self.lock();
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            if st.nets.values().any(|n| n.name == name) {
                continue;
            }
            let mut n = Network {
                id: random_hex(32),
                name: name.into(),
                driver: driver.into(),
                created: berth_types::time::now_rfc3339_nano(),
                internal: false,
                attachable: false,
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
                subnet: None,
                gateway: None,
                ip_range: None,
                bridge: String::new(),
                user_ipam: false,
            };
            if name == "bridge" {
                n.bridge = self.cfg.bridge.clone();
                let (subnet, gw) = self.default_bridge_subnet(&st)?;
                n.subnet = Some(subnet);
                n.gateway = Some(gw);
                n.user_ipam = self.cfg.bip.is_some();
            }
            self.persist(&n)?;
            st.nets.insert(n.id.clone(), n);
        }
        // `bip` changed since the record was written: the configuration wins.
        if let Some(bip) = self.cfg.bip {
            if let Some(n) = st.nets.values_mut().find(|n| n.name == "bridge") {
                if n.gateway != Some(bip.addr()) || n.subnet != Some(bip.trunc()) {
                    n.subnet = Some(bip.trunc());
                    n.gateway = Some(bip.addr());
                    let n = n.clone();
                    self.persist(&n)?;
                }
            }
        }
        Ok(())
    }

    /// The default bridge's subnet: `bip`, else the address its interface already has,
    /// else the first free subnet of the pools.
    fn default_bridge_subnet(&self, st: &State) -> Result<(Ipv4Net, Ipv4Addr)> {
        if let Some(bip) = self.cfg.bip {
            return Ok((bip.trunc(), bip.addr()));
        }
        let mut nl = Netlink::new().map_err(io_err("opening netlink"))?;
        if let Some(link) = nl
            .link(&self.cfg.bridge)
            .map_err(io_err("looking up the bridge"))?
        {
            if let Some((ip, prefix)) = nl
                .addresses(link.index)
                .map_err(io_err("reading the bridge's address"))?
                .first()
            {
                let net = Ipv4Net::new(*ip, *prefix).map_err(|e| NetError::Io(e.to_string()))?;
                return Ok((net.trunc(), *ip));
            }
        }
        let subnet = self.free_subnet(st, &mut nl)?;
        Ok((subnet, first_host(&subnet)))
    }

    /// A subnet of the pools overlapping no host route and no network.
    fn free_subnet(&self, st: &State, nl: &mut Netlink) -> Result<Ipv4Net> {
        let mut taken: Vec<Ipv4Net> = nl
            .route_destinations()
            .map_err(io_err("reading the host's routes"))?
            .into_iter()
            .filter_map(|(d, p)| Ipv4Net::new(d, p).ok())
            .collect();
        taken.extend(st.nets.values().filter_map(|n| n.subnet));
        ipam::choose_subnet(&self.cfg.pools, &taken).ok_or_else(|| {
            NetError::Forbidden(
                "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network: give one with --subnet, or widen default-address-pools in daemon.json".into(),
            )
        })
    }

    /// Create the network's bridge if needed, give it its gateway address, bring it up.
    fn ensure_bridge(&self, nl: &mut Netlink, n: &Network) -> Result<()> {
        let index = match nl.link(&n.bridge).map_err(io_err("looking up a bridge"))? {
            Some(l) => l.index,
            None => nl
                .create_bridge(&n.bridge, self.cfg.mtu)
                .map_err(io_err(format_args!("network {}", n.name)))?,
        };
        if let (Some(subnet), Some(gw)) = (n.subnet, n.gateway) {
            nl.add_address(index, gw, subnet.prefix_len())
                .map_err(io_err(format_args!("network {}", n.name)))?;
        }
        nl.set_up(index)
            .map_err(io_err(format_args!("network {}", n.name)))?;
        // Published ports reached through localhost are routed out of the bridge.
        let _ = sysctl(&format!("net/ipv4/conf/{}/route_localnet", n.bridge), "1");
        Ok(())
    }

    /// Rewrite the firewall table from the state.
    fn apply_firewall(&self, st: &State) -> Result<()> {
        let bridges: Vec<BridgeRules> = st
            .nets
            .values()
            .filter(|n| n.driver == "bridge")
            .filter_map(|n| {
                Some(BridgeRules {
                    bridge: n.bridge.clone(),
                    subnet: n.subnet?,
                    internal: n.internal,
                })
            })
            .collect();
        let ports: Vec<PortRule> = st
            .attachments
            .values()
            .flat_map(|a| a.ports.iter())
            .map(|p| PortRule {
                proto: p.proto.clone(),
                host_ip: p.host_ip,
                host_port: p.host_port,
                container_ip: p.container_ip,
                container_port: p.container_port,
            })
            .collect();
        firewall::run(&firewall::ruleset(&self.cfg.table, &bridges, &ports))
            .map_err(|e| NetError::Io(format!("writing berth's firewall table: {e}")))
    }

    fn find<'a>(st: &'a State, name: &str) -> Result<&'a Network> {
        if let Some(n) = st.nets.values().find(|n| n.name == name || n.id == name) {
            return Ok(n);
        }
        let mut hits = st.nets.values().filter(|n| n.id.starts_with(name));
        match (hits.next(), hits.next()) {
            (Some(n), None) if !name.is_empty() => Ok(n),
            (Some(_), Some(_)) => Err(NetError::Invalid(format!(
                "network {name} is ambiguous ({} matches found based on ID prefix)",
                st.nets.values().filter(|n| n.id.starts_with(name)).count()
            ))),
            _ => Err(NetError::NotFound(format!("network {name} not found"))),
        }
    }

    /// A network by name, ID or ID prefix.
    pub fn get(&self, name: &str) -> Result<Network> {
        Self::find(&self.lock(), name).cloned()
    }

    /// Every network.
    pub fn list(&self) -> Vec<Network> {
        let mut v: Vec<Network> = self.lock().nets.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The endpoints on network `id`: (container ID, container name, endpoint).
    pub fn endpoints_on(&self, id: &str) -> Vec<(String, String, Endpoint)> {
        self.lock()
            .attachments
            .values()
            .flat_map(|a| {
                a.endpoints
                    .iter()
                    .filter(|e| e.network_id == id)
                    .map(|e| (a.container_id.clone(), a.name.clone(), e.clone()))
            })
            .collect()
    }

    /// What a running container holds.
    pub fn attachment(&self, container_id: &str) -> Option<Attachment> {
        self.lock().attachments.get(container_id).cloned()
    }

    /// `POST /networks/create`.
    pub fn create(&self, req: CreateRequest) -> Result<Network> {
        if req.name.is_empty() {
            return Err(NetError::Invalid("network name cannot be empty".into()));
        }
        if !req
            .name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '_' | '.' | '-')))
        {
            return Err(NetError::Invalid(format!(
                "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        match req.driver.as_str() {
            "" | "bridge" => {}
            "host" | "null" => {
                return Err(NetError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    req.driver
                )))
            }
            d => {
                return Err(NetError::NotFound(format!(
                    "plugin \"{d}\" not found: berth has the bridge driver only"
                )))
            }
        }
        let parse = |what: &str, v: &Option<String>| -> Result<Option<Ipv4Net>> {
            match v.as_deref() {
                None | Some("") => Ok(None),
                Some(s) if s.contains(':') => Err(NetError::Invalid(format!(
                    "invalid {what} {s}: berth's networks are IPv4 only"
                ))),
                Some(s) => s.parse::<Ipv4Net>().map(Some).map_err(|_| {
                    NetError::Invalid(format!(
                        "invalid {what} {s}: expected an IPv4 CIDR such as 10.10.0.0/24"
                    ))
                }),
            }
        };
        let subnet = parse("subnet", &req.subnet)?;
        let ip_range = parse("ip-range", &req.ip_range)?;
        let gateway = match req.gateway.as_deref() {
            None | Some("") => None,
            Some(g) => Some(g.parse::<Ipv4Addr>().map_err(|_| {
                NetError::Invalid(format!("invalid gateway {g}: expected an IPv4 address"))
            })?),
        };
        if subnet.is_none() && (gateway.is_some() || ip_range.is_some()) {
            return Err(NetError::Invalid(
                "--gateway and --ip-range need --subnet: give the subnet they belong to".into(),
            ));
        }
        if let Some(s) = subnet {
            if s.prefix_len() > 30 {
                return Err(NetError::Invalid(format!(
                    "invalid subnet {s}: a network needs at least a /30"
                )));
            }
            if s != s.trunc() {
                return Err(NetError::Invalid(format!(
                    "invalid subnet {s}: it has host bits set, did you mean {}?",
                    s.trunc()
                )));
            }
            if let Some(g) = gateway {
                if !s.contains(&g) {
                    return Err(NetError::Invalid(format!(
                        "no matching subnet for gateway {g}: it is not in {s}"
                    )));
                }
            }
            if let Some(r) = ip_range {
                if !s.contains(&r.network()) || r.prefix_len() < s.prefix_len() {
                    return Err(NetError::Invalid(format!(
                        "invalid ip-range {r}: it is not inside the subnet {s}"
                    )));
                }
            }
        }
        let mut st = self.lock();
        if st.nets.values().any(|n| n.name == req.name) {
            return Err(NetError::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let mut nl = Netlink::new().map_err(io_err("opening netlink"))?;
        let subnet = match subnet {
            Some(s) => {
                if let Some(o) = st
                    .nets
                    .values()
                    .find(|n| n.subnet.is_some_and(|x| ipam::overlaps(&x, &s)))
                {
                    return Err(NetError::Forbidden(format!(
                        "invalid pool request: Pool overlaps with other one on this address space (network {} has {})",
                        o.name,
                        o.subnet.map(|x| x.to_string()).unwrap_or_default()
                    )));
                }
                s
            }
            None => self.free_subnet(&st, &mut nl)?,
        };
        let id = random_hex(32);
        let req_bridge_given = req.options.contains_key("com.docker.network.bridge.name");
        let n = Network {
            bridge: req
                .options
                .get("com.docker.network.bridge.name")
                .cloned()
                .unwrap_or_else(|| bridge_name(&id)),
            id,
            name: req.name,
            driver: "bridge".into(),
            created: berth_types::time::now_rfc3339_nano(),
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels,
            options: req.options,
            gateway: Some(gateway.unwrap_or_else(|| first_host(&subnet))),
            user_ipam: req.subnet.is_some(),
            subnet: Some(subnet),
            ip_range,
        };
        if req_bridge_given {
            // A name the user chose must be a new interface: berth deletes the bridge with
            // the network, and must never take over (and later delete) one it did not make.
            if n.bridge.is_empty()
                || n.bridge.len() > 15
                || !n
                    .bridge
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(NetError::Invalid(format!(
                    "invalid bridge name {:?}: 1 to 15 letters, digits, '_', '-' or '.'",
                    n.bridge
                )));
            }
            let taken = st.nets.values().any(|o| o.bridge == n.bridge)
                || nl
                    .link(&n.bridge)
                    .map_err(io_err("looking up the bridge name"))?
                    .is_some();
            if taken {
                return Err(NetError::Conflict(format!(
                    "interface {} already exists: choose another com.docker.network.bridge.name",
                    n.bridge
                )));
            }
        }
        if let Err(e) = self.ensure_bridge(&mut nl, &n) {
            let _ = nl.delete_link(&n.bridge);
            return Err(e);
        }
        st.nets.insert(n.id.clone(), n.clone());
        let done = self.persist(&n).and_then(|()| self.apply_firewall(&st));
        if let Err(e) = done {
            st.nets.remove(&n.id);
            let _ = std::fs::remove_file(self.record_path(&n.id));
            let _ = nl.delete_link(&n.bridge);
            return Err(e);
        }
        Ok(n)
    }

    /// `DELETE /networks/{id}`.
    pub fn remove(&self, name: &str) -> Result<()> {
        let mut st = self.lock();
        let n = Self::find(&st, name)?.clone();
        if n.is_builtin() {
            return Err(NetError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let users: Vec<&str> = st
            .attachments
            .values()
            .filter(|a| a.endpoints.iter().any(|e| e.network_id == n.id))
            .map(|a| a.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(NetError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints ({}): stop them or disconnect them first",
                n.name,
                n.id,
                users.join(", ")
            )));
        }
        std::fs::remove_file(self.record_path(&n.id))
            .map_err(io_err("removing the network record"))?;
        st.nets.remove(&n.id);
        let mut nl = Netlink::new().map_err(io_err("opening netlink"))?;
        nl.delete_link(&n.bridge).map_err(io_err(format_args!(
            "removing the bridge of network {}",
            n.name
        )))?;
        self.apply_firewall(&st)
    }

    /// Connect a container that is about to start: its namespace, an endpoint on each
    /// network, its published ports. On failure nothing is left behind.
    pub fn attach(&self, req: &AttachRequest) -> Result<Attachment> {
        match self.attach_inner(req) {
            Ok(a) => Ok(a),
            Err(e) => {
                self.detach(&req.container_id);
                Err(e)
            }
        }
    }

    fn attach_inner(&self, req: &AttachRequest) -> Result<Attachment> {
        let id = &req.container_id;
        let netns_path = self.netns_path(id);
        // Addresses and host ports first, under the lock: the attachment is recorded
        // before any interface exists, so that a crash leaves something to clean up.
        let (att, user_net) = {
            let mut st = self.lock();
            if st.attachments.contains_key(id) {
                drop(st);
                self.detach(id);
                st = self.lock();
            }
            let mut endpoints = Vec::new();
            let mut user_net = false;
            for (i, er) in req.networks.iter().enumerate() {
                let n = Self::find(&st, &er.network)?.clone();
                if endpoints.iter().any(|e: &Endpoint| e.network_id == n.id) {
                    continue;
                }
                user_net |= n.name != "bridge";
                let mac = if i == 0 { req.mac } else { None };
                let ep = Self::new_endpoint(&mut st, &n, er, endpoints.len(), mac)?;
                endpoints.push(ep);
            }
            let mut published = Vec::new();
            let mut held = Vec::new();
            if let Some(first) = endpoints.first() {
                for p in &req.ports {
                    let (fd, host_port) = ports::reserve(p).map_err(|e| {
                        NetError::Conflict(format!(
                            "driver failed programming external connectivity on endpoint {}: {e}",
                            req.name
                        ))
                    })?;
                    held.push(fd);
                    published.push(PublishedPort {
                        proto: p.proto.clone(),
                        container_port: p.container_port,
                        host_ip: p.host_ip,
                        host_port,
                        container_ip: first.ip,
                    });
                }
            }
            let att = Attachment {
                container_id: id.clone(),
                name: req.name.clone(),
                netns: netns_path.clone(),
                endpoints,
                ports: published,
                upstreams: req.upstreams.clone(),
            };
            self.save_attachment(&att)?;
            st.attachments.insert(id.clone(), att.clone());
            st.reservations.insert(id.clone(), held);
            (att, user_net)
        };

        let (ns, mut inside) =
            netns::create(&netns_path).map_err(io_err("creating the network namespace"))?;
        let mut host = Netlink::new().map_err(io_err("opening netlink"))?;
        for (i, ep) in att.endpoints.iter().enumerate() {
            self.wire(&mut host, &mut inside, &ns, ep, i == 0)?;
        }
        if !att.ports.is_empty() {
            self.apply_firewall(&self.lock())?;
        }
        if user_net {
            self.start_dns(&att.container_id, &ns)?;
        }
        Ok(att)
    }

    /// An address on `n` for a container's interface number `index` (under the state
    /// lock).
    fn new_endpoint(
        st: &mut State,
        n: &Network,
        er: &EndpointRequest,
        index: usize,
        mac: Option<[u8; 6]>,
    ) -> Result<Endpoint> {
        if n.driver != "bridge" {
            return Err(NetError::Invalid(format!(
                "container cannot be connected to network {} together with others",
                n.name
            )));
        }
        let (Some(subnet), Some(gateway)) = (n.subnet, n.gateway) else {
            return Err(NetError::Io(format!("network {} has no subnet", n.name)));
        };
        if er.ip.is_some() && !n.user_ipam {
            return Err(NetError::Invalid(
                "user specified IP address is supported only when connecting to networks with user configured subnets".into(),
            ));
        }
        let used: BTreeSet<Ipv4Addr> = st
            .attachments
            .values()
            .flat_map(|a| a.endpoints.iter())
            .filter(|e| e.network_id == n.id)
            .map(|e| e.ip)
            .collect();
        let mut pool = Pool {
            subnet,
            range: n.ip_range.unwrap_or(subnet),
            gateway,
            last: st.last.get(&n.id).copied(),
        };
        let ip = pool.allocate(&used, er.ip).map_err(|e| match e {
            ipam::IpamError::Exhausted(_) => NetError::Forbidden(format!(
                "no available IPv4 addresses on network {}: {e}",
                n.name
            )),
            e => NetError::Invalid(format!("network {}: {e}", n.name)),
        })?;
        if let Some(l) = pool.last {
            st.last.insert(n.id.clone(), l);
        }
        Ok(Endpoint {
            network_id: n.id.clone(),
            network_name: n.name.clone(),
            endpoint_id: random_hex(32),
            ip,
            prefix: subnet.prefix_len(),
            gateway,
            mac: netlink::format_mac(er.mac.or(mac).unwrap_or_else(|| netlink::mac_for(ip))),
            // Random, as Docker's: a restarted container's new veth must not collide with
            // its old one, which the kernel may still be removing.
            host_veth: format!("veth{}", random_hex(5)),
            iface: format!("eth{index}"),
            aliases: er.aliases.clone(),
        })
    }

    /// Create the veth pair of `ep` into the namespace `ns` and configure its inside end
    /// (with the default route through it when `route`).
    fn wire(
        &self,
        host: &mut Netlink,
        inside: &mut Netlink,
        ns: &std::fs::File,
        ep: &Endpoint,
        route: bool,
    ) -> Result<()> {
        let bridge = self.get(&ep.network_id)?.bridge;
        let master = host
            .link(&bridge)
            .map_err(io_err("looking up the bridge"))?
            .ok_or_else(|| {
                NetError::Io(format!(
                    "the bridge {bridge} of network {} is gone: restart berthd to recreate it",
                    ep.network_name
                ))
            })?
            .index;
        let mac = netlink::parse_mac(&ep.mac).unwrap_or_else(|| netlink::mac_for(ep.ip));
        host.create_veth(
            &ep.host_veth,
            master,
            &ep.iface,
            std::os::fd::AsRawFd::as_raw_fd(ns),
            mac,
            self.cfg.mtu,
        )
        .map_err(io_err(format_args!(
            "connecting to network {}",
            ep.network_name
        )))?;
        let index = inside
            .set_up_by_name(&ep.iface)
            .map_err(io_err("bringing the container's interface up"))?;
        inside
            .add_address(index, ep.ip, ep.prefix)
            .map_err(io_err("addressing the container's interface"))?;
        if route {
            inside
                .add_default_route(ep.gateway)
                .map_err(io_err("routing the container"))?;
        }
        Ok(())
    }

    fn save_attachment(&self, att: &Attachment) -> Result<()> {
        let data = serde_json::to_vec(att).map_err(|e| NetError::Io(e.to_string()))?;
        let path = self.attachment_path(&att.container_id);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io_err("creating the attachments directory"))?;
        }
        save(&path, &data, false).map_err(io_err("recording the attachment"))
    }

    /// `docker network connect` of a running container: one more interface.
    pub fn connect(&self, container_id: &str, er: &EndpointRequest) -> Result<Attachment> {
        let (ep, ns_path) = {
            let mut st = self.lock();
            let n = Self::find(&st, &er.network)?.clone();
            let Some(att) = st.attachments.get(container_id) else {
                return Err(NetError::Conflict(format!(
                    "container {container_id} holds no network namespace of berth's (host, none or container: network mode)"
                )));
            };
            if att.endpoints.iter().any(|e| e.network_id == n.id) {
                return Err(NetError::Forbidden(format!(
                    "endpoint with name {} already exists in network {}",
                    att.name, n.name
                )));
            }
            let index = att
                .endpoints
                .iter()
                .filter_map(|e| e.iface.strip_prefix("eth")?.parse::<usize>().ok())
                .max()
                .map_or(0, |m| m + 1);
            let ns_path = att.netns.clone();
            let ep = Self::new_endpoint(&mut st, &n, er, index, None)?;
            let att = st.attachments.get_mut(container_id).expect("checked above");
            att.endpoints.push(ep.clone());
            let att = att.clone();
            if let Err(e) = self.save_attachment(&att) {
                if let Some(a) = st.attachments.get_mut(container_id) {
                    a.endpoints.retain(|x| x.endpoint_id != ep.endpoint_id);
                }
                return Err(e);
            }
            (ep, ns_path)
        };
        let wired = (|| {
            let ns = std::fs::File::open(&ns_path)
                .map_err(io_err("opening the container's network namespace"))?;
            let mut inside =
                netns::netlink_in(&ns).map_err(io_err("entering the network namespace"))?;
            let mut host = Netlink::new().map_err(io_err("opening netlink"))?;
            self.wire(&mut host, &mut inside, &ns, &ep, false)?;
            if ep.network_name != "bridge" && !self.lock().dns.contains_key(container_id) {
                self.start_dns(container_id, &ns)?;
            }
            Ok(())
        })();
        if let Err(e) = wired {
            let _ = self.disconnect(container_id, &ep.network_id);
            return Err(e);
        }
        self.attachment(container_id)
            .ok_or_else(|| NetError::Io("the container stopped meanwhile".into()))
    }

    /// `docker network disconnect` of a running container: its interface on `network` goes.
    pub fn disconnect(&self, container_id: &str, network: &str) -> Result<Attachment> {
        let (ep, att) = {
            let mut st = self.lock();
            let nid = Self::find(&st, network)
                .map(|n| n.id.clone())
                .unwrap_or_else(|_| network.to_string());
            let Some(att) = st.attachments.get_mut(container_id) else {
                return Err(NetError::Conflict(format!(
                    "container {container_id} is not connected to network {network}"
                )));
            };
            let Some(pos) = att.endpoints.iter().position(|e| e.network_id == nid) else {
                return Err(NetError::Conflict(format!(
                    "container {} is not connected to network {network}",
                    att.name
                )));
            };
            let ep = att.endpoints.remove(pos);
            let att = att.clone();
            self.save_attachment(&att)?;
            if !att.endpoints.iter().any(|e| e.network_name != "bridge") {
                st.dns.remove(container_id);
            }
            (ep, att)
        };
        let mut nl = Netlink::new().map_err(io_err("opening netlink"))?;
        nl.delete_link(&ep.host_veth).map_err(io_err(format_args!(
            "removing the interface on {}",
            ep.network_name
        )))?;
        Ok(att)
    }

    fn start_dns(&self, container_id: &str, ns: &std::fs::File) -> Result<()> {
        let (Some(rt), Some(me)) = (self.runtime.clone(), self.me.upgrade()) else {
            return Ok(());
        };
        let (udp, tcp) =
            crate::dns::bind_in_netns(ns).map_err(io_err("starting the embedded DNS server"))?;
        let _guard = rt.enter();
        let server = crate::dns::serve(udp, tcp, container_id.to_string(), me)
            .map_err(io_err("starting the embedded DNS server"))?;
        self.lock().dns.insert(container_id.to_string(), server);
        Ok(())
    }

    /// Release everything a container held: interfaces, namespace, addresses, ports.
    /// Safe to call for a container that holds nothing.
    pub fn detach(&self, container_id: &str) {
        {
            let mut st = self.lock();
            st.reservations.remove(container_id);
            st.dns.remove(container_id);
            let att = st.attachments.remove(container_id);
            if att.as_ref().is_some_and(|a| !a.ports.is_empty()) {
                if let Err(e) = self.apply_firewall(&st) {
                    tracing::warn!(container = %container_id, error = %e, "removing published ports");
                }
            }
        }
        // The veths are not deleted one by one: deleting a veth waits for an RCU grace
        // period (~17 ms here), on the critical path of `docker run --rm`. Unmounting the
        // namespace drops its last reference once the container's processes are gone, and
        // the kernel then removes its interfaces (the host ends with them) in the
        // background. Addresses are handed out round-robin, so one is not reused while
        // its old interface may still be going away.
        if let Err(e) = netns::remove(&self.netns_path(container_id)) {
            tracing::warn!(container = %container_id, error = %e, "removing the network namespace");
        }
        let _ = std::fs::remove_file(self.attachment_path(container_id));
    }

    /// After a daemon start: keep what running containers hold (their host ports are
    /// bound again, their DNS servers restarted), release what the others held, and
    /// remove veths and namespaces nothing accounts for.
    pub fn reconcile(&self, running: &dyn Fn(&str) -> bool) {
        let ids: Vec<String> = self.lock().attachments.keys().cloned().collect();
        for id in ids {
            if !running(&id) {
                self.detach(&id);
                continue;
            }
            let Some(att) = self.attachment(&id) else {
                continue;
            };
            let mut held = Vec::new();
            for p in &att.ports {
                let req = PortRequest {
                    proto: p.proto.clone(),
                    container_port: p.container_port,
                    host_ip: p.host_ip,
                    host_ports: (p.host_port, p.host_port),
                };
                match ports::reserve(&req) {
                    Ok((fd, _)) => held.push(fd),
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "holding a published port again")
                    }
                }
            }
            self.lock().reservations.insert(id.clone(), held);
            let user_net = att.endpoints.iter().any(|e| e.network_name != "bridge");
            if user_net {
                match std::fs::File::open(&att.netns) {
                    Ok(ns) => {
                        if let Err(e) = self.start_dns(&id, &ns) {
                            tracing::warn!(container = %id, error = %e, "restarting the embedded DNS server");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "opening the network namespace")
                    }
                }
            }
        }
        // Leftovers nothing accounts for.
        let st = self.lock();
        let known_veths: BTreeSet<&str> = st
            .attachments
            .values()
            .flat_map(|a| a.endpoints.iter().map(|e| e.host_veth.as_str()))
            .collect();
        let bridges: BTreeSet<&str> = st.nets.values().map(|n| n.bridge.as_str()).collect();
        if let Ok(mut nl) = Netlink::new() {
            let links = nl.links().unwrap_or_default();
            let bridge_idx: BTreeSet<u32> = links
                .iter()
                .filter(|l| bridges.contains(l.name.as_str()))
                .map(|l| l.index)
                .collect();
            for l in &links {
                if l.name.starts_with("veth")
                    && l.master.is_some_and(|m| bridge_idx.contains(&m))
                    && !known_veths.contains(l.name.as_str())
                {
                    tracing::info!(veth = %l.name, "removing a stale veth");
                    let _ = nl.delete_link(&l.name);
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(&self.cfg.netns_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !st.attachments.contains_key(&name) {
                    let _ = netns::remove(&e.path());
                }
            }
        }
        if let Err(e) = self.apply_firewall(&st) {
            tracing::warn!(error = %e, "writing the firewall");
        }
    }

    /// The container was renamed: its DNS name follows.
    pub fn rename(&self, container_id: &str, name: &str) {
        let mut st = self.lock();
        if let Some(a) = st.attachments.get_mut(container_id) {
            a.name = name.to_string();
            if let Ok(data) = serde_json::to_vec(&*a) {
                let _ = save(&self.attachment_path(container_id), &data, false);
            }
        }
    }
}

/// Remove the firewall table and the bridges of a daemon's networks (`berthd
/// --teardown-networks`, for uninstalling and tests); its containers must be stopped first.
pub fn teardown(cfg: &NetConfig) -> Result<()> {
    let mut nl = Netlink::new().map_err(io_err("opening netlink"))?;
    let mut bridges = vec![cfg.bridge.clone()];
    if let Ok(rd) = std::fs::read_dir(&cfg.data_dir) {
        for e in rd.flatten() {
            if let Some(n) = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Network>(&b).ok())
            {
                if n.driver == "bridge" && !bridges.contains(&n.bridge) {
                    bridges.push(n.bridge);
                }
            }
        }
    }
    for b in &bridges {
        nl.delete_link(b)
            .map_err(io_err(format_args!("removing bridge {b}")))?;
    }
    firewall::delete_table(&cfg.table).map_err(io_err("removing the firewall table"))
}

/// The network's first host address (Docker's default gateway).
fn first_host(subnet: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

impl crate::dns::Names for Networks {
    fn lookup(&self, scope: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let st = self.lock();
        let me = st.attachments.get(scope)?;
        let mine: BTreeSet<&str> = me.endpoints.iter().map(|e| e.network_id.as_str()).collect();
        let mut out = Vec::new();
        for a in st.attachments.values() {
            for ep in a
                .endpoints
                .iter()
                .filter(|e| mine.contains(e.network_id.as_str()))
            {
                // Only user-defined networks have names, as in Docker.
                if ep.network_name == "bridge" {
                    continue;
                }
                let hit = a.name.eq_ignore_ascii_case(name)
                    || (name.len() >= 12 && a.container_id.starts_with(name) && name.len() <= 64)
                    || ep.aliases.iter().any(|al| al.eq_ignore_ascii_case(name));
                if hit && !out.contains(&ep.ip) {
                    out.push(ep.ip);
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn reverse(&self, scope: &str, ip: Ipv4Addr) -> Option<String> {
        let st = self.lock();
        let me = st.attachments.get(scope)?;
        let mine: BTreeSet<&str> = me.endpoints.iter().map(|e| e.network_id.as_str()).collect();
        st.attachments.values().find_map(|a| {
            a.endpoints
                .iter()
                .find(|e| {
                    e.ip == ip && mine.contains(e.network_id.as_str()) && e.network_name != "bridge"
                })
                .map(|e| format!("{}.{}", a.name, e.network_name))
        })
    }

    fn upstreams(&self, scope: &str) -> Vec<std::net::SocketAddr> {
        match self.lock().attachments.get(scope) {
            Some(a) if !a.upstreams.is_empty() => a.upstreams.clone(),
            _ => host_resolvers(),
        }
    }
}

/// The host's name servers (from /etc/resolv.conf), port 53.
pub fn host_resolvers() -> Vec<std::net::SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next())?
        })
        .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect()
}
