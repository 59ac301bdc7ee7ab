//! berthd's side of the berth-monitor protocol (`berth_monitor::protocol`): start a
//! monitor, follow its progress, connect attach clients, learn when it is gone.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// The monitor process (berthd's child: [`wait_pid`] reaps it once it has started the
    /// process; a monitor that never got that far is reaped here).
    child: Option<Child>,
}

/// Read-only views of monitor binaries (see [`berth_runtime::sys::exe_protection`]): a
/// monitor run through one is protected against CVE-2019-5736 without re-executing
/// itself, ~2 ms per start. One per binary for the life of berthd.
static VIEWS: Mutex<Option<HashMap<PathBuf, OwnedFd>>> = Mutex::new(None);

/// The path to execute for `monitor_bin`: `/proc/self/fd/N` of its read-only view, or the
/// binary itself where the kernel cannot make one (the monitor then protects itself).
fn monitor_exe(monitor_bin: &Path) -> PathBuf {
    let mut views = VIEWS.lock().unwrap_or_else(|e| e.into_inner());
    let views = views.get_or_insert_with(HashMap::new);
    if !views.contains_key(monitor_bin) {
        match berth_runtime::sys::exe_protection::readonly_view(monitor_bin) {
            Ok(fd) => {
                views.insert(monitor_bin.to_owned(), fd);
            }
            Err(e) => {
                tracing::debug!(error = %e, "no read-only view of the monitor binary; it re-executes itself");
                return monitor_bin.to_owned();
            }
        }
    }
    match views.get(monitor_bin) {
        // The descriptor is close-on-exec, but the kernel opens the program before it
        // closes those, so the spawned process can execute it by this path.
        Some(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        None => monitor_bin.to_owned(),
    }
}

/// Start `berth-monitor` for `config` in `state_dir` and wait until it is ready.
pub fn spawn(monitor_bin: &Path, state_dir: &Path, config: &MonitorConfig) -> Result<Pending> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| EngineError::io(format!("creating {}", state_dir.display()), e))?;
    let _ = std::fs::remove_file(state_dir.join(EXIT_FILE));
    let data = serde_json::to_vec(config).map_err(|e| EngineError::internal(e.to_string()))?;
    crate::container::replace_file(&state_dir.join(protocol::CONFIG_FILE), &data)
        .map_err(|e| EngineError::io("writing the monitor's config", e))?;
    let state_abs = std::path::absolute(state_dir)
        .map_err(|e| EngineError::io(format!("resolving {}", state_dir.display()), e))?;
    // A monitor started ahead of need takes the job; otherwise one is started for it.
    let job = format!("{}\n", state_abs.display()).into_bytes();
    let (child, start_w, ready_r) = match take_standby(monitor_bin) {
        Some(s) if (&s.gate).write_all(&job).is_ok() => (s.child, s.gate, s.ready),
        other => {
            if let Some(dead) = other {
                reap(dead.child);
            }
            start_monitor(monitor_bin, state_dir.as_os_str())?
        }
    };
    // The next start gets a standby again; started off this thread, so that this start
    // does not wait for it.
    let bin = monitor_bin.to_owned();
    let _ = std::thread::Builder::new()
        .name("monitor-standby".into())
        .spawn(move || refill_standby(&bin));
    let mut ready = BufReader::new(ready_r);
    let pid = match read_ready(&mut ready) {
        Ok(Ready::Ready { pid }) => pid,
        Ok(Ready::Failed { message }) => {
            reap(child);
            return Err(start_error(message));
        }
        Ok(Ready::Started { .. }) => {
            reap(child);
            return Err(EngineError::internal(
                "container monitor reported started before it was told to start",
            ));
        }
        Err(e) => {
            reap(child);
            return Err(e);
        }
    };
    Ok(Pending {
        state_dir: state_dir.to_owned(),
        ready,
        start: Some(start_w),
        pid,
        child: Some(child),
    })
}

/// A monitor started with [`protocol::STANDBY_ARG`], waiting for a job.
struct Standby {
    bin: PathBuf,
    child: Child,
    /// Its stdin: the job line, then the start gate.
    gate: std::fs::File,
    /// Its stdout: the progress pipe.
    ready: std::fs::File,
}

static STANDBY: Mutex<Option<Standby>> = Mutex::new(None);

fn take_standby(monitor_bin: &Path) -> Option<Standby> {
    let mut slot = STANDBY.lock().unwrap_or_else(|e| e.into_inner());
    match slot.take() {
        Some(s) if s.bin == monitor_bin => Some(s),
        Some(other) => {
            *slot = Some(other);
            None
        }
        None => None,
    }
}

/// Make sure one standby monitor waits for the next start.
fn refill_standby(monitor_bin: &Path) {
    if STANDBY.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
        return;
    }
    let Ok((child, gate, ready)) = start_monitor(monitor_bin, protocol::STANDBY_ARG.as_ref())
    else {
        return;
    };
    let fresh = Standby {
        bin: monitor_bin.to_owned(),
        child,
        gate,
        ready,
    };
    let mut slot = STANDBY.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        *slot = Some(fresh);
    } else {
        // Another start filled it meanwhile: closing the gate makes this one exit.
        drop(slot);
        let Standby { child, gate, .. } = fresh;
        drop(gate);
        reap(child);
    }
}

/// Start `berth-monitor <arg>` with its two pipes; returns the process, the write end of
/// its stdin (gate) and the read end of its stdout (progress).
fn start_monitor(
    monitor_bin: &Path,
    arg: &std::ffi::OsStr,
) -> Result<(Child, std::fs::File, std::fs::File)> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::internal(format!("pipe: {e}")))?;
    let (start_r, start_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::internal(format!("pipe: {e}")))?;
    // The pipes go in as stdin and stdout: no `pre_exec`, so std starts the monitor with
    // posix_spawn (a vfork) instead of copying berthd's address space.
    let mut cmd = Command::new(monitor_exe(monitor_bin));
    cmd.arg0(monitor_bin)
        .arg(arg)
        .stdin(Stdio::from(start_r))
        .stdout(Stdio::from(ready_w))
        .stderr(Stdio::null());
    let child = cmd.spawn().map_err(|e| {
        EngineError::internal(format!(
            "starting the container monitor {}: {e}",
            monitor_bin.display()
        ))
    })?;
    // `cmd` holds our copies of the monitor's pipe ends: without them, a monitor that
    // dies before reporting gives EOF.
    drop(cmd);
    Ok((
        child,
        std::fs::File::from(start_w),
        std::fs::File::from(ready_r),
    ))
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

    /// The monitor's pid.
    pub fn monitor_pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Let the process start; returns its pid once it runs. From then on the monitor is
    /// reaped by [`wait_pid`].
    pub fn start(mut self) -> Result<i32> {
        if let Some(mut s) = self.start.take() {
            s.write_all(b"s")
                .map_err(|e| EngineError::io("starting the container", e))?;
        }
        let pid = match read_ready(&mut self.ready)? {
            Ready::Started { pid } => pid,
            Ready::Failed { message } => return Err(start_error(message)),
            Ready::Ready { .. } => {
                return Err(EngineError::internal(
                    "container monitor reported ready twice",
                ))
            }
        };
        // Running: `wait_pid` reaps it.
        self.child = None;
        Ok(pid)
    }
}

impl Drop for Pending {
    /// Not started (or failed to start): close the gate, which tells the monitor to
    /// abandon, and reap it.
    fn drop(&mut self) {
        self.start = None;
        if let Some(child) = self.child.take() {
            reap(child);
        }
    }
}

/// Reap a monitor that is about to exit (it failed or was told to abandon). One that
/// lingers past a second is left as a zombie rather than holding up berthd.
fn reap(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            _ => return,
        }
    }
    tracing::warn!(
        pid = child.id(),
        "a container monitor did not exit after failing"
    );
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
    // The pid must still be a monitor for this state dir (pids are reused): a monitor
    // works in its state directory (one started as a standby has no other trace of it).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_monitor = cmdline
        .split(|b| *b == 0)
        .next()
        .is_some_and(|argv0| argv0.ends_with(b"berth-monitor"));
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let dir = std::fs::canonicalize(state_dir).ok()?;
    (is_monitor && cwd == dir).then_some(pid)
}

/// Wait until monitor `pid` exits, and reap it if it is our child (monitors berthd started;
/// not those it re-attached to after a restart).
pub async fn wait_pid(pid: i32) {
    wait_exit(pid).await;
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}

async fn wait_exit(pid: i32) {
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
            // A child of ours stays in /proc as a zombie until reaped.
            while std::path::Path::new(&format!("/proc/{pid}")).exists() {
                if let Ok(
                    nix::sys::wait::WaitStatus::Exited(..)
                    | nix::sys::wait::WaitStatus::Signaled(..),
                ) = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                ) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
