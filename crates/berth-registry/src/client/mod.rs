//! The registry client: sessions with registries, pull and push.
//!
//! A [`Registry`] holds what every transfer shares (transport policy, credentials, the
//! concurrency limits); a [`session::Session`] talks to one repository of one registry and
//! owns the authentication dance; [`pull`] and [`push`] move images between a session and
//! the [`berth_image::store::ImageStore`].

pub mod auth;
pub mod login;
pub mod pull;
pub mod push;
pub mod session;
pub mod sources;
pub mod tls;

use std::path::PathBuf;

use crate::credentials::CredentialStore;

/// The default directory of per-registry TLS material, laid out as Docker's `certs.d`.
pub const DEFAULT_CERTS_DIR: &str = "/etc/berth/certs.d";

/// Transport policy and limits, from daemon.json / flags (Docker's names in comments).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Registries reachable over plain HTTP (`insecure-registries`): `host`, `host:port` or a
    /// CIDR such as `10.0.0.0/8`. Loopback registries always are, as in Docker.
    pub insecure_registries: Vec<String>,
    /// Pull-through mirrors for Docker Hub (`registry-mirrors`), tried in order before it.
    pub registry_mirrors: Vec<String>,
    /// Per-registry CAs and client certificates: `<certs_dir>/<host:port>/{*.crt,*.cert,*.key}`.
    pub certs_dir: PathBuf,
    /// Layers downloaded at once per pull (`max-concurrent-downloads`, default 3).
    pub max_concurrent_downloads: usize,
    /// Layers uploaded at once per push (`max-concurrent-uploads`, default 5).
    pub max_concurrent_uploads: usize,
    /// Attempts per layer before a transient error fails the pull (`max-download-attempts`, 5).
    pub max_download_attempts: u32,
    /// `User-Agent` sent to registries.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            insecure_registries: Vec::new(),
            registry_mirrors: Vec::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            max_download_attempts: 5,
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What every session of one client shares: the configuration and credentials, and what
/// was learnt on the way (HTTP clients per host, the endpoint each registry answered on,
/// bearer tokens), shared by clones.
#[derive(Debug, Clone)]
pub struct Registry {
    pub config: ClientConfig,
    /// Where credentials come from when a caller gives none (the daemon passes the
    /// client's `X-Registry-Auth` instead).
    pub credentials: CredentialStore,
    clients: tls::ClientCache,
    endpoints: session::EndpointCache,
    tokens: auth::TokenCache,
    /// Docker's exception: registries on loopback may use plain HTTP or unverified TLS.
    loopback_insecure: bool,
}

impl Registry {
    pub fn new(config: ClientConfig, credentials: CredentialStore) -> Registry {
        Registry {
            config,
            credentials,
            clients: tls::ClientCache::default(),
            endpoints: session::EndpointCache::default(),
            tokens: auth::TokenCache::default(),
            loopback_insecure: true,
        }
    }

    /// Hold registries on loopback to the same rules as any other: verified HTTPS unless
    /// listed in `insecure_registries`. Docker always lets them use plain HTTP; this is for
    /// hosts that want no such exception, and lets tests check the TLS rules on 127.0.0.1.
    pub fn require_tls_on_loopback(mut self) -> Registry {
        self.loopback_insecure = false;
        // Endpoints learnt under the old rule are not shared with this one.
        self.endpoints = session::EndpointCache::default();
        self
    }
}

/// Run blocking store work (file I/O, hashing, compression) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> crate::error::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::RegistryError::Io {
            context: "a blocking task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}
