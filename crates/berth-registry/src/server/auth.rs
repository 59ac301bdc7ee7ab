//! HTTP Basic authentication against an htpasswd file, as distribution's `htpasswd` access
//! controller: every request, `/v2/` included, needs a user of the file; anything else
//! gets 401 with `WWW-Authenticate: Basic realm="…"`, which is how clients learn to send
//! credentials.
//!
//! Only bcrypt entries are accepted: the other htpasswd formats (MD5-crypt, SHA-1, crypt)
//! are too cheap to brute-force to protect a registry. bcrypt is slow on purpose, so a
//! verified `Authorization` header is remembered (by its sha256, never in clear) and a
//! client's many requests cost one verification.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use tracing::debug;

use super::error::{ApiError, ErrorCode, ServerError};
use super::RegistryState;

/// Verified headers kept at most; past it the cache starts over, which costs one bcrypt
/// verification per client.
const MAX_CACHED: usize = 1024;

/// The users of an htpasswd file, and the credentials already verified.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    realm: String,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Htpasswd {
    /// Reads `path`: `user:bcrypt-hash` lines; blank lines and `#` comments are skipped.
    pub fn load(path: &Path, realm: &str) -> Result<Htpasswd, ServerError> {
        let text = std::fs::read_to_string(path).map_err(ServerError::io("cannot read", path))?;
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: &str| ServerError::Htpasswd {
                path: path.to_owned(),
                line: index + 1,
                message: message.to_owned(),
            };
            let Some((user, hash)) = line.split_once(':') else {
                return Err(error("expected user:hash"));
            };
            if user.is_empty() {
                return Err(error("the user name is empty"));
            }
            if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
                return Err(error(&format!(
                    "user {user:?} does not have a bcrypt hash; only bcrypt is accepted: \
                     create the entry with `htpasswd -B`"
                )));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err(ServerError::Htpasswd {
                path: path.to_owned(),
                line: 0,
                message: "no users; nobody could log in".to_owned(),
            });
        }
        Ok(Htpasswd {
            users,
            realm: realm.to_owned(),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Whether `authorization` (the header's value) names a user with the right password.
    /// Blocking: bcrypt takes milliseconds to seconds by design.
    fn check(&self, authorization: &str) -> bool {
        let key: [u8; 32] = Sha256::digest(authorization.as_bytes()).into();
        if self.cache().contains(&key) {
            return true;
        }
        let Some((user, password)) = basic_credentials(authorization) else {
            return false;
        };
        let valid = self
            .users
            .get(&user)
            .is_some_and(|hash| bcrypt::verify(&password, hash).unwrap_or(false));
        if valid {
            let mut cache = self.cache();
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key);
        } else {
            debug!(%user, "basic authentication failed");
        }
        valid
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `(user, password)` of a `Basic` authorization header.
fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    crate::credentials::decode_auth(encoded)
}

/// Middleware: lets a request through only with valid credentials, when auth is on.
pub async fn require_credentials(
    State(state): State<RegistryState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(htpasswd) = state.inner.htpasswd.clone() else {
        return next.run(request).await;
    };
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let realm = htpasswd.realm.replace('"', "");
    let valid = match authorization {
        None => false,
        Some(authorization) => tokio::task::spawn_blocking(move || htpasswd.check(&authorization))
            .await
            .unwrap_or(false),
    };
    if valid {
        return next.run(request).await;
    }
    ApiError::new(
        ErrorCode::Unauthorized,
        "authentication required: log in with a user of the registry's htpasswd file",
    )
    .with_header(WWW_AUTHENTICATE, format!("Basic realm=\"{realm}\""))
    .into_response()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn header(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    #[test]
    fn only_bcrypt_users_with_the_right_password_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let hash = bcrypt::hash("secret", 4).unwrap();
        std::fs::write(&path, format!("# users\n\nalice:{hash}\n")).unwrap();
        let htpasswd = Htpasswd::load(&path, "r").unwrap();
        assert!(htpasswd.check(&header("alice", "secret")));
        assert!(htpasswd.check(&header("alice", "secret")), "cached");
        assert!(!htpasswd.check(&header("alice", "wrong")));
        assert!(!htpasswd.check(&header("bob", "secret")));
        assert!(!htpasswd.check("Bearer xyz"));
        assert!(!htpasswd.check("Basic !!!"));
        assert!(!htpasswd.check("Basic"));

        std::fs::write(&path, "alice:{SHA}abc\n").unwrap();
        let err = Htpasswd::load(&path, "r").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("bcrypt"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(Htpasswd::load(&path, "r").is_err());
    }
}
