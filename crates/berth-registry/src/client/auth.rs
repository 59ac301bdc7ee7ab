//! Answering a registry's `WWW-Authenticate` challenge.
//!
//! - `Basic`: the credentials go in every request (`Authorization: Basic`).
//! - `Bearer`: a token for the session's scopes (`repository:<name>:pull[,push]`, plus the
//!   repositories a cross-repository mount reads from) comes from the challenge's `realm`,
//!   as the distribution token spec says: a GET with the scopes and `service` as query
//!   parameters and Basic credentials when we have them (anonymous otherwise), or an OAuth2
//!   POST (`grant_type=refresh_token`) when the stored secret is an identity token. Tokens
//!   are cached per realm, service, scope set and credentials until shortly before
//!   `expires_in` runs out, in the [`super::Registry`], so concurrent pulls share them.
//!
//! Refused credentials become [`RegistryError::Unauthorized`] that says so; a request that
//! is still refused with a valid token (no access to that repository) is left to the
//! caller, who knows what it was doing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use serde::Deserialize;
use sha2::Digest as _;

use super::session::Access;
use crate::credentials::AuthConfig;
use crate::error::{ErrorBody, RegistryError, Result};

/// Sent as `client_id` to token servers, as the docker CLI sends `docker`.
pub const CLIENT_ID: &str = "berth";

/// Tokens without `expires_in`, or with less, are taken to last this long (the token
/// spec's default and minimum).
const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// How long a token endpoint may take to answer.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercase: `basic`, `bearer`, …
    pub scheme: String,
    /// Parameter names lowercase, values unquoted.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// The challenges of one or more `WWW-Authenticate` header values. Several challenges may
/// share a value (`Bearer realm="…",service="…", Basic realm="…"`); quoted values may hold
/// commas, spaces and backslash escapes.
pub fn parse_challenges<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in values {
        parse_header_value(value, &mut out);
    }
    out
}

fn parse_header_value(s: &str, out: &mut Vec<Challenge>) {
    let mut chars = s.char_indices().peekable();
    // Whether the challenge being read belongs to this header value (a parameter never
    // attaches to a challenge of an earlier value).
    let mut open = false;
    loop {
        while chars
            .next_if(|(_, c)| c.is_whitespace() || *c == ',')
            .is_some()
        {}
        let Some(&(start, _)) = chars.peek() else {
            return;
        };
        let mut end = s.len();
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() || c == ',' || c == '=' {
                end = i;
                break;
            }
            chars.next();
        }
        let token = &s[start..end];
        while chars.next_if(|(_, c)| *c == ' ' || *c == '\t').is_some() {}
        let is_param = matches!(chars.peek(), Some((_, '=')));
        if is_param {
            chars.next();
            while chars.next_if(|(_, c)| *c == ' ' || *c == '\t').is_some() {}
            let mut value = String::new();
            if chars.next_if(|(_, c)| *c == '"').is_some() {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        c => value.push(c),
                    }
                }
            } else {
                while let Some((_, c)) = chars.next_if(|(_, c)| *c != ',' && !c.is_whitespace()) {
                    value.push(c);
                }
            }
            if let (true, false, Some(challenge)) = (open, token.is_empty(), out.last_mut()) {
                challenge.params.insert(token.to_ascii_lowercase(), value);
            }
        } else if !token.is_empty() {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            open = true;
        }
    }
}

/// The challenge berth answers: Bearer if offered, else Basic.
pub fn preferred(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges
        .iter()
        .find(|c| c.is_bearer())
        .or_else(|| challenges.iter().find(|c| c.is_basic()))
}

/// The challenges in a response's headers.
pub fn challenges_in(headers: &HeaderMap) -> Vec<Challenge> {
    parse_challenges(
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// `repository:<name>:pull` or `…:pull,push`.
pub fn repository_scope(repository: &str, access: Access) -> String {
    match access {
        Access::Pull => format!("repository:{repository}:pull"),
        Access::Push => format!("repository:{repository}:pull,push"),
    }
}

/// `Authorization: Basic …` for `user:password`.
pub fn basic_header(user: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or_else(|_| {
        // Base64 is always a valid header value.
        HeaderValue::from_static("Basic")
    });
    value.set_sensitive(true);
    value
}

/// `Authorization: Bearer …`; `None` if the token holds bytes a header cannot.
fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// What a token endpoint answered.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub lifetime: Duration,
    /// An OAuth2 refresh token, issued when offline access was asked for (login): it is
    /// kept as the identity token in place of the password.
    pub refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: u64,
    #[serde(default)]
    refresh_token: String,
}

/// Ask the challenge's realm for a token covering `scopes` (none for a login check).
/// `offline` asks for a refresh token too, as `docker login` does.
pub async fn fetch_token(
    http: &reqwest::Client,
    registry: &str,
    challenge: &Challenge,
    scopes: &[String],
    credentials: Option<&AuthConfig>,
    offline: bool,
) -> Result<IssuedToken> {
    let realm = challenge.param("realm").unwrap_or_default();
    let mut url = url::Url::parse(realm).map_err(|e| RegistryError::Invalid {
        context: format!("{registry}: the token realm {realm:?} of its authentication challenge"),
        message: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RegistryError::Invalid {
            context: format!(
                "{registry}: the token realm {realm:?} of its authentication challenge"
            ),
            message: "not an http(s) URL".into(),
        });
    }
    let service = challenge.param("service");
    let user_password = credentials.and_then(AuthConfig::username_password);
    let identity_token = credentials
        .map(|c| c.identity_token.as_str())
        .filter(|t| !t.is_empty());

    let request = if let Some(refresh) = identity_token {
        // OAuth2: the identity token is a refresh token.
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh.into()),
            ("client_id", CLIENT_ID.into()),
        ];
        if let Some(service) = service {
            form.push(("service", service.into()));
        }
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        if offline {
            form.push(("access_type", "offline".into()));
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        http.post(url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
    } else {
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
            if let Some((user, _)) = &user_password {
                query.append_pair("account", user);
            }
            if offline {
                query.append_pair("offline_token", "true");
                query.append_pair("client_id", CLIENT_ID);
            }
        }
        let request = http.get(url.clone());
        match &user_password {
            Some((user, password)) => request.header(AUTHORIZATION, basic_header(user, password)),
            None => request,
        }
    };

    let token_host = url.host_str().unwrap_or_default().to_owned();
    let resp = request
        .timeout(TOKEN_TIMEOUT)
        .send()
        .await
        .map_err(|e| RegistryError::Connect {
            registry: registry.into(),
            message: format!("token server {token_host}: {}", super::tls::error_chain(&e)),
        })?;
    let status = resp.status().as_u16();
    if status == 401 || status == 403 {
        return Err(refused(registry, credentials));
    }
    let body = resp.bytes().await.map_err(|e| RegistryError::Connect {
        registry: registry.into(),
        message: format!("token server {token_host}: {}", super::tls::error_chain(&e)),
    })?;
    if !(200..300).contains(&status) {
        // Token servers answer errors in the registry's shape or OAuth2's; keep what we can.
        let errors = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| b.errors)
            .unwrap_or_default();
        return Err(RegistryError::Http {
            registry: registry.into(),
            context: format!("getting a token from {token_host}"),
            status,
            errors,
        });
    }
    let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| RegistryError::Invalid {
        context: format!("{registry}: the token from {token_host}"),
        message: e.to_string(),
    })?;
    let token = if reply.token.is_empty() {
        reply.access_token
    } else {
        reply.token
    };
    if token.is_empty() {
        return Err(RegistryError::Invalid {
            context: format!("{registry}: the token from {token_host}"),
            message: "the answer holds no token".into(),
        });
    }
    Ok(IssuedToken {
        token,
        lifetime: Duration::from_secs(reply.expires_in).max(MIN_TOKEN_LIFETIME),
        refresh_token: (!reply.refresh_token.is_empty()).then_some(reply.refresh_token),
    })
}

/// The error for credentials the registry (or its token server) refused.
pub fn refused(registry: &str, credentials: Option<&AuthConfig>) -> RegistryError {
    let message = match credentials {
        None => format!("authentication required; run `berth login {registry}`"),
        Some(c) if c.username_password().is_none() && !c.identity_token.is_empty() => format!(
            "unauthorized: the stored identity token was refused; run `berth login {registry}` again"
        ),
        Some(c) => {
            let user = c.username_password().map(|(u, _)| u).unwrap_or_default();
            format!(
                "unauthorized: incorrect username or password (user {user:?}); run `berth login {registry}` with the right ones"
            )
        }
    };
    RegistryError::Unauthorized {
        registry: registry.into(),
        message,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    realm: String,
    service: String,
    /// Sorted, space-separated.
    scopes: String,
    /// A hash of the credentials, so that two users never share a token.
    identity: [u8; 32],
}

#[derive(Clone)]
struct CachedToken {
    header: HeaderValue,
    /// When to stop using it: a little before it expires.
    renew_at: Instant,
}

/// Bearer tokens of every session of a [`super::Registry`].
#[derive(Clone, Default)]
pub(crate) struct TokenCache(Arc<Mutex<HashMap<TokenKey, CachedToken>>>);

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or_default();
        write!(f, "TokenCache({n} tokens)")
    }
}

impl TokenCache {
    fn get(&self, key: &TokenKey) -> Option<HeaderValue> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.header.clone())
    }

    fn put(&self, key: TokenKey, header: HeaderValue, lifetime: Duration) {
        let now = Instant::now();
        // Renew with a quarter of the lifetime left, at most 30 s early.
        let early = (lifetime / 4).min(Duration::from_secs(30));
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, t| now < t.renew_at);
        map.insert(
            key,
            CachedToken {
                header,
                renew_at: now + lifetime - early,
            },
        );
    }

    fn forget(&self, key: &TokenKey) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The authentication state of one session.
struct State {
    /// The challenge being answered; `None` until the registry sends one.
    challenge: Option<Challenge>,
    scopes: BTreeSet<String>,
}

/// Credentials, challenge and scopes of one session; hands out `Authorization` headers.
pub(crate) struct Authenticator {
    registry: String,
    credentials: Option<AuthConfig>,
    identity: [u8; 32],
    http: reqwest::Client,
    tokens: TokenCache,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("registry", &self.registry)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub(crate) fn new(
        registry: &str,
        credentials: Option<AuthConfig>,
        http: reqwest::Client,
        tokens: TokenCache,
        challenge: Option<Challenge>,
        scopes: impl IntoIterator<Item = String>,
    ) -> Authenticator {
        let mut hash = sha2::Sha256::new();
        if let Some(c) = &credentials {
            let (user, password) = c.username_password().unwrap_or_default();
            for part in [&user, &password, &c.identity_token, &c.registry_token] {
                hash.update(part.as_bytes());
                hash.update([0]);
            }
        }
        Authenticator {
            registry: registry.into(),
            credentials,
            identity: hash.finalize().into(),
            http,
            tokens,
            state: tokio::sync::Mutex::new(State {
                challenge,
                scopes: scopes.into_iter().collect(),
            }),
        }
    }

    /// The `Authorization` header for the next request, fetching a token if needed;
    /// `None` while the registry has not asked for credentials (or we have none to give).
    pub(crate) async fn header(&self) -> Result<Option<HeaderValue>> {
        let state = self.state.lock().await;
        self.header_locked(&state).await
    }

    async fn header_locked(&self, state: &State) -> Result<Option<HeaderValue>> {
        if let Some(c) = &self.credentials {
            if !c.registry_token.is_empty() {
                // A token the caller already holds for this registry (Docker's `registrytoken`).
                return Ok(bearer_header(&c.registry_token));
            }
        }
        let Some(challenge) = &state.challenge else {
            return Ok(None);
        };
        if challenge.is_basic() {
            return Ok(self
                .credentials
                .as_ref()
                .and_then(AuthConfig::username_password)
                .map(|(u, p)| basic_header(&u, &p)));
        }
        let key = self.token_key(challenge, &state.scopes);
        if let Some(header) = self.tokens.get(&key) {
            return Ok(Some(header));
        }
        let scopes: Vec<String> = state.scopes.iter().cloned().collect();
        let issued = fetch_token(
            &self.http,
            &self.registry,
            challenge,
            &scopes,
            self.credentials.as_ref(),
            false,
        )
        .await?;
        let Some(header) = bearer_header(&issued.token) else {
            return Err(RegistryError::Invalid {
                context: format!("{}: its token", self.registry),
                message: "the token holds bytes an HTTP header cannot".into(),
            });
        };
        self.tokens.put(key, header.clone(), issued.lifetime);
        Ok(Some(header))
    }

    fn token_key(&self, challenge: &Challenge, scopes: &BTreeSet<String>) -> TokenKey {
        TokenKey {
            realm: challenge.param("realm").unwrap_or_default().into(),
            service: challenge.param("service").unwrap_or_default().into(),
            scopes: scopes.iter().cloned().collect::<Vec<_>>().join(" "),
            identity: self.identity,
        }
    }

    /// A request carrying `sent` was answered 401 with `headers`: take up the (new)
    /// challenge and return the header to retry with, or `None` when there is nothing
    /// better to send (the caller then returns the 401 as it is).
    pub(crate) async fn answer(
        &self,
        headers: &HeaderMap,
        sent: Option<&HeaderValue>,
    ) -> Result<Option<HeaderValue>> {
        let challenges = challenges_in(headers);
        let Some(challenge) = preferred(&challenges).cloned() else {
            return Ok(None);
        };
        let mut state = self.state.lock().await;
        if challenge.is_bearer() {
            if let Some(scope) = challenge.param("scope") {
                state
                    .scopes
                    .extend(scope.split_whitespace().map(str::to_owned));
            }
            // The token we sent was refused (revoked, or expired early): never reuse it.
            let old = self.token_key(&challenge, &state.scopes);
            if sent.is_some() && self.tokens.get(&old).as_ref() == sent {
                self.tokens.forget(&old);
            }
        }
        state.challenge = Some(challenge);
        let header = self.header_locked(&state).await?;
        if let (Some(new), Some(sent)) = (&header, sent) {
            if new == sent && self.is_basic(new) {
                return Err(refused(&self.registry, self.credentials.as_ref()));
            }
        }
        Ok(header)
    }

    /// The error to return when a retry with `sent` was refused too, if the refusal can
    /// only mean wrong credentials (Basic auth; with tokens, it is missing access).
    pub(crate) fn refusal(&self, sent: &HeaderValue) -> Option<RegistryError> {
        self.is_basic(sent)
            .then(|| refused(&self.registry, self.credentials.as_ref()))
    }

    fn is_basic(&self, header: &HeaderValue) -> bool {
        header.as_bytes().starts_with(b"Basic ")
    }

    /// Widen the scopes (a cross-repository mount reads from another repository).
    pub(crate) async fn add_scope(&self, scope: String) {
        self.state.lock().await.scopes.insert(scope);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(header: &str) -> Vec<Challenge> {
        parse_challenges([header])
    }

    #[test]
    fn bearer_with_quoted_params() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/busybox:pull,push")
        );
    }

    #[test]
    fn several_challenges_and_odd_spacing() {
        let c = one(
            r#"Basic realm="berth, test", BEARER  realm = "http://h/t" , error="insufficient_scope",scope=registry:catalog:*"#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some("berth, test"));
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("realm"), Some("http://h/t"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
        assert_eq!(c[1].param("scope"), Some("registry:catalog:*"));
        assert_eq!(preferred(&c).unwrap().scheme, "bearer");
    }

    #[test]
    fn escapes_bare_schemes_and_several_headers() {
        let c = parse_challenges([
            r#"Basic realm="a \"quoted\" \\ realm""#,
            "Negotiate",
            r#"Bearer realm="r""#,
        ]);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" \ realm"#));
        assert_eq!(c[1].scheme, "negotiate");
        assert!(c[1].params.is_empty());
        assert_eq!(preferred(&c).unwrap().param("realm"), Some("r"));
        assert!(one("").is_empty());
        assert!(one(" , ,").is_empty());
        // A parameter before any scheme belongs to nothing.
        assert!(one("realm=x").is_empty());
        assert_eq!(preferred(&one("Digest realm=x")), None);
    }

    #[test]
    fn scopes_by_access() {
        assert_eq!(repository_scope("a/b", Access::Pull), "repository:a/b:pull");
        assert_eq!(
            repository_scope("a/b", Access::Push),
            "repository:a/b:pull,push"
        );
    }

    #[test]
    fn refusal_messages_say_what_to_do() {
        let none = refused("reg:5000", None).to_string();
        assert!(
            none.contains("reg:5000") && none.contains("berth login reg:5000"),
            "{none}"
        );
        let creds = AuthConfig {
            username: "alice".into(),
            password: "x".into(),
            ..AuthConfig::default()
        };
        let wrong = refused("reg:5000", Some(&creds)).to_string();
        assert!(
            wrong.contains("incorrect username or password") && wrong.contains("alice"),
            "{wrong}"
        );
    }

    #[test]
    fn token_cache_expires() {
        let cache = TokenCache::default();
        let key = TokenKey {
            realm: "r".into(),
            service: "s".into(),
            scopes: String::new(),
            identity: [0; 32],
        };
        cache.put(
            key.clone(),
            HeaderValue::from_static("Bearer t"),
            Duration::from_secs(60),
        );
        assert!(cache.get(&key).is_some());
        cache.put(
            key.clone(),
            HeaderValue::from_static("Bearer t"),
            Duration::ZERO,
        );
        assert!(cache.get(&key).is_none());
        cache.forget(&key);
        assert!(cache.get(&key).is_none());
    }
}
