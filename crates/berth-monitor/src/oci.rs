//! Driving an external OCI runtime (runc, crun) through its command line, for containers
//! created with `--runtime runc|crun`.
//!
//! The runtime's `create` makes the container with init waiting, `start` lets it run and
//! `delete --force` removes it: the same three steps containerd's shim takes. The monitor
//! is a child subreaper, so init, whose parent (the runtime's `create`) exits, becomes its
//! child and it reaps it as it reaps berth-runtime's. Without a terminal the runtime's
//! stdio are the process's pipes, which init inherits; with one the runtime sends the
//! terminal's master over `--console-socket`. The runtime's own messages go to
//! `runtime.log` in the state directory (JSON lines): the last error there is what a
//! failure reports.
//!
//! Once created, the container is recorded with berth-runtime (`Runtime::adopt`), so
//! berthd's signals, pause, stats, top and exec work the same for every container.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_monitor::protocol::OciRuntime;
use berth_runtime::Runtime;
use berth_types::ContainerId;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::Spec;

/// The runtime's log, in the state directory (the monitor's working directory).
const RUNTIME_LOG: &str = "runtime.log";
/// Where the runtime's `create` connects to hand over a terminal.
const CONSOLE_SOCKET: &str = "console.sock";
/// Init's pid, written by the runtime's `create`.
const PID_FILE: &str = "init.pid";
/// How long `create` may take to send the terminal.
const CONSOLE_LIMIT: Duration = Duration::from_secs(60);

/// A container the runtime created; init waits for `start`.
pub struct Created {
    pub pid: i32,
    /// The terminal's master (with a terminal).
    pub terminal: Option<OwnedFd>,
}

fn command(rt: &OciRuntime) -> Command {
    let mut cmd = Command::new(&rt.path);
    cmd.arg("--root")
        .arg(&rt.root)
        .arg("--log")
        .arg(std::path::absolute(RUNTIME_LOG).unwrap_or_else(|_| RUNTIME_LOG.into()))
        .arg("--log-format")
        .arg("json");
    cmd
}

/// Run one runtime command to completion; its error in the runtime's words on failure.
fn run(rt: &OciRuntime, mut cmd: Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("running {} {what}: {e}", rt.path.display()))?;
    if status.success() {
        return Ok(());
    }
    Err(failure(rt, what, status))
}

/// "runc create failed (exit status: 1): <the runtime's last logged error>".
fn failure(rt: &OciRuntime, what: &str, status: std::process::ExitStatus) -> String {
    let prefix = format!("{} {what} failed", rt.name);
    let why = last_error().unwrap_or_else(|| "see runtime.log in the state directory".into());
    // runc logs "runc create failed: <why>" itself.
    let why = why
        .strip_prefix(&format!("{prefix}: "))
        .map(str::to_owned)
        .unwrap_or(why);
    format!("{prefix} ({status}): {why}")
}

/// The last error the runtime logged.
fn last_error() -> Option<String> {
    let log = std::fs::read_to_string(RUNTIME_LOG).ok()?;
    log.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["level"] == "error")
            .then(|| v["msg"].as_str().map(str::to_owned))
            .flatten()
    })
}

/// `create`: the container made, its init waiting for `start`, recorded with berth-runtime.
pub fn create(
    rt: &OciRuntime,
    runtime: &Runtime,
    id: &ContainerId,
    bundle: &Path,
    spec: Spec,
    stdio: Option<berth_runtime::Stdio>,
) -> Result<Created, String> {
    // Init's parent, the runtime's `create`, exits: init must become our child.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("container {id}: becoming a subreaper: {e}"))?;
    let cgroups_path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    let result = create_adopted(rt, runtime, id, bundle, spec, stdio);
    if result.is_err() {
        clean_failed_create(rt, id, cgroups_path.as_deref());
    }
    result
}

/// Remove what a failed `create` may have left: the runtime's state, and the cgroup (crun
/// 1.8 leaves it behind when a resource write fails).
fn clean_failed_create(rt: &OciRuntime, id: &ContainerId, cgroups_path: Option<&Path>) {
    let _ = runtime_delete(rt, id);
    if let Some(path) = cgroups_path {
        remove_cgroup_dirs(id, path);
    }
}

/// Remove the container's (empty) cgroup directory from every hierarchy mounted under
/// `/sys/fs/cgroup`: the runtimes also populate named ones such as `systemd`, which
/// berth-runtime's cgroup manager does not know.
fn remove_cgroup_dirs(id: &ContainerId, path: &Path) {
    let root = Path::new(berth_runtime::cgroups::DEFAULT_MOUNT_ROOT);
    let rel = path.strip_prefix("/").unwrap_or(path);
    let mut dirs = vec![root.join(rel)];
    if let Ok(entries) = std::fs::read_dir(root) {
        dirs.extend(entries.flatten().map(|e| e.path().join(rel)));
    }
    for dir in dirs {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => crate::daemon::diag(&format!(
                "container {id}: removing the cgroup {} after a failed create: {e}",
                dir.display()
            )),
        }
    }
}

fn create_adopted(
    rt: &OciRuntime,
    runtime: &Runtime,
    id: &ContainerId,
    bundle: &Path,
    spec: Spec,
    stdio: Option<berth_runtime::Stdio>,
) -> Result<Created, String> {
    let _ = std::fs::remove_file(PID_FILE);
    let mut cmd = command(rt);
    cmd.arg("create")
        .arg("--bundle")
        .arg(bundle)
        .arg("--pid-file")
        .arg(std::path::absolute(PID_FILE).unwrap_or_else(|_| PID_FILE.into()));
    let terminal = match stdio {
        Some(p) => {
            cmd.stdin(Stdio::from(p.stdin))
                .stdout(Stdio::from(p.stdout))
                .stderr(Stdio::from(p.stderr));
            cmd.arg(id.as_str());
            run(rt, cmd, "create")?;
            None
        }
        None => {
            let _ = std::fs::remove_file(CONSOLE_SOCKET);
            let listener = UnixListener::bind(CONSOLE_SOCKET)
                .map_err(|e| format!("container {id}: console socket: {e}"))?;
            let socket =
                std::path::absolute(CONSOLE_SOCKET).unwrap_or_else(|_| CONSOLE_SOCKET.into());
            cmd.arg("--console-socket")
                .arg(socket)
                .arg(id.as_str())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let master = receive_terminal(rt, cmd, &listener);
            let _ = std::fs::remove_file(CONSOLE_SOCKET);
            Some(master.map_err(|e| format!("container {id}: {e}"))?)
        }
    };
    let pid: i32 = std::fs::read_to_string(PID_FILE)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("container {id}: {} create wrote no pid file", rt.name))?;
    let _ = std::fs::remove_file(PID_FILE);
    if let Err(e) = runtime.adopt(id, pid, bundle, spec) {
        return Err(format!(
            "container {id}: recording the container {} created: {e}",
            rt.name
        ));
    }
    Ok(Created { pid, terminal })
}

/// Run `create` and take the terminal it sends over the console socket.
fn receive_terminal(
    rt: &OciRuntime,
    mut cmd: Command,
    listener: &UnixListener,
) -> Result<OwnedFd, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running {} create: {e}", rt.path.display()))?;
    let deadline = Instant::now() + CONSOLE_LIMIT;
    let mut master: Result<Option<OwnedFd>, String> = Ok(None);
    while matches!(master, Ok(None)) && Instant::now() < deadline {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) > 0 {
            master = listener
                .accept()
                .map_err(|e| format!("console socket: {e}"))
                .and_then(|(conn, _)| {
                    berth_runtime::sys::fd::recv_fd(conn.as_fd())
                        .map_err(|e| format!("receiving the terminal from {}: {e}", rt.name))
                })
                .map(Some);
        } else if let Ok(Some(_)) = child.try_wait() {
            break;
        }
    }
    // Whatever happened, the runtime's `create` is not left behind: a failed or late one
    // is stopped before it is waited for.
    if !matches!(master, Ok(Some(_))) {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {} create: {e}", rt.name))?;
    let master = master?;
    if !status.success() {
        return Err(failure(rt, "create", status));
    }
    master.ok_or_else(|| format!("{} create sent no terminal", rt.name))
}

/// `start`: init runs the container's program.
pub fn start(rt: &OciRuntime, id: &ContainerId) -> Result<(), String> {
    let mut cmd = command(rt);
    cmd.arg("start").arg(id.as_str()).stdin(Stdio::null());
    run(rt, cmd, "start").map_err(|e| format!("container {id}: {e}"))
}

/// `delete --force` (which kills what still runs) and forget berth-runtime's record.
/// Failures are noted in monitor.log: nothing else can be done about them here.
pub fn delete(rt: &OciRuntime, runtime: &Runtime, id: &ContainerId) {
    if let Err(e) = runtime_delete(rt, id) {
        crate::daemon::diag(&format!("container {id}: {e}"));
    }
    if let Ok(c) = runtime.load(id) {
        if let Err(e) = c.forget() {
            crate::daemon::diag(&format!("container {id}: {e}"));
        }
    }
}

/// The runtime's `delete --force`: it kills what still runs and removes its state.
fn runtime_delete(rt: &OciRuntime, id: &ContainerId) -> Result<(), String> {
    let mut cmd = command(rt);
    cmd.arg("delete")
        .arg("--force")
        .arg(id.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(rt, cmd, "delete")
}
