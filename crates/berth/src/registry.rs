//! `berth registry …`: berth's own registry server, from the library's
//! [`berth_registry::server`]. The binary only turns flags into a [`ServerConfig`] and
//! signals into a graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use berth_registry::server::{self, ServerConfig, DEFAULT_MAX_MANIFEST_SIZE};
use clap::{Args, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tracing::info;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Serve the OCI distribution API (push, pull, tags, catalog, delete)
    #[command(
        long_about = "Serve the OCI distribution API from the content store of berth's data \
                      root: docker, podman, skopeo and berth can push to it and pull from it. \
                      Blobs are shared with berth's image store, so nothing is stored twice.\n\n\
                      Plain HTTP unless --tls-cert and --tls-key are given; open to everyone \
                      unless --htpasswd is given. Stops gracefully on SIGINT or SIGTERM.",
        after_help = "Examples:\n  \
                      berth registry serve\n  \
                      berth registry serve --addr 0.0.0.0:5000 --htpasswd /etc/berth/htpasswd \\\n      \
                      --tls-cert /etc/berth/registry.crt --tls-key /etc/berth/registry.key\n\n\
                      Create an htpasswd entry with `htpasswd -Bbn USER PASSWORD >> FILE`."
    )]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "IP:PORT")]
    addr: SocketAddr,

    /// berth's data root; blobs go to its content store, registry metadata to DIR/registry
    #[arg(
        long,
        env = "BERTH_DATA_ROOT",
        default_value = "/var/lib/berth",
        value_name = "DIR"
    )]
    data_root: PathBuf,

    /// Require HTTP Basic auth by the users of this htpasswd file (bcrypt entries only)
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<PathBuf>,

    /// Realm named in the authentication challenge
    #[arg(long, default_value = "berth-registry", value_name = "REALM")]
    realm: String,

    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Largest manifest accepted, in bytes
    #[arg(long, default_value_t = DEFAULT_MAX_MANIFEST_SIZE, value_name = "BYTES")]
    max_manifest_size: u64,
}

pub async fn run(command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig {
        data_root: args.data_root,
        addr: args.addr,
        htpasswd: args.htpasswd,
        realm: args.realm,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        max_manifest_size: args.max_manifest_size,
    };
    let server = server::bind(&config).context("cannot start the registry")?;
    // Signal handlers are installed before serving, so a failure shows now, not at stop.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        info!(signal = name, "stopping");
    };
    server
        .serve(shutdown)
        .await
        .context("the registry failed")?;
    Ok(())
}
