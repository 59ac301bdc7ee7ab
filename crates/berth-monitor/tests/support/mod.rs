//! Test harness: the test plays berthd. It builds a busybox bundle, writes `monitor.json`,
//! starts the real `berth-monitor` binary with the progress pipe on fd 3 and the start
//! gate on fd 4, and talks to it through the attach socket, as berthd does. Everything a
//! test makes (monitor, container, cgroups, temp dirs) is removed on drop.

#![allow(dead_code)] // not every test uses every helper

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_monitor::protocol::{
    frame, AttachRequest, ExitStatus, LogConfig, Mode, MonitorConfig, Ready, ATTACH_SOCKET,
    DIAGNOSTICS_FILE, EXIT_FILE, PID_FILE,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

/// How long any single wait of a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create real containers and must run as root"
    );
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A busybox root filesystem, built once under the target directory (keyed by the script's
/// content) and renamed into place so concurrent builders never see half of it.
fn base_rootfs() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let script = repo_root().join("scripts/make-busybox-rootfs.sh");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&script).unwrap().hash(&mut h);
        let tmpdir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmpdir.join(format!("busybox-plain-rootfs-{:016x}", h.finish()));
        if dir.join("bin/busybox").exists() {
            return dir;
        }
        let building = tmpdir.join(format!("busybox-plain-building-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&building);
        let status = Command::new(&script)
            .arg(&building)
            .stderr(Stdio::null())
            .status()
            .expect("running make-busybox-rootfs.sh");
        assert!(status.success(), "make-busybox-rootfs.sh failed");
        if std::fs::rename(&building, &dir).is_err() {
            // Another test binary finished first; use its copy.
            let _ = std::fs::remove_dir_all(&building);
        }
        dir
    })
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A container's bundle (a private copy of the busybox rootfs and a spec) and a runtime
/// state root of its own.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub runtime_root: tempfile::TempDir,
    pub id: String,
    pub spec: Value,
}

impl Bundle {
    /// A bundle whose process runs `args`, with a spec like `runc spec` makes.
    pub fn new(args: &[&str]) -> Bundle {
        require_root();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("bm-{}-{n}", std::process::id());
        let dir = tempdir("berth-mon-bundle-");
        let runtime_root = tempdir("berth-mon-runtime-");
        let out = Command::new("cp")
            .arg("-a")
            .arg(base_rootfs())
            .arg(dir.path().join("rootfs"))
            .output()
            .expect("cp");
        assert!(
            out.status.success(),
            "copying the rootfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let spec = default_spec(args, &id);
        Bundle {
            dir,
            runtime_root,
            id,
            spec,
        }
    }

    /// Give the process a terminal.
    pub fn with_terminal(mut self) -> Bundle {
        self.spec["process"]["terminal"] = json!(true);
        self
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn write_spec(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    /// `monitor.json` for running this bundle.
    pub fn run_config(&self) -> MonitorConfig {
        self.write_spec();
        MonitorConfig {
            mode: Mode::Run {
                bundle: self.dir.path().to_owned(),
            },
            container_id: self.id.clone(),
            runtime_root: self.runtime_root.path().to_owned(),
            log: None,
            tty: self.spec["process"]["terminal"] == json!(true),
            open_stdin: false,
            stdin_once: false,
            console_size: None,
            oci_runtime: None,
        }
    }

    /// `monitor.json` for running `args` inside this (running) container.
    pub fn exec_config(&self, exec_id: &str, args: &[&str]) -> MonitorConfig {
        let mut process: Value = self.spec["process"].clone();
        process["args"] = json!(args);
        process["terminal"] = json!(false);
        MonitorConfig {
            mode: Mode::Exec {
                exec_id: exec_id.to_owned(),
                process: serde_json::from_value(process).unwrap(),
            },
            container_id: self.id.clone(),
            runtime_root: self.runtime_root.path().to_owned(),
            log: None,
            tty: false,
            open_stdin: false,
            stdin_once: false,
            console_size: None,
            oci_runtime: None,
        }
    }

    pub fn runtime(&self) -> berth_runtime::Runtime {
        berth_runtime::Runtime::new(self.runtime_root.path())
    }

    pub fn container_id(&self) -> berth_types::ContainerId {
        self.id.parse().unwrap()
    }

    fn cgroups_path(&self) -> String {
        self.spec["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Where this container's cgroup would live, on any hierarchy.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let rel = self.cgroups_path();
        let rel = rel.trim_start_matches('/');
        let mut out: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(rel))
            .collect();
        out.push(Path::new("/sys/fs/cgroup").join(rel));
        out
    }

    /// Nothing of the container may remain: runtime state, cgroups, processes, mounts.
    pub fn assert_no_leftovers(&self) {
        assert!(
            !self.runtime_root.path().join(&self.id).exists(),
            "runtime state of {} left behind",
            self.id
        );
        for leftover in self.cgroup_dirs() {
            assert!(
                !leftover.exists(),
                "cgroup {} left behind",
                leftover.display()
            );
        }
        let bundle = self.dir.path().to_string_lossy().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(&bundle),
            "a mount under {bundle} is left behind"
        );
        for p in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(root) = std::fs::read_link(p.path().join("root")) {
                assert!(
                    !root.to_string_lossy().starts_with(&bundle),
                    "process {} still runs in the container",
                    p.file_name().to_string_lossy()
                );
            }
        }
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Ok(c) = self.runtime().load(&self.container_id()) {
            let init = Pid::from_raw(c.pid());
            let _ = c.delete(true);
            // Should its monitor have died, init was reparented to us (a subreaper).
            let _ = waitpid(init, Some(WaitPidFlag::WNOHANG));
        }
        // Remove cgroups (leaf first) a failed test may have left, and their parent.
        let mut dirs = self.cgroup_dirs();
        let top = self
            .cgroups_path()
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        for entry in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            dirs.push(entry.path().join(&top));
        }
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

/// A spec like `runc spec` writes, adjusted for tests.
pub fn default_spec(args: &[&str], id: &str) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": docker_caps(), "effective": docker_caps(), "permitted": docker_caps()
            },
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "berth-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "cgroupsPath": format!("/berth-test-{id}/c"),
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Docker's default capabilities, as spec strings.
pub fn docker_caps() -> Vec<String> {
    berth_runtime::capabilities::DOCKER_DEFAULT
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A json-file log in `dir`.
pub fn log_config(dir: &Path, max_size: u64, max_files: u32) -> LogConfig {
    LogConfig {
        path: dir.join("container.log"),
        max_size,
        max_files,
    }
}

/// A running `berth-monitor`, driven as berthd drives it.
pub struct Monitor {
    pub state_dir: tempfile::TempDir,
    /// The real (forked) monitor's pid, from its pid file.
    pub pid: i32,
    ready: Option<File>,
    ready_buf: Vec<u8>,
    start: Option<File>,
    reaped: Option<i32>,
}

impl Monitor {
    /// Write `cfg` into a new state directory and start the monitor on it.
    pub fn spawn(cfg: &MonitorConfig) -> Monitor {
        Monitor::launch(cfg, false, false)
    }

    /// The same through a standby monitor: started with `--standby`, then given the state
    /// directory as a line on its gate, as berthd does.
    pub fn spawn_standby(cfg: &MonitorConfig) -> Monitor {
        Monitor::launch(cfg, true, true)
    }

    /// A standby monitor that is never given a job.
    pub fn spawn_standby_without_job(cfg: &MonitorConfig) -> Monitor {
        Monitor::launch(cfg, true, false)
    }

    fn launch(cfg: &MonitorConfig, standby: bool, job: bool) -> Monitor {
        require_root();
        // Should a monitor die, its container's init is reparented to us (a subreaper), so
        // we can reap it and no zombie stays behind.
        static SUBREAPER: OnceLock<()> = OnceLock::new();
        SUBREAPER.get_or_init(|| nix::sys::prctl::set_child_subreaper(true).unwrap());

        let state_dir = tempdir("berth-mon-state-");
        std::fs::write(
            state_dir.path().join("monitor.json"),
            serde_json::to_vec(cfg).unwrap(),
        )
        .unwrap();
        let flags = nix::fcntl::OFlag::O_CLOEXEC;
        let (ready_r, ready_w) = nix::unistd::pipe2(flags).unwrap();
        let (start_r, start_w) = nix::unistd::pipe2(flags).unwrap();
        // As berthd does: the start gate is stdin, the progress pipe stdout. Run from its
        // plain path, the monitor re-executes itself through a read-only view.
        let arg = if standby {
            std::ffi::OsString::from(berth_monitor::protocol::STANDBY_ARG)
        } else {
            state_dir.path().as_os_str().to_owned()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_berth-monitor"))
            .arg(arg)
            .stdin(Stdio::from(start_r))
            .stdout(Stdio::from(ready_w))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting berth-monitor");
        // The monitor is our child; `wait` and `Drop` reap it with waitpid.
        let pid = child.id() as i32;
        std::mem::forget(child);
        let mut start = File::from(start_w);
        if standby && job {
            // Before the job the standby has not looked at any state directory.
            std::thread::sleep(Duration::from_millis(50));
            assert!(!state_dir.path().join(PID_FILE).exists());
            writeln!(start, "{}", state_dir.path().display()).unwrap();
        }
        Monitor {
            pid,
            state_dir,
            ready: Some(File::from(ready_r)),
            ready_buf: Vec::new(),
            start: Some(start),
            reaped: None,
        }
    }

    /// The next progress report, or `None` at EOF.
    pub fn next_report(&mut self) -> Option<Ready> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(nl) = self.ready_buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.ready_buf.drain(..=nl).collect();
                return Some(serde_json::from_slice(&line).expect("a report line"));
            }
            let f = self.ready.as_mut().expect("the progress pipe was dropped");
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no report from the monitor within {PATIENCE:?}"
            );
            let mut fds = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            let _ = poll(&mut fds, PollTimeout::try_from(ms).unwrap());
            let mut buf = [0u8; 4096];
            match f.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.ready_buf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("reading the progress pipe: {e}"),
            }
        }
    }

    /// Expect `Ready`; returns its pid.
    #[track_caller]
    pub fn expect_ready(&mut self) -> Option<i32> {
        match self.next_report() {
            Some(Ready::Ready { pid }) => pid,
            other => panic!("expected ready, got {other:?}"),
        }
    }

    /// Send the start byte and expect `Started`; returns the process's pid.
    #[track_caller]
    pub fn start(&mut self) -> i32 {
        self.send_start();
        match self.next_report() {
            Some(Ready::Started { pid }) => pid,
            other => panic!("expected started, got {other:?}"),
        }
    }

    pub fn send_start(&mut self) {
        self.start
            .as_mut()
            .expect("start gate already closed")
            .write_all(b"s")
            .unwrap();
    }

    /// EOF on the start gate: berthd abandons the container.
    pub fn abandon(&mut self) {
        self.start = None;
    }

    /// Drop berthd's ends of both pipes, as if it died.
    pub fn drop_daemon_pipes(&mut self) {
        self.start = None;
        self.ready = None;
    }

    pub fn socket(&self) -> PathBuf {
        self.state_dir.path().join(ATTACH_SOCKET)
    }

    pub fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Client {
        Client::connect(
            &self.socket(),
            AttachRequest {
                stdin,
                stdout,
                stderr,
            },
        )
    }

    pub fn is_alive(&mut self) -> bool {
        if self.reaped.is_some() {
            return false;
        }
        match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => true,
            Ok(WaitStatus::Exited(_, code)) => {
                self.reaped = Some(code);
                false
            }
            _ => false,
        }
    }

    /// Wait for the monitor to exit; its exit code.
    #[track_caller]
    pub fn wait(&mut self) -> i32 {
        if let Some(code) = self.reaped {
            return code;
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.reaped = Some(code);
                    return code;
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    self.reaped = Some(128 + sig as i32);
                    panic!("the monitor was killed by {sig}");
                }
                Ok(_) => {}
                Err(e) => panic!("waiting for monitor {}: {e}", self.pid),
            }
            assert!(
                Instant::now() < deadline,
                "the monitor did not exit within {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn exit_status(&self) -> ExitStatus {
        let data = std::fs::read(self.state_dir.path().join(EXIT_FILE)).expect("exit.json");
        serde_json::from_slice(&data).expect("exit.json is an ExitStatus")
    }

    /// Names in the state directory, sorted.
    pub fn state_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// What the monitor wrote to its diagnostics file, if anything.
    pub fn diagnostics(&self) -> String {
        std::fs::read_to_string(self.state_dir.path().join(DIAGNOSTICS_FILE)).unwrap_or_default()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.pid > 0 && self.reaped.is_none() {
            let pid = Pid::from_raw(self.pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// What a client received until the monitor closed the connection.
#[derive(Debug, Default)]
pub struct Received {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<i32>,
}

impl Received {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// An attach connection.
pub struct Client {
    pub stream: UnixStream,
    pub received: Received,
}

impl Client {
    pub fn connect(socket: &Path, req: AttachRequest) -> Client {
        let mut stream = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", socket.display()));
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        stream.write_all(&line).unwrap();
        Client {
            stream,
            received: Received::default(),
        }
    }

    pub fn send(&mut self, kind: u8, payload: &[u8]) {
        self.stream
            .write_all(&frame::encode(kind, payload))
            .unwrap();
    }

    pub fn stdin(&mut self, data: &str) {
        self.send(frame::STDIN, data.as_bytes());
    }

    /// The next frame, or `None` when the monitor closed the connection.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut header = [0u8; 8];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) => panic!("reading a frame header: {e}"),
        }
        let (kind, len) = frame::parse(&header);
        assert!(len <= frame::MAX_PAYLOAD, "frame of {len} bytes");
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).expect("frame payload");
        Some((kind, payload))
    }

    /// Read one frame into `received`; false at the end of the stream.
    fn step(&mut self) -> bool {
        let Some((kind, payload)) = self.read_frame() else {
            return false;
        };
        match kind {
            frame::STDOUT => self.received.stdout.extend_from_slice(&payload),
            frame::STDERR => self.received.stderr.extend_from_slice(&payload),
            frame::EXIT => {
                assert!(self.received.exit.is_none(), "two EXIT frames");
                self.received.exit = Some(i32::from_be_bytes(payload[..4].try_into().unwrap()));
            }
            other => panic!("unexpected frame kind {other}"),
        }
        true
    }

    /// Read until stdout contains `needle`.
    #[track_caller]
    pub fn read_until(&mut self, needle: &str) -> String {
        while !self.received.stdout().contains(needle) {
            assert!(
                self.step(),
                "connection closed before {needle:?}; got {:?}",
                self.received
            );
        }
        self.received.stdout()
    }

    /// Read until the monitor closes the connection.
    pub fn collect(mut self) -> Received {
        while self.step() {}
        self.received
    }
}
