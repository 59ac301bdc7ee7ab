//! Read-mostly services: container listing with filters, stats, top, diff, export, commit,
//! `docker cp`, prune, and the daemon's `info` / `version` / `system df`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::container::{Container, Status};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::lifecycle::is_mounted;

/// Parsed `filters`: key → values.
pub type Filters = BTreeMap<String, Vec<String>>;

/// Options of `GET /containers/json`.
#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub all: bool,
    pub limit: Option<usize>,
    pub size: bool,
    pub filters: Filters,
}

const LIST_FILTERS: &[&str] = &[
    "ancestor",
    "before",
    "expose",
    "exited",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
];

fn label_matches(labels: &BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    }
}

impl Engine {
    /// `GET /containers/json`.
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<crate::container::Summary>> {
        for key in opts.filters.keys() {
            if !LIST_FILTERS.contains(&key.as_str()) {
                return Err(EngineError::invalid(format!("invalid filter '{key}'")));
            }
        }
        for s in opts.filters.get("status").into_iter().flatten() {
            if !matches!(
                s.as_str(),
                "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
            ) {
                return Err(EngineError::invalid(format!("invalid filter 'status={s}'")));
            }
        }
        // Newest first, as Docker lists them; records are looked at in place, not copied.
        let mut all: Vec<(String, Arc<crate::engine::Handle>)> = self
            .all_containers()
            .into_iter()
            .map(|h| (h.with(|c| c.created.clone()), h))
            .collect();
        all.sort_by(|a, b| b.0.cmp(&a.0));
        let f = &opts.filters;
        let created_of = |key: &str| -> Result<Option<String>> {
            match f.get(key).and_then(|v| v.first()) {
                Some(v) => Ok(Some(self.container(v)?.with(|c| c.created.clone()))),
                None => Ok(None),
            }
        };
        let sel = Selection {
            before: created_of("before")?,
            since: created_of("since")?,
            want_status: f.contains_key("status") || f.contains_key("exited"),
            // Each `ancestor` value resolved once, not once per container.
            ancestors: f
                .get("ancestor")
                .into_iter()
                .flatten()
                .map(|v| {
                    let id = self.resolve_image(v).ok().map(|r| r.id.to_string());
                    (v.clone(), id)
                })
                .collect(),
        };
        let tags = self.images.tags().unwrap_or_default();
        let now = chrono::Utc::now();
        let mut out = Vec::new();
        // Most containers share a few images: each reference is parsed once.
        let mut shown: HashMap<(String, String), String> = HashMap::new();
        for (_, h) in all {
            let row = h.with(|c| {
                list_matches(c, opts, &sel).then(|| {
                    let name = shown
                        .entry((c.config.image.clone(), c.image_id.clone()))
                        .or_insert_with(|| image_display_name(c, &tags));
                    c.summary(now, name)
                })
            });
            let Some(mut row) = row else { continue };
            if opts.size {
                self.add_sizes(&mut row);
            }
            out.push(row);
            if let Some(l) = opts.limit {
                if out.len() >= l {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Bytes in the container's writable layer.
    fn size_rw(&self, c: &Container) -> i64 {
        du(&self.containers_dir().join(&c.id).join("upper"))
    }

    /// `SizeRw` and `SizeRootFs` (`ps -s`, `inspect -s`, `system df`), the writable layer
    /// measured once.
    fn add_sizes(&self, row: &mut crate::container::Summary) {
        let (rw, root) = self.sizes(&row.id, &row.image_id);
        row.size_rw = Some(rw);
        row.size_root_fs = Some(root);
    }

    /// (`SizeRw`, `SizeRootFs`) of container `id` made from image `image_id`.
    fn sizes(&self, id: &str, image_id: &str) -> (i64, i64) {
        let rw = du(&self.containers_dir().join(id).join("upper"));
        (rw, rw + self.image_size(image_id))
    }

    fn image_size(&self, id: &str) -> i64 {
        self.images.inspect(id).map(|i| i.size).unwrap_or_default()
    }

    /// `GET /containers/{id}/json`.
    pub fn inspect(&self, name: &str, size: bool) -> Result<Value> {
        let h = self.container(name)?;
        let c = h.get();
        let mut v = c.inspect();
        let execs: Vec<String> = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|e| e.container_id == c.id)
            .filter(|e| e.state.lock().map(|s| s.running).unwrap_or(false))
            .map(|e| e.id.clone())
            .collect();
        if !execs.is_empty() {
            v["ExecIDs"] = json!(execs);
        }
        if size {
            let (rw, root) = self.sizes(&c.id, &c.image_id);
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(root);
        }
        Ok(v)
    }

    /// `GET /containers/{id}/top`: `ps -ef` (or the given options) filtered to the
    /// container's processes.
    pub async fn top(&self, name: &str, ps_args: &str) -> Result<Value> {
        let c = self.container(name)?.get();
        if !c.is_running() {
            return Err(EngineError::conflict(format!(
                "Container {} is not running",
                c.id
            )));
        }
        let pids: HashSet<i32> = self
            .runtime_container_pub(&c.id)?
            .pids()
            .map_err(crate::lifecycle::rt_err)?
            .into_iter()
            .collect();
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.split_whitespace().map(String::from).collect()
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| EngineError::internal(format!("running ps: {e}")))?;
        if !out.status.success() {
            return Err(EngineError::internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let titles: Vec<&str> = header.split_whitespace().collect();
        let pid_col = titles
            .iter()
            .position(|t| *t == "PID")
            .ok_or_else(|| EngineError::invalid("Couldn't find PID field in ps output"))?;
        let mut procs = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            let n = titles.len();
            let mut row: Vec<String> = fields.iter().take(n - 1).map(|s| s.to_string()).collect();
            row.push(fields.get(n - 1..).map(|r| r.join(" ")).unwrap_or_default());
            procs.push(row);
        }
        Ok(json!({"Titles": titles, "Processes": procs}))
    }

    pub(crate) fn runtime_container_pub(&self, id: &str) -> Result<berth_runtime::Container> {
        let cid: berth_types::ContainerId = id
            .parse()
            .map_err(|e| EngineError::internal(format!("container id {id}: {e}")))?;
        berth_runtime::Runtime::new(self.runtime_root())
            .load(&cid)
            .map_err(crate::lifecycle::rt_err)
    }

    /// One stats sample in Docker's shape; `prev` is the previous sample's CPU figures.
    pub fn stats_sample(&self, name: &str, prev: Option<&Value>) -> Result<Value> {
        let c = self.container(name)?.get();
        let now = berth_types::time::now_rfc3339_nano();
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as u64;
        let system = system_cpu_ns();
        let (mem, cpu, pids) = if c.is_running() {
            match self
                .runtime_container_pub(&c.id)
                .and_then(|rc| rc.stats().map_err(crate::lifecycle::rt_err))
            {
                Ok(s) => (s.memory, s.cpu, s.pids),
                Err(_) => (None, None, None),
            }
        } else {
            (None, None, None)
        };
        let mem_total = mem_total();
        let memory_stats = match &mem {
            Some(m) => json!({
                "usage": m.usage_bytes,
                "max_usage": m.max_usage_bytes,
                "limit": m.limit_bytes.unwrap_or(mem_total).min(mem_total),
                "stats": {"total_inactive_file": 0, "inactive_file": 0},
                "failcnt": 0,
            }),
            None => json!({}),
        };
        let cpu_stats = json!({
            "cpu_usage": {
                "total_usage": cpu.as_ref().map(|c| c.usage_ns).unwrap_or(0),
                "usage_in_kernelmode": 0, "usage_in_usermode": 0,
            },
            "system_cpu_usage": system,
            "online_cpus": ncpu,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        });
        let precpu = prev
            .and_then(|p| p.get("cpu_stats").cloned())
            .unwrap_or_else(|| json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}));
        let preread = prev
            .and_then(|p| p.get("read").cloned())
            .unwrap_or(json!("0001-01-01T00:00:00Z"));
        Ok(json!({
            "read": now,
            "preread": preread,
            "id": c.id,
            "name": format!("/{}", c.name),
            "pids_stats": {"current": pids.as_ref().map(|p| p.current).unwrap_or(0), "limit": pids.as_ref().and_then(|p| p.limit)},
            "blkio_stats": {"io_service_bytes_recursive": null, "io_serviced_recursive": null},
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": cpu_stats,
            "precpu_stats": precpu,
            "memory_stats": memory_stats,
        }))
    }

    /// `GET /containers/{id}/changes`.
    pub fn changes(&self, name: &str) -> Result<Value> {
        let c = self.container(name)?.get();
        let rootfs = self.rootfs_of(&c)?;
        let changes = berth_image::changes::changes(&rootfs.upper, &rootfs.lowers)
            .map_err(|e| EngineError::io("reading the container's changes", e))?;
        Ok(Value::Array(
            changes
                .iter()
                .map(|ch| {
                    let kind = match ch.kind.letter() {
                        'C' => 0,
                        'A' => 1,
                        _ => 2,
                    };
                    json!({"Path": ch.path, "Kind": kind})
                })
                .collect(),
        ))
    }

    pub(crate) fn rootfs_of(&self, c: &Container) -> Result<berth_image::store::ContainerRootfs> {
        let image = self
            .images
            .image(
                &c.image_id
                    .parse()
                    .map_err(|_| EngineError::internal("bad image id"))?,
            )
            .map_err(|e| EngineError::internal(format!("image of container {}: {e}", c.name)))?;
        self.images
            .container_rootfs(&c.id, &image)
            .map_err(|e| EngineError::internal(e.to_string()))
    }

    /// The directory to read a container's files from: `/proc/<pid>/root` while it runs
    /// (mounts included), else its merged root (mounted if needed).
    pub fn files_root(&self, name: &str) -> Result<(Container, PathBuf)> {
        let c = self.container(name)?.get();
        if c.is_running() && c.state.pid > 0 {
            return Ok((
                c.clone(),
                PathBuf::from(format!("/proc/{}/root", c.state.pid)),
            ));
        }
        let rootfs = self.rootfs_of(&c)?;
        if !is_mounted(&rootfs.merged) {
            rootfs
                .mount()
                .map_err(|e| EngineError::internal(format!("mounting the root filesystem: {e}")))?;
        }
        Ok((c, rootfs.merged))
    }

    /// `POST /commit`.
    pub fn commit(
        &self,
        name: &str,
        repo_tag: Option<&str>,
        author: Option<String>,
        comment: &str,
        changes: &[String],
        config: Option<crate::types::ContainerConfig>,
    ) -> Result<String> {
        let c = self.container(name)?.get();
        let image = self
            .images
            .image(
                &c.image_id
                    .parse()
                    .map_err(|_| EngineError::internal("bad image id"))?,
            )
            .map_err(|e| EngineError::internal(e.to_string()))?;
        let rootfs = self.rootfs_of(&c)?;
        // The new image's config: the container's (as Docker does), then the request's
        // config, then `--change` instructions.
        let mut base = c.config.clone();
        if let Some(cfg) = config {
            if cfg.cmd.is_some() {
                base.cmd = cfg.cmd;
            }
            if cfg.entrypoint.is_some() {
                base.entrypoint = cfg.entrypoint;
            }
            if cfg.env.is_some() {
                base.env = cfg.env;
            }
            if !cfg.working_dir.is_empty() {
                base.working_dir = cfg.working_dir;
            }
            if cfg.labels.is_some() {
                base.labels = cfg.labels;
            }
        }
        base.hostname.clear();
        base.image = String::new();
        let mut oci = oci_config(&base);
        berth_image::config_changes::apply_changes(&mut oci, changes)
            .map_err(|e| EngineError::invalid(e.to_string()))?;
        let id = self
            .images
            .commit(&rootfs, &image, Some(oci), author, comment)
            .map_err(|e| EngineError::internal(format!("committing container {}: {e}", c.name)))?;
        if let Some(rt) = repo_tag {
            let r = berth_types::Reference::parse_normalized_named(rt)
                .map_err(|e| EngineError::invalid(format!("invalid reference format: {e}")))?
                .with_default_tag();
            self.images
                .tag(&id, &r)
                .map_err(|e| EngineError::internal(e.to_string()))?;
        }
        let mut attrs = c.event_attributes();
        attrs.insert("comment".into(), comment.to_string());
        self.events.emit("container", "commit", &c.id, attrs);
        Ok(id.to_string())
    }

    /// `POST /containers/prune`.
    pub async fn prune_containers(self: &Arc<Self>, filters: &Filters) -> Result<Value> {
        let mut deleted = Vec::new();
        let mut space = 0i64;
        for h in self.all_containers() {
            let c = h.get();
            if c.is_running() || c.state.status == Status::Removing {
                continue;
            }
            let labels = c.config.labels.clone().unwrap_or_default();
            let ok = filters
                .get("label")
                .into_iter()
                .flatten()
                .all(|l| label_matches(&labels, l))
                && filters
                    .get("label!")
                    .into_iter()
                    .flatten()
                    .all(|l| !label_matches(&labels, l));
            if !ok {
                continue;
            }
            if let Some(until) = filters.get("until").and_then(|v| v.first()) {
                let secs: f64 = until.parse().unwrap_or(f64::MAX);
                let created = chrono::DateTime::parse_from_rfc3339(&c.created)
                    .map(|t| t.timestamp() as f64)
                    .unwrap_or(0.0);
                if created >= secs {
                    continue;
                }
            }
            let size = self.size_rw(&c);
            if self.remove_inner(&c.id, false, false).await.is_ok() {
                deleted.push(c.id.clone());
                space += size;
            }
        }
        self.events.emit(
            "container",
            "prune",
            "",
            BTreeMap::from([("reclaimed".to_string(), space.to_string())]),
        );
        Ok(
            json!({"ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) }, "SpaceReclaimed": space}),
        )
    }

    /// `GET /info`.
    pub fn info(&self) -> Value {
        let all: Vec<Container> = self.all_containers().iter().map(|h| h.get()).collect();
        let running = all
            .iter()
            .filter(|c| c.state.status == Status::Running)
            .count();
        let paused = all
            .iter()
            .filter(|c| c.state.status == Status::Paused)
            .count();
        let images = self.images.list().map(|l| l.len()).unwrap_or(0);
        let uname = nix::sys::utsname::uname().ok();
        let kernel = uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let arch = uname
            .as_ref()
            .map(|u| u.machine().to_string_lossy().into_owned())
            .unwrap_or_default();
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| "Linux".into());
        let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        json!({
            "ID": self.daemon_id(),
            "Containers": all.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": all.len() - running - paused,
            "Images": images,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"]],
            "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": null, "Log": ["json-file", "local"]},
            "MemoryLimit": true, "SwapLimit": true, "CpuCfsPeriod": true, "CpuCfsQuota": true, "CPUShares": true, "CPUSet": true, "PidsLimit": true,
            "IPv4Forwarding": true, "Debug": false, "NFd": count_dir("/proc/self/fd"), "OomKillDisable": !cgroup_v2,
            "NGoroutines": 0, "SystemTime": berth_types::time::now_rfc3339_nano(), "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": if cgroup_v2 { "2" } else { "1" },
            "NEventsListener": 0, "KernelVersion": kernel, "OperatingSystem": os, "OSVersion": "", "OSType": "linux",
            "Architecture": arch, "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": {
                "InsecureRegistryCIDRs": ["::1/128", "127.0.0.0/8"],
                "IndexConfigs": {},
                "Mirrors": self.config.registry.registry_mirrors,
            },
            "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "MemTotal": mem_total(),
            "GenericResources": null,
            "DockerRootDir": self.config.data_root,
            "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
            "Name": self.config.name,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": std::iter::once(("berth".to_string(), json!({"path": self.config.monitor_bin})))
                .chain(self.config.oci_runtimes.iter().map(|(n, p)| (n.clone(), json!({"path": p}))))
                .collect::<serde_json::Map<String, Value>>(),
            "DefaultRuntime": self.config.default_runtime,
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
            "LiveRestoreEnabled": true,
            "Isolation": "",
            "InitBinary": self.config.init_bin.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
            "ContainerdCommit": {"ID": ""}, "RuncCommit": {"ID": ""}, "InitCommit": {"ID": ""},
            "SecurityOptions": ["name=seccomp,profile=builtin", if cgroup_v2 { "name=cgroupns" } else { "name=no-cgroupns" }],
            "Warnings": null,
        })
    }

    /// A stable identity for this daemon, stored in the data root.
    pub fn daemon_id(&self) -> String {
        let path = self.config.data_root.join("engine-id");
        if let Ok(id) = std::fs::read_to_string(&path) {
            return id.trim().to_string();
        }
        let id = crate::engine::random_id()[..32].to_string();
        let _ = crate::container::write_atomic(&path, id.as_bytes());
        id
    }

    /// The container part of `GET /system/df`.
    pub fn df_containers(&self) -> Vec<crate::container::Summary> {
        let tags = self.images.tags().unwrap_or_default();
        let now = chrono::Utc::now();
        self.all_containers()
            .iter()
            .map(|h| {
                let mut row = h.with(|c| c.summary(now, &image_display_name(c, &tags)));
                self.add_sizes(&mut row);
                row
            })
            .collect()
    }
}

/// What `ps` selects beyond the filters' plain values (resolved once per listing).
struct Selection {
    want_status: bool,
    before: Option<String>,
    since: Option<String>,
    /// Each `ancestor` filter value and the image ID it resolves to.
    ancestors: Vec<(String, Option<String>)>,
}

/// Whether `c` passes `ps`'s selection and filters.
fn list_matches(c: &Container, opts: &ListOptions, sel: &Selection) -> bool {
    let f = &opts.filters;
    // Stopped containers are listed with -a, a status filter, or a limit (-n/-l).
    if !opts.all && !sel.want_status && !c.is_running() && opts.limit.is_none() {
        return false;
    }
    if sel.before.as_ref().is_some_and(|b| c.created >= *b) {
        return false;
    }
    if sel.since.as_ref().is_some_and(|s| c.created <= *s) {
        return false;
    }
    f.iter().all(|(k, vals)| {
        vals.iter().any(|v| match k.as_str() {
            "id" => c.id.starts_with(v.as_str()),
            "name" => {
                let pat = v.trim_start_matches('/');
                c.name.contains(pat)
            }
            "status" => c.state.status.as_str() == v,
            "exited" => {
                c.state.status == Status::Exited && v.parse::<i32>().ok() == Some(c.state.exit_code)
            }
            "label" => label_matches(c.config.labels.as_ref().unwrap_or(&BTreeMap::new()), v),
            "ancestor" => {
                c.config.image == *v
                    || c.image_id == *v
                    || c.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
                    || sel
                        .ancestors
                        .iter()
                        .any(|(a, id)| a == v && id.as_deref() == Some(c.image_id.as_str()))
            }
            "volume" => c
                .mounts
                .iter()
                .any(|m| m.name == *v || m.destination == *v || m.source == *v),
            "health" => {
                let h = c
                    .state
                    .health
                    .as_ref()
                    .map(|h| h.status.as_str())
                    .unwrap_or("none");
                h == v
            }
            "network" => c.network_mode() == v,
            "expose" | "publish" => c
                .config
                .exposed_ports
                .as_ref()
                .is_some_and(|p| p.contains_key(v) || p.contains_key(&format!("{v}/tcp"))),
            "is-task" => v == "false",
            _ => true,
        }) || k == "before"
            || k == "since"
    })
}

/// What `docker ps` shows in IMAGE: the name the user gave, or the short ID when that
/// name no longer points at the container's image.
fn image_display_name(c: &Container, tags: &BTreeMap<String, berth_types::Digest>) -> String {
    let given = &c.config.image;
    let norm = berth_types::Reference::parse_normalized_named(given)
        .map(|r| r.with_default_tag().to_string())
        .unwrap_or_default();
    match tags.get(&norm) {
        Some(d) if d.to_string() == c.image_id => given.clone(),
        _ if given.starts_with("sha256:") || c.image_id.contains(given.as_str()) => given.clone(),
        _ => c
            .image_id
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect(),
    }
}

/// The OCI image config equivalent of a container config (for commit).
fn oci_config(c: &crate::types::ContainerConfig) -> oci_spec::image::Config {
    let mut b = oci_spec::image::ConfigBuilder::default();
    if !c.user.is_empty() {
        b = b.user(c.user.clone());
    }
    if let Some(p) = &c.exposed_ports {
        b = b.exposed_ports(p.keys().cloned().collect::<Vec<_>>());
    }
    if let Some(e) = &c.env {
        b = b.env(e.clone());
    }
    if let Some(e) = &c.entrypoint {
        b = b.entrypoint(e.0.clone());
    }
    if let Some(cmd) = &c.cmd {
        b = b.cmd(cmd.0.clone());
    }
    if let Some(v) = &c.volumes {
        b = b.volumes(v.keys().cloned().collect::<Vec<_>>());
    }
    if !c.working_dir.is_empty() {
        b = b.working_dir(c.working_dir.clone());
    }
    if let Some(l) = &c.labels {
        b = b.labels(
            l.clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    if let Some(s) = &c.stop_signal {
        b = b.stop_signal(s.clone());
    }
    b.build().unwrap_or_default()
}

/// Bytes used under `path` (not following symlinks, each inode once).
pub fn du(path: &std::path::Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0i64;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((m.dev(), m.ino())) {
            total += m.len() as i64;
        }
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}

fn count_dir(p: &str) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

/// Total memory of the host in bytes.
pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Host CPU time in nanoseconds (the `cpu` line of /proc/stat), for CPU percentages.
fn system_cpu_ns() -> u64 {
    let ticks: u64 = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            t.lines().next().map(|l| {
                l.split_whitespace()
                    .skip(1)
                    .take(8)
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum()
            })
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    ticks * 10_000_000
}
