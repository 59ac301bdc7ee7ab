//! Reading and writing cgroupfs files, creating and removing cgroup directories.
//!
//! cgroupfs is not an ordinary filesystem, and these helpers encode its rules in one place:
//! a value is written with a single `write` into a file that must already exist (the kernel
//! creates every control file with its directory, so a missing file means a missing
//! controller, never a file to create); `rmdir` is the only way to remove a cgroup, works on a
//! directory still full of control files, and answers `EBUSY` while the last processes are
//! still leaving. Every error names the file or directory.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::error::{CgroupError, Result};

/// How often `rmdir` is retried while the kernel still reports the cgroup busy.
const RMDIR_ATTEMPTS: u32 = 6;
/// Wait before the first retry; doubled for each further one (10 ms .. 320 ms, ~0.6 s in all).
const RMDIR_FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// Reads a whole cgroup file.
pub(crate) fn read_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a single-value cgroup file holding an unsigned integer (`memory.current`).
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let content = read_string(path)?;
    parse_u64(path, content.trim())
}

/// Reads a limit file where `max` means no limit (`pids.max`, `memory.max`).
pub(crate) fn read_limit(path: &Path) -> Result<Option<u64>> {
    let content = read_string(path)?;
    match content.trim() {
        "max" => Ok(None),
        value => parse_u64(path, value).map(Some),
    }
}

/// Finds `key` in a flat-keyed file (`memory.events`, `cpu.stat`, `memory.oom_control`):
/// one `key value` pair per line.
pub(crate) fn flat_keyed_value(path: &Path, content: &str, key: &str) -> Result<Option<u64>> {
    for line in content.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() == Some(key) {
            let value = fields.next().unwrap_or_default();
            return parse_u64(path, value).map(Some);
        }
    }
    Ok(None)
}

fn parse_u64(path: &Path, value: &str) -> Result<u64> {
    value.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: value.to_owned(),
        expected: "an unsigned integer",
    })
}

/// Writes `value` into an existing cgroup file in one `write` call.
///
/// The file is never created: on cgroupfs a missing file means the controller is absent, and
/// creating a regular file there would fail anyway (or, on a fake tree, hide that bug).
pub(crate) fn write_value(path: &Path, value: &str) -> Result<()> {
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
        file.write_all(value.as_bytes())
    };
    write().map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })?;
    tracing::debug!(path = %path.display(), value, "wrote cgroup file");
    Ok(())
}

/// [`write_value`] for a value taken from the spec: a refusal names the spec's `field`.
pub(crate) fn write_field(field: &'static str, path: &Path, value: &str) -> Result<()> {
    write_value(path, value).map_err(|error| match error {
        CgroupError::Write {
            path,
            value,
            source,
        } => CgroupError::Rejected {
            field,
            path,
            value,
            source,
        },
        other => other,
    })
}

/// Creates `dir` and any missing directory between `base` and it, top-down, and returns the
/// directories this call created (top-down), so that `destroy` removes only what we made.
///
/// `base` (the hierarchy's mount point) must exist; a directory that appears concurrently
/// (another container under the same parent) counts as existing, not as ours.
pub(crate) fn create_dirs_below(base: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let relative = dir.strip_prefix(base).unwrap_or(dir);
    let mut created = Vec::new();
    let mut current = base.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::create_dir(&current) {
            Ok(()) => created.push(current.clone()),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(CgroupError::CreateDir {
                    path: current,
                    source,
                })
            }
        }
    }
    Ok(created)
}

/// Removes the cgroup `dir` and every cgroup below it (a container may create its own
/// sub-cgroups), deepest first. A missing directory is not an error, so this is idempotent.
pub(crate) fn remove_cgroup_tree(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::ReadDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    remove_dir_retrying(dir)
}

/// `rmdir` with a short backoff while the kernel reports the cgroup busy: after a kill, the
/// last processes take a moment to leave it.
pub(crate) fn remove_dir_retrying(dir: &Path) -> Result<()> {
    let mut backoff = RMDIR_FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => {
                tracing::debug!(path = %dir.display(), "removed cgroup directory");
                return Ok(());
            }
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
            Err(error) if error.kind() == ErrorKind::ResourceBusy && attempt < RMDIR_ATTEMPTS => {
                thread::sleep(backoff);
                backoff *= 2;
                attempt += 1;
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Removes the directories `create` made above the leaf, deepest first, while they are
/// empty. A parent still holding another container's cgroup is left alone, silently: it is
/// shared, not leaked.
pub(crate) fn remove_created_ancestors(created_top_down: &[PathBuf]) -> Result<()> {
    for dir in created_top_down.iter().rev() {
        match fs::remove_dir(dir) {
            Ok(()) => tracing::debug!(path = %dir.display(), "removed cgroup directory"),
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::NotFound | ErrorKind::DirectoryNotEmpty | ErrorKind::ResourceBusy
                ) => {}
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.clone(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Process ids in `dir` and every cgroup below it, from their `cgroup.procs`.
pub(crate) fn procs_recursive(dir: &Path) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    collect_procs(dir, &mut pids)?;
    Ok(pids)
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    let content = read_string(&procs)?;
    for line in content
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        let pid = line.parse().map_err(|_| CgroupError::Parse {
            path: procs.clone(),
            content: line.to_owned(),
            expected: "one process id per line",
        })?;
        pids.push(pid);
    }
    let entries = fs::read_dir(dir).map_err(|source| CgroupError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            collect_procs(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// Polls `reached` every `interval` until it returns true or `timeout` passes; returns
/// whether it was reached. `on_poll` runs before each poll with the number of polls so far.
pub(crate) fn poll_until(
    timeout: Duration,
    interval: Duration,
    mut on_poll: impl FnMut(u32) -> Result<()>,
    mut reached: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let start = Instant::now();
    let mut polls = 0;
    loop {
        on_poll(polls)?;
        if reached()? {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        thread::sleep(interval);
        polls += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_value_never_creates_a_missing_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pids.max");
        let error = write_value(&path, "64").expect_err("missing file must fail");
        assert!(matches!(error, CgroupError::Write { .. }), "{error:?}");
        assert!(!path.exists());
    }

    #[test]
    fn write_field_names_the_spec_field() {
        let dir = tempfile::tempdir().expect("temp dir");
        let error = write_field(
            "linux.resources.pids.limit",
            &dir.path().join("pids.max"),
            "64",
        )
        .expect_err("missing file must fail");
        assert!(
            error
                .to_string()
                .contains("linux.resources.pids.limit = \"64\""),
            "{error}"
        );
    }

    #[test]
    fn write_value_replaces_the_whole_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cpu.max");
        fs::write(&path, "max 100000\n").expect("seed file");
        write_value(&path, "5").expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), "5");
    }

    #[test]
    fn read_limit_maps_max_to_none() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pids.max");
        fs::write(&path, "max\n").expect("seed");
        assert_eq!(read_limit(&path).expect("read"), None);
        fs::write(&path, "64\n").expect("seed");
        assert_eq!(read_limit(&path).expect("read"), Some(64));
        fs::write(&path, "lots\n").expect("seed");
        assert!(matches!(read_limit(&path), Err(CgroupError::Parse { .. })));
    }

    #[test]
    fn flat_keyed_value_finds_exact_key() {
        let path = Path::new("memory.events");
        let content = "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(
            flat_keyed_value(path, content, "oom_kill").expect("parse"),
            Some(1)
        );
        assert_eq!(
            flat_keyed_value(path, content, "oom").expect("parse"),
            Some(2)
        );
        assert_eq!(
            flat_keyed_value(path, content, "absent").expect("parse"),
            None
        );
    }

    #[test]
    fn create_dirs_below_reports_only_new_directories() {
        let root = tempfile::tempdir().expect("temp dir");
        fs::create_dir(root.path().join("berth")).expect("seed parent");
        let leaf = root.path().join("berth/a/b");
        let created = create_dirs_below(root.path(), &leaf).expect("create");
        assert_eq!(created, vec![root.path().join("berth/a"), leaf.clone()]);
        assert!(create_dirs_below(root.path(), &leaf)
            .expect("again")
            .is_empty());
    }

    #[test]
    fn remove_cgroup_tree_removes_children_first_and_is_idempotent() {
        let root = tempfile::tempdir().expect("temp dir");
        let leaf = root.path().join("c");
        fs::create_dir_all(leaf.join("sub/deeper")).expect("seed");
        fs::create_dir_all(leaf.join("other")).expect("seed");
        remove_cgroup_tree(&leaf).expect("remove");
        assert!(!leaf.exists());
        remove_cgroup_tree(&leaf).expect("missing directory is fine");
    }

    #[test]
    fn remove_created_ancestors_keeps_shared_parents() {
        let root = tempfile::tempdir().expect("temp dir");
        let parent = root.path().join("berth");
        fs::create_dir_all(parent.join("other-container")).expect("seed");
        remove_created_ancestors(std::slice::from_ref(&parent)).expect("remove");
        assert!(parent.exists(), "a parent in use must stay");
        fs::remove_dir(parent.join("other-container")).expect("empty it");
        remove_created_ancestors(std::slice::from_ref(&parent)).expect("remove");
        assert!(!parent.exists());
    }

    #[test]
    fn procs_recursive_includes_sub_cgroups() {
        let root = tempfile::tempdir().expect("temp dir");
        fs::create_dir(root.path().join("sub")).expect("seed");
        fs::write(root.path().join("cgroup.procs"), "10\n11\n").expect("seed");
        fs::write(root.path().join("sub/cgroup.procs"), "12\n").expect("seed");
        let mut pids = procs_recursive(root.path()).expect("read");
        pids.sort_unstable();
        assert_eq!(pids, vec![10, 11, 12]);
    }
}
