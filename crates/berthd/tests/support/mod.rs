//! Test harness: a real berthd on its own socket, data root and exec root, with a busybox
//! image imported offline, driven by the real docker CLI (`/usr/local/bin/docker`) and by
//! raw HTTP. Dropping a [`Daemon`] removes its containers, stops it and deletes its
//! directories; tests check that no mount, process or cgroup is left.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const DOCKER: &str = "/usr/local/bin/docker";

pub fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "berthd tests need root");
}

fn bin(name: &str) -> PathBuf {
    let berthd = PathBuf::from(env!("CARGO_BIN_EXE_berthd"));
    let p = berthd.with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        p.display()
    );
    p
}

/// A running berthd.
pub struct Daemon {
    pub root: tempfile::TempDir,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub socket: PathBuf,
    pub docker_config: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Daemon {
        require_root();
        let root = tempfile::Builder::new()
            .prefix("berthd-test")
            .tempdir_in("/var/tmp")
            .unwrap();
        let data_root = root.path().join("data");
        // The exec root holds Unix sockets: keep its path short.
        let exec_root = PathBuf::from(format!(
            "/run/bt-{}",
            &root.path().file_name().unwrap().to_string_lossy()[11..]
        ));
        let socket = exec_root.join("api.sock");
        let docker_config = root.path().join("docker-config");
        std::fs::create_dir_all(&docker_config).unwrap();
        std::fs::create_dir_all(&data_root).unwrap();
        // Each daemon has its own bridge and subnet (tests run daemons side by side).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let suffix = root.path().file_name().unwrap().to_string_lossy()[11..].to_string();
        let bridge = format!("bt{}", suffix.to_ascii_lowercase());
        let bip = format!("10.{}.{}.1/24", 100 + std::process::id() % 100, n % 250);
        std::fs::write(
            root.path().join("daemon.json"),
            format!(r#"{{"bridge": "{bridge}", "bip": "{bip}"}}"#),
        )
        .unwrap();
        {
            let store = berth_image::store::ImageStore::open(&data_root).unwrap();
            let id = berth_image::base::import_busybox(&store, Path::new("/bin/busybox")).unwrap();
            store
                .tag(
                    &id,
                    &berth_types::Reference::parse_normalized_named("busybox:latest").unwrap(),
                )
                .unwrap();
        }
        let mut d = Daemon {
            root,
            data_root,
            exec_root,
            socket,
            docker_config,
            child: None,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
        };
        d.spawn();
        d
    }

    /// berthd with this daemon's roots and daemon.json.
    fn berthd(&self) -> Command {
        let mut c = Command::new(bin("berthd"));
        c.arg("--data-root")
            .arg(&self.data_root)
            .arg("--exec-root")
            .arg(&self.exec_root)
            .arg("--config-file")
            .arg(self.root.path().join("daemon.json"));
        c
    }

    /// Start (or restart) the berthd process.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("berthd.log"))
            .unwrap();
        let child = self
            .berthd()
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(&self.extra_args)
            .env(
                "BERTHD_LOG",
                std::env::var("BERTHD_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                break;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("berthd exited ({st}):\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "berthd did not listen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Add keys to daemon.json (its own bridge and subnet stay).
    pub fn edit_daemon_json(&self, keys: serde_json::Value) {
        let path = self.root.path().join("daemon.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if let (Some(o), Some(k)) = (v.as_object_mut(), keys.as_object()) {
            o.extend(k.clone());
        }
        std::fs::write(&path, v.to_string()).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("berthd.log")).unwrap_or_default()
    }

    /// `kill -9` berthd (containers must survive).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// A docker CLI command against this daemon.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", &self.docker_config)
            .env_remove("DOCKER_API_VERSION")
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null());
        c
    }

    pub fn docker_output(&self, args: &[&str]) -> Output {
        output_within(self.docker_cmd(args), Duration::from_secs(60))
    }

    /// Run docker, require success, return stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let o = self.docker_output(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}\nberthd log tail:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A raw HTTP request on the socket: (status, headers, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String, Vec<u8>) {
        let mut s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no HTTP header end");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut body = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, head, body)
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let (st, _, b) = self.http(method, path, body);
        let v = serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null);
        (st, v)
    }
}

fn dechunk(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let Some(end) = b[i..].windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[i..i + end]).trim(), 16).unwrap_or(0);
        i += end + 2;
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i..(i + size).min(b.len())]);
        i += size + 2;
    }
    out
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() && UnixStream::connect(&self.socket).is_err() {
            self.spawn();
        }
        // Remove every container through the API, as a user would.
        let ids = self.docker_output(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.docker_output(&["rm", "-f", "-v", id]);
        }
        self.stop();
        // The daemon's bridges and firewall table.
        let out = self.berthd().arg("--teardown-networks").output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!(
                    "berthd --teardown-networks: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        // Anything still mounted under the data root is a leak; unmount so the temp dir goes.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root.path().to_string_lossy().into_owned();
        for mp in mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
        {
            let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.exec_root);
        // Containers' cgroups are `/berth/<id>`; the shared parent goes once the last
        // container of any daemon is gone (rmdir fails harmlessly while others use it).
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let _ = std::fs::remove_dir(c.path().join("berth"));
            }
        }
        let _ = std::fs::remove_dir("/sys/fs/cgroup/berth");
    }
}

/// Run `cmd`, killing it after `limit`.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning a command");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = t1.join().unwrap();
            let stderr = t2.join().unwrap();
            panic!(
                "command timed out after {limit:?}: {cmd:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// Poll `f` until true or `limit`.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// Debian's CNCF distribution registry on a loopback port, with htpasswd auth for one
/// user; killed and its storage removed on drop.
pub struct Registry {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    pub fn start(user: &str, password: &str) -> Registry {
        const BIN: &str = "/usr/bin/docker-registry";
        assert!(
            Path::new(BIN).exists(),
            "docker-registry is needed (scripts/install-deps.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let htpasswd = dir.path().join("htpasswd");
        let hash = bcrypt::hash(password, 5).unwrap();
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        // Debian's packaged config wants an htpasswd file that does not exist: always our own.
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                dir.path().join("storage").display(),
                htpasswd.display()
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Registry { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(r.addr()).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
