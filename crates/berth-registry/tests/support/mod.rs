//! Test harness: a real CNCF distribution registry (Debian's `docker-registry`) on a loopback
//! port, skopeo as the peer client, and image stores in temporary data roots. Every process
//! and directory is removed on drop.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::base::import_busybox;
use berth_image::store::{ImageRecord, ImageStore};
use berth_types::Reference;

pub const DISTRIBUTION: &str = "/usr/bin/docker-registry";
pub const SKOPEO: &str = "/usr/bin/skopeo";

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "registry tests need root (snapshots hold root-owned files and device nodes)"
    );
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts connections on `addr`.
pub fn wait_listening(addr: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a [`Distribution`] authenticates.
#[derive(Debug, Clone)]
pub enum DistributionAuth {
    None,
    /// htpasswd (bcrypt) basic auth with one user.
    Htpasswd { user: String, password: String },
    /// Raw YAML for the `auth:` section (token auth, say), indented by two spaces.
    Yaml(String),
}

/// The CNCF distribution registry, on its own port and storage directory.
pub struct Distribution {
    pub port: u16,
    pub dir: tempfile::TempDir,
    config: PathBuf,
    child: Option<Child>,
}

impl Distribution {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Distribution {
        Distribution::start_with(DistributionAuth::None)
    }

    pub fn start_with(auth: DistributionAuth) -> Distribution {
        assert!(
            Path::new(DISTRIBUTION).exists(),
            "docker-registry is needed (scripts/install-deps.sh installs it)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth_yaml = match &auth {
            DistributionAuth::None => String::new(),
            DistributionAuth::Htpasswd { user, password } => {
                let hash = bcrypt::hash(password, 5).unwrap();
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    file.display()
                )
            }
            DistributionAuth::Yaml(yaml) => format!("auth:\n{yaml}\n"),
        };
        let config = dir.path().join("config.yml");
        let mut f = std::fs::File::create(&config).unwrap();
        write!(
            f,
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
            dir.path().join("storage").display()
        )
        .unwrap();
        let mut d = Distribution {
            port,
            dir,
            config,
            child: None,
        };
        d.restart();
        d
    }

    /// `127.0.0.1:<port>`, a reference's domain.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL, as a crash) and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start (again) on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(DISTRIBUTION)
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        self.child = Some(child);
        wait_listening(&self.addr(), "docker-registry");
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run skopeo (policy checks off, plain HTTP allowed); panics with its stderr on failure.
pub fn skopeo(args: &[&str]) -> String {
    let out = skopeo_output(args);
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Run skopeo and return what it did, success or not.
pub fn skopeo_output(args: &[&str]) -> std::process::Output {
    Command::new(SKOPEO)
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo is needed (scripts/install-deps.sh installs it)")
}

/// An image store in a temporary data root, removed on drop (snapshot mounts included).
pub struct TestStore {
    pub store: ImageStore,
    pub dir: tempfile::TempDir,
}

pub fn store() -> TestStore {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    TestStore {
        store: ImageStore::open(dir.path()).unwrap(),
        dir,
    }
}

pub fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

/// busybox from the host's busybox-static, tagged `busybox:latest`.
pub fn busybox_image(s: &TestStore) -> ImageRecord {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "busybox-static is needed (scripts/install-deps.sh installs it)"
    );
    let id = import_busybox(&s.store, busybox).unwrap();
    s.store.tag(&id, &reference("busybox")).unwrap();
    s.store.image(&id).unwrap()
}

/// A second image on busybox: one more layer with `/etc/motd` = `text`.
pub fn layered_image(s: &TestStore, base: &ImageRecord, text: &str) -> ImageRecord {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_size(text.len() as u64);
    b.append_data(&mut h, "etc/motd", text.as_bytes()).unwrap();
    let tar = b.into_inner().unwrap();
    let layer = s
        .store
        .add_layer(&tar[..], Some(&base.layers[0].chain_id))
        .unwrap();
    let mut layers = base.layers.clone();
    layers.push(layer);
    let history = oci_spec::image::HistoryBuilder::default()
        .created("2026-01-01T00:00:00Z")
        .created_by("test: add /etc/motd")
        .build()
        .unwrap();
    let id = s
        .store
        .create_image(layers, Default::default(), vec![history], None)
        .unwrap();
    s.store.image(&id).unwrap()
}

/// `docker://<registry>/<path>` for skopeo.
pub fn docker_ref(registry: &str, path: &str) -> String {
    format!("docker://{registry}/{path}")
}

/// The digest of the manifest `skopeo inspect --raw` prints, and its config digest.
pub fn skopeo_digests(image: &str, tls_verify: bool) -> (String, String) {
    let tls = format!("--tls-verify={tls_verify}");
    let raw = skopeo(&["inspect", &tls, "--raw", image]);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let digest = berth_types::Digest::from_sha256(sha256(raw.as_bytes()));
    (
        digest.to_string(),
        manifest["config"]["digest"].as_str().unwrap_or("").to_owned(),
    )
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
