//! Container lifecycle: create, start, stop, kill, restart, pause, wait, remove, rename,
//! and what happens when a container exits (restart policies, `--rm`), also after a
//! berthd restart.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_monitor::protocol::{AttachRequest, ExitStatus, LogConfig, Mode, MonitorConfig};
use berth_types::ContainerId;
use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::container::{Container, MountPoint, State, Status};
use crate::engine::{random_id, Engine, Handle, PendingAttach};
use crate::error::{EngineError, ErrorKind, Result};
use crate::types::{ContainerConfig, CreateRequest};

/// What to wait for (`POST /containers/{id}/wait?condition=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> Result<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::invalid(format!(
                "invalid condition: \"{other}\""
            ))),
        }
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "brave",
    "calm",
    "clever",
    "cool",
    "eager",
    "elegant",
    "festive",
    "focused",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "kind",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "tender",
    "upbeat",
    "vibrant",
    "wizardly",
    "youthful",
    "zealous",
];
const SURNAMES: &[&str] = &[
    "albattani",
    "banach",
    "curie",
    "darwin",
    "euclid",
    "fermi",
    "galileo",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "lamarr",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "tesla",
    "thompson",
    "turing",
    "volta",
    "wozniak",
    "yonath",
];

fn random_name() -> String {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        SURNAMES[b[1] as usize % SURNAMES.len()]
    )
}

/// A generated name nobody uses. The word lists give 750 names, so after a collision a
/// random number is appended, as Docker does; past that the ID's short form is used, so
/// this always ends (with 750 containers a plain retry loop never did).
fn unique_name(taken: impl Fn(&str) -> bool, id: &str) -> String {
    for attempt in 0..16u32 {
        let mut n = random_name();
        if attempt > 0 {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            let bound = 10u32.pow(attempt.min(6));
            n.push_str(&(u32::from_le_bytes(b) % bound).to_string());
        }
        if !taken(&n) {
            return n;
        }
    }
    let short = &id[..12.min(id.len())];
    (0..)
        .map(|i| {
            if i == 0 {
                short.to_string()
            } else {
                format!("{short}_{i}")
            }
        })
        .find(|n| !taken(n))
        .unwrap_or_else(|| id.to_string())
}

/// Replace or add `KEY=value` entries; a bare `KEY` removes it (moby's
/// `ReplaceOrAppendEnvValues`).
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for e in overrides {
        let key = e.split_once('=').map(|(k, _)| k).unwrap_or(e);
        let pos = out
            .iter()
            .position(|x| x.split_once('=').map(|(k, _)| k).unwrap_or(x) == key);
        match (e.contains('='), pos) {
            (true, Some(i)) => out[i] = e.clone(),
            (true, None) => out.push(e.clone()),
            (false, Some(i)) => {
                out.remove(i);
            }
            (false, None) => {}
        }
    }
    out
}

/// Merge the request's config with the image's, as moby's `merge` does.
fn merge_config(req: &ContainerConfig, image: &ContainerConfig) -> ContainerConfig {
    let mut c = req.clone();
    if c.user.is_empty() {
        c.user = image.user.clone();
    }
    let mut env = image.env.clone().unwrap_or_default();
    env = merge_env(&env, c.env.as_deref().unwrap_or_default());
    c.env = Some(env);
    let mut labels = image.labels.clone().unwrap_or_default();
    labels.extend(c.labels.clone().unwrap_or_default());
    c.labels = Some(labels);
    if c.entrypoint.is_none() {
        c.entrypoint = image.entrypoint.clone();
        if c.cmd.as_ref().is_none_or(|x| x.0.is_empty()) {
            c.cmd = image.cmd.clone();
        }
    } else if c
        .entrypoint
        .as_ref()
        .is_some_and(|e| e.0.len() == 1 && e.0[0].is_empty())
    {
        // `--entrypoint ""` clears the image's entrypoint.
        c.entrypoint = None;
    }
    if c.working_dir.is_empty() {
        c.working_dir = image.working_dir.clone();
    }
    let mut ports = image.exposed_ports.clone().unwrap_or_default();
    ports.extend(c.exposed_ports.clone().unwrap_or_default());
    c.exposed_ports = (!ports.is_empty()).then_some(ports);
    let mut vols = image.volumes.clone().unwrap_or_default();
    vols.extend(c.volumes.clone().unwrap_or_default());
    c.volumes = (!vols.is_empty()).then_some(vols);
    if c.stop_signal.is_none() {
        c.stop_signal = image.stop_signal.clone();
    }
    match (&c.healthcheck, &image.healthcheck) {
        (None, Some(h)) => c.healthcheck = Some(h.clone()),
        (Some(mine), Some(theirs)) if mine.test.as_ref().is_none_or(|t| t.0.is_empty()) => {
            let mut h = mine.clone();
            h.test = theirs.test.clone();
            c.healthcheck = Some(h);
        }
        _ => {}
    }
    if c.on_build.is_none() {
        c.on_build = image.on_build.clone();
    }
    if c.shell.is_none() {
        c.shell = image.shell.clone();
    }
    c
}

/// A parsed signal name or number (`TERM`, `SIGTERM`, `15`).
pub fn parse_signal(s: &str) -> Result<Signal> {
    if s.is_empty() {
        return Ok(Signal::SIGKILL);
    }
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| EngineError::invalid(format!("Invalid signal: {s}")));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| EngineError::invalid(format!("Invalid signal: {s}")))
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Engine {
    /// `POST /containers/create`.
    pub fn create(
        self: &Arc<Self>,
        req: CreateRequest,
        name: Option<&str>,
    ) -> Result<(String, Vec<String>)> {
        let warnings = Vec::new();
        if let Some(n) = name.filter(|n| !n.is_empty()) {
            let n = n.strip_prefix('/').unwrap_or(n);
            if !valid_name(n) {
                return Err(EngineError::invalid(format!(
                    "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
        }
        if req.config.image.is_empty() {
            return Err(EngineError::invalid(
                "config: no image specified; set Image to the image to run",
            ));
        }
        let image = self.resolve_image(&req.config.image).map_err(|e| {
            if e.kind == ErrorKind::NotFound {
                EngineError::not_found(format!("No such image: {}", familiar(&req.config.image)))
            } else {
                e
            }
        })?;
        let inspect = self
            .images
            .inspect(&image.id.to_string())
            .map_err(|e| EngineError::internal(e.to_string()))?;
        let image_config: ContainerConfig =
            serde_json::from_value(serde_json::Value::Object(inspect.config.clone()))
                .unwrap_or_default();
        let mut host = req.host_config.clone();
        validate_host_config(&host)?;
        self.validate_networks(&host, &req.networking_config)?;
        let mut config = merge_config(&req.config, &image_config);
        let mut argv: Vec<String> = config.entrypoint.clone().map(|e| e.0).unwrap_or_default();
        argv.extend(config.cmd.clone().map(|c| c.0).unwrap_or_default());
        if argv.is_empty() {
            return Err(EngineError::invalid(
                "no command specified: give a command or use an image with CMD or ENTRYPOINT",
            ));
        }
        let env = config.env.clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            let mut e = vec![DEFAULT_PATH.to_string()];
            e.extend(env);
            config.env = Some(e);
        }
        let runtime = match host.runtime.as_str() {
            "" => self.config.default_runtime.clone(),
            "berth" => "berth".to_string(),
            // containerd's name for runc (older clients send it).
            "io.containerd.runc.v2" if self.config.oci_runtimes.contains_key("runc") => {
                "runc".to_string()
            }
            name if self.config.oci_runtimes.contains_key(name) => name.to_string(),
            other => {
                let known: Vec<&str> = std::iter::once("berth")
                    .chain(self.config.oci_runtimes.keys().map(String::as_str))
                    .collect();
                return Err(EngineError::invalid(format!(
                    "unknown or invalid runtime name: {other} (this daemon has: {})",
                    known.join(", ")
                )));
            }
        };
        if host.runtime.is_empty() {
            host.runtime = runtime.clone();
        }
        let id = random_id();
        if config.hostname.is_empty() {
            config.hostname = id[..12].to_string();
        }
        // Reserve the name.
        let name = {
            let _g = self.create_lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
            let name = match name.filter(|n| !n.is_empty()) {
                Some(n) => n.strip_prefix('/').unwrap_or(n).to_string(),
                None => unique_name(|n| names.contains_key(n), &id),
            };
            if let Some(other) = names.get(&name) {
                return Err(EngineError::conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            names.insert(name.clone(), id.clone());
            name
        };
        let result = self.create_reserved(&id, &name, config, host, req, &image, argv, runtime);
        if result.is_err() {
            self.names
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            // Removes the whole container directory (the record included).
            let _ = self.images.remove_container(&id);
        } else if let Ok(h) = self.container(&id) {
            self.release_rootfs_later(h, Duration::from_secs(2));
        }
        result.map(|()| (id, warnings))
    }

    #[allow(clippy::too_many_arguments)]
    fn create_reserved(
        self: &Arc<Self>,
        id: &str,
        name: &str,
        config: ContainerConfig,
        host: crate::types::HostConfig,
        req: CreateRequest,
        image: &berth_image::store::ImageRecord,
        argv: Vec<String>,
        runtime: String,
    ) -> Result<()> {
        let mut host = host;
        if let Some(links) = host.links.as_ref().filter(|l| !l.is_empty()) {
            host.links = Some(self.normalize_links(name, links)?);
        }
        let dir = self.containers_dir().join(id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
        let rootfs = self
            .images
            .mount_container(id, image)
            .map_err(|e| EngineError::internal(format!("preparing the root filesystem: {e}")))?;
        let mounts = match self.prepare_mounts(id, &config, &host, &rootfs.merged) {
            Ok(m) => m,
            Err(e) => {
                let _ = berth_image::overlay::unmount(&rootfs.merged);
                return Err(e);
            }
        };
        let c = Container {
            id: id.to_string(),
            name: name.to_string(),
            created: berth_types::time::now_rfc3339_nano(),
            image_id: image.id.to_string(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config: host,
            networking_config: req.networking_config,
            mounts,
            state: State::default(),
            network: None,
            runtime,
            log_path: dir.join(format!("{id}-json.log")),
            hosts_path: dir.join("hosts"),
            hostname_path: dir.join("hostname"),
            resolv_conf_path: dir.join("resolv.conf"),
        };
        crate::netfiles::write_all(&c, "").map_err(|e| {
            EngineError::io("writing /etc/hosts, /etc/hostname and /etc/resolv.conf", e)
        })?;
        c.save(&self.containers_dir())
            .map_err(|e| EngineError::io("saving the container", e))?;
        let attrs = c.event_attributes();
        self.containers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), Handle::new(c));
        self.events.emit("container", "create", id, attrs);
        Ok(())
    }

    /// Binds, volumes (named, anonymous from VOLUME, `--volumes-from`), tmpfs.
    fn prepare_mounts(
        &self,
        id: &str,
        config: &ContainerConfig,
        host: &crate::types::HostConfig,
        rootfs: &Path,
    ) -> Result<Vec<MountPoint>> {
        let mut out: Vec<MountPoint> = Vec::new();
        let mut taken: HashSet<String> = HashSet::new();
        let clean = |d: &str| -> Result<String> {
            if !d.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "invalid mount config for type \"bind\": invalid mount path: '{d}' mount path must be absolute"
                )));
            }
            let t = d.trim_end_matches('/');
            Ok(if t.is_empty() { "/".into() } else { t.into() })
        };
        for bind in host.binds.iter().flatten() {
            let parts: Vec<&str> = bind.split(':').collect();
            let (src, dst, mode) = match parts.as_slice() {
                [s, d] => (*s, *d, ""),
                [s, d, m] => (*s, *d, *m),
                _ => {
                    return Err(EngineError::invalid(format!(
                        "invalid volume specification: '{bind}'"
                    )))
                }
            };
            let dst = clean(dst)?;
            if !taken.insert(dst.clone()) {
                return Err(EngineError::invalid(format!(
                    "Duplicate mount point: {dst}"
                )));
            }
            let mut rw = true;
            let mut propagation = String::new();
            for opt in mode.split(',').filter(|o| !o.is_empty()) {
                match opt {
                    "ro" => rw = false,
                    "rw" => rw = true,
                    "z" | "Z" | "nocopy" | "consistent" | "cached" | "delegated" => {}
                    "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                        propagation = opt.into()
                    }
                    other => {
                        return Err(EngineError::invalid(format!(
                            "invalid mode: {other} in volume specification '{bind}'"
                        )))
                    }
                }
            }
            if src.starts_with('/') {
                if !Path::new(src).exists() {
                    std::fs::create_dir_all(src).map_err(|e| {
                        EngineError::invalid(format!(
                            "error while creating mount source path '{src}': {e}"
                        ))
                    })?;
                }
                out.push(MountPoint {
                    kind: "bind".into(),
                    source: src.into(),
                    destination: dst,
                    read_write: rw,
                    mode: mode.into(),
                    propagation: if propagation.is_empty() {
                        "rprivate".into()
                    } else {
                        propagation
                    },
                    ..Default::default()
                });
            } else {
                let v =
                    self.volumes
                        .create(Some(src), "local", BTreeMap::new(), BTreeMap::new())?;
                self.seed_volume(&v.name, rootfs, &dst);
                out.push(MountPoint {
                    kind: "volume".into(),
                    name: v.name,
                    source: v.mountpoint.to_string_lossy().into_owned(),
                    destination: dst,
                    read_write: rw,
                    mode: if mode.is_empty() {
                        "z".into()
                    } else {
                        mode.into()
                    },
                    ..Default::default()
                });
            }
        }
        for m in host.mounts.iter().flatten() {
            let dst = clean(&m.target)?;
            if !taken.insert(dst.clone()) {
                return Err(EngineError::invalid(format!(
                    "Duplicate mount point: {dst}"
                )));
            }
            match m.r#type.as_str() {
                "bind" => {
                    if !Path::new(&m.source).exists() {
                        return Err(EngineError::invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            m.source
                        )));
                    }
                    out.push(MountPoint {
                        kind: "bind".into(),
                        source: m.source.clone(),
                        destination: dst,
                        read_write: !m.read_only,
                        propagation: m
                            .bind_options
                            .as_ref()
                            .and_then(|b| b.propagation.clone())
                            .unwrap_or_else(|| "rprivate".into()),
                        ..Default::default()
                    });
                }
                "volume" => {
                    let labels = m
                        .volume_options
                        .as_ref()
                        .and_then(|o| o.labels.clone())
                        .unwrap_or_default();
                    let name = (!m.source.is_empty()).then_some(m.source.as_str());
                    let v = self
                        .volumes
                        .create(name, "local", BTreeMap::new(), labels)?;
                    if !m
                        .volume_options
                        .as_ref()
                        .and_then(|o| o.no_copy)
                        .unwrap_or(false)
                    {
                        self.seed_volume(&v.name, rootfs, &dst);
                    }
                    out.push(MountPoint {
                        kind: "volume".into(),
                        name: v.name,
                        source: v.mountpoint.to_string_lossy().into_owned(),
                        destination: dst,
                        read_write: !m.read_only,
                        mode: "z".into(),
                        anonymous: name.is_none(),
                        ..Default::default()
                    });
                }
                "tmpfs" => {
                    let mut options = Vec::new();
                    if let Some(t) = &m.tmpfs_options {
                        if let Some(s) = t.size_bytes {
                            options.push(format!("size={s}"));
                        }
                        if let Some(mode) = t.mode {
                            options.push(format!("mode={mode:o}"));
                        }
                    }
                    out.push(MountPoint {
                        kind: "tmpfs".into(),
                        destination: dst,
                        read_write: !m.read_only,
                        options,
                        ..Default::default()
                    });
                }
                other => {
                    return Err(EngineError::invalid(format!(
                        "mount type unknown: \"{other}\"; use bind, volume or tmpfs"
                    )))
                }
            }
        }
        for (dst, opts) in host.tmpfs.iter().flatten() {
            let dst = clean(dst)?;
            if !taken.insert(dst.clone()) {
                return Err(EngineError::invalid(format!(
                    "Duplicate mount point: {dst}"
                )));
            }
            out.push(MountPoint {
                kind: "tmpfs".into(),
                destination: dst,
                read_write: true,
                options: crate::spec::parse_tmpfs_options(opts)?,
                ..Default::default()
            });
        }
        for from in host.volumes_from.iter().flatten() {
            let (name, mode) = match from.split_once(':') {
                Some((n, m)) => (n, Some(m)),
                None => (from.as_str(), None),
            };
            let other = self.container(name)?.get();
            for m in other.mounts.iter().filter(|m| m.kind != "tmpfs") {
                if taken.insert(m.destination.clone()) {
                    let mut m = m.clone();
                    match mode {
                        Some("ro") => m.read_write = false,
                        Some("rw") => m.read_write = true,
                        Some(other) => {
                            return Err(EngineError::invalid(format!(
                                "invalid mode for volumes-from: {other}"
                            )))
                        }
                        None => {}
                    }
                    m.anonymous = false;
                    out.push(m);
                }
            }
        }
        for dst in config.volumes.iter().flat_map(|v| v.keys()) {
            let dst = clean(dst)?;
            if taken.contains(&dst) {
                continue;
            }
            taken.insert(dst.clone());
            let mut labels = BTreeMap::new();
            labels.insert("com.docker.volume.anonymous".to_string(), String::new());
            let v = self
                .volumes
                .create(None, "local", BTreeMap::new(), labels)?;
            self.seed_volume(&v.name, rootfs, &dst);
            out.push(MountPoint {
                kind: "volume".into(),
                name: v.name,
                source: v.mountpoint.to_string_lossy().into_owned(),
                destination: dst,
                read_write: true,
                anonymous: true,
                ..Default::default()
            });
        }
        let _ = id;
        Ok(out)
    }

    /// Copy what the image has at `dst` into a new, empty volume (Docker's copy-up).
    fn seed_volume(&self, name: &str, rootfs: &Path, dst: &str) {
        let from = rootfs.join(dst.trim_start_matches('/'));
        // Resolve inside the rootfs only: a symlinked destination is not followed.
        if std::fs::symlink_metadata(&from).is_ok_and(|m| m.is_dir()) {
            if let Err(e) = self.volumes.seed(name, &from) {
                tracing::warn!(volume = name, error = %e, "copying image content into the volume");
            }
        }
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<()> {
        let h = self.container(name)?;
        let _op = h.op.lock().await;
        self.start_locked(&h).await
    }

    async fn start_locked(self: &Arc<Self>, h: &Arc<Handle>) -> Result<()> {
        let c = h.get();
        match c.state.status {
            Status::Running => {
                return Err(EngineError::new(
                    ErrorKind::NotModified,
                    "container already started",
                ))
            }
            Status::Paused => {
                return Err(EngineError::conflict(
                    "cannot start a paused container, try unpause instead",
                ))
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    c.name
                )))
            }
            _ => {}
        }
        let engine = self.clone();
        let h2 = h.clone();
        let started = tokio::task::spawn_blocking(move || engine.launch(&h2))
            .await
            .map_err(|e| EngineError::internal(format!("starting container: {e}")))?;
        match started {
            Ok((pid, monitor_pid, attachment)) => {
                let now = berth_types::time::now_rfc3339_nano();
                h.update_state(&self.containers_dir(), |c| {
                    c.network = attachment;
                    c.state.status = Status::Running;
                    c.state.pid = pid;
                    c.state.monitor_pid = Some(monitor_pid);
                    c.state.started_at = Some(now);
                    c.state.exit_code = 0;
                    c.state.error.clear();
                    c.state.oom_killed = false;
                    c.state.manually_stopped = false;
                    if c.config.healthcheck.as_ref().is_some_and(|hc| {
                        hc.test
                            .as_ref()
                            .is_some_and(|t| !t.0.is_empty() && t.0[0] != "NONE")
                    }) {
                        c.state.health = Some(crate::container::Health {
                            status: "starting".into(),
                            ..Default::default()
                        });
                    }
                })?;
                self.events
                    .emit("container", "start", &c.id, c.event_attributes());
                self.watch(h.clone(), monitor_pid);
                crate::health::spawn(self.clone(), h.clone());
                Ok(())
            }
            Err(e) => {
                let code = if e.message.contains("executable file not found")
                    || e.message.contains("no such file or directory")
                {
                    127
                } else if e.message.contains("permission denied") {
                    126
                } else {
                    128
                };
                let msg = e.message.clone();
                let _ = h.update_state(&self.containers_dir(), |c| {
                    c.state.exit_code = code;
                    c.state.error = msg;
                });
                // Pending attaches get nothing: their senders are dropped.
                h.pending_attaches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                if c.host_config.auto_remove {
                    let engine = self.clone();
                    let id = c.id.clone();
                    tokio::spawn(async move {
                        let _ = engine.remove_inner(&id, true, true).await;
                    });
                }
                Err(e)
            }
        }
    }

    /// Join the networks, build the spec and run the monitor (blocking): `(init pid,
    /// monitor pid, what the container holds on its networks)`.
    fn launch(&self, h: &Arc<Handle>) -> Result<(i32, i32, Option<berth_net::Attachment>)> {
        let t0 = std::time::Instant::now();
        let c = h.get();
        let image = self
            .images
            .image(
                &c.image_id
                    .parse()
                    .map_err(|_| EngineError::internal("bad image id"))?,
            )
            .map_err(|e| EngineError::internal(format!("image of container {}: {e}", c.name)))?;
        let rootfs = self
            .images
            .container_rootfs(&c.id, &image)
            .map_err(|e| EngineError::internal(e.to_string()))?;
        if !is_mounted(&rootfs.merged) {
            rootfs
                .mount()
                .map_err(|e| EngineError::internal(format!("mounting the root filesystem: {e}")))?;
        }
        let t_rootfs = t0.elapsed();
        let state_dir = self.state_dir(&c.id);
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| EngineError::io(format!("creating {}", state_dir.display()), e))?;
        let (attachment, link_env) = self.connect_networks(&c)?;
        let t_net = t0.elapsed();
        let launched = self.launch_attached(
            h,
            &c,
            &rootfs.merged,
            &state_dir,
            attachment.as_ref(),
            &link_env,
        );
        match launched {
            Ok((pid, monitor_pid)) => {
                tracing::debug!(
                    container = %c.id,
                    rootfs_us = t_rootfs.as_micros() as u64,
                    network_us = (t_net - t_rootfs).as_micros() as u64,
                    rest_us = (t0.elapsed() - t_net).as_micros() as u64,
                    "launched"
                );
                Ok((pid, monitor_pid, attachment))
            }
            Err(e) => {
                if attachment.is_some() {
                    self.net.detach(&c.id);
                }
                Err(e)
            }
        }
    }

    /// The networks a create names exist, and go together; its published ports parse.
    fn validate_networks(
        &self,
        host: &crate::types::HostConfig,
        net: &crate::types::NetworkingConfig,
    ) -> Result<()> {
        let mode = match host.network_mode.as_str() {
            "" | "default" => "bridge",
            m => m,
        };
        // A missing network is a bad request here, not a 404: on a 404 the docker CLI
        // concludes the image is missing and tries to pull it first.
        let find = |name: &str| {
            self.net.get(name).map_err(|e| match e {
                berth_net::NetError::NotFound(m) => EngineError::invalid(m),
                e => EngineError::net(e),
            })
        };
        if !mode.starts_with("container:") {
            find(mode)?;
        }
        for k in net.endpoints_config.iter().flat_map(|m| m.keys()) {
            if k == "default" || k == mode {
                continue;
            }
            let n = find(k)?;
            if matches!(mode, "host" | "none")
                || mode.starts_with("container:")
                || n.driver != "bridge"
            {
                return Err(EngineError::invalid(format!(
                    "conflicting options: a container on network {mode} cannot also be connected to network {}",
                    n.name
                )));
            }
        }
        for (key, list) in host.port_bindings.iter().flatten() {
            for b in list.iter().flatten() {
                berth_net::ports::parse_binding(key, &b.host_ip, &b.host_port)
                    .map_err(EngineError::invalid)?;
            }
        }
        Ok(())
    }

    /// Join the container's bridge networks (`None` for host, none and `container:`),
    /// and rewrite its /etc/hosts and /etc/resolv.conf for them. Also returns the
    /// environment of its links.
    fn connect_networks(
        &self,
        c: &Container,
    ) -> Result<(Option<berth_net::Attachment>, Vec<String>)> {
        let names = c.network_names();
        if names.is_empty() || matches!(names[0].as_str(), "host" | "none") {
            return Ok((None, Vec::new()));
        }
        // Links are to containers on the default bridge, resolved before anything is made.
        let links = if names[0] == "bridge" {
            self.resolve_links(c)?
        } else {
            Vec::new()
        };
        let mut networks = Vec::new();
        for n in &names {
            let cfg = c.endpoint_config(n);
            let ip = match cfg
                .and_then(|v| v.pointer("/IPAMConfig/IPv4Address"))
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
            {
                Some(s) => Some(s.parse().map_err(|_| {
                    EngineError::invalid(format!("invalid IPv4 address {s} for network {n}"))
                })?),
                None => None,
            };
            let aliases = cfg
                .and_then(|v| v.get("Aliases"))
                .and_then(|a| serde_json::from_value::<Vec<String>>(a.clone()).ok())
                .unwrap_or_default();
            let mac = match cfg
                .and_then(|v| v.get("MacAddress"))
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
            {
                Some(m) => Some(parse_mac(m)?),
                None => None,
            };
            networks.push(berth_net::EndpointRequest {
                network: n.clone(),
                ip,
                aliases,
                mac,
            });
        }
        let mac = match c.config.mac_address.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => Some(parse_mac(m)?),
            None => None,
        };
        let upstreams = c
            .host_config
            .dns
            .iter()
            .flatten()
            .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
            .map(|ip| std::net::SocketAddr::new(ip, 53))
            .collect();
        let req = berth_net::AttachRequest {
            container_id: c.id.clone(),
            name: c.name.clone(),
            networks,
            ports: port_requests(c)?,
            mac,
            upstreams,
        };
        let att = self.net.attach(&req).map_err(EngineError::net)?;
        let mut with = c.clone();
        with.network = Some(att.clone());
        let hosts: String = links.iter().map(|l| l.hosts_line()).collect();
        if let Err(e) = crate::netfiles::write_all(&with, &hosts) {
            self.net.detach(&c.id);
            return Err(EngineError::io(
                "writing /etc/hosts and /etc/resolv.conf",
                e,
            ));
        }
        Ok((Some(att), links.iter().flat_map(|l| l.env()).collect()))
    }

    /// Everything of a launch after the networks are joined.
    fn launch_attached(
        &self,
        h: &Arc<Handle>,
        c: &Container,
        rootfs: &Path,
        state_dir: &Path,
        attachment: Option<&berth_net::Attachment>,
        link_env: &[String],
    ) -> Result<(i32, i32)> {
        let t0 = std::time::Instant::now();
        let state_dir = state_dir.to_path_buf();
        let mut spec =
            self.build_spec_net(c, rootfs, attachment.map(|a| a.netns.as_path()), link_env)?;
        let oci_runtime = self.oci_runtime(&c.runtime)?;
        if oci_runtime.is_some() {
            for_external_runtime(&mut spec);
        }
        let data = serde_json::to_vec(&spec).map_err(|e| EngineError::internal(e.to_string()))?;
        crate::container::replace_file(&state_dir.join("config.json"), &data)
            .map_err(|e| EngineError::io("writing the container's OCI spec", e))?;
        let (max_size, max_files) =
            log_limits(c, self.config.log_max_size, self.config.log_max_files)?;
        let console = c
            .host_config
            .console_size
            .filter(|s| s[0] > 0 && s[1] > 0)
            .map(|s| (s[0] as u16, s[1] as u16));
        let mc = MonitorConfig {
            mode: Mode::Run {
                bundle: state_dir.clone(),
            },
            container_id: c.id.clone(),
            runtime_root: self.runtime_root(),
            log: Some(LogConfig {
                path: c.log_path.clone(),
                max_size,
                max_files,
            }),
            tty: c.config.tty,
            open_stdin: c.config.open_stdin,
            stdin_once: c.config.stdin_once,
            console_size: console,
            oci_runtime,
        };
        let t_spec = t0.elapsed();
        let pending = crate::monitor::spawn(&self.config.monitor_bin, &state_dir, &mc)?;
        let t_ready = t0.elapsed();
        // Connect the attach sessions that were opened before start.
        let waiting: Vec<PendingAttach> =
            std::mem::take(&mut *h.pending_attaches.lock().unwrap_or_else(|e| e.into_inner()));
        let socket = pending.attach_socket();
        for p in waiting {
            match connect_blocking(&socket, p.request) {
                Ok(s) => {
                    let _ = p.connected.send(s);
                }
                Err(e) => {
                    tracing::warn!(container = %c.id, error = %e, "connecting an attach session")
                }
            }
        }
        let monitor_pid = pending.monitor_pid();
        let pid = pending.start()?;
        tracing::debug!(
            container = %c.id,
            spec_us = t_spec.as_micros() as u64,
            monitor_ready_us = (t_ready - t_spec).as_micros() as u64,
            started_us = (t0.elapsed() - t_ready).as_micros() as u64,
            "monitor started"
        );
        Ok((pid, monitor_pid))
    }

    /// Unmount the volumes with options (tmpfs, bind, ...) that `stopped` used and no
    /// running container uses any more, as Docker's local driver does.
    fn release_volumes(&self, stopped: &Container) {
        for m in stopped.mounts.iter().filter(|m| m.kind == "volume") {
            let in_use = self.all_containers().iter().any(|h| {
                h.with(|c| {
                    c.id != stopped.id
                        && c.is_running()
                        && c.mounts
                            .iter()
                            .any(|o| o.kind == "volume" && o.name == m.name)
                })
            });
            if !in_use {
                if let Err(e) = self.volumes.unmount(&m.name) {
                    tracing::warn!(volume = %m.name, error = %e, "unmounting a volume");
                }
            }
        }
    }

    /// The external OCI runtime a container named (`None` for berth's own).
    /// (See also [`for_external_runtime`].)
    fn oci_runtime(&self, name: &str) -> Result<Option<berth_monitor::protocol::OciRuntime>> {
        if name.is_empty() || name == "berth" {
            return Ok(None);
        }
        let path = self.config.oci_runtimes.get(name).ok_or_else(|| {
            EngineError::invalid(format!(
                "the container's runtime {name} is not configured in this daemon any more: \
                 add it to daemon.json's runtimes, or recreate the container"
            ))
        })?;
        Ok(Some(berth_monitor::protocol::OciRuntime {
            name: name.to_string(),
            path: path.clone(),
            root: self.config.exec_root.join("oci").join(name),
        }))
    }

    /// Follow a running container's monitor until it exits.
    pub(crate) fn watch(self: &Arc<Self>, h: Arc<Handle>, monitor_pid: i32) {
        let engine = self.clone();
        tokio::spawn(async move {
            if monitor_pid > 0 {
                crate::monitor::wait_pid(monitor_pid).await;
            }
            let id = h.id();
            let status = crate::monitor::exit_status(&engine.state_dir(&id));
            engine.handle_exit(&h, status).await;
        });
    }

    /// The container's process ended: record it, then restart or remove it as its policy
    /// says.
    pub(crate) async fn handle_exit(self: &Arc<Self>, h: &Arc<Handle>, status: Option<ExitStatus>) {
        let status = status.unwrap_or_else(|| ExitStatus {
            exit_code: 255,
            oom_killed: false,
            started_at: String::new(),
            finished_at: berth_types::time::now_rfc3339_nano(),
            error: Some("the container's monitor ended without recording an exit status".into()),
        });
        let before = h.get();
        // Containers on host, none or container: hold nothing (an attachment a crash left
        // without its record is released by the next daemon start's reconcile).
        if before.network.is_some() {
            self.net.detach(&before.id);
        }
        let _ = h.update_state(&self.containers_dir(), |c| {
            c.network = None;
            c.state.status = Status::Exited;
            c.state.exit_code = status.exit_code;
            c.state.oom_killed = status.oom_killed;
            c.state.finished_at = Some(status.finished_at.clone());
            c.state.pid = 0;
            c.state.monitor_pid = None;
            c.state.error = status.error.clone().unwrap_or_default();
            if let Some(hl) = &mut c.state.health {
                hl.status = "unhealthy".into();
            }
        });
        let _ = std::fs::remove_dir_all(self.state_dir(&before.id));
        self.release_volumes(&before);
        if status.oom_killed {
            self.events
                .emit("container", "oom", &before.id, before.event_attributes());
        }
        let mut attrs = before.event_attributes();
        attrs.insert("exitCode".into(), status.exit_code.to_string());
        self.events.emit("container", "die", &before.id, attrs);
        let c = h.get();
        let policy = c.host_config.restart_policy.clone();
        let restart = !c.state.manually_stopped
            && match policy.name.as_str() {
                "always" | "unless-stopped" => true,
                "on-failure" => {
                    status.exit_code != 0
                        && (policy.maximum_retry_count <= 0
                            || c.state.restart_count < policy.maximum_retry_count)
                }
                _ => false,
            };
        if restart {
            let _ = h.update_state(&self.containers_dir(), |c| {
                c.state.status = Status::Restarting;
                c.state.restart_count += 1;
            });
            let delay = Duration::from_millis(100u64 << c.state.restart_count.clamp(0, 10));
            let engine = self.clone();
            let h = h.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay.min(Duration::from_secs(60))).await;
                let _op = h.op.lock().await;
                if h.get().state.status != Status::Restarting {
                    return;
                }
                if let Err(e) = engine.start_locked(&h).await {
                    tracing::warn!(container = %h.id(), error = %e, "restarting the container");
                    let _ = h.update_state(&engine.containers_dir(), |c| {
                        c.state.status = Status::Exited;
                    });
                } else {
                    let c = h.get();
                    engine
                        .events
                        .emit("container", "restart", &c.id, c.event_attributes());
                }
            });
        } else if c.host_config.auto_remove {
            let engine = self.clone();
            let id = c.id.clone();
            tokio::spawn(async move {
                if let Err(e) = engine.remove_inner(&id, true, true).await {
                    tracing::warn!(container = %id, error = %e, "auto-removing the container");
                }
            });
        } else {
            self.release_rootfs_later(h.clone(), Duration::ZERO);
        }
    }

    /// Unmount the root filesystem of a container that is not running, as Docker does
    /// after create and after a stop: a thousand created or stopped containers must not
    /// hold a thousand overlay mounts. After create it waits `delay` first, so that
    /// `docker run`'s start, which follows at once, finds the rootfs still mounted. Start,
    /// `cp` and export mount it again when they need it.
    fn release_rootfs_later(self: &Arc<Self>, h: Arc<Handle>, delay: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let _op = h.op.lock().await;
            let c = h.get();
            if *h.removed.borrow()
                || !matches!(
                    c.state.status,
                    Status::Created | Status::Exited | Status::Dead
                )
            {
                return;
            }
            let merged = engine.containers_dir().join(&c.id).join("merged");
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = berth_image::overlay::unmount_if_mounted(&merged) {
                    tracing::warn!(container = %c.id, error = %e, "unmounting the root filesystem");
                }
            })
            .await;
        });
    }

    /// On daemon start: re-attach to running containers, record the exits that happened
    /// while berthd was away, and apply restart policies.
    pub async fn reconcile(self: &Arc<Self>) {
        for h in self.all_containers() {
            let c = h.get();
            match c.state.status {
                Status::Running | Status::Paused | Status::Restarting => {
                    let dir = self.state_dir(&c.id);
                    if let Some(pid) = crate::monitor::live_monitor(&dir) {
                        tracing::info!(container = %c.id, monitor = pid, "re-attached to a running container");
                        self.watch(h.clone(), pid);
                        crate::health::spawn(self.clone(), h.clone());
                    } else {
                        let status = crate::monitor::exit_status(&dir);
                        let _ =
                            h.update(&self.containers_dir(), |c| c.state.manually_stopped = false);
                        self.handle_exit(&h, status).await;
                    }
                }
                Status::Removing => {
                    let _ = self.remove_inner(&c.id, true, false).await;
                }
                _ => {
                    // `always` restarts stopped containers on daemon start, as Docker does,
                    // unless a user stopped them.
                    if c.host_config.restart_policy.name == "always"
                        && !c.state.manually_stopped
                        && c.state.started_at.is_some()
                    {
                        let _ = self.start(&c.id).await;
                    }
                }
            }
        }
        // What containers that ended while berthd was away held on their networks.
        let running: std::collections::HashSet<String> = self
            .all_containers()
            .iter()
            .filter(|h| h.with(|c| c.network.is_some() && c.is_running()))
            .map(|h| h.id())
            .collect();
        let net = self.net.clone();
        let _ =
            tokio::task::spawn_blocking(move || net.reconcile(&|id| running.contains(id))).await;
    }

    /// `POST /containers/{id}/stop`.
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let h = self.container(name)?;
        let _op = h.op.lock().await;
        self.stop_locked(&h, timeout, signal).await
    }

    async fn stop_locked(
        self: &Arc<Self>,
        h: &Arc<Handle>,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let c = h.get();
        if c.state.status == Status::Restarting {
            h.update(&self.containers_dir(), |c| {
                c.state.status = Status::Exited;
                c.state.manually_stopped = true;
            })?;
            return Ok(());
        }
        if !c.is_running() {
            return Err(EngineError::new(
                ErrorKind::NotModified,
                "container already stopped",
            ));
        }
        h.update(&self.containers_dir(), |c| c.state.manually_stopped = true)?;
        let sig = match signal
            .filter(|s| !s.is_empty())
            .or(c.config.stop_signal.as_deref())
        {
            Some(s) => parse_signal(s)?,
            None => Signal::SIGTERM,
        };
        let timeout = timeout.or(c.config.stop_timeout).unwrap_or(10);
        if c.state.status == Status::Paused {
            let _ = self
                .runtime_container(&c.id)
                .and_then(|rc| rc.resume().map_err(rt_err));
        }
        let mut rx = h.changed.subscribe();
        if sig != Signal::SIGKILL && timeout != 0 {
            let _ = self.signal(&c.id, sig, false);
            let wait = until_stopped(h, &mut rx);
            let limit = if timeout < 0 {
                Duration::from_secs(u64::MAX / 4)
            } else {
                Duration::from_secs(timeout as u64)
            };
            if tokio::time::timeout(limit, wait).await.is_ok() {
                self.events
                    .emit("container", "stop", &c.id, c.event_attributes());
                return Ok(());
            }
        }
        let _ = self.signal(&c.id, Signal::SIGKILL, true);
        let wait = until_stopped(h, &mut rx);
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            return Err(EngineError::internal(format!(
                "container {} did not exit after SIGKILL",
                c.name
            )));
        }
        self.events
            .emit("container", "stop", &c.id, c.event_attributes());
        Ok(())
    }

    fn runtime_container(&self, id: &str) -> Result<berth_runtime::Container> {
        let cid: ContainerId = id
            .parse()
            .map_err(|e| EngineError::internal(format!("container id {id}: {e}")))?;
        berth_runtime::Runtime::new(self.runtime_root())
            .load(&cid)
            .map_err(rt_err)
    }

    fn signal(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        self.runtime_container(id)?.kill(sig, all).map_err(rt_err)
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(self: &Arc<Self>, name: &str, signal: Option<&str>) -> Result<()> {
        let h = self.container(name)?;
        let c = h.get();
        let sig = parse_signal(signal.unwrap_or(""))?;
        if !c.is_running() || c.state.status == Status::Restarting {
            return Err(EngineError::conflict(format!(
                "Cannot kill container: {}: container {} is not running",
                name, c.id
            )));
        }
        if matches!(sig, Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT) {
            h.update(&self.containers_dir(), |c| c.state.manually_stopped = true)?;
        }
        self.signal(&c.id, sig, sig == Signal::SIGKILL)?;
        let mut attrs = c.event_attributes();
        attrs.insert("signal".into(), (sig as i32).to_string());
        self.events.emit("container", "kill", &c.id, attrs);
        Ok(())
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        let h = self.container(name)?;
        let _op = h.op.lock().await;
        match self.stop_locked(&h, timeout, signal).await {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotModified => {}
            Err(e) => return Err(e),
        }
        self.start_locked(&h).await?;
        let c = h.get();
        self.events
            .emit("container", "restart", &c.id, c.event_attributes());
        Ok(())
    }

    /// `POST /containers/{id}/pause` and `/unpause`.
    pub async fn pause(self: &Arc<Self>, name: &str, pause: bool) -> Result<()> {
        let h = self.container(name)?;
        let _op = h.op.lock().await;
        let c = h.get();
        match (pause, c.state.status) {
            (true, Status::Running) => {
                self.runtime_container(&c.id)?.pause().map_err(rt_err)?;
                h.update_state(&self.containers_dir(), |c| c.state.status = Status::Paused)?;
                self.events
                    .emit("container", "pause", &c.id, c.event_attributes());
                Ok(())
            }
            (false, Status::Paused) => {
                self.runtime_container(&c.id)?.resume().map_err(rt_err)?;
                h.update_state(&self.containers_dir(), |c| c.state.status = Status::Running)?;
                self.events
                    .emit("container", "unpause", &c.id, c.event_attributes());
                Ok(())
            }
            (true, Status::Paused) => Err(EngineError::conflict(format!(
                "Container {} is already paused",
                c.id
            ))),
            (false, Status::Running) => Err(EngineError::conflict(format!(
                "Container {} is not paused",
                c.id
            ))),
            _ => Err(EngineError::conflict(format!(
                "Container {} is not running",
                c.id
            ))),
        }
    }

    /// `POST /containers/{id}/wait`: resolves to `(exit code, error)`.
    pub fn wait_future(
        self: &Arc<Self>,
        name: &str,
        condition: WaitCondition,
    ) -> Result<impl std::future::Future<Output = (i32, Option<String>)> + Send + 'static> {
        let h = self.container(name)?;
        let mut changed = h.changed.subscribe();
        let mut removed = h.removed.subscribe();
        let initial_finish = h.get().state.finished_at.clone();
        Ok(async move {
            loop {
                let c = h.get();
                let running = c.is_running()
                    || c.state.status == Status::Created && condition != WaitCondition::NotRunning;
                let done = match condition {
                    WaitCondition::NotRunning => !c.is_running(),
                    WaitCondition::NextExit => {
                        !running
                            && c.state.finished_at.is_some()
                            && c.state.finished_at != initial_finish
                    }
                    WaitCondition::Removed => *removed.borrow(),
                };
                if done {
                    let err = (!c.state.error.is_empty()).then(|| c.state.error.clone());
                    return (c.state.exit_code, err);
                }
                tokio::select! {
                    r = changed.changed() => { if r.is_err() { let c = h.get(); return (c.state.exit_code, None); } }
                    r = removed.changed() => { if r.is_err() { let c = h.get(); return (c.state.exit_code, None); } }
                }
            }
        })
    }

    /// `DELETE /containers/{id}`.
    pub async fn remove(self: &Arc<Self>, name: &str, force: bool, volumes: bool) -> Result<()> {
        let h = self.container(name)?;
        let c = h.get();
        if c.is_running() && !force {
            let what = if c.state.status == Status::Paused {
                "paused"
            } else {
                "running"
            };
            return Err(EngineError::conflict(format!(
                "cannot remove container \"/{}\": container is {what}: stop the container before removing or force remove",
                c.name
            )));
        }
        self.remove_inner(&c.id, force, volumes).await
    }

    pub(crate) async fn remove_inner(
        self: &Arc<Self>,
        id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<()> {
        let h = self.container(id)?;
        let _op = h.op.lock().await;
        let c = h.get();
        if c.is_running() {
            if !force {
                return Err(EngineError::conflict(format!(
                    "container {} is running",
                    c.name
                )));
            }
            match self.stop_locked(&h, Some(0), Some("KILL")).await {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotModified => {}
                Err(e) => return Err(e),
            }
        }
        h.update_state(&self.containers_dir(), |c| {
            c.state.status = Status::Removing
        })?;
        let images = self.images.clone();
        let cid = c.id.clone();
        tokio::task::spawn_blocking(move || images.remove_container(&cid))
            .await
            .map_err(|e| EngineError::internal(e.to_string()))?
            .map_err(|e| {
                EngineError::internal(format!("removing the root filesystem of {}: {e}", c.name))
            })?;
        // (That removed the whole container directory, its record included.)
        let _ = std::fs::remove_dir_all(self.state_dir(&c.id));
        if let Ok(rc) = self.runtime_container(&c.id) {
            let _ = rc.delete(true);
        }
        self.containers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&c.id);
        {
            let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
            if names.get(&c.name) == Some(&c.id) {
                names.remove(&c.name);
            }
        }
        if volumes {
            for m in c
                .mounts
                .iter()
                .filter(|m| m.kind == "volume" && m.anonymous)
            {
                if !self.volume_in_use(&m.name) {
                    let _ = self.volumes.remove(&m.name);
                }
            }
        }
        h.removed.send_replace(true);
        h.changed.send_modify(|v| *v += 1);
        self.events
            .emit("container", "destroy", &c.id, c.event_attributes());
        Ok(())
    }

    /// Is volume `name` mounted by any container?
    pub fn volume_in_use(&self, name: &str) -> bool {
        self.all_containers().iter().any(|h| {
            h.get()
                .mounts
                .iter()
                .any(|m| m.kind == "volume" && m.name == name)
        })
    }

    /// `POST /containers/{id}/rename`.
    pub fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if new_name.is_empty() {
            return Err(EngineError::invalid(
                "Neither old nor new names may be empty",
            ));
        }
        if !valid_name(new_name) {
            return Err(EngineError::invalid(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let h = self.container(name)?;
        let c = h.get();
        if c.name == new_name {
            return Err(EngineError::invalid(
                "Renaming a container with the same name as its current name",
            ));
        }
        {
            let _g = self.create_lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
            if let Some(other) = names.get(new_name) {
                return Err(EngineError::conflict(format!(
                    "Conflict. The container name \"/{new_name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            names.remove(&c.name);
            names.insert(new_name.to_string(), c.id.clone());
        }
        h.update(&self.containers_dir(), |c| {
            c.name = new_name.to_string();
            if let Some(a) = &mut c.network {
                a.name = new_name.to_string();
            }
        })?;
        self.net.rename(&c.id, new_name);
        let mut attrs = h.get().event_attributes();
        attrs.insert("oldName".into(), format!("/{}", c.name));
        self.events.emit("container", "rename", &c.id, attrs);
        Ok(())
    }

    /// Open an attach session: the returned receiver yields a connection to the container's
    /// monitor now (running) or when it starts.
    pub fn attach(
        &self,
        name: &str,
        request: AttachRequest,
    ) -> Result<(Container, oneshot::Receiver<tokio::net::UnixStream>)> {
        let h = self.container(name)?;
        let c = h.get();
        if c.state.status == Status::Paused {
            return Err(EngineError::conflict(
                "You cannot attach to a paused container, unpause it first",
            ));
        }
        let (tx, rx) = oneshot::channel();
        if c.is_running() {
            let socket = self
                .state_dir(&c.id)
                .join(berth_monitor::protocol::ATTACH_SOCKET);
            tokio::spawn(async move {
                if let Ok(s) = crate::monitor::connect(&socket, request).await {
                    let _ = tx.send(s);
                }
            });
        } else {
            h.pending_attaches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(PendingAttach {
                    request,
                    connected: tx,
                });
        }
        self.events
            .emit("container", "attach", &c.id, c.event_attributes());
        Ok((c, rx))
    }

    /// `POST /containers/{id}/resize`.
    pub async fn resize(&self, name: &str, rows: u16, cols: u16) -> Result<()> {
        let h = self.container(name)?;
        let c = h.get();
        if !c.is_running() {
            return Err(EngineError::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        let socket = self
            .state_dir(&c.id)
            .join(berth_monitor::protocol::ATTACH_SOCKET);
        resize_via(&socket, rows, cols).await
    }

    /// Build the OCI spec of container `c` rooted at `rootfs`.
    pub(crate) fn build_spec(
        &self,
        c: &Container,
        rootfs: &Path,
    ) -> Result<oci_spec::runtime::Spec> {
        self.build_spec_net(
            c,
            rootfs,
            c.network.as_ref().map(|a| a.netns.as_path()),
            &[],
        )
    }

    /// The spec, joining the network namespace `netns` berth prepared (bridge networks),
    /// with the environment of the container's links under its own.
    pub(crate) fn build_spec_net(
        &self,
        c: &Container,
        rootfs: &Path,
        netns: Option<&Path>,
        link_env: &[String],
    ) -> Result<oci_spec::runtime::Spec> {
        use crate::spec::{MountKind, MountSpec, NetNs, ShareNs, SpecInput};
        let mut mounts = Vec::new();
        for m in &c.mounts {
            let kind = match m.kind.as_str() {
                "tmpfs" => MountKind::Tmpfs {
                    options: m.options.clone(),
                },
                "volume" => MountKind::Bind {
                    source: self.volumes.mount(&m.name)?,
                    read_only: !m.read_write,
                    propagation: None,
                    recursive: true,
                },
                _ => MountKind::Bind {
                    source: PathBuf::from(&m.source),
                    read_only: !m.read_write,
                    propagation: (!m.propagation.is_empty()).then(|| m.propagation.clone()),
                    recursive: true,
                },
            };
            mounts.push(MountSpec {
                destination: m.destination.clone(),
                kind,
            });
        }
        for (dst, src) in [
            ("/etc/resolv.conf", &c.resolv_conf_path),
            ("/etc/hostname", &c.hostname_path),
            ("/etc/hosts", &c.hosts_path),
        ] {
            if !c.mounts.iter().any(|m| m.destination == dst) {
                mounts.push(MountSpec {
                    destination: dst.into(),
                    kind: MountKind::Bind {
                        source: src.clone(),
                        read_only: c.host_config.readonly_rootfs,
                        propagation: None,
                        recursive: false,
                    },
                });
            }
        }
        let share = |mode: &str, what: &str| -> Result<ShareNs> {
            if mode == "host" {
                Ok(ShareNs::Host)
            } else if let Some(other) = mode.strip_prefix("container:") {
                let o = self.container(other)?.get();
                if !o.is_running() {
                    return Err(EngineError::conflict(format!(
                        "cannot join the {what} namespace of a non running container: {}",
                        o.id
                    )));
                }
                Ok(ShareNs::Container(PathBuf::from(format!(
                    "/proc/{}/ns/{what}",
                    o.state.pid
                ))))
            } else {
                Ok(ShareNs::Private)
            }
        };
        let net = match c.host_config.network_mode.as_str() {
            "host" => NetNs::Host,
            "none" => NetNs::None,
            m if m.starts_with("container:") => {
                let o = self.container(&m["container:".len()..])?.get();
                if !o.is_running() {
                    return Err(EngineError::conflict(format!(
                        "cannot join network namespace of a non running container: container {} is not running", o.id
                    )));
                }
                NetNs::Path(PathBuf::from(format!("/proc/{}/ns/net", o.state.pid)))
            }
            // A bridge network: the namespace berth prepared, or (when only checking a
            // spec, not starting) an empty one.
            _ => match netns {
                Some(p) => NetNs::Path(p.to_path_buf()),
                None => NetNs::None,
            },
        };
        let args: Vec<String> = std::iter::once(c.path.clone())
            .chain(c.args.iter().cloned())
            .collect();
        let mut env = c.config.env.clone().unwrap_or_default();
        let mut base = vec![format!("HOSTNAME={}", c.config.hostname)];
        base.extend(link_env.iter().cloned());
        env = merge_env(&base, &env);
        if c.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        let input = SpecInput {
            id: &c.id,
            config: &c.config,
            host: &c.host_config,
            rootfs,
            args,
            env,
            hostname: c.config.hostname.clone(),
            user: &c.config.user,
            mounts,
            net,
            pid: share(&c.host_config.pid_mode, "pid")?,
            ipc: share(&c.host_config.ipc_mode, "ipc")?,
            uts: if c.host_config.uts_mode == "host" {
                ShareNs::Host
            } else {
                ShareNs::Private
            },
            cgroups_path: format!("/berth/{}", c.id),
            init_binary: if c.host_config.init == Some(true) {
                self.config.init_bin.clone()
            } else {
                None
            },
        };
        if c.host_config.init == Some(true) && self.config.init_bin.is_none() {
            return Err(EngineError::invalid(
                "--init needs tini-static (install the tini package) and none was found",
            ));
        }
        crate::spec::build(&input)
    }
}

/// Resolves once the container no longer runs (or its handle is gone).
async fn until_stopped(h: &Handle, rx: &mut tokio::sync::watch::Receiver<u64>) {
    while h.get().is_running() {
        if rx.changed().await.is_err() {
            break;
        }
    }
}

/// Connect to the attach socket from blocking code.
fn connect_blocking(socket: &Path, req: AttachRequest) -> std::io::Result<tokio::net::UnixStream> {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    let mut line = serde_json::to_vec(&req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    s.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(s)
}

/// Send a resize frame through a short-lived attach connection.
pub(crate) async fn resize_via(socket: &Path, rows: u16, cols: u16) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut s = crate::monitor::connect(socket, AttachRequest::default())
        .await
        .map_err(|e| EngineError::io("resizing the terminal", e))?;
    let mut payload = rows.to_be_bytes().to_vec();
    payload.extend_from_slice(&cols.to_be_bytes());
    s.write_all(&berth_monitor::protocol::frame::encode(
        berth_monitor::protocol::frame::RESIZE,
        &payload,
    ))
    .await
    .map_err(|e| EngineError::io("resizing the terminal", e))?;
    let _ = s.shutdown().await;
    Ok(())
}

pub(crate) fn rt_err(e: berth_runtime::RuntimeError) -> EngineError {
    EngineError::internal(e.to_string())
}

/// Is something mounted at `path`?
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == want)
}

/// The familiar form of an image name for messages (`busybox:latest`).
pub fn familiar(name: &str) -> String {
    match berth_types::Reference::parse_normalized_named(name) {
        Ok(r) => r.with_default_tag().familiar_string(),
        Err(_) => name.to_string(),
    }
}

fn validate_host_config(h: &crate::types::HostConfig) -> Result<()> {
    match h.restart_policy.name.as_str() {
        "" | "no" | "always" | "unless-stopped" => {
            if h.restart_policy.maximum_retry_count != 0 {
                return Err(EngineError::invalid(
                    "invalid restart policy: maximum retry count can only be used with 'on-failure'",
                ));
            }
        }
        "on-failure" => {
            if h.restart_policy.maximum_retry_count < 0 {
                return Err(EngineError::invalid("invalid restart policy: maximum retry count cannot be negative"));
            }
        }
        other => {
            return Err(EngineError::invalid(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'unless-stopped', or 'on-failure'"
            )))
        }
    }
    if h.auto_remove && !matches!(h.restart_policy.name.as_str(), "" | "no") {
        return Err(EngineError::invalid(
            "conflicting options: cannot specify both --restart and --rm",
        ));
    }
    if h.network_mode == "container:" {
        return Err(EngineError::invalid(
            "invalid network mode container:: name the container, as in container:<name|id>",
        ));
    }
    match h.log_config.r#type.as_str() {
        "" | "json-file" | "local" => {}
        "none" => {}
        other => {
            return Err(EngineError::invalid(format!(
                "failed to create task for container: logger: no log driver named '{other}' is registered"
            )))
        }
    }
    Ok(())
}

/// `--mac-address`: a unicast MAC.
fn parse_mac(m: &str) -> Result<[u8; 6]> {
    berth_net::netlink::parse_mac(m).ok_or_else(|| {
        EngineError::invalid(format!(
            "invalid MAC address {m}: expected a unicast address such as 02:42:ac:11:00:02"
        ))
    })
}

/// The ports a container publishes: its `PortBindings`, and with `-P` every exposed
/// port that has no binding, on a free host port.
fn port_requests(c: &Container) -> Result<Vec<berth_net::ports::PortRequest>> {
    let mut out = Vec::new();
    let bindings = c.host_config.port_bindings.clone().unwrap_or_default();
    for (key, list) in &bindings {
        for b in list.iter().flatten() {
            if let Some(r) = berth_net::ports::parse_binding(key, &b.host_ip, &b.host_port)
                .map_err(EngineError::invalid)?
            {
                out.push(r);
            }
        }
    }
    if c.host_config.publish_all_ports {
        for key in c.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            let (port, proto) =
                berth_net::ports::parse_container_port(key).map_err(EngineError::invalid)?;
            let bound = bindings.keys().any(|k| {
                berth_net::ports::parse_container_port(k)
                    .is_ok_and(|(p, pr)| p == port && pr == proto)
            });
            if !bound {
                out.extend(
                    berth_net::ports::parse_binding(key, "", "").map_err(EngineError::invalid)?,
                );
            }
        }
    }
    Ok(out)
}

/// Parse `max-size` (`10m`, `1g`, `512k`, bytes) and `max-file` log options.
fn log_limits(c: &Container, default_size: u64, default_files: u32) -> Result<(u64, u32)> {
    let opts = &c.host_config.log_config.config;
    let size = match opts.get("max-size") {
        Some(s) => parse_size(s)
            .ok_or_else(|| EngineError::invalid(format!("invalid value for max-size: {s}")))?,
        None => default_size,
    };
    let files = match opts.get("max-file") {
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| EngineError::invalid(format!("invalid value for max-file: {s}")))?,
        None => default_files,
    };
    Ok((size, files))
}

/// `10m` → 10 MiB, as Docker's `units.RAMInBytes`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

impl Engine {
    /// `POST /containers/{id}/update`: resources and the restart policy. Running
    /// containers get the new limits in their cgroup at once.
    pub async fn update(
        self: &Arc<Self>,
        name: &str,
        u: crate::types::HostConfig,
    ) -> Result<Vec<String>> {
        let h = self.container(name)?;
        let _op = h.op.lock().await;
        let before = h.get();
        let mut next = before.host_config.clone();
        if !u.restart_policy.name.is_empty() {
            next.restart_policy = u.restart_policy.clone();
        }
        macro_rules! take {
            ($($f:ident),*) => { let d = crate::types::HostConfig::default(); $( if u.$f != d.$f { next.$f = u.$f.clone(); } )* };
        }
        take!(
            memory,
            memory_swap,
            memory_reservation,
            cpu_shares,
            nano_cpus,
            cpu_period,
            cpu_quota,
            cpuset_cpus,
            cpuset_mems,
            blkio_weight,
            pids_limit
        );
        validate_host_config(&next)?;
        if next.auto_remove && !matches!(next.restart_policy.name.as_str(), "" | "no") {
            return Err(EngineError::invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            ));
        }
        let mut updated = before.clone();
        updated.host_config = next.clone();
        if before.is_running() {
            let rootfs = self.rootfs_of(&before)?;
            let spec = self.build_spec(&updated, &rootfs.merged)?;
            if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().clone()) {
                let mut res = res;
                res.set_devices(None);
                self.runtime_container(&before.id)?
                    .cgroup()
                    .map_err(rt_err)?
                    .apply(&res)
                    .map_err(|e| {
                        EngineError::invalid(format!("Cannot update container {}: {e}", before.id))
                    })?;
            }
        } else {
            // Validate the new limits the same way a start would.
            let rootfs = self.rootfs_of(&before)?;
            self.build_spec(&updated, &rootfs.merged)?;
        }
        h.update(&self.containers_dir(), |c| c.host_config = next)?;
        self.events
            .emit("container", "update", &before.id, before.event_attributes());
        Ok(Vec::new())
    }
}

/// The spec as the runc and crun of today's distributions take it: they predate the time
/// namespace (runc 1.1: "namespace time does not exist") and crun 1.8 refuses an
/// `ociVersion` other than 1.0.x. Nothing else berth writes is newer than 1.0.2, the
/// version dockerd 20.10 writes. An unlimited pids limit is left out (see below).
fn for_external_runtime(spec: &mut oci_spec::runtime::Spec) {
    spec.set_version("1.0.2-dev".to_string());
    if let Some(linux) = spec.linux_mut() {
        if let Some(ns) = linux.namespaces_mut() {
            ns.retain(|n| n.typ() != oci_spec::runtime::LinuxNamespaceType::Time);
        }
        // "No limit" is what a new cgroup has; crun 1.8 writes -1 into a v1 `pids.max`
        // verbatim, which the kernel refuses.
        if let Some(res) = linux.resources_mut() {
            if res.pids().as_ref().is_some_and(|p| p.limit() <= 0) {
                res.set_pids(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_runtimes_get_a_spec_they_accept() {
        use oci_spec::runtime::{
            LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder,
        };
        let mut spec = oci_spec::runtime::Spec::default();
        let linux = spec.linux_mut().as_mut().unwrap();
        let mut ns = linux.namespaces().clone().unwrap_or_default();
        ns.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Time)
                .build()
                .unwrap(),
        );
        let before = ns.len();
        linux.set_namespaces(Some(ns));
        linux.set_resources(Some(
            LinuxResourcesBuilder::default()
                .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
                .build()
                .unwrap(),
        ));
        for_external_runtime(&mut spec);
        assert_eq!(spec.version(), "1.0.2-dev");
        let linux = spec.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        assert_eq!(ns.len(), before - 1);
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Time));
        assert!(linux.resources().as_ref().unwrap().pids().is_none());
    }

    fn _strslice(v: &[&str]) -> crate::types::StrSlice {
        crate::types::StrSlice(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn env_merge_replaces_and_removes() {
        let base = vec![
            "PATH=/bin".to_string(),
            "A=1".to_string(),
            "B=2".to_string(),
        ];
        let out = merge_env(&base, &["A=3".into(), "B".into(), "C=4".into()]);
        assert_eq!(out, vec!["PATH=/bin", "A=3", "C=4"]);
    }

    #[test]
    fn generated_names_stay_unique_past_the_word_lists() {
        let mut taken = std::collections::HashSet::new();
        for i in 0..2000 {
            let n = unique_name(|n| taken.contains(n), &format!("{i:064x}"));
            assert!(taken.insert(n.clone()), "{n} handed out twice");
        }
        // Every name taken: the short ID is used.
        let id = "0123456789abcdef";
        assert_eq!(unique_name(|n| !n.starts_with("0123"), id), "0123456789ab");
        assert_eq!(
            unique_name(|n| !n.starts_with("0123") || n == "0123456789ab", id),
            "0123456789ab_1"
        );
    }

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn names() {
        assert!(valid_name("web"));
        assert!(valid_name("a1_b.c-d"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-a"));
        assert!(!valid_name("a/b"));
    }

    #[test]
    fn merge_takes_image_defaults() {
        let image = ContainerConfig {
            cmd: Some(_strslice(&["sh"])),
            env: Some(vec!["PATH=/x".into()]),
            working_dir: "/w".into(),
            ..Default::default()
        };
        let req = ContainerConfig {
            entrypoint: Some(_strslice(&["/bin/echo"])),
            ..Default::default()
        };
        let m = merge_config(&req, &image);
        assert!(
            m.cmd.is_none(),
            "an entrypoint in the request drops the image's CMD"
        );
        assert_eq!(m.working_dir, "/w");
        let m = merge_config(&ContainerConfig::default(), &image);
        assert_eq!(m.cmd, Some(_strslice(&["sh"])));
    }
}
