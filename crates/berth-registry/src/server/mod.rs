//! berth's registry server: the OCI distribution API over berth's own content store
//! (`berth registry serve`, and embeddable in berthd through [`bind`] / [`serve`]).
//!
//! Why a registry in the engine: a local registry that shares the image store's content
//! store costs no second copy of any blob, and lets `berth push` / `docker push` to
//! `localhost` and CI pipelines work with nothing else installed.
//!
//! How the parts fit:
//! - `routes` turns each request into one of the spec's endpoints. Repository names
//!   contain slashes, so one fallback handler receives every path and `name::Route`
//!   matches it from its end.
//! - Blob content goes to the [`ContentStore`], which verifies digests before anything
//!   becomes visible. `metadata` records which repositories hold which manifests, tags
//!   and blobs; `uploads` keeps uploads in progress on disk.
//! - `auth` (htpasswd, bcrypt) and `tls` (rustls) are optional layers around it.
//!
//! Bad input never stores anything: uploads are verified before they are committed, and
//! metadata is only written once the content it names is in the store. One server owns a
//! data root's registry metadata at a time (`registry/lock`).
//!
//! Limits of this version: no token auth (Basic only), no referrers API, no garbage
//! collection of blobs no repository or image refers to (the content store keeps them),
//! and the htpasswd file is read once at start.

mod auth;
mod error;
mod metadata;
mod name;
mod routes;
mod tls;
mod uploads;

use std::fs::{DirBuilder, File, OpenOptions};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use axum_server::Handle;
use berth_image::content::ContentStore;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tracing::info;

pub use error::{ApiError, ErrorCode, ServerError};

use auth::Htpasswd;
use metadata::Repositories;
use uploads::Uploads;

/// The default largest manifest accepted: 4 MiB, what the distribution spec asks
/// registries to support at least, and what distribution enforces.
pub const DEFAULT_MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// How long requests still running at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the server serves, where, and to whom.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data root whose content store is served; metadata goes to `<data_root>/registry`.
    pub data_root: PathBuf,
    /// Where to listen; port 0 picks a free one (see [`BoundServer::local_addr`]).
    pub addr: SocketAddr,
    /// An htpasswd file of bcrypt entries; with it, every request needs Basic credentials.
    pub htpasswd: Option<PathBuf>,
    /// The realm of the `WWW-Authenticate` challenge.
    pub realm: String,
    /// PEM certificate chain and private key; with both, the server speaks only HTTPS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Manifests larger than this are refused.
    pub max_manifest_size: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_root: PathBuf::from("/var/lib/berth"),
            addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
            htpasswd: None,
            realm: "berth-registry".to_owned(),
            tls_cert: None,
            tls_key: None,
            max_manifest_size: DEFAULT_MAX_MANIFEST_SIZE,
        }
    }
}

/// Everything a request handler needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RegistryState {
    inner: Arc<StateInner>,
}

#[derive(Debug)]
struct StateInner {
    content: ContentStore,
    repositories: Repositories,
    uploads: Uploads,
    htpasswd: Option<Arc<Htpasswd>>,
    max_manifest_size: u64,
    /// Held for the state's life: one server per data root.
    _lock: Flock<File>,
}

impl RegistryState {
    /// Opens the content store and registry metadata under `config.data_root` and reads the
    /// htpasswd file. Fails if another server already uses the data root.
    pub fn open(config: &ServerConfig) -> Result<RegistryState, ServerError> {
        let content =
            ContentStore::open(&config.data_root).map_err(|source| ServerError::Content {
                data_root: config.data_root.clone(),
                source,
            })?;
        let root = config.data_root.join("registry");
        // 0700 as the content store: uploads in progress hold layer data, which may include
        // files other users of the host must not read.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(ServerError::io("cannot create directory", &root))?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(ServerError::io("cannot set mode 0700 on", &root))?;
        let lock = lock_registry(&root, &config.data_root)?;
        let htpasswd = match &config.htpasswd {
            Some(path) => Some(Arc::new(Htpasswd::load(path, &config.realm)?)),
            None => None,
        };
        Ok(RegistryState {
            inner: Arc::new(StateInner {
                content,
                repositories: Repositories::open(&root)?,
                uploads: Uploads::open(&root)?,
                htpasswd,
                max_manifest_size: config.max_manifest_size,
                _lock: lock,
            }),
        })
    }
}

fn lock_registry(root: &Path, data_root: &Path) -> Result<Flock<File>, ServerError> {
    let path = root.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ServerError::io("cannot open", &path))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((_, Errno::EWOULDBLOCK)) => Err(ServerError::DataRootInUse {
            data_root: data_root.to_owned(),
        }),
        Err((_, errno)) => Err(ServerError::io("cannot lock", &path)(errno.into())),
    }
}

/// The distribution API over `state`, with authentication when configured. For embedding;
/// [`bind`] uses it too.
pub fn router(state: RegistryState) -> Router {
    Router::new()
        .fallback(routes::dispatch)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_credentials,
        ))
        // Blobs are streamed, and manifests read with their own limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// A server with its socket bound, not yet accepting requests.
#[derive(Debug)]
pub struct BoundServer {
    listener: TcpListener,
    addr: SocketAddr,
    state: RegistryState,
    tls: Option<RustlsConfig>,
}

/// Opens the state, loads TLS material and binds `config.addr`: every start-up failure
/// surfaces here, before [`BoundServer::serve`].
pub fn bind(config: &ServerConfig) -> Result<BoundServer, ServerError> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(RustlsConfig::from_config(Arc::new(tls::load(cert, key)?))),
        (None, None) => None,
        _ => return Err(ServerError::TlsIncomplete),
    };
    let state = RegistryState::open(config)?;
    let bind_error = |source| ServerError::Bind {
        addr: config.addr,
        source,
    };
    let listener = TcpListener::bind(config.addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok(BoundServer {
        listener,
        addr,
        state,
        tls,
    })
}

impl BoundServer {
    /// The address actually bound (the port chosen, when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting and gives running requests
    /// a grace period to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let handle = Handle::new();
        let app = router(self.state).into_make_service();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        info!(addr = %self.addr, %scheme, "registry listening");
        let server = async {
            match self.tls {
                Some(tls) => {
                    axum_server::from_tcp_rustls(self.listener, tls)
                        .handle(handle.clone())
                        .serve(app)
                        .await
                }
                None => {
                    axum_server::from_tcp(self.listener)
                        .handle(handle.clone())
                        .serve(app)
                        .await
                }
            }
        };
        tokio::pin!(server);
        let served = tokio::select! {
            served = &mut server => served,
            () = shutdown => {
                info!("registry shutting down");
                handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
                server.await
            }
        };
        served.map_err(|source| ServerError::Serve {
            addr: self.addr,
            source,
        })
    }
}

/// [`bind`] then [`BoundServer::serve`].
pub async fn serve(
    config: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    bind(config)?.serve(shutdown).await
}
