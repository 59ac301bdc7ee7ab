//! `berthd`: the berth daemon.
//!
//! Reads dockerd's flags and `/etc/berth/daemon.json` (Docker's keys where they apply),
//! opens the engine on its data root, re-attaches to the containers that kept running
//! while it was away, and serves the Docker Engine API on every `-H` endpoint: Unix
//! sockets (mode 0660, group `berth` when it exists) and TCP, which needs TLS unless
//! `--insecure-tcp` is given.
//!
//! Stopping berthd (SIGTERM, SIGINT, or `kill -9`) leaves containers running: their
//! monitors hold them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use berth_engine::{Engine, EngineConfig};
use clap::Parser;
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(
    name = "berthd",
    version,
    about = "The berth daemon: a Docker-compatible container engine",
    long_about = "Serves the Docker Engine API (v1.24 to v1.50) so the docker CLI, docker-py and compose work unchanged.\n\nExample: berthd -H unix:///run/berth/berth.sock --data-root /var/lib/berth\nthen: DOCKER_HOST=unix:///run/berth/berth.sock docker run --rm busybox echo hi"
)]
struct Cli {
    /// Endpoint to serve, repeatable: unix:///path, tcp://host:port, fd:// is not supported.
    #[arg(short = 'H', long = "host")]
    hosts: Vec<String>,
    /// Where images, containers and volumes live.
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Run-time state: monitor sockets, the runtime's state.
    #[arg(long)]
    exec_root: Option<PathBuf>,
    /// daemon.json to read.
    #[arg(long, default_value = "/etc/berth/daemon.json")]
    config_file: PathBuf,
    /// Require client certificates signed by --tlscacert on TCP endpoints.
    #[arg(long)]
    tlsverify: bool,
    /// Use TLS on TCP endpoints (implied by --tlsverify).
    #[arg(long)]
    tls: bool,
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    #[arg(long)]
    tlscert: Option<PathBuf>,
    #[arg(long)]
    tlskey: Option<PathBuf>,
    /// Allow TCP without TLS. Anyone who can reach the port owns the machine.
    #[arg(long)]
    insecure_tcp: bool,
    /// debug, info, warn, error, fatal.
    #[arg(short = 'l', long)]
    log_level: Option<String>,
    /// Registries reachable over plain HTTP, repeatable.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// Docker Hub mirrors, repeatable.
    #[arg(long = "registry-mirror")]
    registry_mirrors: Vec<String>,
    /// Shorthand for --log-level debug.
    #[arg(short = 'D', long)]
    debug: bool,
    /// The berth-monitor binary (default: next to berthd).
    #[arg(long, env = "BERTH_MONITOR")]
    monitor_path: Option<PathBuf>,
    /// Group owning Unix sockets.
    #[arg(short = 'G', long, default_value = "berth")]
    group: String,
    /// The default bridge's interface (default berth0). Several daemons on one host need
    /// one each.
    #[arg(short = 'b', long)]
    bridge: Option<String>,
    /// The default bridge's address and prefix, e.g. 172.30.0.1/16.
    #[arg(long)]
    bip: Option<String>,
    /// MTU of container interfaces.
    #[arg(long)]
    mtu: Option<u32>,
    /// Remove this daemon's bridges and firewall table, then exit (stop the containers
    /// first): for uninstalling, and for tests.
    #[arg(long, hide = true)]
    teardown_networks: bool,
}

/// A `default-address-pools` entry of daemon.json.
#[derive(Deserialize, Debug)]
struct AddressPool {
    base: String,
    size: u8,
}

/// A `runtimes` entry of daemon.json: an OCI runtime's executable.
#[derive(Deserialize, Debug)]
struct RuntimeEntry {
    path: PathBuf,
    #[serde(default, rename = "runtimeArgs")]
    runtime_args: Vec<String>,
}

/// The daemon.json keys berthd honours (Docker's names).
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "kebab-case", default)]
struct DaemonJson {
    hosts: Vec<String>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    tls: Option<bool>,
    tlsverify: Option<bool>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    log_level: Option<String>,
    debug: Option<bool>,
    insecure_registries: Vec<String>,
    registry_mirrors: Vec<String>,
    max_concurrent_downloads: Option<usize>,
    max_concurrent_uploads: Option<usize>,
    max_download_attempts: Option<u32>,
    log_opts: BTreeMap<String, String>,
    log_driver: Option<String>,
    group: Option<String>,
    default_runtime: Option<String>,
    runtimes: BTreeMap<String, RuntimeEntry>,
    bridge: Option<String>,
    bip: Option<String>,
    mtu: Option<u32>,
    default_address_pools: Vec<AddressPool>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

const KNOWN_IGNORED: &[&str] = &[
    "live-restore",
    "storage-driver",
    "exec-opts",
    "features",
    "experimental",
    "builder",
    "userland-proxy",
    "iptables",
    "ip-forward",
    "dns",
    "selinux-enabled",
    "default-ulimits",
    "init",
    "seccomp-profile",
    "containerd",
    "cgroup-parent",
];

/// The networking settings: flags over daemon.json over defaults.
fn net_config(
    cli: &Cli,
    dj: &DaemonJson,
    data_root: &Path,
    exec_root: &Path,
) -> Result<berth_net::NetConfig> {
    let bridge = cli
        .bridge
        .clone()
        .or(dj.bridge.clone())
        .unwrap_or_else(|| "berth0".into());
    if bridge.is_empty()
        || bridge.len() > 15
        || !bridge
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        bail!("invalid bridge name {bridge:?}: 1 to 15 letters, digits, '_', '-' or '.'");
    }
    let bip = match cli.bip.as_ref().or(dj.bip.as_ref()) {
        Some(b) => Some(b.parse::<ipnet::Ipv4Net>().map_err(|_| {
            anyhow::anyhow!("invalid bip {b:?}: expected the bridge's IPv4 address with a prefix, e.g. 172.30.0.1/16")
        })?),
        None => None,
    };
    let mut pools = Vec::new();
    for p in &dj.default_address_pools {
        let base = p.base.parse::<ipnet::Ipv4Net>().map_err(|_| {
            anyhow::anyhow!(
                "invalid default-address-pools base {:?}: expected an IPv4 CIDR",
                p.base
            )
        })?;
        if p.size < base.prefix_len() || p.size > 30 {
            bail!(
                "invalid default-address-pools size {} for base {}: it must be between {} and 30",
                p.size,
                p.base,
                base.prefix_len()
            );
        }
        pools.push((base, p.size));
    }
    if pools.is_empty() {
        pools = berth_net::ipam::default_pools();
    }
    // One nftables table per daemon, named after its bridge.
    let table = if bridge == "berth0" {
        "berth".to_string()
    } else {
        format!("berth_{}", bridge.replace(['-', '.'], "_"))
    };
    Ok(berth_net::NetConfig {
        data_dir: data_root.join("network"),
        run_dir: exec_root.join("network"),
        netns_dir: exec_root.join("netns"),
        bridge,
        bip,
        pools,
        mtu: cli.mtu.or(dj.mtu).unwrap_or(1500),
        table,
    })
}

/// The external OCI runtimes containers may ask for: runc and crun when installed (Docker
/// ships runc as its default), and daemon.json's `runtimes`.
fn oci_runtimes(dj: &DaemonJson) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for name in ["runc", "crun"] {
        if let Some(p) = find_in_path(Path::new(name)) {
            out.insert(name.to_string(), p);
        }
    }
    for (name, entry) in &dj.runtimes {
        if name == "berth" {
            bail!("runtimes: \"berth\" is berth's own runtime and cannot be redefined");
        }
        // The name becomes a directory under the exec root (`oci/<name>`).
        let valid = name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            bail!("runtimes: invalid runtime name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit");
        }
        if !entry.runtime_args.is_empty() {
            bail!("runtimes.{name}: runtimeArgs are not supported; give a wrapper script as path");
        }
        // As Docker: an absolute path, or a name looked up in PATH.
        let path = find_in_path(&entry.path).with_context(|| {
            format!(
                "runtimes.{name}: {} is not an executable file (give an absolute path, or a program in PATH)",
                entry.path.display()
            )
        })?;
        out.insert(name.clone(), path);
    }
    Ok(out)
}

/// `program` itself if it is a path to a file, else the first file of that name in PATH.
fn find_in_path(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn read_daemon_json(path: &Path, explicit: bool) -> Result<DaemonJson> {
    match std::fs::read(path) {
        Ok(data) => {
            let d: DaemonJson = serde_json::from_slice(&data)
                .with_context(|| format!("{}: invalid daemon configuration", path.display()))?;
            for k in d.other.keys() {
                if !KNOWN_IGNORED.contains(&k.as_str()) {
                    bail!(
                        "{}: the following directives don't match any configuration option: {k}",
                        path.display()
                    );
                }
            }
            Ok(d)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok(DaemonJson::default())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn init_logging(level: &str) -> Result<()> {
    let level = match level {
        "fatal" => "error",
        l @ ("trace" | "debug" | "info" | "warn" | "error") => l,
        other => bail!("unknown log level {other:?}: use debug, info, warn, error or fatal"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTHD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
        // netlink-packet-route warns about every attribute newer than itself in a dump.
        .add_directive(
            "netlink_packet_route=error"
                .parse()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let explicit_config = cli.config_file != Path::new("/etc/berth/daemon.json");
    let dj = read_daemon_json(&cli.config_file, explicit_config)?;
    let level = if cli.debug || dj.debug == Some(true) {
        "debug".to_string()
    } else {
        cli.log_level
            .clone()
            .or(dj.log_level.clone())
            .unwrap_or_else(|| "info".into())
    };
    init_logging(&level)?;
    if !cli.hosts.is_empty() && !dj.hosts.is_empty() {
        bail!(
            "the \"hosts\" directive is given both as a flag and in {}: keep one",
            cli.config_file.display()
        );
    }
    let mut hosts = if cli.hosts.is_empty() {
        dj.hosts.clone()
    } else {
        cli.hosts.clone()
    };
    if hosts.is_empty() {
        hosts.push("unix:///run/berth/berth.sock".into());
    }
    let data_root = cli
        .data_root
        .clone()
        .or(dj.data_root.clone())
        .unwrap_or_else(|| "/var/lib/berth".into());
    let exec_root = cli
        .exec_root
        .clone()
        .or(dj.exec_root.clone())
        .unwrap_or_else(|| "/run/berth".into());
    let monitor_bin = match cli.monitor_path.clone() {
        Some(p) => p,
        None => std::env::current_exe()
            .context("locating berthd")?
            .with_file_name("berth-monitor"),
    };
    if !monitor_bin.exists() {
        bail!(
            "berth-monitor not found at {}: install it next to berthd or pass --monitor-path",
            monitor_bin.display()
        );
    }
    let init_bin = [
        "/usr/bin/tini-static",
        "/usr/bin/docker-init",
        "/usr/libexec/docker/docker-init",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists());
    let mut registry = berth_registry::ClientConfig {
        insecure_registries: [
            cli.insecure_registries.clone(),
            dj.insecure_registries.clone(),
        ]
        .concat(),
        registry_mirrors: [cli.registry_mirrors.clone(), dj.registry_mirrors.clone()].concat(),
        user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    if let Some(n) = dj.max_concurrent_downloads {
        registry.max_concurrent_downloads = n.max(1);
    }
    if let Some(n) = dj.max_concurrent_uploads {
        registry.max_concurrent_uploads = n.max(1);
    }
    if let Some(n) = dj.max_download_attempts {
        registry.max_download_attempts = n.max(1);
    }
    if let Some(d) = dj.log_driver.as_deref() {
        if !matches!(d, "json-file" | "local") {
            bail!("log-driver {d:?} is not supported: berth writes json-file logs");
        }
    }
    let log_max_size = match dj.log_opts.get("max-size") {
        Some(s) => berth_engine::lifecycle::parse_size(s)
            .with_context(|| format!("log-opts max-size {s:?}"))?,
        None => 0,
    };
    let log_max_files = match dj.log_opts.get("max-file") {
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .with_context(|| format!("log-opts max-file {s:?}"))?,
        None => 1,
    };
    std::fs::create_dir_all(&exec_root)
        .with_context(|| format!("creating {}", exec_root.display()))?;
    // One daemon per exec root.
    let lock_path = exec_root.join("berthd.pid");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another berthd is running with exec root {}: stop it or give this one its own --exec-root and --data-root",
            exec_root.display()
        )
    })?;
    {
        use std::io::Write;
        let mut f = &*lock;
        let _ = f.set_len(0);
        let _ = writeln!(f, "{}", std::process::id());
    }
    let oci_runtimes = oci_runtimes(&dj)?;
    let default_runtime = dj.default_runtime.clone().unwrap_or_else(|| "berth".into());
    if default_runtime != "berth" && !oci_runtimes.contains_key(&default_runtime) {
        bail!(
            "default-runtime {default_runtime:?} is not a known runtime: use berth, or one of the runtimes in daemon.json ({})",
            oci_runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let network = net_config(&cli, &dj, &data_root, &exec_root)?;
    if cli.teardown_networks {
        return berth_net::network::teardown(&network).map_err(|e| anyhow::anyhow!("{e}"));
    }
    let config = EngineConfig {
        data_root: data_root.clone(),
        exec_root: exec_root.clone(),
        monitor_bin,
        init_bin,
        registry,
        log_max_size,
        log_max_files,
        oci_runtimes,
        default_runtime,
        name: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        network,
    };
    let engine = tokio::task::spawn_blocking(move || Engine::open(config))
        .await
        .context("opening the engine")?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    engine.reconcile().await;
    let tls = TlsSettings {
        verify: cli.tlsverify || dj.tlsverify == Some(true),
        enabled: cli.tls || cli.tlsverify || dj.tls == Some(true) || dj.tlsverify == Some(true),
        ca: cli.tlscacert.clone().or(dj.tlscacert.clone()),
        cert: cli.tlscert.clone().or(dj.tlscert.clone()),
        key: cli.tlskey.clone().or(dj.tlskey.clone()),
    };
    let group = dj.group.clone().unwrap_or(cli.group.clone());
    let mut sockets = Vec::new();
    for h in &hosts {
        sockets.push(listen(h, &tls, cli.insecure_tcp, &group, engine.clone()).await?);
    }
    tracing::info!(
        data_root = %data_root.display(),
        exec_root = %exec_root.display(),
        hosts = ?hosts,
        "berthd is ready"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("berthd is stopping; containers keep running");
    for p in sockets.iter().flatten() {
        let _ = std::fs::remove_file(p);
    }
    drop(lock);
    Ok(())
}

struct TlsSettings {
    verify: bool,
    enabled: bool,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

fn load_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut &data[..])
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

fn tls_acceptor(t: &TlsSettings) -> Result<tokio_rustls::TlsAcceptor> {
    let (Some(cert), Some(key)) = (&t.cert, &t.key) else {
        bail!("TLS needs --tlscert and --tlskey");
    };
    let certs = load_certs(cert)?;
    let key_data = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
    let key = rustls_pemfile::private_key(&mut &key_data[..])
        .with_context(|| format!("parsing {}", key.display()))?
        .with_context(|| "no private key found in --tlskey")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = if t.verify {
        let Some(ca) = &t.ca else {
            bail!("--tlsverify needs --tlscacert, the CA that signs client certificates");
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(ca)? {
            roots.add(c).context("adding the client CA")?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("building the client certificate verifier")?;
        builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?
    } else {
        builder.with_no_client_auth().with_single_cert(certs, key)?
    };
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Start serving `host`; returns the socket path for Unix endpoints (removed on exit).
async fn listen(
    host: &str,
    tls: &TlsSettings,
    insecure_tcp: bool,
    group: &str,
    engine: Arc<Engine>,
) -> Result<Option<PathBuf>> {
    if let Some(path) = host.strip_prefix("unix://") {
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("listening on {}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
        if let Ok(Some(g)) = nix::unistd::Group::from_name(group) {
            let _ = nix::unistd::chown(&path, None, Some(g.gid));
        }
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        tokio::spawn(berth_api::serve_connection(engine.clone(), s));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        });
        return Ok(Some(path));
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:2376")
        };
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on tcp://{addr}"))?;
        let acceptor = if tls.enabled {
            Some(tls_acceptor(tls)?)
        } else if insecure_tcp {
            tracing::warn!("serving tcp://{addr} WITHOUT TLS: anyone who can reach it controls this machine as root");
            None
        } else {
            bail!("refusing to serve tcp://{addr} without TLS: give --tlsverify --tlscacert --tlscert --tlskey (or --insecure-tcp if you accept the risk)");
        };
        tokio::spawn(async move {
            loop {
                let (s, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let engine = engine.clone();
                match &acceptor {
                    Some(a) => {
                        let a = a.clone();
                        tokio::spawn(async move {
                            match a.accept(s).await {
                                Ok(tls) => berth_api::serve_connection(engine, tls).await,
                                Err(e) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                            }
                        });
                    }
                    None => {
                        tokio::spawn(berth_api::serve_connection(engine, s));
                    }
                }
            }
        });
        return Ok(None);
    }
    bail!("unsupported host {host:?}: use unix:///path or tcp://host:port")
}
