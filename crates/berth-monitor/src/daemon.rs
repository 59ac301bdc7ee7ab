//! Becoming a daemon that outlives berthd, and the few files it keeps in its state
//! directory.
//!
//! berthd starts the monitor and reaps it when it ends, but the monitor never depends on
//! berthd: if berthd dies it is reparented to init (or the nearest subreaper) and carries
//! on. It leads its own session (no terminal can send it SIGHUP), keeps the
//! signals a terminal or a dying pipe reader would send from reaching it, sits in its
//! state directory and has `/dev/null` as stdio. It writes nothing anywhere else: what
//! went wrong goes to `monitor.log`, and only when something did.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use berth_monitor::protocol::DIAGNOSTICS_FILE;
use berth_runtime::sys::process::{exit_now, fork, Forked};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The diagnostics file stops growing here: it is for what went wrong, not a second log.
const DIAG_MAX: u64 = 64 * 1024;

/// Become the monitor: its own session, its state directory as working directory,
/// `/dev/null` as stdio, and SIGHUP, SIGINT and SIGPIPE blocked. Started by berthd the
/// process is not a process-group leader, so `setsid` works at once; started as a shell's
/// job it is one, and then it forks first (the parent exits 0 at once).
///
/// Blocking rather than ignoring needs no signal handler (no `unsafe`) and does the same
/// here: the monitor never waits for signals, a write to a closed pipe still fails with
/// EPIPE, and neither the runtime's children nor hooks inherit it (the runtime clears the
/// mask before `execve`, as `std::process::Command` does).
pub fn detach(state_dir: &Path) -> io::Result<()> {
    if nix::unistd::setsid().is_err() {
        // The monitor is single-threaded (it never starts a thread), so the child of this
        // fork is an ordinary complete process.
        match fork()? {
            Forked::Parent(_) => exit_now(0),
            Forked::Child => {}
        }
        nix::unistd::setsid()?;
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE] {
        set.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    std::env::set_current_dir(state_dir)?;
    // Files the runtime creates (its state, cgroups) get the usual modes whatever umask
    // berthd had; ours set their modes explicitly.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    // A panic would otherwise print to /dev/null.
    std::panic::set_hook(Box::new(|info| diag(&format!("panic: {info}"))));
    Ok(())
}

/// Append one line to the diagnostics file in the working directory (the state
/// directory).
pub fn diag(msg: &str) {
    let Ok(mut f) = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(DIAGNOSTICS_FILE)
    else {
        return;
    };
    if f.metadata().map_or(true, |m| m.len() > DIAG_MAX) {
        return;
    }
    let time = berth_types::time::now_rfc3339_nano();
    let _ = writeln!(f, "{time} {msg}");
}

/// Replace `path` with `data` atomically: readers see the old file or the new one, never
/// half of it, even if the monitor dies in between.
///
/// Not forced to disk: these files (pid, exit status) describe processes of this boot
/// and live in the exec root (`/run`, a tmpfs, in production); a power loss makes them
/// moot. Two fsyncs each cost ~1 ms per container start on a disk.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)?;
    f.write_all(data)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Remove a file we made; a missing one is fine.
pub fn remove(path: &str) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            diag(&format!("removing {path}: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["exit.json"]);
    }
}
