//! Credentials in the docker CLI's `config.json` form, so `berth login` and `docker login`
//! share them.
//!
//! The file keeps `auths` keyed by server: `https://index.docker.io/v1/` for Docker Hub,
//! `host[:port]` for any other registry (older clients also wrote `https://host[:port]`
//! or a URL with a path; those keys are still found). An entry holds `auth` =
//! base64(`user:password`) and, when the registry issued one, an `identitytoken` used in
//! place of the password. When `credHelpers` names a helper for the server, or `credsStore`
//! names one for all servers, the secret lives with the `docker-credential-<name>` program
//! instead (`get`, `store`, `erase` over stdin/stdout), and `auths` only remembers the
//! server with an empty entry, as the docker CLI does.
//!
//! Writes keep every field berth does not know, go through a temporary file that is synced
//! and renamed over `config.json` (mode 0600, directory 0700), so a crash leaves the old
//! file or the new one, never half of either.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{io_err, RegistryError, Result};

/// The key under which the docker CLI keeps Docker Hub's credentials.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// Names under which a reference or a `login` argument may mean Docker Hub.
const DOCKER_HUB_NAMES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The user name a credential helper reports when its secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

/// Docker's `AuthConfig` (the `X-Registry-Auth` header and `POST /auth` body use it).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(
        default,
        rename = "serveraddress",
        skip_serializing_if = "String::is_empty"
    )]
    pub server_address: String,
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub identity_token: String,
    #[serde(
        default,
        rename = "registrytoken",
        skip_serializing_if = "String::is_empty"
    )]
    pub registry_token: String,
}

/// Secrets stay out of logs and panics: only whether each one is set is shown.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("auth", &secret(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &secret(&self.identity_token))
            .field("registry_token", &secret(&self.registry_token))
            .finish()
    }
}

fn secret(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

impl AuthConfig {
    /// User name and password, from the fields or else from `auth` (base64 `user:password`,
    /// as the docker CLI sends in `X-Registry-Auth`). `None` when neither gives a user.
    pub fn username_password(&self) -> Option<(String, String)> {
        if !self.username.is_empty() {
            return Some((self.username.clone(), self.password.clone()));
        }
        decode_auth(&self.auth).filter(|(user, _)| !user.is_empty())
    }

    /// Whether this carries anything to authenticate with.
    pub fn is_empty(&self) -> bool {
        self.username_password().is_none()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }
}

/// `user:password` from base64 (config.json's `auth` field, a `Basic` header's
/// credentials); `None` if it is empty or malformed.
pub(crate) fn decode_auth(auth: &str) -> Option<(String, String)> {
    if auth.is_empty() {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.trim_end_matches('\0').to_owned()))
}

fn encode_auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// The `auths` key for a server as the docker CLI spells it: Docker Hub under any of its
/// names (or none) is [`DOCKER_HUB_SERVER`]; anything else is its `host[:port]`, without
/// scheme or path.
pub fn server_key(server: &str) -> String {
    let host = hostname_of(server.trim());
    if host.is_empty()
        || DOCKER_HUB_NAMES
            .iter()
            .any(|n| host.eq_ignore_ascii_case(n))
    {
        DOCKER_HUB_SERVER.to_owned()
    } else {
        host.to_owned()
    }
}

/// `host[:port]` of a server written with or without a scheme and a path.
pub fn hostname_of(server: &str) -> &str {
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| {
            server
                .get(..scheme.len())
                .filter(|p| p.eq_ignore_ascii_case(scheme))
                .map(|_| &server[scheme.len()..])
        })
        .unwrap_or(server);
    rest.split('/').next().unwrap_or_default()
}

/// Whether two `auths` keys name the same server.
fn same_server(a: &str, b: &str) -> bool {
    server_key(a) == server_key(b)
}

/// A docker config directory (`$DOCKER_CONFIG`, else `~/.docker`).
#[derive(Debug, Clone)]
pub struct CredentialStore {
    pub dir: PathBuf,
    /// Searched before `$PATH` for `docker-credential-<name>` (lets tests supply helpers
    /// without touching the process environment).
    helper_dir: Option<PathBuf>,
}

/// What `credHelpers`/`credsStore` select for one server.
struct Helper {
    name: String,
    /// `credHelpers` or `credsStore`, for error messages.
    setting: &'static str,
}

impl CredentialStore {
    pub fn new(dir: PathBuf) -> CredentialStore {
        CredentialStore {
            dir,
            helper_dir: None,
        }
    }

    /// The directory the docker CLI uses: `$DOCKER_CONFIG`, else `$HOME/.docker`, else the
    /// home directory of the current user in the password database.
    pub fn from_env() -> CredentialStore {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return CredentialStore::new(dir.into());
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.dir)
            })
            .unwrap_or_else(|| PathBuf::from("/"));
        CredentialStore::new(home.join(".docker"))
    }

    /// Look for credential helpers in `dir` before `$PATH`.
    pub fn with_helper_dir(mut self, dir: PathBuf) -> CredentialStore {
        self.helper_dir = Some(dir);
        self
    }

    /// `<dir>/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Credentials for `registry` (a reference's domain, or any spelling [`server_key`]
    /// accepts), if any are stored.
    pub fn get(&self, registry: &str) -> Result<Option<AuthConfig>> {
        let key = server_key(registry);
        let config = self.load()?;
        if let Some(helper) = helper_for(&config, &key) {
            return self.helper_get(&helper, &key);
        }
        let Some((_, entry)) = find_entry(&config, &key) else {
            return Ok(None);
        };
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (username, password) =
            decode_auth(&field("auth")).unwrap_or_else(|| (field("username"), field("password")));
        let auth = AuthConfig {
            username,
            password,
            server_address: key,
            identity_token: field("identitytoken"),
            registry_token: field("registrytoken"),
            ..AuthConfig::default()
        };
        Ok((!auth.is_empty()).then_some(auth))
    }

    /// Keep `auth` for `server`: with its credential helper if one is configured, else in
    /// `config.json`. An identity token is kept instead of the password when there is one.
    pub fn store(&self, server: &str, auth: &AuthConfig) -> Result<()> {
        let key = server_key(server);
        let mut config = self.load()?;
        let (username, password) = auth.username_password().unwrap_or_default();
        let helper = helper_for(&config, &key);
        if let Some(helper) = &helper {
            let (user, secret) = if auth.identity_token.is_empty() {
                (username.as_str(), password.as_str())
            } else {
                (TOKEN_USERNAME, auth.identity_token.as_str())
            };
            let payload = serde_json::json!({"ServerURL": key, "Username": user, "Secret": secret});
            self.run_helper(helper, "store", payload.to_string().as_bytes())?;
        }
        let auths = auths_mut(&mut config, &self.config_path())?;
        // One entry per server: other spellings of it are merged into the docker CLI's key,
        // keeping the fields berth does not know (`email`, …).
        let spellings: Vec<String> = auths
            .keys()
            .filter(|k| **k != key && same_server(k, &key))
            .cloned()
            .collect();
        let mut entry = auths.remove(&key);
        for other in spellings {
            let old = auths.remove(&other);
            entry = entry.or(old);
        }
        let mut entry = match entry {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        for field in [
            "auth",
            "username",
            "password",
            "serveraddress",
            "identitytoken",
            "registrytoken",
        ] {
            entry.remove(field);
        }
        if helper.is_none() {
            // As the docker CLI: the identity token replaces the password.
            let password = if auth.identity_token.is_empty() {
                password.as_str()
            } else {
                ""
            };
            if !username.is_empty() {
                entry.insert("auth".into(), encode_auth(&username, password).into());
            }
            if !auth.identity_token.is_empty() {
                entry.insert("identitytoken".into(), auth.identity_token.clone().into());
            }
            if !auth.registry_token.is_empty() {
                entry.insert("registrytoken".into(), auth.registry_token.clone().into());
            }
        }
        auths.insert(key, Value::Object(entry));
        self.save(&config)
    }

    /// Forget the credentials for `server` (from its helper and from `config.json`, every
    /// spelling of it). `false` when none were stored.
    pub fn erase(&self, server: &str) -> Result<bool> {
        let key = server_key(server);
        let mut config = self.load()?;
        let mut found = false;
        if let Some(helper) = helper_for(&config, &key) {
            if self.helper_get(&helper, &key)?.is_some() {
                self.run_helper(&helper, "erase", key.as_bytes())?;
                found = true;
            }
        }
        let had_entry = find_entry(&config, &key).is_some();
        if had_entry {
            let auths = auths_mut(&mut config, &self.config_path())?;
            auths.retain(|k, _| !same_server(k, &key));
            self.save(&config)?;
        }
        Ok(found || had_entry)
    }

    /// The whole file as JSON; an absent file is an empty object.
    fn load(&self) -> Result<Map<String, Value>> {
        let path = self.config_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(RegistryError::Credentials {
                message: format!(
                    "{}: not a JSON object; fix or remove the file",
                    path.display()
                ),
            }),
            Err(e) => Err(RegistryError::Credentials {
                message: format!(
                    "{}: invalid JSON ({e}); fix or remove the file",
                    path.display()
                ),
            }),
        }
    }

    /// Replace the file atomically with `config`: temp file (0600), fsync, rename, fsync
    /// the directory. A symlinked `config.json` is written through to its target.
    fn save(&self, config: &Map<String, Value>) -> Result<()> {
        if !self.dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(io_err(format!("creating {}", self.dir.display())))?;
        }
        let mut path = self.config_path();
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            path = fs::canonicalize(&path)
                .map_err(io_err(format!("resolving the symlink {}", path.display())))?;
        }
        let dir = path.parent().unwrap_or(Path::new("/")).to_owned();
        // The docker CLI indents with tabs; so do we, so diffs stay small.
        let mut bytes = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
        config
            .serialize(&mut ser)
            .map_err(|e| RegistryError::Credentials {
                message: format!("encoding {}: {e}", path.display()),
            })?;
        bytes.push(b'\n');

        let tmp = dir.join(format!(
            ".config.json.tmp-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            // The mode above is filtered by the umask; credentials are never group-readable.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(format!("writing {}", path.display()))(e)
        })
    }

    /// `docker-credential-<name> get` for `key`; `None` when the helper has nothing.
    fn helper_get(&self, helper: &Helper, key: &str) -> Result<Option<AuthConfig>> {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let out = match self.run_helper(helper, "get", key.as_bytes()) {
            Ok(out) => out,
            // The protocol's answer for "nothing stored", on stdout with a failure status.
            Err(HelperFailure::Failed(message)) if message.contains("credentials not found") => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let reply: Reply = serde_json::from_slice(&out).map_err(|e| RegistryError::Credentials {
            message: format!(
                "docker-credential-{} get: unreadable answer ({e}); expected JSON with Username and Secret",
                helper.name
            ),
        })?;
        if reply.secret.is_empty() {
            return Ok(None);
        }
        let mut auth = AuthConfig {
            server_address: key.to_owned(),
            ..AuthConfig::default()
        };
        if reply.username == TOKEN_USERNAME {
            auth.identity_token = reply.secret;
        } else {
            auth.username = reply.username;
            auth.password = reply.secret;
        }
        Ok(Some(auth))
    }

    /// Run `docker-credential-<name> <action>` with `input` on stdin; its stdout on success.
    fn run_helper(
        &self,
        helper: &Helper,
        action: &str,
        input: &[u8],
    ) -> std::result::Result<Vec<u8>, HelperFailure> {
        let program = format!("docker-credential-{}", helper.name);
        let path = self.find_helper(&program).ok_or_else(|| {
            HelperFailure::Setup(format!(
                "{program} (set as {} in {}) is not installed or not in PATH",
                helper.setting,
                self.config_path().display()
            ))
        })?;
        let mut child = Command::new(&path)
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HelperFailure::Setup(format!("running {}: {e}", path.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading is judged by its status below.
            let _ = stdin.write_all(input);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| HelperFailure::Setup(format!("running {}: {e}", path.display())))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let mut message = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if message.is_empty() {
            message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        }
        if message.is_empty() {
            message = out.status.to_string();
        }
        Err(HelperFailure::Failed(format!(
            "{program} {action}: {message}"
        )))
    }

    /// The helper program in the helper directory or on `$PATH`.
    fn find_helper(&self, program: &str) -> Option<PathBuf> {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        self.helper_dir
            .iter()
            .cloned()
            .chain(std::env::split_paths(&path_var))
            .map(|dir| dir.join(program))
            .find(|p| {
                fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }
}

/// Why a credential helper gave no answer.
enum HelperFailure {
    /// It could not be found or started.
    Setup(String),
    /// It ran and failed; its message.
    Failed(String),
}

impl From<HelperFailure> for RegistryError {
    fn from(f: HelperFailure) -> RegistryError {
        match f {
            HelperFailure::Setup(message) | HelperFailure::Failed(message) => {
                RegistryError::Credentials { message }
            }
        }
    }
}

/// The helper for `key`: `credHelpers` (by key or host) first, then `credsStore`.
fn helper_for(config: &Map<String, Value>, key: &str) -> Option<Helper> {
    let named = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if let Some(helpers) = config.get("credHelpers").and_then(Value::as_object) {
        let by_host = helpers
            .iter()
            .find(|(k, _)| same_server(k, key))
            .map(|(_, v)| v);
        if let Some(name) = named(helpers.get(key)).or_else(|| named(by_host)) {
            return Some(Helper {
                name,
                setting: "credHelpers",
            });
        }
    }
    named(config.get("credsStore")).map(|name| Helper {
        name,
        setting: "credsStore",
    })
}

/// The `auths` entry for `key`: the exact key first, then any other spelling of the server.
fn find_entry<'a>(
    config: &'a Map<String, Value>,
    key: &str,
) -> Option<(&'a str, &'a Map<String, Value>)> {
    let auths = config.get("auths")?.as_object()?;
    auths
        .get_key_value(key)
        .or_else(|| auths.iter().find(|(k, _)| same_server(k, key)))
        .and_then(|(k, v)| Some((k.as_str(), v.as_object()?)))
}

fn auths_mut<'a>(
    config: &'a mut Map<String, Value>,
    path: &Path,
) -> Result<&'a mut Map<String, Value>> {
    config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| RegistryError::Credentials {
            message: format!(
                "{}: `auths` is not an object; fix or remove the file",
                path.display()
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_keys_follow_the_docker_cli() {
        for hub in [
            "",
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
            "https://docker.io",
        ] {
            assert_eq!(server_key(hub), DOCKER_HUB_SERVER, "{hub:?}");
        }
        assert_eq!(server_key("localhost:5000"), "localhost:5000");
        assert_eq!(
            server_key("https://reg.example.com:5000/v2/"),
            "reg.example.com:5000"
        );
        assert_eq!(server_key("http://reg.example.com"), "reg.example.com");
        assert_eq!(server_key(" quay.io/some/repo "), "quay.io");
        assert_eq!(hostname_of("HTTPS://Reg:1/x"), "Reg:1");
    }

    #[test]
    fn auth_field_decodes_and_tolerates_garbage() {
        let a = AuthConfig {
            auth: encode_auth("u", "p:with:colons"),
            ..AuthConfig::default()
        };
        assert_eq!(
            a.username_password(),
            Some(("u".into(), "p:with:colons".into()))
        );
        let bad = AuthConfig {
            auth: "%%%".into(),
            ..AuthConfig::default()
        };
        assert_eq!(bad.username_password(), None);
        assert!(bad.is_empty());
        assert!(
            !format!("{a:?}").contains(&a.auth),
            "Debug must not show secrets"
        );
    }

    #[test]
    fn config_json_round_trip_keeps_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().join("docker"));
        let original = serde_json::json!({
            "auths": {
                "https://old.example.com/v1/": {"auth": encode_auth("old", "pw"), "email": "x@example.com"},
                "other.example.com": {"auth": encode_auth("o", "p")}
            },
            "psFormat": "table {{.ID}}",
            "plugins": {"x": {"y": "z"}}
        });
        fs::create_dir_all(&store.dir).unwrap();
        fs::write(store.config_path(), original.to_string()).unwrap();

        // A key written with a scheme and a path is found by host.
        let got = store.get("old.example.com").unwrap().unwrap();
        assert_eq!(
            (got.username.as_str(), got.password.as_str()),
            ("old", "pw")
        );

        let auth = AuthConfig {
            username: "new".into(),
            password: "secret".into(),
            ..AuthConfig::default()
        };
        store.store("https://old.example.com/", &auth).unwrap();
        store.store("docker.io", &auth).unwrap();
        let written: Value =
            serde_json::from_slice(&fs::read(store.config_path()).unwrap()).unwrap();
        assert_eq!(written["psFormat"], "table {{.ID}}");
        assert_eq!(written["plugins"]["x"]["y"], "z");
        let auths = written["auths"].as_object().unwrap();
        assert!(
            !auths.contains_key("https://old.example.com/v1/"),
            "{auths:?}"
        );
        assert_eq!(
            auths["old.example.com"]["auth"],
            encode_auth("new", "secret")
        );
        assert_eq!(auths["old.example.com"]["email"], "x@example.com");
        assert_eq!(
            auths[DOCKER_HUB_SERVER]["auth"],
            encode_auth("new", "secret")
        );
        assert_eq!(
            store.get("index.docker.io").unwrap().unwrap().password,
            "secret"
        );
        let mode = fs::metadata(store.config_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let fresh = CredentialStore::new(dir.path().join("fresh/docker"));
        fresh.store("reg:5000", &auth).unwrap();
        let dir_mode = fs::metadata(&fresh.dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);

        // An identity token replaces the password.
        let token = AuthConfig {
            username: "new".into(),
            password: "secret".into(),
            identity_token: "refresh-me".into(),
            ..AuthConfig::default()
        };
        store.store("other.example.com", &token).unwrap();
        let got = store.get("other.example.com").unwrap().unwrap();
        assert_eq!(got.identity_token, "refresh-me");
        assert_eq!(got.password, "");

        assert!(store.erase("old.example.com").unwrap());
        assert!(!store.erase("old.example.com").unwrap());
        assert_eq!(store.get("old.example.com").unwrap(), None);
        let written: Value =
            serde_json::from_slice(&fs::read(store.config_path()).unwrap()).unwrap();
        assert_eq!(written["psFormat"], "table {{.ID}}");
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(&store.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"]);
    }

    #[test]
    fn broken_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().to_owned());
        fs::write(store.config_path(), "{not json").unwrap();
        let err = store.get("localhost:5000").unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("invalid JSON"),
            "{err}"
        );
        fs::write(store.config_path(), "").unwrap();
        assert_eq!(store.get("localhost:5000").unwrap(), None);
    }

    #[test]
    fn missing_helper_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            CredentialStore::new(dir.path().to_owned()).with_helper_dir(dir.path().to_owned());
        fs::write(
            store.config_path(),
            r#"{"credHelpers":{"reg.example.com":"berth-absent-helper"}}"#,
        )
        .unwrap();
        let err = store.get("reg.example.com").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-berth-absent-helper") && err.contains("credHelpers"),
            "{err}"
        );
        // Other servers are not affected by that helper.
        assert_eq!(store.get("other.example.com").unwrap(), None);
    }
}
