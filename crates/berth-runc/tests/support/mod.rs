//! Test harness: real containers from a busybox root filesystem, run by the runtime under
//! test (berth-runc by default; set `BERTH_TEST_RUNTIME=runc` or `=crun` to prove a test
//! against the reference runtime). Every bundle, state root and cgroup is removed on drop.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The runtime binary under test.
pub fn runtime() -> PathBuf {
    match std::env::var_os("BERTH_TEST_RUNTIME") {
        Some(r) => PathBuf::from(r),
        None => PathBuf::from(env!("CARGO_BIN_EXE_berth-runc")),
    }
}

/// Whether the runtime under test is berth-runc (tests of berth-only behaviour skip, loudly,
/// when proving the suite against another runtime).
pub fn is_berth() -> bool {
    std::env::var_os("BERTH_TEST_RUNTIME").is_none()
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create real containers and must run as root"
    );
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A busybox root filesystem with the probe, shared by every test binary: built once under
/// the target directory, keyed by the content of the script and the probe so an edit of
/// either rebuilds it, and renamed into place so concurrent builders never see half of it.
fn base_rootfs() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        use std::hash::{Hash, Hasher};
        let script = repo_root().join("scripts/make-busybox-rootfs.sh");
        let probe = repo_root().join("tests/probe/probe.c");
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&script).unwrap().hash(&mut h);
        std::fs::read(&probe).unwrap().hash(&mut h);
        let tmpdir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmpdir.join(format!("busybox-rootfs-{:016x}", h.finish()));
        if dir.join("bin/probe").exists() {
            return dir;
        }
        let building = tmpdir.join(format!("busybox-rootfs-building-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&building);
        let status = Command::new(&script)
            .arg(&building)
            .stderr(Stdio::null())
            .status()
            .expect("running make-busybox-rootfs.sh");
        assert!(status.success(), "make-busybox-rootfs.sh failed");
        let out = Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(building.join("bin/probe"))
            .arg(&probe)
            .output()
            .expect("running gcc (install gcc and libc6-dev)");
        assert!(
            out.status.success(),
            "compiling the probe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if std::fs::rename(&building, &dir).is_err() {
            // Another test binary finished first; use its copy.
            let _ = std::fs::remove_dir_all(&building);
        }
        dir
    })
}

/// One container's bundle (a private copy of the base rootfs and a spec) and state root;
/// dropping it force-deletes the container and removes its cgroups and directories.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub state_root: tempfile::TempDir,
    pub id: String,
    pub spec: Value,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Bundle {
    /// A bundle whose process runs `args`, with a default spec like `runc spec` makes
    /// (terminal off, writable root, cgroup path unique to this bundle).
    pub fn new(args: &[&str]) -> Bundle {
        require_root();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("bt-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir()
            .expect("tempdir");
        let state_root = tempfile::Builder::new()
            .prefix("berth-state-")
            .tempdir()
            .expect("tempdir");
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
            state_root,
            id,
            spec,
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn cgroups_path(&self) -> String {
        self.spec["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn write_spec(&self) {
        std::fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    /// A runtime command with `--root` set.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(runtime());
        c.arg("--root").arg(self.state_root.path()).args(args);
        c
    }

    /// `run` in the foreground; returns the output once the container exits.
    pub fn run(&self) -> Output {
        self.write_spec();
        let mut c = self.cmd(&["run", "--bundle"]);
        c.arg(self.dir.path()).arg(&self.id).stdin(Stdio::null());
        output_within(c, Duration::from_secs(60))
    }

    /// `create` without start.
    pub fn create(&self) -> Output {
        self.write_spec();
        let mut c = self.cmd(&["create", "--bundle"]);
        c.arg(self.dir.path()).arg(&self.id).stdin(Stdio::null());
        output_within(c, Duration::from_secs(60))
    }

    /// `run --detach`: the container keeps running after this returns.
    pub fn run_detached(&self) -> Output {
        self.write_spec();
        let mut c = self.cmd(&["run", "--detach", "--bundle"]);
        c.arg(self.dir.path()).arg(&self.id).stdin(Stdio::null());
        output_within(c, Duration::from_secs(60))
    }

    /// Run a runtime subcommand on this container (`state`, `kill`, `exec`...).
    pub fn rt(&self, args: &[&str]) -> Output {
        let mut full: Vec<&str> = args.to_vec();
        // The id goes after the subcommand's flags; callers pass it themselves when needed.
        if full.is_empty() {
            full.push("state");
        }
        let mut c = self.cmd(&full);
        c.stdin(Stdio::null());
        output_within(c, Duration::from_secs(60))
    }

    pub fn state(&self) -> Value {
        let out = self.rt(&["state", &self.id]);
        assert!(
            out.status.success(),
            "state: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state JSON")
    }

    /// Paths where this container's cgroup would live on a v1 host.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let rel = self.cgroups_path();
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(entry.path().join(rel.trim_start_matches('/')));
        }
        out.push(PathBuf::from("/sys/fs/cgroup").join(rel.trim_start_matches('/')));
        out
    }

    /// Nothing of this container may remain: state, cgroups, processes, mounts.
    pub fn assert_no_leftovers(&self) {
        assert!(
            !self.state_root.path().join(&self.id).exists(),
            "state directory of {} left behind",
            self.id
        );
        // The leaf must be gone; its unique parent (like /berth for real containers) is
        // removed by Drop.
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
        let _ = self
            .cmd(&["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Remove cgroups (leaf first) a failed test may have left.
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

/// Run `cmd` and collect its output, killing it after `limit`. Output goes through
/// temporary files, not pipes: a detached container inherits the runtime's stdio and would
/// keep a pipe open forever.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let out_file = tempfile::tempfile().expect("tempfile");
    let err_file = tempfile::tempfile().expect("tempfile");
    let mut child = cmd
        .stdout(out_file.try_clone().unwrap())
        .stderr(err_file.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Output {
        status,
        stdout: read_file(out_file),
        stderr: read_file(err_file),
    }
}

fn read_file(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = f.read_to_end(&mut v);
    v
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success and return stdout.
#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Wait until `f` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

impl Bundle {
    /// Write config.json without running anything (for tests that start the runtime
    /// themselves).
    pub fn write_spec_now(&self) {
        self.write_spec();
    }

    /// Delete (the container must have exited) and check nothing remains.
    pub fn assert_no_leftovers_after_delete(&self) {
        // `run` deleted the container already.
        self.assert_no_leftovers();
    }
}
