//! `docker cp` (GET/HEAD/PUT /containers/{id}/archive): paths resolved inside the
//! container's root. Not available yet: berth answers 501 rather than risk a copy that a
//! symlink could send to the host.

use std::path::Path;

use crate::error::{EngineError, ErrorKind, Result};

/// `X-Docker-Container-Path-Stat`.
pub struct PathStat {
    pub name: String,
}

impl PathStat {
    pub fn header_value(&self) -> String {
        self.name.clone()
    }
}

fn unsupported() -> EngineError {
    EngineError::new(
        ErrorKind::NotImplemented,
        "copying files to and from containers (docker cp) is not available in berth yet",
    )
}

pub fn stat(_root: &Path, _path: &str) -> Result<PathStat> {
    Err(unsupported())
}

pub fn get(_root: &Path, _path: &str, _out: impl std::io::Write) -> Result<()> {
    Err(unsupported())
}

pub fn put(
    _root: &Path,
    _path: &str,
    _tar: impl std::io::Read,
    _no_overwrite: bool,
    _copy_ids: bool,
) -> Result<()> {
    Err(unsupported())
}
