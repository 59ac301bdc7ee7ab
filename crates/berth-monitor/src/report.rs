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

/// A standby monitor's job: the state directory, one line on the gate. `None` at EOF.
/// berthd writes nothing more until the monitor reports, so reading past the newline
/// cannot take the start byte.
pub fn read_job(gate: &mut File) -> io::Result<Option<std::path::PathBuf>> {
    use std::io::Read;
    use std::os::unix::ffi::OsStringExt;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = match gate.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(None);
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            if end + 1 != line.len() {
                return Err(io::Error::other("data after the job line"));
            }
            line.truncate(end);
            return Ok(Some(std::ffi::OsString::from_vec(line).into()));
        }
        if line.len() > 4096 {
            return Err(io::Error::other("job line too long"));
        }
    }
}

/// The start gate.
pub fn start_gate() -> io::Result<File> {
    inherit(START_FD).map(File::from)
}

/// Take over the pipe berthd gave us as stdio descriptor `fd`: a close-on-exec copy above
/// stdio, so that neither the container nor a hook ever holds berthd's pipes (berthd would
/// then miss the EOF). The stdio slot itself is pointed at `/dev/null` by
/// [`crate::daemon::detach`].
fn inherit(fd: RawFd) -> io::Result<OwnedFd> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let borrowed = match fd {
        START_FD => stdin.as_fd(),
        _ => stdout.as_fd(),
    };
    let is_pipe = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"pipe:"));
    if !is_pipe {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "descriptor {fd} is not a pipe: berth-monitor is started by berthd with its \
                 progress pipe as stdout (fd {READY_FD}) and its start gate as stdin (fd {START_FD})"
            ),
        ));
    }
    // The copy is a descriptor the kernel just made for us, which nothing else owns.
    Ok(
        nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
            .map(berth_runtime::sys::fd::adopt)?,
    )
}
