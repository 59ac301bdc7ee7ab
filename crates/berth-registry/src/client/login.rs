//! `login` and `logout`: check credentials against a registry, then keep them where the
//! docker CLI keeps them (see [`crate::credentials`]).
//!
//! The check is `docker login`'s: `GET /v2/`, and when the registry challenges, answer it
//! — with Basic credentials, or by asking the token server for a token (no scope, offline
//! access, so a registry that issues refresh tokens hands back an identity token to keep
//! instead of the password) and presenting it to `/v2/`.

use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;

use super::auth::{self, basic_header};
use super::session::{endpoint, http_error};
use super::Registry;
use crate::credentials::{server_key, AuthConfig, CredentialStore, DOCKER_HUB_SERVER};
use crate::error::{RegistryError, Result};

/// Docker's answer to a successful login.
pub const LOGIN_SUCCEEDED: &str = "Login Succeeded";

/// What a successful login returns (Docker's `POST /auth` body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginOutcome {
    /// `Login Succeeded`.
    pub status: String,
    /// A refresh token the registry issued, kept in place of the password.
    pub identity_token: Option<String>,
}

/// The domain to connect to for a `login` argument: Docker Hub under any name is
/// `docker.io`; anything else is its `host[:port]` without scheme or path.
pub fn login_domain(server: &str) -> String {
    let key = server_key(server);
    if key == DOCKER_HUB_SERVER {
        "docker.io".into()
    } else {
        key
    }
}

/// Check `auth` against `server` without storing anything (the daemon's `POST /auth`).
pub async fn check_login(
    registry: &Registry,
    server: &str,
    auth: &AuthConfig,
) -> Result<LoginOutcome> {
    let domain = login_domain(server);
    if auth.username_password().is_none() && auth.identity_token.is_empty() {
        return Err(RegistryError::Credentials {
            message: format!("logging in to {domain} needs a username and a password"),
        });
    }
    // Logins go to the registry itself, never a mirror, and look at its current challenge.
    let endpoint = endpoint(registry, &domain, false, true).await?;
    let status = endpoint.ping_status.unwrap_or(401);
    let v2 = endpoint
        .base
        .join("v2/")
        .expect("v2/ joins an http(s) base URL");
    if (200..300).contains(&status) {
        // The registry wants no credentials; Docker reports success all the same.
        return Ok(LoginOutcome {
            status: LOGIN_SUCCEEDED.into(),
            identity_token: None,
        });
    }
    if status != 401 {
        let resp = endpoint
            .http
            .get(v2.clone())
            .send()
            .await
            .map_err(|e| connect_error(&domain, &v2, &e))?;
        return Err(http_error(&domain, "checking the login", resp).await);
    }
    let Some(challenge) = auth::preferred(&endpoint.challenges) else {
        return Err(RegistryError::Invalid {
            context: format!("{domain}: logging in"),
            message: "the registry asks for a kind of authentication berth does not speak (only Basic and Bearer)".into(),
        });
    };
    let (header, identity_token) = if challenge.is_bearer() {
        let issued = auth::fetch_token(&endpoint.http, &domain, challenge, &[], Some(auth), true)
            .await
            .map_err(|e| login_refused(&domain, e))?;
        let header = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", issued.token))
            .map_err(|_| RegistryError::Invalid {
                context: format!("{domain}: its token"),
                message: "the token holds bytes an HTTP header cannot".into(),
            })?;
        (header, issued.refresh_token)
    } else {
        let Some((user, password)) = auth.username_password() else {
            return Err(RegistryError::Credentials {
                message: format!("{domain} takes a username and password, not an identity token"),
            });
        };
        (basic_header(&user, &password), None)
    };
    let resp = endpoint
        .http
        .get(v2.clone())
        .header(AUTHORIZATION, header)
        .send()
        .await
        .map_err(|e| connect_error(&domain, &v2, &e))?;
    match resp.status() {
        s if s.is_success() => Ok(LoginOutcome {
            status: LOGIN_SUCCEEDED.into(),
            identity_token,
        }),
        StatusCode::UNAUTHORIZED => Err(incorrect(&domain)),
        _ => Err(http_error(&domain, "checking the login", resp).await),
    }
}

/// Check `auth` against `server`, then store it: with the credential helper configured for
/// the server, else in `config.json`. An identity token the registry issued is stored in
/// place of the password.
pub async fn login(registry: &Registry, server: &str, auth: &AuthConfig) -> Result<LoginOutcome> {
    let outcome = check_login(registry, server, auth).await?;
    let (username, password) = auth.username_password().unwrap_or_default();
    let identity_token = outcome
        .identity_token
        .clone()
        .unwrap_or_else(|| auth.identity_token.clone());
    let keep = AuthConfig {
        username,
        password: if identity_token.is_empty() {
            password
        } else {
            String::new()
        },
        server_address: server_key(server),
        identity_token,
        ..AuthConfig::default()
    };
    let store = registry.credentials.clone();
    let server = server.to_owned();
    tokio::task::spawn_blocking(move || store.store(&server, &keep))
        .await
        .map_err(|e| RegistryError::Credentials {
            message: format!("storing credentials: {e}"),
        })??;
    Ok(outcome)
}

/// Forget the credentials stored for `server`; an error when there were none.
pub fn logout(store: &CredentialStore, server: &str) -> Result<()> {
    if store.erase(server)? {
        Ok(())
    } else {
        Err(RegistryError::NotLoggedIn {
            server: server_key(server),
        })
    }
}

/// The error for credentials the registry refused at login: Docker Hub's wording.
fn incorrect(domain: &str) -> RegistryError {
    RegistryError::Unauthorized {
        registry: domain.into(),
        message: "unauthorized: incorrect username or password".into(),
    }
}

/// A refusal from the token server, worded for a login.
fn login_refused(domain: &str, e: RegistryError) -> RegistryError {
    match e {
        RegistryError::Unauthorized { .. } => incorrect(domain),
        other => other,
    }
}

fn connect_error(domain: &str, url: &url::Url, e: &reqwest::Error) -> RegistryError {
    RegistryError::Connect {
        registry: domain.into(),
        message: format!("{url}: {}", super::tls::error_chain(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_arguments_normalise_as_docker() {
        assert_eq!(login_domain(""), "docker.io");
        assert_eq!(login_domain("docker.io"), "docker.io");
        assert_eq!(login_domain("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_domain("index.docker.io"), "docker.io");
        assert_eq!(
            login_domain("https://reg.example.com:5000/v2/"),
            "reg.example.com:5000"
        );
        assert_eq!(login_domain("localhost:5000"), "localhost:5000");
    }

    #[test]
    fn logout_without_credentials_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().to_owned());
        let err = logout(&store, "https://reg.example.com/").unwrap_err();
        assert_eq!(err.to_string(), "not logged in to reg.example.com");
    }
}
