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
    Htpasswd {
        user: String,
        password: String,
    },
    /// Raw YAML for the `auth:` section (token auth, say), indented by two spaces.
    Yaml(String),
}

/// TLS of a [`Distribution`]: its certificate and key, and the CA whose client
/// certificates it requires (none: no client certificate asked for).
#[derive(Debug, Clone)]
pub struct DistributionTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl DistributionTls {
    /// The `tls:` part of the `http:` section.
    fn yaml(&self) -> String {
        let mut yaml = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            self.cert.display(),
            self.key.display()
        );
        if let Some(ca) = &self.client_ca {
            yaml.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
        }
        yaml
    }
}

/// A throw-away certificate authority made with the `openssl` CLI, in a temporary
/// directory removed on drop.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    /// A new CA: `ca.crt` and `ca.key` (P-256).
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=berth test CA",
            ],
        );
        TestCa { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A certificate signed by this CA: `<name>.crt` and `<name>.key`. `extensions` are
    /// openssl's v3 lines (`subjectAltName=IP:127.0.0.1`, `extendedKeyUsage=clientAuth`).
    pub fn issue(&self, name: &str, extensions: &[&str]) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        let ext = d.join(format!("{name}.ext"));
        let mut lines = vec![
            "basicConstraints=CA:FALSE",
            "keyUsage=digitalSignature,keyEncipherment",
        ];
        lines.extend_from_slice(extensions);
        std::fs::write(&ext, lines.join("\n") + "\n").unwrap();
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                ext.to_str().unwrap(),
            ],
        );
        (d.join(crt), d.join(key))
    }
}

/// Run `openssl` in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        Distribution::start_configured(auth, None)
    }

    /// An HTTPS registry with `tls`.
    pub fn start_tls(auth: DistributionAuth, tls: &DistributionTls) -> Distribution {
        Distribution::start_configured(auth, Some(tls))
    }

    fn start_configured(auth: DistributionAuth, tls: Option<&DistributionTls>) -> Distribution {
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
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{}{auth_yaml}",
            dir.path().join("storage").display(),
            tls.map(DistributionTls::yaml).unwrap_or_default(),
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
    image_with_file(s, base, "etc/motd", text.as_bytes())
}

/// An image on `base` with one more layer holding the file `path` = `data`.
pub fn image_with_file(s: &TestStore, base: &ImageRecord, path: &str, data: &[u8]) -> ImageRecord {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
    let tar = b.into_inner().unwrap();
    let layer = s
        .store
        .add_layer(&tar[..], base.layers.last().map(|l| &l.chain_id))
        .unwrap();
    let mut layers = base.layers.clone();
    layers.push(layer);
    let history = oci_spec::image::HistoryBuilder::default()
        .created("2026-01-01T00:00:00Z")
        .created_by(format!("test: add /{path}"))
        .build()
        .unwrap();
    let id = s
        .store
        .create_image(layers, Default::default(), vec![history], None)
        .unwrap();
    s.store.image(&id).unwrap()
}

/// A multi-threaded runtime for driving the async client from a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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
        manifest["config"]["digest"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    )
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
