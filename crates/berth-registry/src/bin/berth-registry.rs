//! `berth-registry`: pull and push straight between a data root and a registry, without
//! the daemon — for scripts, benchmarks and debugging, as `berth-runc` is for the runtime.
//! Users pull and push through berthd (`berth pull`, `docker pull`); this tool shares its
//! store and its code.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_image::store::ImageStore;
use berth_registry::client::pull::{pull, PullOptions};
use berth_registry::client::push::{push, PushCompression, PushOptions};
use berth_registry::credentials::CredentialStore;
use berth_registry::progress::{Phase, ProgressSink};
use berth_registry::{ClientConfig, Registry};
use berth_types::Reference;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "berth-registry",
    version,
    about = "Pull and push images between a berth data root and registries, without the daemon"
)]
struct Cli {
    /// The data root holding the image store.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/berth",
        value_name = "DIR"
    )]
    data_root: PathBuf,
    /// A registry reachable over plain HTTP (host, host:port or CIDR); repeatable.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// A Docker Hub mirror URL, tried first; repeatable.
    #[arg(long = "registry-mirror", global = true, value_name = "URL")]
    registry_mirrors: Vec<String>,
    /// Per-registry CAs and client certificates, laid out as Docker's certs.d.
    #[arg(long, global = true, default_value = berth_registry::client::DEFAULT_CERTS_DIR, value_name = "DIR")]
    certs_dir: PathBuf,
    /// The docker config directory holding credentials (default: $DOCKER_CONFIG or ~/.docker).
    #[arg(long, global = true, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download an image (all its layers verified and unpacked, ready to run).
    Pull {
        /// NAME[:TAG|@DIGEST]
        image: String,
        /// The platform to pick from a multi-platform image (os/arch[/variant]).
        #[arg(long)]
        platform: Option<String>,
        /// Layers downloaded at once.
        #[arg(long, default_value_t = 3)]
        max_concurrent_downloads: usize,
        /// Print only the image ID.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Upload an image (only the blobs the registry lacks).
    Push {
        /// NAME[:TAG]
        image: String,
        /// Layer compression on the wire.
        #[arg(long, value_enum, default_value_t = Compression::Keep)]
        compression: Compression,
        /// Upload in chunks of this many bytes instead of one streamed request.
        #[arg(long, value_name = "BYTES")]
        chunk_size: Option<u64>,
        /// Print only the manifest digest.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Check credentials against a registry and store them in config.json (or its helper).
    Login {
        /// The registry (default: Docker Hub).
        server: Option<String>,
        #[arg(short, long)]
        username: String,
        /// The password (prefer --password-stdin).
        #[arg(short, long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove stored credentials for a registry.
    Logout {
        /// The registry (default: Docker Hub).
        server: Option<String>,
    },
    /// Give a local image another name (to push it somewhere else).
    Tag {
        /// The image: NAME[:TAG], ID or ID prefix.
        source: String,
        /// The new NAME[:TAG].
        target: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Compression {
    /// As stored.
    Keep,
    /// zstd (OCI tar+zstd layers).
    Zstd,
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log_level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli) {
        eprintln!("berth-registry: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let credentials = match &cli.config {
        Some(dir) => CredentialStore::new(dir.clone()),
        None => CredentialStore::from_env(),
    };
    let mut config = ClientConfig {
        insecure_registries: cli.insecure_registries.clone(),
        registry_mirrors: cli.registry_mirrors.clone(),
        certs_dir: cli.certs_dir.clone(),
        ..ClientConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Pull {
            image,
            platform,
            max_concurrent_downloads,
            quiet,
        } => {
            config.max_concurrent_downloads = max_concurrent_downloads;
            let reference: Reference = image
                .parse()
                .with_context(|| format!("invalid reference {image:?}"))?;
            let store = Arc::new(open_store(&cli.data_root)?);
            let options = PullOptions {
                platform: platform
                    .map(|p| p.parse())
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                auth: None,
            };
            let registry = Registry::new(config, credentials);
            let reference = reference.with_default_tag();
            if !quiet {
                println!(
                    "{}: Pulling from {}",
                    reference
                        .tag()
                        .map(str::to_owned)
                        .or(reference.digest().map(|d| d.to_string()))
                        .unwrap_or_default(),
                    reference.familiar_name()
                );
            }
            let (sink, rx) = ProgressSink::channel();
            let printer = (!quiet).then(|| std::thread::spawn(move || print_progress(rx)));
            let result = rt.block_on(pull(&registry, store, &reference, &options, &sink));
            drop(sink);
            if let Some(p) = printer {
                let _ = p.join();
            }
            let pulled =
                result.with_context(|| format!("pulling {}", reference.familiar_string()))?;
            if quiet {
                println!("{}", pulled.id);
            } else {
                println!("Digest: {}", pulled.digest);
                println!("Status: {}", pulled.status());
                println!("{}", pulled.reference);
            }
        }
        Command::Push {
            image,
            compression,
            chunk_size,
            quiet,
        } => {
            let reference: Reference = image
                .parse()
                .with_context(|| format!("invalid reference {image:?}"))?;
            let store = Arc::new(open_store(&cli.data_root)?);
            let options = PushOptions {
                auth: None,
                compression: match compression {
                    Compression::Keep => PushCompression::Keep,
                    Compression::Zstd => PushCompression::Zstd,
                },
                chunk_size,
            };
            let registry = Registry::new(config, credentials);
            if !quiet {
                println!("The push refers to repository [{}]", reference.name());
            }
            let (sink, rx) = ProgressSink::channel();
            let printer = (!quiet).then(|| std::thread::spawn(move || print_progress(rx)));
            let result = rt.block_on(push(&registry, store, &reference, &options, &sink));
            drop(sink);
            if let Some(p) = printer {
                let _ = p.join();
            }
            let pushed =
                result.with_context(|| format!("pushing {}", reference.familiar_string()))?;
            if quiet {
                println!("{}", pushed.digest);
            } else {
                println!("{}", pushed.status());
            }
        }
        Command::Login {
            server,
            username,
            password,
            password_stdin,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
                (None, false) => anyhow::bail!("give the password with --password-stdin or -p"),
            };
            let server = server.unwrap_or_default();
            let auth = berth_registry::credentials::AuthConfig {
                username,
                password,
                server_address: server.clone(),
                ..Default::default()
            };
            let registry = Registry::new(config, credentials);
            let outcome = rt.block_on(berth_registry::client::login::login(
                &registry, &server, &auth,
            ))?;
            println!("{}", outcome.status);
        }
        Command::Logout { server } => {
            let server = server.unwrap_or_default();
            berth_registry::client::login::logout(&credentials, &server)?;
            println!(
                "Removing login credentials for {}",
                berth_registry::client::login::login_domain(&server)
            );
        }
        Command::Tag { source, target } => {
            let store = open_store(&cli.data_root)?;
            let target: Reference = target
                .parse()
                .with_context(|| format!("invalid reference {target:?}"))?;
            let image = store
                .resolve(&source)
                .with_context(|| format!("no such image: {source}"))?;
            store.tag(&image.id, &target)?;
        }
    }
    Ok(())
}

fn open_store(root: &std::path::Path) -> anyhow::Result<ImageStore> {
    ImageStore::open(root).with_context(|| format!("opening the image store in {}", root.display()))
}

/// Progress as the docker CLI prints it when not on a terminal: a line per layer each time
/// its phase changes (byte counts are left to terminals).
fn print_progress(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<berth_registry::progress::Progress>,
) {
    let mut last: HashMap<String, String> = HashMap::new();
    let mut out = std::io::stdout().lock();
    while let Some(event) = rx.blocking_recv() {
        let status = match event.phase {
            Phase::Waiting => "Pulling fs layer".to_owned(),
            ref other => other.status(),
        };
        if last.get(&event.id) == Some(&status) {
            continue;
        }
        let _ = writeln!(out, "{}: {status}", event.id);
        last.insert(event.id, status);
    }
}
