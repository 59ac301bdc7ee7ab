//! What the runtime remembers about a container between commands.
//!
//! `<root>/<id>/state.json` holds the init pid (with its start time, so a recycled pid is
//! never mistaken for the container) and where things are; `config.json` beside it is the
//! spec the container was created from (exec and the `poststop` hooks need it later);
//! `exec.fifo` exists from create until start. Every file is written atomically.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_types::ContainerId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result, RuntimeError};

/// Persisted facts about one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: ContainerId,
    /// Init's pid in the runtime's pid namespace.
    pub pid: i32,
    /// Init's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: DateTime<Utc>,
    pub owner: String,
    /// `linux.cgroupsPath` as applied (absolute inside each hierarchy).
    pub cgroups_path: PathBuf,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const EXEC_FIFO: &str = "exec.fifo";

impl ContainerState {
    pub(crate) fn load(dir: &Path, id: &ContainerId) -> Result<ContainerState> {
        let path = dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound(id.clone()))
            }
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        };
        serde_json::from_slice(&bytes).map_err(|source| RuntimeError::CorruptState {
            id: id.clone(),
            path,
            source,
        })
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other);
        let bytes = bytes.ctx(|| format!("encoding state of {}", self.id))?;
        write_atomic(&dir.join(STATE_FILE), &bytes)
    }
}

/// Write `bytes` to `path` so that a crash of the writer leaves either the old file or the
/// new one. Not forced to disk (as runc does not): the state describes processes of this
/// boot, under a root that is normally on tmpfs (`/run`), and after a power loss there is
/// nothing left for it to describe.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        fs::rename(&tmp, path)
    };
    write().ctx(|| format!("writing {}", path.display()))
}

/// Start time of `pid` in clock ticks since boot, or `None` if it does not exist (or is a
/// zombie that is only waiting to be reaped).
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); start time is field 22.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// A container's status, per the OCI runtime spec (plus `paused`, which runc adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

/// The word runc prints for a status.
pub fn status_word(status: Status) -> &'static str {
    match status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Stopped => "stopped",
        Status::Paused => "paused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self_and_missing_pid() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(i32::MAX), None);
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert!(!p.with_extension("tmp").exists());
    }
}
