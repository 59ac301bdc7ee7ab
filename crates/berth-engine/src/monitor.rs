//! berthd's side of the berth-monitor protocol (`berth_monitor::protocol`): start a
//! monitor, follow its progress, connect attach clients, learn when it is gone.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_monitor::protocol::{
    self, AttachRequest, ExitStatus, MonitorConfig, Ready, ATTACH_SOCKET, EXIT_FILE, PID_FILE,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::error::{EngineError, Result};

/// A monitor that has reported `Ready` and waits for the start byte.
pub struct Pending {
    state_dir: PathBuf,
    ready: BufReader<std::fs::File>,
    start: Option<std::fs::File>,
    /// Init's pid in run mode.
    pub pid: Option<i32>,
}

/// Start `berth-monitor` for `config` in `state_dir` and wait until it is ready.
pub fn spawn(monitor_bin: &Path, state_dir: &Path, config: &MonitorConfig) -> Result<Pending> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| EngineError::io(format!("creating {}", state_dir.display()), e))?;
    let _ = std::fs::remove_file(state_dir.join(EXIT_FILE));
    let data = serde_json::to_vec(config).map_err(|e| EngineError::internal(e.to_string()))?;
    crate::container::write_atomic(&state_dir.join(protocol::CONFIG_FILE), &data)
        .map_err(|e| EngineError::io("writing the monitor's config", e))?;
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::internal(format!("pipe: {e}")))?;
    let (start_r, start_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::internal(format!("pipe: {e}")))?;
    let mut cmd = Command::new(monitor_bin);
    cmd.arg(state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (rw, sr) = (ready_w.as_raw_fd(), start_r.as_raw_fd());
    // SAFETY: between fork and exec the closure only calls dup2 and fcntl, which are
    // async-signal-safe, on descriptors that stay open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            for (from, to) in [(rw, protocol::READY_FD), (sr, protocol::START_FD)] {
                if from == to {
                    let flags = libc::fcntl(to, libc::F_GETFD);
                    libc::fcntl(to, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                } else if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        EngineError::internal(format!(
            "starting the container monitor {}: {e}",
            monitor_bin.display()
        ))
    })?;
    drop(ready_w);
    drop(start_r);
    // The first process forks the real monitor and exits at once.
    let _ = child.wait();
    let mut ready = BufReader::new(std::fs::File::from(ready_r));
    let pid = match read_ready(&mut ready)? {
        Ready::Ready { pid } => pid,
        Ready::Failed { message } => return Err(start_error(message)),
        Ready::Started { .. } => {
            return Err(EngineError::internal(
                "container monitor reported started before it was told to start",
            ))
        }
    };
    Ok(Pending {
        state_dir: state_dir.to_owned(),
        ready,
        start: Some(std::fs::File::from(start_w)),
        pid,
    })
}

/// How long a monitor may take to create a container, or to start its process.
const REPORT_TIMEOUT_MS: u16 = 60_000;

fn read_ready(r: &mut BufReader<std::fs::File>) -> Result<Ready> {
    // A monitor that dies or wedges before reporting must not hang berthd: the container's
    // init may hold a copy of the pipe, so EOF alone is not guaranteed.
    if r.buffer().is_empty() {
        let fd = r.get_ref().as_fd();
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(REPORT_TIMEOUT_MS)) {
            Ok(0) => {
                return Err(EngineError::internal(format!(
                    "the container monitor did not report within {} s; see monitor.log in its state directory",
                    REPORT_TIMEOUT_MS / 1000
                )))
            }
            Ok(_) => {}
            Err(e) => return Err(EngineError::internal(format!("waiting for the container monitor: {e}"))),
        }
    }
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(0) => Err(EngineError::internal(
            "the container monitor exited without reporting why; see monitor.log in its state directory",
        )),
        Ok(_) => serde_json::from_str(line.trim()).map_err(|e| {
            EngineError::internal(format!("bad report from the container monitor: {e}"))
        }),
        Err(e) => Err(EngineError::io("reading the container monitor's report", e)),
    }
}

/// A start failure: the runtime's words decide the docker CLI's exit code (127 for a
/// missing executable, 126 for permission denied), so they are kept verbatim.
fn start_error(message: String) -> EngineError {
    EngineError::invalid(format!("failed to create task for container: {message}"))
}

impl Pending {
    /// The attach socket, connectable from now on.
    pub fn attach_socket(&self) -> PathBuf {
        self.state_dir.join(ATTACH_SOCKET)
    }

    /// Let the process start; returns its pid once it runs.
    pub fn start(mut self) -> Result<i32> {
        if let Some(mut s) = self.start.take() {
            s.write_all(b"s")
                .map_err(|e| EngineError::io("starting the container", e))?;
        }
        match read_ready(&mut self.ready)? {
            Ready::Started { pid } => Ok(pid),
            Ready::Failed { message } => Err(start_error(message)),
            Ready::Ready { .. } => Err(EngineError::internal(
                "container monitor reported ready twice",
            )),
        }
    }
}

/// Connect to the attach socket in `state_dir` and send the request line.
pub async fn connect(socket: &Path, req: AttachRequest) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket).await?;
    let mut line = serde_json::to_vec(&req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line).await?;
    Ok(s)
}

/// The exit status the monitor in `state_dir` left, if it has finished.
pub fn exit_status(state_dir: &Path) -> Option<ExitStatus> {
    let data = std::fs::read(state_dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// The pid of the monitor in `state_dir` if it is still alive.
pub fn live_monitor(state_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(state_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The pid must still be a monitor for this state dir (pids are reused).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let dir = state_dir.as_os_str().as_encoded_bytes();
    cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == dir)
        .then_some(pid)
}

/// Wait until process `pid` (not our child) exits.
pub async fn wait_pid(pid: i32) {
    let fd = match berth_runtime::sys::fd::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(_) => return, // already gone
    };
    // A pidfd is owned here and outlives the AsyncFd registration.
    #[allow(deprecated)]
    let registered = tokio::io::unix::AsyncFd::new(fd);
    match registered {
        Ok(afd) => {
            let _ = afd.readable().await;
        }
        Err(_) => {
            while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
