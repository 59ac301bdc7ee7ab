//! Running a container from a spec built by `berth_engine::spec`, with berth-runtime as
//! the library the monitor uses: a busybox root filesystem (from Debian's busybox-static,
//! via scripts/make-busybox-rootfs.sh), stdout and stderr over pipes, and everything
//! (container state, cgroups, directories) removed on drop.

#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use berth_runtime::{CreateOptions, Runtime, Stdio};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

/// The cgroup parent of every test container.
pub const CGROUP_PARENT: &str = "berth-spec-test";

/// One busybox root filesystem per test binary, rebuilt each run (hard links to one
/// binary: cheap).
fn base_rootfs() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("spec-rootfs");
        let _ = std::fs::remove_dir_all(&dir);
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-busybox-rootfs.sh");
        let st = Command::new(script)
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running make-busybox-rootfs.sh");
        assert!(st.success(), "make-busybox-rootfs.sh failed");
        dir
    })
}

/// A private copy of the busybox rootfs and a runtime state root.
pub struct Fixture {
    pub bundle: tempfile::TempDir,
    pub runtime: Runtime,
    _root: tempfile::TempDir,
    pub id: String,
}

/// What a container printed and how it ended.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        assert!(
            nix::unistd::geteuid().is_root(),
            "run as root: these tests create real containers"
        );
        let bundle = tempfile::Builder::new()
            .prefix("berth-spec-")
            .tempdir()
            .unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(base_rootfs())
            .arg(bundle.path().join("rootfs"))
            .status()
            .unwrap();
        assert!(st.success());
        let root = tempfile::tempdir().unwrap();
        Fixture {
            runtime: Runtime::new(root.path()),
            bundle,
            _root: root,
            id: format!("spec-{name}-{}", std::process::id()),
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.path().join("rootfs")
    }

    pub fn cgroups_path(&self) -> String {
        format!("/{CGROUP_PARENT}/{}", self.id)
    }

    /// Create, start and wait for the container; then delete it.
    pub fn run(&self, spec: Spec) -> Ran {
        let (out_r, out_w) = pipe();
        let (err_r, err_w) = pipe();
        let created = self
            .runtime
            .create(CreateOptions {
                id: self.id.parse().unwrap(),
                bundle: self.bundle.path().to_owned(),
                spec,
                preserve_fds: 0,
                stdio: Some(Stdio {
                    stdin: std::fs::File::open("/dev/null").unwrap().into(),
                    stdout: out_w,
                    stderr: err_w,
                }),
            })
            .expect("create");
        let readers = [out_r, err_r].map(|fd| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = std::fs::File::from(fd).read_to_string(&mut s);
                s
            })
        });
        created.container.start().expect("start");
        created.wait_for_exec().expect("exec");
        let code = match waitpid(Pid::from_raw(created.container.pid()), None).unwrap() {
            WaitStatus::Exited(_, code) => code,
            WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
            other => panic!("unexpected {other:?}"),
        };
        let id = created.container.id().clone();
        drop(created);
        self.runtime.load(&id).unwrap().delete(false).unwrap();
        let [stdout, stderr] = readers.map(|r| r.join().unwrap());
        Ran {
            code,
            stdout,
            stderr,
        }
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
            let _ = std::fs::remove_dir(entry.path().join(CGROUP_PARENT).join(&self.id));
            let _ = std::fs::remove_dir(entry.path().join(CGROUP_PARENT));
        }
        let _ = std::fs::remove_dir(
            Path::new("/sys/fs/cgroup")
                .join(CGROUP_PARENT)
                .join(&self.id),
        );
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(CGROUP_PARENT));
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}
