//! One repository of one registry: which endpoint answers, and authentication.
//!
//! Connecting finds the endpoint: for a pull from Docker Hub the configured mirrors first,
//! in order, then `https://registry-1.docker.io`; for another registry HTTPS, and for an
//! insecure one (loopback, or listed in `insecure_registries`) HTTPS without verification
//! and then plain HTTP, as Docker does. The first base URL whose `GET /v2/` gets any HTTP
//! answer wins and is remembered in the [`Registry`], with the challenge it sent, so later
//! sessions go straight there. Requests carry credentials from the first one on when the
//! challenge is known; a 401 is answered once (see [`super::auth`]).
//!
//! [`with_retries`] and [`backoff`] are the retry policy for transient failures
//! ([`RegistryError::is_transient`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

use super::auth::{self, Authenticator, Challenge};
use super::tls::{self, Verify};
use super::Registry;
use crate::credentials::{self, AuthConfig};
use crate::error::{RegistryError, Result};

/// Docker Hub's API endpoint (references say `docker.io`).
const DOCKER_HUB_ENDPOINT: &str = "https://registry-1.docker.io/";

/// How long `GET /v2/` may take when probing an endpoint.
const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// What a session will do with its repository (the token scope's actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// A connection to `repository` on `registry` (the reference's domain).
#[derive(Debug)]
pub struct Session {
    registry: String,
    repository: String,
    base: Url,
    http: reqwest::Client,
    /// Where the endpoint is remembered, to forget it when it stops answering.
    endpoint_key: String,
    endpoints: EndpointCache,
    auth: Authenticator,
}

impl Session {
    /// Reach `registry` (`docker.io` means Docker Hub, through mirrors if configured) for
    /// `repository` with `access`, authenticating with `auth` or else the stored
    /// credentials.
    pub async fn connect(
        registry: &Registry,
        domain: &str,
        repository: &str,
        access: Access,
        auth: Option<&AuthConfig>,
    ) -> Result<Session> {
        let credentials = match auth.filter(|a| !a.is_empty()) {
            Some(a) => Some(a.clone()),
            None => stored_credentials(registry, domain).await?,
        };
        let endpoint = endpoint(registry, domain, access == Access::Pull, false).await?;
        tracing::debug!(registry = domain, endpoint = %endpoint.base, "registry endpoint");
        let auth = Authenticator::new(
            domain,
            credentials,
            endpoint.http.clone(),
            registry.tokens.clone(),
            auth::preferred(&endpoint.challenges).cloned(),
            [auth::repository_scope(repository, access)],
        );
        Ok(Session {
            registry: domain.into(),
            repository: repository.into(),
            base: endpoint.base,
            http: endpoint.http,
            endpoint_key: endpoint.key,
            endpoints: registry.endpoints.clone(),
            auth,
        })
    }

    /// The registry as the user named it (`localhost:5000`, `docker.io`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The base URL requests go to (`https://registry-1.docker.io/`, a mirror, …).
    pub fn endpoint(&self) -> &Url {
        &self.base
    }

    /// A request to `path` (absolute, `/v2/...`, query included) on this session's endpoint.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        // The base is an http(s) URL ending in `/` and paths start with `/v2/`: joining
        // a relative path to it always succeeds.
        let url = self
            .base
            .join(path.trim_start_matches('/'))
            .expect("a /v2/ path joins an http(s) base URL");
        self.http.request(method, url)
    }

    /// A request to an absolute URL or a path (upload `Location` headers may be either).
    pub fn request_location(&self, method: Method, location: &str) -> Result<RequestBuilder> {
        let url = self
            .base
            .join(location)
            .map_err(|e| RegistryError::Invalid {
                context: format!("upload location {location:?} from {}", self.registry),
                message: e.to_string(),
            })?;
        Ok(self.http.request(method, url))
    }

    /// Send with credentials; a 401 is answered (new token) and the request retried once when
    /// its body can be replayed. Other statuses are returned for the caller to judge.
    ///
    /// Credentials only go to this session's endpoint: a `Location` on another host (a
    /// storage redirect) gets the request without them.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let (client, request) = request.build_split();
        let mut request = request.map_err(|e| RegistryError::Invalid {
            context: format!("a request to {}", self.registry),
            message: tls::error_chain(&e),
        })?;
        let ours = same_origin(request.url(), &self.base);
        let sent = if ours {
            self.auth.header().await?
        } else {
            None
        };
        if let Some(header) = &sent {
            request.headers_mut().insert(AUTHORIZATION, header.clone());
        }
        let replay = request.try_clone();
        let resp = self.execute(&client, request).await?;
        if resp.status() != StatusCode::UNAUTHORIZED || !ours {
            return Ok(resp);
        }
        let Some(header) = self.auth.answer(resp.headers(), sent.as_ref()).await? else {
            return Ok(resp);
        };
        let Some(mut replay) = replay else {
            // A streamed body cannot be sent twice; the next request has the new header.
            return Ok(resp);
        };
        replay.headers_mut().insert(AUTHORIZATION, header.clone());
        let resp = self.execute(&client, replay).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            if let Some(e) = self.auth.refusal(&header) {
                return Err(e);
            }
        }
        Ok(resp)
    }

    async fn execute(
        &self,
        client: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<Response> {
        let method = request.method().clone();
        let mut url = request.url().clone();
        url.set_query(None);
        client.execute(request).await.map_err(|e| {
            // The endpoint may have moved (restarted with TLS, say): probe afresh next time.
            self.endpoints.forget(&self.endpoint_key);
            RegistryError::Connect {
                registry: self.registry.clone(),
                message: format!("{method} {url}: {}", tls::error_chain(&e)),
            }
        })
    }

    /// Widen the token to pull from `repository` too (a cross-repository mount needs it).
    pub async fn add_pull_scope(&self, repository: &str) -> Result<()> {
        self.auth
            .add_scope(auth::repository_scope(repository, Access::Pull))
            .await;
        Ok(())
    }
}

/// The error for a response with status `resp.status()`, its body read for the registry's
/// error codes. `context` says what was being done ("fetching manifest busybox:latest").
pub async fn http_error(registry: &str, context: &str, resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let errors = serde_json::from_slice::<crate::error::ErrorBody>(&body)
        .map(|b| b.errors)
        .unwrap_or_default();
    if status == 401 || status == 403 {
        return RegistryError::Unauthorized {
            registry: registry.into(),
            message: format!(
                "{context}: {}; run `berth login {registry}` with an account that has access",
                crate::error::describe(status, &errors)
            ),
        };
    }
    RegistryError::Http {
        registry: registry.into(),
        context: context.into(),
        status,
        errors,
    }
}

/// The delay before retry number `attempt` (1-based): 1, 2, 4, 8 seconds, then 10.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs((1u64 << attempt.saturating_sub(1).min(4)).min(10))
}

/// Run `f` up to `attempts` times while it fails with a transient error
/// ([`RegistryError::is_transient`]), sleeping [`backoff`] between tries. `on_retry` hears
/// of each retry before its delay: the attempt that failed (1-based) and the delay.
pub async fn with_retries<T, F, Fut>(
    attempts: u32,
    on_retry: impl Fn(u32, Duration),
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let attempts = attempts.max(1);
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if e.is_transient() && attempt < attempts => {
                let delay = backoff(attempt);
                tracing::debug!(attempt, delay_s = delay.as_secs(), error = %e, "transient registry error; retrying");
                on_retry(attempt, delay);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The credentials stored for `domain`, read off the async runtime (a credential helper
/// is a process, and may take its time).
async fn stored_credentials(registry: &Registry, domain: &str) -> Result<Option<AuthConfig>> {
    let store = registry.credentials.clone();
    let domain = domain.to_owned();
    tokio::task::spawn_blocking(move || store.get(&domain))
        .await
        .map_err(|e| RegistryError::Credentials {
            message: format!("reading stored credentials: {e}"),
        })?
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// An endpoint that answered, remembered per registry (or mirror).
#[derive(Debug, Clone)]
struct Remembered {
    base: Url,
    certs_host: Option<String>,
    verify: Verify,
    challenges: Vec<Challenge>,
}

/// The endpoints of a [`Registry`]'s registries, shared by its clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndpointCache(Arc<Mutex<HashMap<String, Remembered>>>);

impl EndpointCache {
    fn get(&self, key: &str) -> Option<Remembered> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn put(&self, key: &str, endpoint: Remembered) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), endpoint);
    }

    fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// A base URL that answers the distribution API.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) key: String,
    pub(crate) base: Url,
    pub(crate) http: reqwest::Client,
    pub(crate) challenges: Vec<Challenge>,
    /// The status of `GET /v2/`, when it was just probed.
    pub(crate) ping_status: Option<u16>,
}

/// One way to reach a registry.
#[derive(Debug, Clone)]
struct Candidate {
    base: Url,
    certs_host: Option<String>,
    verify: Verify,
}

/// Candidates tried in order until one answers, remembered under `key`.
#[derive(Debug)]
struct Group {
    key: String,
    /// The registry or mirror, for messages.
    name: String,
    candidates: Vec<Candidate>,
    /// Whether it is the registry itself (its errors are returned) or a mirror (its
    /// errors are logged and the next group is tried).
    mirror: bool,
}

/// The endpoint for `domain`: remembered, or found by probing (always probed when `fresh`).
/// `use_mirrors` allows Docker Hub's mirrors (pulls only).
pub(crate) async fn endpoint(
    registry: &Registry,
    domain: &str,
    use_mirrors: bool,
    fresh: bool,
) -> Result<Endpoint> {
    // A registry's endpoint is remembered under its name: no name lookup needed then.
    if !fresh && credentials::server_key(domain) != credentials::DOCKER_HUB_SERVER {
        if let Some(r) = registry.endpoints.get(domain) {
            return remembered(registry, domain, domain, r);
        }
    }
    let groups = groups(registry, domain, use_mirrors).await?;
    let mut last_err = None;
    for group in groups {
        match endpoint_of(registry, &group, fresh).await {
            Ok(endpoint) => return Ok(endpoint),
            Err(e) if group.mirror => {
                tracing::warn!(mirror = group.name, error = %e, "registry mirror unusable; trying the next");
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| RegistryError::Connect {
        registry: domain.into(),
        message: "no endpoint to try".into(),
    }))
}

async fn endpoint_of(registry: &Registry, group: &Group, fresh: bool) -> Result<Endpoint> {
    if !fresh {
        if let Some(r) = registry.endpoints.get(&group.key) {
            return remembered(registry, &group.key, &group.name, r);
        }
    }
    let mut errors = Vec::new();
    for candidate in &group.candidates {
        let http = tls::client(
            registry,
            &group.name,
            candidate.certs_host.as_deref(),
            candidate.verify,
        )?;
        let url = candidate
            .base
            .join("v2/")
            .expect("v2/ joins an http(s) base URL");
        match http.get(url.clone()).timeout(PING_TIMEOUT).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let challenges = auth::challenges_in(resp.headers());
                registry.endpoints.put(
                    &group.key,
                    Remembered {
                        base: candidate.base.clone(),
                        certs_host: candidate.certs_host.clone(),
                        verify: candidate.verify,
                        challenges: challenges.clone(),
                    },
                );
                return Ok(Endpoint {
                    key: group.key.clone(),
                    base: candidate.base.clone(),
                    http,
                    challenges,
                    ping_status: Some(status),
                });
            }
            Err(e) => {
                tracing::debug!(registry = group.name, %url, error = %tls::error_chain(&e), "endpoint did not answer");
                let err = if url.scheme() == "https" && candidate.verify == Verify::Yes {
                    tls::https_error(&registry.config, &group.name, url.as_str(), &e)
                } else {
                    RegistryError::Connect {
                        registry: group.name.clone(),
                        message: format!("{url}: {}", tls::error_chain(&e)),
                    }
                };
                errors.push(err);
            }
        }
    }
    // One candidate: its error as it is. Several (HTTPS then HTTP): all their messages.
    if errors.len() == 1 {
        return Err(errors.remove(0));
    }
    let message = errors
        .iter()
        .map(|e| match e {
            RegistryError::Connect { message, .. } => message.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(RegistryError::Connect {
        registry: group.name.clone(),
        message,
    })
}

fn remembered(registry: &Registry, key: &str, name: &str, r: Remembered) -> Result<Endpoint> {
    let http = tls::client(registry, name, r.certs_host.as_deref(), r.verify)?;
    Ok(Endpoint {
        key: key.to_owned(),
        base: r.base,
        http,
        challenges: r.challenges,
        ping_status: None,
    })
}

/// The groups of endpoints to try for `domain`, best first.
async fn groups(registry: &Registry, domain: &str, use_mirrors: bool) -> Result<Vec<Group>> {
    let config = &registry.config;
    let mut groups = Vec::new();
    if credentials::server_key(domain) == credentials::DOCKER_HUB_SERVER {
        if use_mirrors {
            for mirror in &config.registry_mirrors {
                match mirror_group(registry, mirror).await {
                    Ok(group) => groups.push(group),
                    Err(message) => {
                        tracing::warn!(mirror, message, "ignoring registry mirror");
                    }
                }
            }
        }
        groups.push(Group {
            key: "docker.io".into(),
            name: domain.into(),
            candidates: vec![Candidate {
                base: Url::parse(DOCKER_HUB_ENDPOINT).expect("a valid URL"),
                // Docker Hub is trusted through the system roots only, as in Docker.
                certs_host: None,
                verify: Verify::Yes,
            }],
            mirror: false,
        });
        return Ok(groups);
    }
    let https =
        Url::parse(&format!("https://{domain}/")).map_err(|e| RegistryError::InvalidReference {
            reference: domain.into(),
            message: format!("not a registry host: {e}"),
        })?;
    let mut http = https.clone();
    http.set_scheme("http")
        .expect("https and http are both special schemes");
    let insecure = tls::is_insecure(
        config,
        domain,
        &tls::addresses(domain).await,
        registry.loopback_insecure,
    );
    let certs_host = Some(domain.to_owned());
    let mut candidates = vec![Candidate {
        base: https,
        certs_host: certs_host.clone(),
        verify: if insecure { Verify::No } else { Verify::Yes },
    }];
    if insecure {
        candidates.push(Candidate {
            base: http,
            certs_host,
            verify: Verify::No,
        });
    }
    groups.push(Group {
        key: domain.into(),
        name: domain.into(),
        candidates,
        mirror: false,
    });
    Ok(groups)
}

/// A mirror URL as an endpoint group; a message when it is not a usable URL.
async fn mirror_group(registry: &Registry, mirror: &str) -> std::result::Result<Group, String> {
    let mut base = Url::parse(mirror.trim()).map_err(|e| e.to_string())?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err("a mirror must be an http:// or https:// URL".into());
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.set_query(None);
    base.set_fragment(None);
    let host = match (base.host_str(), base.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => unreachable!("checked above"),
    };
    let insecure = tls::is_insecure(
        &registry.config,
        &host,
        &tls::addresses(&host).await,
        registry.loopback_insecure,
    );
    Ok(Group {
        key: format!("mirror {base}"),
        name: host.clone(),
        candidates: vec![Candidate {
            base,
            certs_host: Some(host),
            verify: if insecure { Verify::No } else { Verify::Yes },
        }],
        mirror: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let secs: Vec<u64> = (1..=7).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_transient_errors() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let retries = Mutex::new(Vec::new());
        let result = with_retries(
            5,
            |attempt, delay| retries.lock().unwrap().push((attempt, delay.as_secs())),
            || async {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if n < 3 {
                    Err(RegistryError::Http {
                        registry: "r".into(),
                        context: "c".into(),
                        status: 503,
                        errors: Vec::new(),
                    })
                } else {
                    Ok(n)
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(*retries.lock().unwrap(), [(1, 1), (2, 2)]);

        // A permanent error is returned at once.
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result: Result<()> = with_retries(
            5,
            |_, _| panic!("no retry for a permanent error"),
            || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Err(RegistryError::Unauthorized {
                    registry: "r".into(),
                    message: "m".into(),
                })
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);

        // The last attempt's error comes back when they run out.
        let result: Result<()> = with_retries(
            2,
            |_, _| {},
            || async {
                Err(RegistryError::Connect {
                    registry: "r".into(),
                    message: "refused".into(),
                })
            },
        )
        .await;
        assert!(result.unwrap_err().is_transient());
    }

    #[test]
    fn origins() {
        let base = Url::parse("https://reg:5000/").unwrap();
        assert!(same_origin(
            &Url::parse("https://reg:5000/v2/x?y").unwrap(),
            &base
        ));
        assert!(!same_origin(
            &Url::parse("https://s3.example.com/x").unwrap(),
            &base
        ));
        assert!(!same_origin(
            &Url::parse("http://reg:5000/v2/").unwrap(),
            &base
        ));
        let hub = Url::parse(DOCKER_HUB_ENDPOINT).unwrap();
        assert!(same_origin(
            &Url::parse("https://registry-1.docker.io:443/v2/").unwrap(),
            &hub
        ));
    }
}
