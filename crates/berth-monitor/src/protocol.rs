//! berthd ⇄ berth-monitor: everything both sides must agree on.
//!
//! ## Start-up
//! berthd creates a state directory (`<exec-root>/containers/<id>` for a container,
//! `<exec-root>/execs/<exec-id>` for an exec), writes [`MonitorConfig`] into it as
//! [`CONFIG_FILE`] and runs `berth-monitor <state-dir>` with two pipes as stdio:
//! - stdout ([`READY_FD`]): the write end of a pipe on which the monitor reports progress
//!   as JSON lines ([`Ready`]);
//! - stdin ([`START_FD`]): the read end of a pipe on which berthd writes one byte to let
//!   the process start. EOF before that byte means "abandon": the monitor removes what it
//!   created and exits.
//!
//! Stdio rather than extra descriptors, so that berthd can start monitors with
//! `posix_spawn` (a vfork) instead of forking its whole address space. berthd runs the
//! monitor's binary through a detached read-only mount of it (CVE-2019-5736), which spares
//! the monitor re-executing itself. The monitor then leads its own session and is never
//! waited for by anyone but berthd, which reaps it when it ends; if berthd dies first the
//! monitor is reparented to init and carries on. It writes its pid to [`PID_FILE`],
//! creates the container (run) or prepares the exec, binds
//! [`ATTACH_SOCKET`], reports [`Ready::Ready`], waits for the start byte, starts the
//! process and reports [`Ready::Started`] (or [`Ready::Failed`] at any point, then exits).
//! berthd connects the attach sessions it already holds (`docker run` attaches before
//! `start`) between `Ready` and the start byte, so no output is lost.
//!
//! ## While it runs
//! The monitor copies the process's output to the log (run mode; Docker's json-file
//! format, rotated by size) and to every attached client. Signals, pause, stats and top
//! do not go through the monitor: berthd uses berth-runtime's state under `runtime_root`.
//!
//! ## Exit
//! When the process exits the monitor drains its output, writes [`ExitStatus`] to
//! [`EXIT_FILE`] atomically, sends every client an [`frame::EXIT`] frame, closes them and
//! (run mode) deletes the container from the runtime (cgroup and runtime state). Then it
//! exits. berthd notices through a pidfd on the monitor and reads the exit file; after a
//! berthd restart it finds the exit file, or a live monitor whose pid file matches.
//!
//! ## Attach socket
//! A client connects to [`ATTACH_SOCKET`] and sends one JSON line, [`AttachRequest`]. After
//! that both directions carry frames: an 8-byte header `[kind, 0, 0, 0, len (u32 BE)]` and
//! `len` bytes (the same header as Docker's multiplexed stream, so non-TTY output can be
//! passed through unchanged). Client → monitor: [`frame::STDIN`], [`frame::RESIZE`],
//! [`frame::CLOSE_STDIN`]. Monitor → client: [`frame::STDOUT`], [`frame::STDERR`] (a TTY's
//! output is all `STDOUT`), and finally [`frame::EXIT`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// In the state directory: the [`MonitorConfig`] berthd wrote.
pub const CONFIG_FILE: &str = "monitor.json";
/// In the state directory: the monitor's pid, decimal, written atomically.
pub const PID_FILE: &str = "monitor.pid";
/// In the state directory: the attach socket.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// In the state directory: the [`ExitStatus`], written atomically when the process ended.
pub const EXIT_FILE: &str = "exit.json";
/// In the state directory: the monitor's own diagnostics, one timestamped line each,
/// written only when something went wrong that no report or exit file could carry (the
/// progress pipe was gone, the log or a cleanup failed, a panic). Capped at 64 KiB.
pub const DIAGNOSTICS_FILE: &str = "monitor.log";

/// The argument of a monitor started ahead of need (`berth-monitor --standby`): it waits
/// for its state directory as one line (absolute path, `\n`) on the start gate, then goes
/// on as `berth-monitor <state-dir>` would. berthd keeps one standby ready, so that a start
/// does not wait for a process to be spawned and linked (~1.7 ms here). EOF instead of a
/// line: exit quietly.
pub const STANDBY_ARG: &str = "--standby";

/// The monitor's progress pipe (write end in the monitor): its stdout.
pub const READY_FD: i32 = 1;
/// The start gate (read end in the monitor): its stdin.
pub const START_FD: i32 = 0;

/// What the monitor runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Mode {
    /// Create and start container `container_id` from the OCI bundle `bundle`
    /// (`bundle/config.json`), as berth-runtime's `Runtime::create` + `Container::start`.
    Run { bundle: PathBuf },
    /// Run `process` (an OCI `Process`) inside the running container `container_id`.
    Exec {
        exec_id: String,
        process: Box<oci_spec::runtime::Process>,
    },
}

/// Written by berthd into the state directory before it starts the monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorConfig {
    #[serde(flatten)]
    pub mode: Mode,
    pub container_id: String,
    /// berth-runtime's state root (`Runtime::new(runtime_root)`).
    pub runtime_root: PathBuf,
    /// The json-file log (run mode only).
    pub log: Option<LogConfig>,
    /// Give the process a terminal (the spec's `process.terminal` must agree).
    pub tty: bool,
    /// Keep a stdin pipe (or the terminal's input) open for attach clients.
    pub open_stdin: bool,
    /// Close the process's stdin when the first client that attached stdin detaches or
    /// sends [`frame::CLOSE_STDIN`] (Docker's `StdinOnce`).
    pub stdin_once: bool,
    /// Initial terminal size (rows, columns).
    pub console_size: Option<(u16, u16)>,
    /// Run mode: create, start and delete the container with this external OCI runtime
    /// instead of berth-runtime (`docker run --runtime runc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_runtime: Option<OciRuntime>,
}

/// An external OCI runtime driven through its command line (`runc`, `crun`). It creates,
/// starts and deletes the container; berth-runtime records the container it made
/// (`Runtime::adopt`), so that berthd signals, pauses, measures and execs into it as into
/// its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciRuntime {
    /// The name containers ask for (`--runtime runc`).
    pub name: String,
    /// Its executable.
    pub path: PathBuf,
    /// Its state root (`--root`).
    pub root: PathBuf,
}

/// Docker's json-file log driver options.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Rotate when the file would exceed this many bytes; 0 = never.
    pub max_size: u64,
    /// Files kept, the current one included (`path`, `path.1`, … `path.<max_files-1>`);
    /// at least 1.
    pub max_files: u32,
}

/// Progress reports on [`READY_FD`], one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Ready {
    /// The attach socket is listening; in run mode the container is created (its init
    /// waits to be started) and `pid` is init's pid.
    Ready { pid: Option<i32> },
    /// The process runs (it has exec'd its program).
    Started { pid: i32 },
    /// Nothing runs; everything the monitor made is removed. `message` is the runtime's
    /// error (e.g. `exec: "foo": executable file not found in $PATH`).
    Failed { message: String },
}

/// The first line a client sends on the attach socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// How the process ended, in [`EXIT_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + signal number when it was killed by a signal.
    pub exit_code: i32,
    /// The container's cgroup recorded an OOM kill while it ran.
    pub oom_killed: bool,
    /// RFC 3339 with nanoseconds.
    pub started_at: String,
    pub finished_at: String,
    /// Set when the monitor itself failed after start (the exit code is then 255).
    pub error: Option<String>,
}

/// Attach-socket frames.
pub mod frame {
    /// Client → monitor: bytes for the process's stdin.
    pub const STDIN: u8 = 0;
    /// Monitor → client: process output.
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    /// Client → monitor: new terminal size, payload `rows (u16 BE), cols (u16 BE)`.
    pub const RESIZE: u8 = 4;
    /// Client → monitor: this client's stdin ended (empty payload).
    pub const CLOSE_STDIN: u8 = 5;
    /// Monitor → client: the process exited, payload the exit code (i32 BE); the monitor
    /// closes the connection after it.
    pub const EXIT: u8 = 6;

    /// Largest payload either side sends or accepts in one frame.
    pub const MAX_PAYLOAD: u32 = 1 << 20;

    /// The 8-byte header of a frame.
    pub fn header(kind: u8, len: u32) -> [u8; 8] {
        let l = len.to_be_bytes();
        [kind, 0, 0, 0, l[0], l[1], l[2], l[3]]
    }

    /// `(kind, payload length)` of a header.
    pub fn parse(h: &[u8; 8]) -> (u8, u32) {
        (h[0], u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
    }

    /// A whole frame.
    pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + payload.len());
        v.extend_from_slice(&header(kind, payload.len() as u32));
        v.extend_from_slice(payload);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = frame::encode(frame::STDERR, b"oops\n");
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 0, 0, 5]);
        let h: [u8; 8] = f[..8].try_into().unwrap();
        assert_eq!(frame::parse(&h), (frame::STDERR, 5));
    }

    #[test]
    fn ready_lines_are_tagged() {
        let s = serde_json::to_string(&Ready::Started { pid: 7 }).unwrap();
        assert_eq!(s, r#"{"event":"started","pid":7}"#);
        let r: Ready = serde_json::from_str(r#"{"event":"failed","message":"x"}"#).unwrap();
        assert_eq!(
            r,
            Ready::Failed {
                message: "x".into()
            }
        );
    }

    #[test]
    fn config_is_flat() {
        let c = MonitorConfig {
            mode: Mode::Run {
                bundle: "/b".into(),
            },
            container_id: "c1".into(),
            runtime_root: "/run/r".into(),
            log: None,
            tty: false,
            open_stdin: false,
            stdin_once: false,
            console_size: None,
            oci_runtime: None,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["mode"], "run");
        assert_eq!(v["bundle"], "/b");
        let back: MonitorConfig = serde_json::from_value(v).unwrap();
        assert_eq!(back.container_id, "c1");
    }
}
