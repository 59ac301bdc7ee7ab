//! `berth-monitor <state-dir>`: the one process that stays with a container (or an exec)
//! for its whole life, so that the container does not depend on berthd.
//!
//! It creates the container with berth-runtime (no runtime binary is exec'd), holds the
//! process's stdio (pipes or a terminal), writes Docker's json-file log, serves attach
//! clients on a Unix socket, reaps the process and records how it ended. The contract with
//! berthd is [`berth_monitor::protocol`]; this binary implements the monitor's side.
//!
//! There is one of these per running container, so it is kept small: a single thread, one
//! `poll` loop, no async runtime, buffers that are only as large as the traffic of the
//! moment. Measured on an idle monitor of a `sleep` container (release build, 2026-11-23):
//! VmRSS 2.6 MB, of which 450 kB are its own (RssAnon: heap, stack, relocated data) and the
//! rest pages of this binary and of libc that every monitor shares (proportional set size
//! with ten monitors: 660 kB each). Even coreutils' `sleep` shows 1.7 MB VmRSS here.

#![forbid(unsafe_code)]

mod attach;
mod daemon;
mod jsonlog;
mod launch;
mod oci;
mod report;
mod serve;
mod stdin;

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_monitor::protocol::{
    ExitStatus, Mode, MonitorConfig, Ready, ATTACH_SOCKET, CONFIG_FILE, EXIT_FILE, PID_FILE,
    STANDBY_ARG,
};
use berth_runtime::Runtime;
use berth_types::ContainerId;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::daemon::diag;
use crate::report::Reporter;
use crate::serve::Monitor;

/// After the process exited, how long its output may take to drain (a process it left
/// behind may hold the pipes open forever).
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// A process still running after this is a long run: the monitor then drops its mappings
/// of the start-up code (see `berth_runtime::sys::memory`). Short runs never pay for it.
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// How long clients get to take their last output and `EXIT` before they are closed.
const GOODBYE_LIMIT: Duration = Duration::from_secs(2);

fn main() {
    // berthd runs us through a descriptor (`/proc/self/fd/N`), after which the kernel names
    // the process "N": `ps` and `pgrep` should see `berth-monitor`.
    let _ = nix::sys::prctl::set_name(c"berth-monitor");
    let mut args = std::env::args_os().skip(1);
    let (Some(arg), None) = (args.next(), args.next()) else {
        eprintln!(
            "usage: berth-monitor <state-dir> | --standby  (berthd starts it; see berth_monitor::protocol)"
        );
        std::process::exit(2);
    };
    // CVE-2019-5736: the container's init runs this binary until it execs the container's
    // program, so it must be a read-only view of it. berthd runs us through one; started
    // any other way this re-executes us (same arguments; stdin and stdout, berthd's pipes,
    // survive).
    let protected = berth_runtime::sys::exe_protection::ensure_protected();
    let (mut reporter, mut gate) =
        match report::Reporter::inherit().and_then(|r| Ok((r, report::start_gate()?))) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("berth-monitor: {e}");
                std::process::exit(2);
            }
        };
    let state_dir = if arg == STANDBY_ARG {
        // Started ahead of need: the state directory comes as the first line on the gate.
        match report::read_job(&mut gate) {
            Ok(Some(dir)) => dir,
            // berthd went away or discarded us.
            Ok(None) => std::process::exit(0),
            Err(e) => std::process::exit(fail(&mut reporter, format!("reading the job: {e}"))),
        }
    } else {
        PathBuf::from(arg)
    };
    let code = match protected {
        Ok(()) => run(&state_dir, &mut reporter, gate),
        Err(e) => fail(
            &mut reporter,
            format!("cannot protect the monitor's binary against CVE-2019-5736: {e}"),
        ),
    };
    std::process::exit(code);
}

/// Report `Failed` (the caller has removed what it made) and give the exit code.
fn fail(reporter: &mut Reporter, message: String) -> i32 {
    reporter.send(&Ready::Failed { message });
    1
}

/// Read `monitor.json` and make its paths absolute (the monitor works from its state
/// directory).
fn load_config(state_dir: &Path) -> Result<MonitorConfig, String> {
    let path = state_dir.join(CONFIG_FILE);
    let data = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut cfg: MonitorConfig =
        serde_json::from_slice(&data).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| format!("{}: {e}", p.display()));
    cfg.runtime_root = abs(&cfg.runtime_root)?;
    if let Mode::Run { bundle } = &mut cfg.mode {
        *bundle = abs(bundle)?;
    }
    if let Some(log) = &mut cfg.log {
        log.path = abs(&log.path)?;
    }
    Ok(cfg)
}

fn run(state_dir: &Path, reporter: &mut Reporter, gate: File) -> i32 {
    let state_dir: PathBuf = match std::path::absolute(state_dir) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                reporter,
                format!("state directory {}: {e}", state_dir.display()),
            )
        }
    };
    let cfg = match load_config(&state_dir) {
        Ok(c) => c,
        Err(msg) => return fail(reporter, msg),
    };
    if let Err(e) = daemon::detach(&state_dir) {
        return fail(
            reporter,
            format!(
                "{}: starting the monitor in the background: {e}",
                state_dir.display()
            ),
        );
    }
    // From here on the working directory is the state directory.
    let pid = std::process::id().to_string();
    if let Err(e) = daemon::write_atomic(Path::new(PID_FILE), pid.as_bytes()) {
        return fail(
            reporter,
            format!("writing {}: {e}", state_dir.join(PID_FILE).display()),
        );
    }
    let id: ContainerId = match cfg.container_id.parse() {
        Ok(id) => id,
        Err(e) => return failed_setup(reporter, format!("{CONFIG_FILE}: {e}")),
    };
    let job = Job {
        runtime: Runtime::new(&cfg.runtime_root),
        cfg,
        id,
    };

    let (prepared, mut monitor) = match job.set_up() {
        Ok(x) => x,
        Err(msg) => return failed_setup(reporter, msg),
    };
    reporter.send(&Ready::Ready {
        pid: prepared.ready_pid,
    });
    // The start gate; attach clients are served meanwhile (berthd connects them now).
    match wait_for_start_byte(&mut monitor, &gate) {
        Ok(true) => {}
        Ok(false) => {
            prepared.abandon(&job.runtime, &job.id);
            remove_own_files();
            return 0;
        }
        Err(e) => {
            prepared.abandon(&job.runtime, &job.id);
            let msg = format!("container {}: reading the start gate: {e}", job.id);
            return failed_setup(reporter, msg);
        }
    }
    drop(gate);
    let oom_before = launch::oom_kills(&job.runtime, &job.id);
    let (running, log) = match job.start(prepared) {
        Ok(x) => x,
        Err(msg) => return failed_setup(reporter, msg),
    };
    let started_at = berth_types::time::now_rfc3339_nano();
    reporter.send(&Ready::Started { pid: running.pid });
    reporter.close();

    let (exit_code, error) = match supervise(&mut monitor, running, log) {
        Ok(code) => (code, None),
        Err((pid, e)) => {
            // The monitor cannot do its job any more: do not leave the process unwatched.
            let message = format!("container {}: monitor failed: {e}", job.id);
            diag(&message);
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
            (255, Some(message))
        }
    };
    reap_strays();
    let status = ExitStatus {
        exit_code,
        oom_killed: launch::oom_kills(&job.runtime, &job.id) > oom_before,
        started_at,
        finished_at: berth_types::time::now_rfc3339_nano(),
        error,
    };
    job.finish(monitor, &status);
    0
}

/// The container (or exec) one monitor looks after.
struct Job {
    cfg: MonitorConfig,
    id: ContainerId,
    runtime: Runtime,
}

impl Job {
    fn is_run(&self) -> bool {
        matches!(self.cfg.mode, Mode::Run { .. })
    }

    /// Everything before `Ready`: the container created (or the exec checked) and the
    /// attach socket listening.
    fn set_up(&self) -> Result<(launch::Prepared, Monitor), String> {
        let prepared = launch::prepare(&self.cfg, &self.runtime, &self.id)?;
        let monitor = bind_attach_socket()
            .and_then(|l| Monitor::new(l, self.cfg.open_stdin, self.cfg.stdin_once));
        match monitor {
            Ok(m) => Ok((prepared, m)),
            Err(e) => {
                prepared.abandon(&self.runtime, &self.id);
                Err(format!(
                    "container {}: attach socket {ATTACH_SOCKET}: {e}",
                    self.id
                ))
            }
        }
    }

    /// Open the log (run mode) and start the process. On failure nothing the monitor made
    /// is left: no container, no new log file.
    fn start(
        &self,
        prepared: launch::Prepared,
    ) -> Result<(launch::Running, Option<jsonlog::JsonLog>), String> {
        let log_cfg = self.cfg.log.as_ref().filter(|_| self.is_run());
        let log_created = log_cfg.is_some_and(|l| !l.path.exists());
        let log = match log_cfg.map(jsonlog::JsonLog::open).transpose() {
            Ok(log) => log,
            Err(e) => {
                prepared.abandon(&self.runtime, &self.id);
                let path = log_cfg
                    .map(|l| l.path.display().to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "container {}: opening the log {path}: {e}",
                    self.id
                ));
            }
        };
        let init_pid = prepared.ready_pid;
        match prepared.start() {
            Ok(running) => Ok((running, log)),
            Err(msg) => {
                if let (true, Some(pid)) = (self.is_run(), init_pid) {
                    launch::discard_container(
                        &self.runtime,
                        self.cfg.oci_runtime.as_ref(),
                        &self.id,
                        pid,
                    );
                }
                if let (true, Some(l)) = (log_created, log_cfg) {
                    drop(log);
                    let _ = std::fs::remove_file(&l.path);
                }
                Err(msg)
            }
        }
    }

    /// The process has ended: record how, tell the clients, remove the container (run
    /// mode) and the socket.
    fn finish(&self, mut monitor: Monitor, status: &ExitStatus) {
        let data = serde_json::to_vec(status).unwrap_or_default();
        if let Err(e) = daemon::write_atomic(Path::new(EXIT_FILE), &data) {
            diag(&format!("container {}: writing {EXIT_FILE}: {e}", self.id));
        }
        if let Err(e) = monitor.finish(status.exit_code, GOODBYE_LIMIT) {
            diag(&format!(
                "container {}: closing attach clients: {e}",
                self.id
            ));
        }
        drop(monitor);
        daemon::remove(ATTACH_SOCKET);
        if self.is_run() {
            launch::delete_container(&self.runtime, self.cfg.oci_runtime.as_ref(), &self.id);
        }
        reap_strays();
    }
}

/// A failure before the process started: report it and remove what the monitor made
/// (the caller has removed the container already).
fn failed_setup(reporter: &mut Reporter, message: String) -> i32 {
    remove_own_files();
    fail(reporter, message)
}

fn remove_own_files() {
    daemon::remove(ATTACH_SOCKET);
    daemon::remove(PID_FILE);
}

/// Bind the attach socket, owner-only from the start (berthd runs as root).
fn bind_attach_socket() -> io::Result<UnixListener> {
    // A socket left by an earlier monitor of this directory would make bind fail.
    let _ = std::fs::remove_file(ATTACH_SOCKET);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(ATTACH_SOCKET);
    nix::sys::stat::umask(old);
    listener
}

/// Serve clients until the start gate speaks: `true` for the start byte, `false` for EOF
/// (berthd abandoned the container, or died).
fn wait_for_start_byte(monitor: &mut Monitor, mut gate: &File) -> io::Result<bool> {
    loop {
        monitor.wait_for(gate.as_fd())?;
        let mut byte = [0u8; 1];
        match gate.read(&mut byte) {
            Ok(1) => {
                monitor.settle()?;
                return Ok(true);
            }
            Ok(_) => return Ok(false),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Serve the running process until it exits and its output is drained; its exit code
/// (128 + signal when killed). On error, the pid to clean up.
fn supervise(
    monitor: &mut Monitor,
    running: launch::Running,
    log: Option<jsonlog::JsonLog>,
) -> Result<i32, (i32, io::Error)> {
    let pid = running.pid;
    let pidfd = berth_runtime::sys::fd::pidfd_open(pid).map_err(|e| (pid, e))?;
    monitor
        .connect_process(running.io, log)
        .map_err(|e| (pid, e))?;
    let mut idle_after = Some(IDLE_AFTER);
    let code = loop {
        match idle_after.take() {
            Some(limit) => {
                if !monitor
                    .wait_within(pidfd.as_fd(), limit)
                    .map_err(|e| (pid, e))?
                {
                    // Settled into a long run: give back what start-up used.
                    let _ = berth_runtime::sys::memory::release_idle_pages();
                    continue;
                }
            }
            None => monitor.wait_for(pidfd.as_fd()).map_err(|e| (pid, e))?,
        }
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) => {}
            Err(e) => {
                return Err((
                    pid,
                    io::Error::other(format!("waiting for process {pid}: {e}")),
                ))
            }
        }
    };
    monitor.drain(DRAIN_LIMIT).map_err(|e| (pid, e))?;
    Ok(code)
}

/// Reap any other child (nothing else should be ours, but no zombie may stay).
fn reap_strays() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::launch::error_chain;

    #[test]
    fn error_chain_joins_causes() {
        let e = std::io::Error::other("inner");
        let outer = berth_runtime::RuntimeError::Io {
            context: "reading x".into(),
            source: e,
        };
        assert_eq!(error_chain(&outer), "reading x: inner");
    }
}
