//! The two descriptors berthd hands over: the progress pipe ([`READY_FD`]) and the start
//! gate ([`START_FD`]).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd, RawFd};

use berth_monitor::protocol::{Ready, READY_FD, START_FD};

use crate::daemon::diag;

/// Writes [`Ready`] reports to berthd, one JSON line each.
pub struct Reporter {
    pipe: Option<File>,
}

impl Reporter {
    pub fn inherit() -> io::Result<Reporter> {
        Ok(Reporter {
            pipe: Some(File::from(inherit(READY_FD)?)),
        })
    }

    /// Send one report. berthd may be gone (it restarts while monitors live on): then the
    /// report is noted in `monitor.log` and the monitor carries on.
    pub fn send(&mut self, report: &Ready) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut line = serde_json::to_vec(report).unwrap_or_default();
        line.push(b'\n');
        if let Err(e) = pipe.write_all(&line) {
            diag(&format!(
                "reporting {} to berthd: {e}",
                String::from_utf8_lossy(&line).trim_end()
            ));
            self.pipe = None;
        }
    }

    /// No more reports: berthd sees EOF.
    pub fn close(&mut self) {
        self.pipe = None;
    }
}

/// The start gate.
pub fn start_gate() -> io::Result<File> {
    inherit(START_FD).map(File::from)
}

/// Take over inherited descriptor `fd` and make it close-on-exec, so that neither the
/// container nor a hook ever holds berthd's pipes (berthd would then miss the EOF).
fn inherit(fd: RawFd) -> io::Result<OwnedFd> {
    if std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "descriptor {fd} is not open: berth-monitor is started by berthd with its \
                 progress pipe on fd {READY_FD} and its start gate on fd {START_FD}"
            ),
        ));
    }
    // Sound for the same reason `adopt` is: the kernel installed this descriptor for us (at
    // exec) and nothing else in this process owns it.
    let owned = berth_runtime::sys::fd::adopt(fd);
    nix::fcntl::fcntl(
        owned.as_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    Ok(owned)
}
