//! berth-runtime's public API as the daemon's monitor will use it, as root on the real
//! kernel: stdio over pipes, a terminal handed back to the caller, exec, wait, delete.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_runtime::{CreateOptions, ExecOptions, Runtime, Stdio};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

fn base_rootfs() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        // Rebuilt per run (cheap: hard links to one busybox) and replaced in place.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lib-rootfs");
        let _ = std::fs::remove_dir_all(&dir);
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-busybox-rootfs.sh");
        let st = Command::new(script)
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        dir
    })
}

struct Fixture {
    bundle: tempfile::TempDir,
    runtime: Runtime,
    _root: tempfile::TempDir,
    id: String,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run as root: these tests create real containers"
        );
        let bundle = tempfile::tempdir().unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(base_rootfs())
            .arg(bundle.path().join("rootfs"))
            .status()
            .unwrap();
        assert!(st.success());
        let root = tempfile::tempdir().unwrap();
        let id = format!("lib-{name}-{}", std::process::id());
        Fixture {
            runtime: Runtime::new(root.path()),
            bundle,
            _root: root,
            id,
        }
    }

    fn spec(&self, args: &[&str], terminal: bool) -> Spec {
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        process.set_terminal(Some(terminal));
        spec.set_process(Some(process));
        let mut root = spec.root().clone().unwrap();
        root.set_readonly(Some(false));
        spec.set_root(Some(root));
        let mut linux = spec.linux().clone().unwrap();
        linux.set_cgroups_path(Some(PathBuf::from(format!("/berth-lib-test/{}", self.id))));
        spec.set_linux(Some(linux));
        spec
    }

    fn create(&self, spec: Spec, stdio: Option<Stdio>) -> berth_runtime::Created {
        self.runtime
            .create(CreateOptions {
                id: self.id.parse().unwrap(),
                bundle: self.bundle.path().to_owned(),
                spec,
                preserve_fds: 0,
                stdio,
            })
            .expect("create")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(c) = self.runtime.load(&self.id.parse().unwrap()) {
            let _ = c.delete(true);
        }
        for entry in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(entry.path().join("berth-lib-test").join(&self.id));
            let _ = std::fs::remove_dir(entry.path().join("berth-lib-test"));
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

fn devnull() -> OwnedFd {
    std::fs::File::open("/dev/null").unwrap().into()
}

fn wait_exit(pid: i32) -> i32 {
    match waitpid(Pid::from_raw(pid), None).unwrap() {
        WaitStatus::Exited(_, code) => code,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn stdio_over_pipes_and_exec() {
    let f = Fixture::new("pipes");
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let spec = f.spec(
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; sleep 1000"],
        false,
    );
    let created = f.create(
        spec,
        Some(Stdio {
            stdin: devnull(),
            stdout: out_w,
            stderr: err_w,
        }),
    );
    created.container.start().unwrap();
    created.wait_for_exec().unwrap();

    let read_line = |fd: &OwnedFd| {
        let mut file = std::fs::File::from(fd.try_clone().unwrap());
        let mut buf = [0u8; 64];
        let n = file.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(read_line(&out_r), "to-stdout\n");
    assert_eq!(read_line(&err_r), "to-stderr\n");

    // exec with its own pipes, in the same container.
    let (x_r, x_w) = pipe();
    let spec = created.container.spec().unwrap();
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "hostname; exit 3".into(),
    ]));
    process.set_terminal(Some(false));
    let stdio = Stdio {
        stdin: devnull(),
        stdout: x_w,
        stderr: devnull(),
    };
    let exec = created
        .container
        .exec(ExecOptions {
            process,
            preserve_fds: 0,
            stdio: Some(stdio),
        })
        .unwrap();
    assert_eq!(wait_exit(exec.pid), 3);
    assert_eq!(
        read_line(&x_r),
        format!("{}\n", spec.hostname().clone().unwrap())
    );

    created
        .container
        .kill(nix::sys::signal::Signal::SIGKILL, false)
        .unwrap();
    let _ = waitpid(Pid::from_raw(created.container.pid()), None);
    let id = created.container.id().clone();
    f.runtime.load(&id).unwrap().delete(false).unwrap();
    assert!(f.runtime.load(&id).is_err(), "state remains after delete");
}

#[test]
fn terminal_is_handed_back_with_a_settable_size() {
    let f = Fixture::new("tty");
    let spec = f.spec(&["sh", "-c", "sleep 0.3; stty size; tty"], true);
    let created = f.create(spec, None);
    let master = created.terminal.as_ref().expect("a terminal was asked for");
    berth_runtime::sys::tty::set_window_size(master.as_fd(), 40, 120).unwrap();
    created.container.start().unwrap();
    created.wait_for_exec().unwrap();
    let mut pty = std::fs::File::from(master.try_clone().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("/dev/pts/0") && Instant::now() < deadline {
        match pty.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(
        seen.contains("40 120"),
        "window size not seen by the container: {seen:?}"
    );
    assert!(seen.contains("/dev/pts/0"), "{seen:?}");
    assert_eq!(wait_exit(created.container.pid()), 0);
}

#[test]
fn exec_failure_is_reported_after_start() {
    let f = Fixture::new("startfail");
    let mut spec = f.spec(&["true"], false);
    // startContainer runs after start; its failure must reach the caller, not vanish.
    let hook: oci_spec::runtime::Hook =
        serde_json::from_value(serde_json::json!({"path": "/bin/false"})).unwrap();
    let mut hooks = oci_spec::runtime::Hooks::default();
    hooks.set_start_container(Some(vec![hook]));
    spec.set_hooks(Some(hooks));
    let created = f.create(
        spec,
        Some(Stdio {
            stdin: devnull(),
            stdout: devnull(),
            stderr: devnull(),
        }),
    );
    created.container.start().unwrap();
    let err = created.wait_for_exec().unwrap_err().to_string();
    assert!(err.contains("startContainer"), "{err}");
    let _ = waitpid(Pid::from_raw(created.container.pid()), None);
}
