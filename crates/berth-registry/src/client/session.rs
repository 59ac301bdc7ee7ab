//! One repository of one registry: endpoint choice and authentication.
//!
//! OWNED BY THE AUTH HELPER. This first version is anonymous and plain-HTTP only, enough for
//! pull/push to be written against the interface below, which stays.

use reqwest::{Method, RequestBuilder, Response};

use super::Registry;
use crate::credentials::AuthConfig;
use crate::error::{RegistryError, Result};

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
    base: url::Url,
    http: reqwest::Client,
}

impl Session {
    /// Reach `registry` (`docker.io` means Docker Hub, through mirrors if configured) for
    /// `repository` with `access`, authenticating with `auth` or else the stored
    /// credentials.
    pub async fn connect(
        registry: &Registry,
        domain: &str,
        repository: &str,
        _access: Access,
        _auth: Option<&AuthConfig>,
    ) -> Result<Session> {
        let base = url::Url::parse(&format!("http://{domain}/")).map_err(|e| {
            RegistryError::InvalidReference {
                reference: domain.into(),
                message: e.to_string(),
            }
        })?;
        let http = reqwest::Client::builder()
            .user_agent(registry.config.user_agent.clone())
            .build()
            .map_err(|e| RegistryError::Connect {
                registry: domain.into(),
                message: e.to_string(),
            })?;
        Ok(Session {
            registry: domain.into(),
            repository: repository.into(),
            base,
            http,
        })
    }

    /// The registry as the user named it (`localhost:5000`, `docker.io`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// A request to `path` (absolute, `/v2/...`, query included) on this session's endpoint.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = self.base.join(path.trim_start_matches('/')).expect("path");
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
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        request.send().await.map_err(|e| RegistryError::Connect {
            registry: self.registry.clone(),
            message: e.to_string(),
        })
    }

    /// Widen the token to pull from `repository` too (a cross-repository mount needs it).
    pub async fn add_pull_scope(&self, _repository: &str) -> Result<()> {
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
