//! Containers and their lifecycle, per the OCI runtime spec's state machine:
//! create (set up, waiting) → start → running → stopped → delete; plus kill, exec, pause.
//!
//! One file per operation; the container's status decides what is allowed.

mod create;
mod delete;
mod exec;
mod kill;
mod pause;
mod start;

use std::path::{Path, PathBuf};

use berth_types::ContainerId;
use oci_spec::runtime::Spec;

use crate::state::Status;

use crate::cgroups::{self, Cgroup, CgroupMode, FreezerState};
use crate::error::{IoContext, Result, RuntimeError};
use crate::state::{process_start_time, ContainerState, CONFIG_FILE, EXEC_FIFO};

pub use create::{CreateOptions, Created, Stdio};
pub use exec::{ExecOptions, Executed};

/// The runtime: a directory of container states plus the host's cgroup layout.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    cgroup_root: PathBuf,
}

impl Runtime {
    /// A runtime keeping its state under `root` (runc uses `/run/runc`; we default to
    /// `/run/berth-runc` in the CLI).
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: root.into(),
            cgroup_root: PathBuf::from(cgroups::DEFAULT_MOUNT_ROOT),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn container_dir(&self, id: &ContainerId) -> PathBuf {
        self.root.join(id.as_str())
    }

    pub(crate) fn cgroup_mode(&self) -> Result<CgroupMode> {
        Ok(cgroups::detect_mode(&self.cgroup_root)?)
    }

    pub(crate) fn cgroup(&self, cgroups_path: &Path) -> Result<Cgroup> {
        Ok(cgroups::new_manager(
            self.cgroup_mode()?,
            &self.cgroup_root,
            cgroups_path,
        )?)
    }

    /// Load a container by id.
    pub fn load(&self, id: &ContainerId) -> Result<Container> {
        let dir = self.container_dir(id);
        let state = ContainerState::load(&dir, id)?;
        Ok(Container {
            runtime: self.clone(),
            dir,
            state,
        })
    }

    /// Every container under the root, sorted by id. Entries whose state cannot be read are
    /// skipped (a create in progress has no state file yet).
    pub fn list(&self) -> Result<Vec<Container>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("listing {}", self.root.display())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.ctx(|| format!("listing {}", self.root.display()))?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<ContainerId>().ok())
            else {
                continue;
            };
            if let Ok(c) = self.load(&id) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.state.id.cmp(&b.state.id));
        Ok(out)
    }
}

/// A container known to the runtime.
#[derive(Debug)]
pub struct Container {
    runtime: Runtime,
    dir: PathBuf,
    state: ContainerState,
}

impl Container {
    pub fn id(&self) -> &ContainerId {
        &self.state.id
    }

    pub fn state(&self) -> &ContainerState {
        &self.state
    }

    /// The container's init pid.
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    fn init_alive(&self) -> bool {
        process_start_time(self.state.pid) == Some(self.state.pid_start_time)
    }

    /// The status now, derived from the process, the fifo and the freezer.
    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        match self.cgroup().and_then(|c| Ok(c.freezer_state()?)) {
            Ok(FreezerState::Frozen) | Ok(FreezerState::Freezing) => Status::Paused,
            _ => Status::Running,
        }
    }

    /// The OCI state document (`runc state` prints this, plus a few runc fields).
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let pid = if status == Status::Stopped {
            0
        } else {
            self.state.pid
        };
        serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.state.id,
            "pid": pid,
            "status": crate::state::status_word(status),
            "bundle": self.state.bundle,
            "rootfs": self.state.rootfs,
            "created": self.state.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "owner": self.state.owner,
            "annotations": self.state.annotations,
        })
    }

    /// The spec the container was created from.
    pub fn spec(&self) -> Result<Spec> {
        let path = self.dir.join(CONFIG_FILE);
        Spec::load(&path).map_err(|e| RuntimeError::Io {
            context: format!("reading {}", path.display()),
            source: std::io::Error::other(e.to_string()),
        })
    }

    pub fn cgroup(&self) -> Result<Cgroup> {
        self.runtime.cgroup(&self.state.cgroups_path)
    }

    /// Pids of every process in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Ok(self.cgroup()?.pids()?)
    }

    /// Resource usage read back from the cgroup.
    pub fn stats(&self) -> Result<cgroups::CgroupStats> {
        Ok(self.cgroup()?.stats()?)
    }

    fn wrong_state(&self, status: Status, hint: &'static str) -> RuntimeError {
        RuntimeError::WrongState {
            id: self.state.id.clone(),
            status: crate::state::status_word(status).to_owned(),
            hint,
        }
    }

    /// OCI state JSON for hooks run by the runtime.
    fn hook_state(&self, status: Status) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "ociVersion": "1.2.0",
            "id": self.state.id,
            "status": crate::state::status_word(status),
            "pid": self.state.pid,
            "bundle": self.state.bundle,
            "annotations": self.state.annotations,
        }))
        .unwrap_or_default()
    }
}

impl Runtime {
    /// Record a container that another OCI runtime (runc, crun) created from `bundle`, so
    /// that this runtime can signal, freeze, measure and enter it: the record names its
    /// init (`pid`, checked by start time like our own) and its cgroup. The other runtime
    /// stays in charge of its life: [`Container::forget`] drops the record once that
    /// runtime has deleted the container. The hooks are left out of the recorded spec
    /// (the other runtime runs them).
    pub fn adopt(
        &self,
        id: &ContainerId,
        pid: i32,
        bundle: &Path,
        mut spec: Spec,
    ) -> Result<Container> {
        let start_time = process_start_time(pid).ok_or_else(|| {
            RuntimeError::invalid("pid", format!("process {pid} of container {id} is gone"))
        })?;
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_else(|| PathBuf::from(format!("/berth/{id}")));
        let rootfs = spec
            .root()
            .as_ref()
            .map(|r| bundle.join(r.path()))
            .unwrap_or_default();
        spec.set_hooks(None);
        std::fs::create_dir_all(&self.root)
            .ctx(|| format!("creating state root {}", self.root.display()))?;
        let dir = self.container_dir(id);
        std::fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let config = serde_json::to_vec(&spec)
            .map_err(std::io::Error::other)
            .ctx(|| "encoding the spec".into())?;
        crate::state::write_atomic(&dir.join(CONFIG_FILE), &config)?;
        let state = ContainerState {
            id: id.clone(),
            pid,
            pid_start_time: start_time,
            bundle: bundle.to_owned(),
            rootfs,
            created: chrono::Utc::now(),
            owner: String::new(),
            cgroups_path,
            annotations: spec.annotations().clone().unwrap_or_default(),
        };
        state.save(&dir)?;
        Ok(Container {
            runtime: self.clone(),
            dir,
            state,
        })
    }
}

impl Container {
    /// Drop the record of an adopted container (see [`Runtime::adopt`]); its processes and
    /// cgroup are the other runtime's to remove.
    pub fn forget(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).ctx(|| format!("removing {}", self.dir.display()))
    }
}
