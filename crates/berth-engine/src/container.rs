//! A container as berthd records it: the effective configuration (request merged with the
//! image's config, defaults filled in), its state machine, and the JSON berthd reports for
//! it (`docker inspect`, `docker ps`).
//!
//! Each record is one file, `<data-root>/containers/<id>/container.json`, replaced
//! atomically on every change, so a `kill -9` of berthd at any moment leaves either the old
//! or the new state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::types::{ContainerConfig, HostConfig, NetworkingConfig};

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// A healthcheck's state (`State.Health`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `starting`, `healthy`, `unhealthy`.
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// The mutable part of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub health: Option<Health>,
    /// The pid of the container's berth-monitor while it runs.
    pub monitor_pid: Option<i32>,
    /// Stopped by a user (`stop`, `kill`): restart policies other than `always` leave it.
    pub manually_stopped: bool,
    pub restart_count: i64,
}

/// A mount as `docker inspect` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// `bind`, `volume`, `tmpfs`.
    pub kind: String,
    /// The volume's name (volumes only).
    pub name: String,
    /// Host path (bind source or the volume's `_data`).
    pub source: String,
    pub destination: String,
    pub read_write: bool,
    /// The mode string given (`ro`, `z`, ...).
    pub mode: String,
    pub propagation: String,
    /// Anonymous volumes are removed with `rm -v`.
    pub anonymous: bool,
    /// tmpfs options (tmpfs only).
    #[serde(default)]
    pub options: Vec<String>,
}

/// Everything berthd knows about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub created: String,
    /// The image ID (`sha256:…`).
    pub image_id: String,
    /// The effective config: the request merged with the image's.
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub networking_config: NetworkingConfig,
    /// argv[0] and the rest, as inspect's `Path` and `Args` show them.
    pub path: String,
    pub args: Vec<String>,
    pub mounts: Vec<MountPoint>,
    pub state: State,
    /// What the container holds on its networks while it runs (addresses, published
    /// ports); `None` when stopped or on `host`/`none`/`container:`.
    #[serde(default)]
    pub network: Option<berth_net::Attachment>,
    /// The container's runtime (`berth` for the built-in one, or `runc`/`crun`).
    pub runtime: String,
    /// Paths of the files berthd generated for the container.
    pub log_path: PathBuf,
    pub hosts_path: PathBuf,
    pub hostname_path: PathBuf,
    pub resolv_conf_path: PathBuf,
}

/// The record file of container `id`.
pub fn record_path(containers_dir: &Path, id: &str) -> PathBuf {
    containers_dir.join(id).join("container.json")
}

/// Replace `path` with `data` atomically: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    replace(path, data, true)
}

/// Replace `path` with `data` atomically (a `kill -9` of berthd leaves the old or the new
/// content) but without forcing it to disk. For files of this boot only (the bundle, the
/// monitor's config, in the exec root) and for state a host crash makes moot anyway
/// (running, exited: after a reboot no container runs). Each fsync costs ~0.5–1 ms on a
/// disk, and a start used to make a dozen of them.
pub fn replace_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    replace(path, data, false)
}

fn replace(path: &Path, data: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    if durable {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

impl Container {
    /// Persist the record durably (create, rename, update, a user's stop).
    pub fn save(&self, containers_dir: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        write_atomic(&record_path(containers_dir, &self.id), &data)
    }

    /// Persist a change of run state (started, exited, paused): atomic, not forced to disk.
    pub fn save_state(&self, containers_dir: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        replace_file(&record_path(containers_dir, &self.id), &data)
    }

    pub fn load(path: &Path) -> std::io::Result<Container> {
        let data = std::fs::read(path)?;
        serde_json::from_slice(&data).map_err(std::io::Error::other)
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.state.status,
            Status::Running | Status::Paused | Status::Restarting
        )
    }

    /// Labels plus `image` and `name`: the attributes of this container's events.
    pub fn event_attributes(&self) -> BTreeMap<String, String> {
        let mut a = self.config.labels.clone().unwrap_or_default();
        a.insert("image".into(), self.config.image.clone());
        a.insert("name".into(), self.name.clone());
        a
    }

    /// The command line as `docker ps` shows it.
    pub fn command(&self) -> String {
        let mut parts = vec![self.path.clone()];
        parts.extend(self.args.iter().cloned());
        parts.join(" ")
    }

    /// Docker's `Status` text: `Up 3 minutes`, `Exited (0) 5 seconds ago`, `Created`.
    pub fn status_text(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let since = |t: &Option<String>| {
            t.as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| human_duration(now.signed_duration_since(t)))
                .unwrap_or_else(|| "Less than a second".into())
        };
        match self.state.status {
            Status::Created => "Created".into(),
            Status::Running | Status::Paused => {
                let mut s = format!("Up {}", since(&self.state.started_at));
                if let Some(h) = &self.state.health {
                    match h.status.as_str() {
                        "starting" => s.push_str(" (health: starting)"),
                        other => s.push_str(&format!(" ({other})")),
                    }
                }
                if self.state.status == Status::Paused {
                    s.push_str(" (Paused)");
                }
                s
            }
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                self.state.exit_code,
                since(&self.state.finished_at)
            ),
            Status::Removing => "Removal In Progress".into(),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.state.exit_code,
                since(&self.state.finished_at)
            ),
            Status::Dead => "Dead".into(),
        }
    }

    fn mounts_json(&self) -> Value {
        Value::Array(
            self.mounts
                .iter()
                .map(|m| {
                    let mut v = json!({
                        "Type": m.kind,
                        "Source": m.source,
                        "Destination": m.destination,
                        "Mode": m.mode,
                        "RW": m.read_write,
                        "Propagation": m.propagation,
                    });
                    if m.kind == "volume" {
                        v["Name"] = json!(m.name);
                        v["Driver"] = json!("local");
                    }
                    v
                })
                .collect(),
        )
    }

    /// The effective `HostConfig` with daemon defaults shown as Docker shows them.
    fn host_config_json(&self) -> Value {
        let mut hc = serde_json::to_value(&self.host_config).unwrap_or(json!({}));
        if self.host_config.network_mode.is_empty() || self.host_config.network_mode == "default" {
            hc["NetworkMode"] = json!("bridge");
        }
        if self.host_config.log_config.r#type.is_empty() {
            hc["LogConfig"]["Type"] = json!("json-file");
        }
        if self.host_config.restart_policy.name.is_empty() {
            hc["RestartPolicy"]["Name"] = json!("no");
        }
        hc["Runtime"] = json!(self.runtime);
        hc
    }

    /// The network mode as Docker reports it (`bridge` for an empty or `default` one).
    pub fn network_mode(&self) -> &str {
        match self.host_config.network_mode.as_str() {
            "" | "default" => "bridge",
            m => m,
        }
    }

    fn networks_json(&self) -> Value {
        serde_json::to_value(self.endpoints()).unwrap_or_else(|_| json!({}))
    }

    /// The networks the container is configured for: its mode's network (unless it is
    /// `container:`), then the others of `NetworkingConfig` (bridge networks only).
    pub fn network_names(&self) -> Vec<String> {
        let mode = self.network_mode();
        if mode.starts_with("container:") {
            return Vec::new();
        }
        let mut names = vec![mode.to_owned()];
        if !matches!(mode, "host" | "none") {
            for k in self
                .networking_config
                .endpoints_config
                .iter()
                .flat_map(|m| m.keys())
            {
                if k != "default" && !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
        names
    }

    /// The `EndpointsConfig` entry for network `name`; the docker CLI files the one of
    /// the default network under `default`.
    pub fn endpoint_config(&self, name: &str) -> Option<&Value> {
        let m = self.networking_config.endpoints_config.as_ref()?;
        m.get(name)
            .or_else(|| {
                (self.network_mode() == name)
                    .then(|| m.get("default"))
                    .flatten()
            })
            .and_then(|v| v.as_ref())
    }

    /// The container's network endpoints by network name: with addresses while it runs.
    fn endpoints(&self) -> BTreeMap<String, EndpointSettings> {
        let mut nets = BTreeMap::new();
        for name in self.network_names() {
            let cfg = self.endpoint_config(&name);
            let aliases = cfg
                .and_then(|v| v.get("Aliases"))
                .and_then(|a| serde_json::from_value::<Vec<String>>(a.clone()).ok());
            let mut e = EndpointSettings {
                network_id: name.clone(),
                aliases,
                ipam_config: cfg.and_then(|v| v.get("IPAMConfig")).cloned(),
                ..Default::default()
            };
            if let Some(ep) = self.network.as_ref().and_then(|a| {
                a.endpoints
                    .iter()
                    .find(|ep| ep.network_name == name || ep.network_id == name)
            }) {
                e.network_id = ep.network_id.clone();
                e.endpoint_id = ep.endpoint_id.clone();
                e.gateway = ep.gateway.to_string();
                e.ip_address = ep.ip.to_string();
                e.ip_prefix_len = ep.prefix.into();
                e.mac_address = ep.mac.clone();
                if ep.network_name != "bridge" {
                    let mut names = vec![self.name.clone(), self.id[..12].to_string()];
                    names.extend(ep.aliases.iter().cloned());
                    e.dns_names = Some(names);
                }
            }
            nets.insert(name, e);
        }
        nets
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self) -> Value {
        let s = &self.state;
        let zero = "0001-01-01T00:00:00Z".to_string();
        let health = s.health.as_ref().map(|h| {
            json!({
                "Status": h.status,
                "FailingStreak": h.failing_streak,
                "Log": h.log.iter().map(|r| json!({
                    "Start": r.start, "End": r.end, "ExitCode": r.exit_code, "Output": r.output,
                })).collect::<Vec<_>>(),
            })
        });
        let mut state = json!({
            "Status": s.status.as_str(),
            "Running": matches!(s.status, Status::Running | Status::Paused),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": if self.is_running() { s.pid } else { 0 },
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at.clone().unwrap_or_else(|| zero.clone()),
            "FinishedAt": s.finished_at.clone().unwrap_or_else(|| zero.clone()),
        });
        if let Some(h) = health {
            state["Health"] = h;
        }
        let ports = self.ports_json();
        // The top-level address fields describe the default bridge only, as in Docker.
        let bridge_ep = self.endpoints().remove("bridge").unwrap_or_default();
        let (sandbox_id, sandbox_key) = match &self.network {
            Some(a) => (self.id.clone(), a.netns.display().to_string()),
            None => (String::new(), String::new()),
        };
        json!({
            "Id": self.id,
            "Created": self.created,
            "Path": self.path,
            "Args": self.args,
            "State": state,
            "Image": self.image_id,
            "ResolvConfPath": self.resolv_conf_path,
            "HostnamePath": self.hostname_path,
            "HostsPath": self.hosts_path,
            "LogPath": self.log_path,
            "Name": format!("/{}", self.name),
            "RestartCount": s.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "MountLabel": "",
            "ProcessLabel": "",
            "AppArmorProfile": "",
            "ExecIDs": null,
            "HostConfig": self.host_config_json(),
            "GraphDriver": {"Name": "overlay2", "Data": null},
            "Mounts": self.mounts_json(),
            "Config": self.config_json(),
            "NetworkSettings": {
                "Bridge": "", "SandboxID": sandbox_id, "SandboxKey": sandbox_key, "HairpinMode": false,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "Ports": ports,
                "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
                "EndpointID": bridge_ep.endpoint_id, "Gateway": bridge_ep.gateway, "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "IPAddress": bridge_ep.ip_address, "IPPrefixLen": bridge_ep.ip_prefix_len, "IPv6Gateway": "", "MacAddress": bridge_ep.mac_address,
                "Networks": self.networks_json(),
            },
        })
    }

    fn config_json(&self) -> Value {
        let mut c = serde_json::to_value(&self.config).unwrap_or(json!({}));
        if c.get("ExposedPorts").is_none() {
            // Docker omits it when empty; keep the object shape stable for templates.
        }
        if c["Labels"].is_null() {
            c["Labels"] = json!({});
        }
        c
    }

    /// `NetworkSettings.Ports`: every exposed or published port, `null` when unpublished.
    fn ports_json(&self) -> Value {
        let mut ports = serde_json::Map::new();
        if let Some(exposed) = &self.config.exposed_ports {
            for p in exposed.keys() {
                let key = if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                };
                ports.insert(key, Value::Null);
            }
        }
        for p in self.network.iter().flat_map(|a| a.ports.iter()) {
            let entry = ports
                .entry(format!("{}/{}", p.container_port, p.proto))
                .or_insert(Value::Null);
            if !entry.is_array() {
                *entry = json!([]);
            }
            if let Some(list) = entry.as_array_mut() {
                list.push(
                    json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}),
                );
            }
        }
        Value::Object(ports)
    }

    /// `Ports` of a `ps` row: published ports, then exposed ones that are not.
    fn ports_summary(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let published = self.network.iter().flat_map(|a| a.ports.iter());
        for p in published.clone() {
            out.push(json!({"IP": p.host_ip.to_string(), "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.proto}));
        }
        for key in self.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            if let Ok((port, proto)) = berth_net::ports::parse_container_port(key) {
                if !published
                    .clone()
                    .any(|p| p.container_port == port && p.proto == proto)
                {
                    out.push(json!({"PrivatePort": port, "Type": proto}));
                }
            }
        }
        out
    }

    /// One entry of `GET /containers/json`.
    pub fn summary(&self, now: chrono::DateTime<chrono::Utc>, image_name: &str) -> Summary {
        let created = chrono::DateTime::parse_from_rfc3339(&self.created)
            .map(|t| t.timestamp())
            .unwrap_or(0);
        Summary {
            id: self.id.clone(),
            names: vec![format!("/{}", self.name)],
            image: image_name.to_owned(),
            image_id: self.image_id.clone(),
            command: self.command(),
            created,
            ports: self.ports_summary(),
            size_rw: None,
            size_root_fs: None,
            labels: self.config.labels.clone().unwrap_or_default(),
            state: self.state.status.as_str(),
            status: self.status_text(now),
            host_config: SummaryHostConfig {
                network_mode: self.network_mode().to_owned(),
            },
            network_settings: SummaryNetworks {
                networks: self.endpoints(),
            },
            mounts: self.mounts_json(),
        }
    }
}

/// One row of `GET /containers/json`, in the field order of Docker's `container.Summary`.
/// A typed struct rather than a `Value`: `ps -a` with 1000 containers builds 1000 of these.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    pub id: String,
    pub names: Vec<String>,
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    pub command: String,
    pub created: i64,
    pub ports: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_rw: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_root_fs: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub state: &'static str,
    pub status: String,
    pub host_config: SummaryHostConfig,
    pub network_settings: SummaryNetworks,
    pub mounts: Value,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    pub network_mode: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryNetworks {
    pub networks: BTreeMap<String, EndpointSettings>,
}

/// A container's endpoint on a network, in Docker's field order (`ps` and `inspect`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<Value>,
    pub links: Option<Vec<String>>,
    pub aliases: Option<Vec<String>>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    pub gw_priority: i64,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    pub mac_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: i64,
    #[serde(rename = "IPv6Gateway")]
    pub ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub global_ipv6_prefix_len: i64,
    #[serde(rename = "DNSNames")]
    pub dns_names: Option<Vec<String>>,
}

/// Docker's `units.HumanDuration`: "Less than a second", "3 seconds", "About a minute",
/// "5 minutes", "About an hour", "3 hours", "2 days", "3 weeks", "4 months", "2 years".
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = d.num_minutes();
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (secs as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_docker() {
        let s = chrono::Duration::seconds;
        assert_eq!(human_duration(s(0)), "Less than a second");
        assert_eq!(human_duration(s(5)), "5 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(180)), "3 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(3 * 3600)), "3 hours");
        assert_eq!(human_duration(s(3 * 86400)), "3 days");
    }
}
