//! The registry client's connection layer against real registries: the CNCF distribution
//! registry over plain HTTP, with htpasswd, with token auth (a token server this test runs,
//! signing RS256 JWTs with a certificate the registry trusts), and over HTTPS with CAs and
//! client certificates from a `certs.d` directory. skopeo pushes the content; the docker
//! CLI checks that `config.json` as berth writes it is the docker CLI's.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use berth_image::archive::save_oci_layout;
use berth_registry::client::login::{login, logout, LOGIN_SUCCEEDED};
use berth_registry::client::pull::{pull, PullOptions};
use berth_registry::client::session::{http_error, Access, Session};
use berth_registry::credentials::{AuthConfig, CredentialStore};
use berth_registry::progress::ProgressSink;
use berth_registry::{ClientConfig, Registry, RegistryError};
use serde_json::{json, Value};
use support::*;

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";
const SERVICE: &str = "berth-test-registry";
const ISSUER: &str = "berth-test-issuer";

/// A client whose config directory and `certs.d` live in a temporary directory.
struct TestClient {
    registry: Registry,
    dir: tempfile::TempDir,
}

impl TestClient {
    fn new(configure: impl FnOnce(&mut ClientConfig)) -> TestClient {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ClientConfig {
            certs_dir: dir.path().join("certs.d"),
            ..ClientConfig::default()
        };
        configure(&mut config);
        let credentials = CredentialStore::new(dir.path().join("docker"));
        TestClient {
            registry: Registry::new(config, credentials),
            dir,
        }
    }

    fn config_json(&self) -> PathBuf {
        self.registry.credentials.config_path()
    }

    fn read_config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.config_json()).unwrap()).unwrap()
    }

    fn write_config(&self, value: &Value) {
        std::fs::create_dir_all(&self.registry.credentials.dir).unwrap();
        std::fs::write(
            self.config_json(),
            serde_json::to_vec_pretty(value).unwrap(),
        )
        .unwrap();
    }
}

fn creds(user: &str, password: &str) -> AuthConfig {
    AuthConfig {
        username: user.into(),
        password: password.into(),
        ..AuthConfig::default()
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// busybox as an OCI layout, tagged `latest`, for skopeo to push.
struct Layout {
    _store: TestStore,
    dir: tempfile::TempDir,
}

impl Layout {
    fn busybox() -> Layout {
        let s = store();
        let image = busybox_image(&s);
        let dir = tempfile::tempdir().unwrap();
        save_oci_layout(
            &s.store,
            &[(image, vec![reference("x:latest")])],
            &dir.path().join("layout"),
        )
        .unwrap();
        Layout { _store: s, dir }
    }

    /// Push to `registry/repo:latest`, with `user:password` if given.
    fn push(&self, registry: &str, repo: &str, credentials: Option<&str>) {
        let src = format!("oci:{}:latest", self.dir.path().join("layout").display());
        let dest = docker_ref(registry, &format!("{repo}:latest"));
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        if let Some(c) = credentials {
            args.extend(["--dest-creds", c]);
        }
        args.extend([src.as_str(), dest.as_str()]);
        skopeo(&args);
    }
}

/// `GET /v2/<repo>/tags/list` through `session`: the tags, or the error.
async fn tags(session: &Session) -> Result<Vec<String>, RegistryError> {
    let path = format!("/v2/{}/tags/list", session.repository());
    let resp = session
        .send(session.request(reqwest::Method::GET, &path))
        .await?;
    if !resp.status().is_success() {
        return Err(http_error(session.registry(), "listing tags", resp).await);
    }
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    Ok(body["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect())
}

async fn connect(
    registry: &Registry,
    domain: &str,
    repo: &str,
    access: Access,
    auth: Option<&AuthConfig>,
) -> Result<Session, RegistryError> {
    Session::connect(registry, domain, repo, access, auth).await
}

/// The docker CLI, without a daemon (the commands used here need none).
fn docker(config_dir: &Path, args: &[&str]) -> std::process::Output {
    assert!(
        Path::new("/usr/local/bin/docker").exists() || which("docker"),
        "the docker CLI is needed to check config.json compatibility"
    );
    Command::new("docker")
        .arg("--config")
        .arg(config_dir)
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/berth-test.sock")
        .output()
        .expect("running docker")
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

#[test]
fn anonymous_sessions_use_plain_http_on_loopback_and_only_when_allowed() {
    let layout = Layout::busybox();
    let reg = Distribution::start();
    layout.push(&reg.addr(), "library/busybox", None);
    let rt = runtime();

    // Loopback is insecure by default, as in Docker: HTTPS is tried, then plain HTTP.
    let client = TestClient::new(|_| {});
    rt.block_on(async {
        let session = connect(
            &client.registry,
            &reg.addr(),
            "library/busybox",
            Access::Pull,
            None,
        )
        .await
        .unwrap();
        assert_eq!(session.endpoint().scheme(), "http");
        assert_eq!(tags(&session).await.unwrap(), ["latest"]);
        // A second session goes to the remembered endpoint.
        let again = connect(
            &client.registry,
            &reg.addr(),
            "library/busybox",
            Access::Pull,
            None,
        )
        .await
        .unwrap();
        assert_eq!(again.endpoint(), session.endpoint());
        assert_eq!(tags(&again).await.unwrap(), ["latest"]);
    });

    // Held to the rules of any registry, plain HTTP is refused, with the fix in the error.
    let strict = TestClient::new(|_| {});
    let strict_registry = strict.registry.clone().require_tls_on_loopback();
    let err = rt
        .block_on(connect(
            &strict_registry,
            &reg.addr(),
            "library/busybox",
            Access::Pull,
            None,
        ))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::TlsHandshake { .. }), "{msg}");
    assert!(!err.is_transient(), "{msg}");
    assert!(
        msg.contains(&reg.addr()) && msg.contains("insecure-registries"),
        "{msg}"
    );

    // Listed as insecure by its name or by a CIDR, it may use plain HTTP again.
    for entry in [reg.addr(), "127.0.0.0/8".to_owned()] {
        let listed = TestClient::new(|c| c.insecure_registries = vec![entry.clone()]);
        let registry = listed.registry.clone().require_tls_on_loopback();
        rt.block_on(async {
            let session = connect(
                &registry,
                &reg.addr(),
                "library/busybox",
                Access::Pull,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{entry}: {e}"));
            assert_eq!(session.endpoint().scheme(), "http");
            assert_eq!(tags(&session).await.unwrap(), ["latest"]);
        });
    }
}

#[test]
fn basic_auth_names_the_registry_and_the_fix() {
    let layout = Layout::busybox();
    let reg = Distribution::start_with(DistributionAuth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let addr = reg.addr();
    layout.push(
        &addr,
        "library/busybox",
        Some(&format!("{USER}:{PASSWORD}")),
    );
    let client = TestClient::new(|_| {});
    let rt = runtime();
    let target = store();
    let TestStore {
        store: image_store,
        dir: _target_dir,
    } = target;
    let image_store = Arc::new(image_store);

    rt.block_on(async {
        // No credentials: the registry's 401 becomes an error naming it and `berth login`.
        let session = connect(
            &client.registry,
            &addr,
            "library/busybox",
            Access::Pull,
            None,
        )
        .await
        .unwrap();
        let err = tags(&session).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
        assert!(msg.contains(&format!("berth login {addr}")), "{msg}");

        // The same through a pull.
        let reference = reference(&format!("{addr}/library/busybox:latest"));
        let err = pull(
            &client.registry,
            image_store.clone(),
            &reference,
            &PullOptions::default(),
            &ProgressSink::none(),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
        assert!(
            msg.starts_with(&addr) && msg.contains("berth login"),
            "{msg}"
        );

        // A wrong password is called that.
        let bad = creds(USER, "queen-of-hearts");
        let session = connect(
            &client.registry,
            &addr,
            "library/busybox",
            Access::Pull,
            Some(&bad),
        )
        .await
        .unwrap();
        let err = tags(&session).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
        assert!(
            msg.starts_with(&addr)
                && msg.contains("incorrect username or password")
                && msg.contains(USER),
            "{msg}"
        );

        // The right one works, given as fields or as the `auth` the docker CLI sends.
        let good = creds(USER, PASSWORD);
        let encoded = AuthConfig {
            auth: b64(&format!("{USER}:{PASSWORD}")),
            ..AuthConfig::default()
        };
        for auth in [&good, &encoded] {
            let session = connect(
                &client.registry,
                &addr,
                "library/busybox",
                Access::Pull,
                Some(auth),
            )
            .await
            .unwrap();
            assert_eq!(tags(&session).await.unwrap(), ["latest"]);
        }

        // And a pull with them.
        let options = PullOptions {
            auth: Some(good.clone()),
            ..PullOptions::default()
        };
        let pulled = pull(
            &client.registry,
            image_store.clone(),
            &reference,
            &options,
            &ProgressSink::none(),
        )
        .await
        .unwrap();
        assert!(image_store.image(&pulled.id).is_ok());
    });
}

#[test]
fn login_shares_config_json_with_the_docker_cli_and_logout_removes_it() {
    let layout = Layout::busybox();
    let reg = Distribution::start_with(DistributionAuth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let addr = reg.addr();
    layout.push(
        &addr,
        "library/busybox",
        Some(&format!("{USER}:{PASSWORD}")),
    );
    let client = TestClient::new(|_| {});
    let config_dir = client.registry.credentials.dir.clone();
    let other = json!({"auth": b64("bob:builder"), "email": "bob@example.com"});
    client.write_config(&json!({
        "auths": {"other.example.com": other},
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"noProxy": "*.internal"}}
    }));
    let before = std::fs::read(client.config_json()).unwrap();
    let rt = runtime();
    let image = format!("{addr}/library/busybox:latest");

    // A wrong password: Docker's words, and nothing written.
    let err = rt
        .block_on(login(&client.registry, &addr, &creds(USER, "nope")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{addr}: unauthorized: incorrect username or password")
    );
    assert_eq!(std::fs::read(client.config_json()).unwrap(), before);

    // The right one, with the server written as a URL: stored under `host:port`.
    let outcome = rt
        .block_on(login(
            &client.registry,
            &format!("http://{addr}/v2/"),
            &creds(USER, PASSWORD),
        ))
        .unwrap();
    assert_eq!(outcome.status, LOGIN_SUCCEEDED);
    assert_eq!(outcome.identity_token, None);
    let config = client.read_config();
    assert_eq!(
        config["auths"][&addr],
        json!({"auth": b64(&format!("{USER}:{PASSWORD}"))})
    );
    assert_eq!(config["auths"]["other.example.com"], other);
    assert_eq!(config["psFormat"], "table {{.ID}}");
    assert_eq!(config["proxies"]["default"]["noProxy"], "*.internal");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(client.config_json())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The docker CLI authenticates with what berth stored.
    let out = docker(&config_dir, &["manifest", "inspect", "--insecure", &image]);
    assert!(
        out.status.success(),
        "docker manifest inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(manifest["config"]["digest"].is_string(), "{manifest}");

    // A session finds the stored credentials by itself.
    rt.block_on(async {
        let session = connect(
            &client.registry,
            &addr,
            "library/busybox",
            Access::Pull,
            None,
        )
        .await
        .unwrap();
        assert_eq!(tags(&session).await.unwrap(), ["latest"]);
    });

    // Logout removes them (and only them); the docker CLI is refused again.
    logout(&client.registry.credentials, &addr).unwrap();
    let config = client.read_config();
    assert!(config["auths"].get(&addr).is_none(), "{config}");
    assert_eq!(config["auths"]["other.example.com"], other);
    assert_eq!(config["psFormat"], "table {{.ID}}");
    let out = docker(&config_dir, &["manifest", "inspect", "--insecure", &image]);
    assert!(!out.status.success());
    let err = logout(&client.registry.credentials, &addr).unwrap_err();
    assert_eq!(err.to_string(), format!("not logged in to {addr}"));

    // What berth writes, `docker logout` removes.
    rt.block_on(login(&client.registry, &addr, &creds(USER, PASSWORD)))
        .unwrap();
    let out = docker(&config_dir, &["logout", &addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(client.registry.credentials.get(&addr).unwrap(), None);
}

/// A `docker-credential-berthtest` that keeps one secret in a file and logs its calls.
fn credential_helper(dir: &Path) {
    let script = format!(
        r#"#!/bin/sh
d={dir}
read -r input || true
echo "$1 $input" >> "$d/calls"
case "$1" in
  store) printf '%s' "$input" > "$d/secret.json" ;;
  get) if [ -f "$d/secret.json" ]; then cat "$d/secret.json"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase) rm -f "$d/secret.json" ;;
  *) echo "unknown action $1"; exit 1 ;;
esac
"#,
        dir = dir.display()
    );
    let path = dir.join("docker-credential-berthtest");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn credential_helpers_get_store_and_erase() {
    let layout = Layout::busybox();
    let reg = Distribution::start_with(DistributionAuth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    });
    let addr = reg.addr();
    layout.push(
        &addr,
        "library/busybox",
        Some(&format!("{USER}:{PASSWORD}")),
    );
    let helpers = tempfile::tempdir().unwrap();
    credential_helper(helpers.path());
    let mut client = TestClient::new(|_| {});
    client.registry.credentials = client
        .registry
        .credentials
        .clone()
        .with_helper_dir(helpers.path().to_owned());
    client.write_config(&json!({"credHelpers": {&addr: "berthtest"}, "detachKeys": "ctrl-x"}));
    let calls = || std::fs::read_to_string(helpers.path().join("calls")).unwrap_or_default();
    let rt = runtime();

    // Nothing stored yet: the helper says so, and the session goes anonymous.
    assert_eq!(client.registry.credentials.get(&addr).unwrap(), None);
    assert_eq!(calls(), format!("get {addr}\n"));

    rt.block_on(login(&client.registry, &addr, &creds(USER, PASSWORD)))
        .unwrap();
    let stored: Value =
        serde_json::from_slice(&std::fs::read(helpers.path().join("secret.json")).unwrap())
            .unwrap();
    assert_eq!(
        stored,
        json!({"ServerURL": addr, "Username": USER, "Secret": PASSWORD})
    );
    // config.json only remembers the server, as the docker CLI does with helpers.
    let config = client.read_config();
    assert_eq!(config["auths"][&addr], json!({}));
    assert_eq!(config["detachKeys"], "ctrl-x");
    assert!(calls().contains(&format!(
        "store {}",
        serde_json::to_string(&stored).unwrap()
    )));

    // Sessions get the credentials from the helper.
    rt.block_on(async {
        let session = connect(
            &client.registry,
            &addr,
            "library/busybox",
            Access::Pull,
            None,
        )
        .await
        .unwrap();
        assert_eq!(tags(&session).await.unwrap(), ["latest"]);
    });

    logout(&client.registry.credentials, &addr).unwrap();
    assert!(!helpers.path().join("secret.json").exists());
    assert!(calls().contains(&format!("erase {addr}")), "{}", calls());
    assert!(client.read_config()["auths"].get(&addr).is_none());
    assert!(matches!(
        logout(&client.registry.credentials, &addr),
        Err(RegistryError::NotLoggedIn { .. })
    ));

    // `credsStore` applies to every server without a `credHelpers` entry.
    client.write_config(&json!({"credsStore": "berthtest"}));
    client
        .registry
        .credentials
        .store("reg.example.com:5000", &creds("carol", "secret"))
        .unwrap();
    let got = client
        .registry
        .credentials
        .get("reg.example.com:5000")
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.username.as_str(), got.password.as_str()),
        ("carol", "secret")
    );
    assert!(client
        .registry
        .credentials
        .erase("reg.example.com:5000")
        .unwrap());
}

// ---- Token auth ----------------------------------------------------------------------

/// What the token server was asked.
#[derive(Debug, Clone, Default)]
struct TokenRequest {
    method: String,
    service: Option<String>,
    scopes: Vec<String>,
    user: Option<String>,
    grant_type: Option<String>,
    client_id: Option<String>,
}

/// A token server after the distribution token spec: Basic credentials or a refresh
/// token in, an RS256 JWT granting the asked scopes out (nothing for anonymous callers).
struct Issuer {
    key: ring::rsa::KeyPair,
    /// The signing certificate, base64 DER, for the `x5c` header.
    x5c: String,
    refresh_token: String,
    seen: Mutex<Vec<TokenRequest>>,
}

struct TokenServer {
    addr: SocketAddr,
    issuer: Arc<Issuer>,
    /// The signing certificate, for the registry's `rootcertbundle`.
    cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    fn start(rt: &tokio::runtime::Runtime) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.crt",
                "-days",
                "2",
                "-subj",
                "/CN=berth test token issuer",
            ],
        );
        let key_pem = std::fs::read(dir.path().join("token.key")).unwrap();
        let key = match rustls_pemfile::private_key(&mut &key_pem[..])
            .unwrap()
            .unwrap()
        {
            rustls::pki_types::PrivateKeyDer::Pkcs8(k) => {
                ring::rsa::KeyPair::from_pkcs8(k.secret_pkcs8_der()).unwrap()
            }
            other => panic!("openssl wrote a key that is not PKCS#8: {other:?}"),
        };
        let cert_pem = std::fs::read(dir.path().join("token.crt")).unwrap();
        let cert = rustls_pemfile::certs(&mut &cert_pem[..])
            .next()
            .unwrap()
            .unwrap();
        let issuer = Arc::new(Issuer {
            key,
            x5c: base64::engine::general_purpose::STANDARD.encode(cert.as_ref()),
            refresh_token: format!("refresh-{}", uuid::Uuid::new_v4()),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::get(token).post(token))
            .with_state(issuer.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(async move { axum::serve(listener, app).await });
        TokenServer {
            addr,
            issuer,
            cert: dir.path().join("token.crt"),
            _dir: dir,
        }
    }

    /// The `auth:` section for a distribution registry that trusts this server.
    fn registry_auth(&self) -> DistributionAuth {
        DistributionAuth::Yaml(format!(
            "  token:\n    realm: http://{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.addr,
            self.cert.display()
        ))
    }

    /// The requests seen since the last call.
    fn take(&self) -> Vec<TokenRequest> {
        std::mem::take(&mut *self.issuer.seen.lock().unwrap())
    }
}

async fn token(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: bytes::Bytes,
) -> Response {
    let params: Vec<(String, String)> = if method == Method::POST {
        url::form_urlencoded::parse(&body).into_owned().collect()
    } else {
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect()
    };
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = if method == Method::POST {
        param("scope")
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default()
    } else {
        params
            .iter()
            .filter(|(n, _)| n == "scope")
            .map(|(_, v)| v.clone())
            .collect()
    };
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let mut request = TokenRequest {
        method: method.to_string(),
        service: param("service"),
        scopes: scopes.clone(),
        grant_type: param("grant_type"),
        client_id: param("client_id"),
        ..TokenRequest::default()
    };
    let user = match (request.grant_type.as_deref(), &basic) {
        (Some("refresh_token"), _) => (param("refresh_token").as_deref()
            == Some(&issuer.refresh_token))
        .then(|| USER.to_owned())
        .ok_or(()),
        (Some("password"), _) => (param("username").as_deref() == Some(USER)
            && param("password").as_deref() == Some(PASSWORD))
        .then(|| USER.to_owned())
        .ok_or(()),
        (_, Some((u, p))) => (u == USER && p == PASSWORD).then(|| u.clone()).ok_or(()),
        (_, None) => Ok(String::new()),
    };
    let Ok(user) = user else {
        issuer.seen.lock().unwrap().push(request);
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(
                json!({"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}),
            ),
        )
            .into_response();
    };
    request.user = (!user.is_empty()).then(|| user.clone());
    issuer.seen.lock().unwrap().push(request);
    // Anonymous callers get a valid token that grants nothing.
    let access: Vec<Value> = if user.is_empty() {
        Vec::new()
    } else {
        scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect()
    };
    let jwt = issuer.sign(&param("service").unwrap_or_default(), &user, access);
    let mut reply = json!({"token": jwt, "expires_in": 300});
    let offline = param("offline_token").as_deref() == Some("true")
        || param("access_type").as_deref() == Some("offline");
    if offline && !user.is_empty() {
        reply["refresh_token"] = issuer.refresh_token.clone().into();
    }
    axum::Json(reply).into_response()
}

impl Issuer {
    fn sign(&self, service: &str, subject: &str, access: Vec<Value>) -> String {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": ISSUER, "sub": subject, "aud": service, "exp": now + 300, "nbf": now - 10,
            "iat": now, "jti": uuid::Uuid::new_v4().to_string(), "access": access,
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .unwrap();
        format!("{input}.{}", b64(&signature))
    }
}

#[test]
fn bearer_tokens_carry_the_right_scope_and_service() {
    let layout = Layout::busybox();
    let rt = runtime();
    let tokens = TokenServer::start(&rt);
    let reg = Distribution::start_with(tokens.registry_auth());
    let addr = reg.addr();
    // skopeo is the reference client for the token flow.
    layout.push(
        &addr,
        "library/busybox",
        Some(&format!("{USER}:{PASSWORD}")),
    );
    tokens.take();
    let client = TestClient::new(|_| {});
    let good = creds(USER, PASSWORD);

    rt.block_on(async {
        // Pull: one token for `repository:library/busybox:pull`, reused while it is valid.
        let session = connect(&client.registry, &addr, "library/busybox", Access::Pull, Some(&good))
            .await
            .unwrap();
        assert_eq!(tags(&session).await.unwrap(), ["latest"]);
        assert_eq!(tags(&session).await.unwrap(), ["latest"]);
        let seen = tokens.take();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].service.as_deref(), Some(SERVICE));
        assert_eq!(seen[0].scopes, ["repository:library/busybox:pull"]);
        assert_eq!(seen[0].user.as_deref(), Some(USER));

        // Push: `pull,push`. A cross-repository mount first widens the token to pull from
        // the source repository; the token for both is asked for before any refusal.
        let manifest_path = "/v2/library/busybox/manifests/latest";
        let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
        let resp = session
            .send(session.request(reqwest::Method::GET, manifest_path).header("accept", accept))
            .await
            .unwrap();
        let manifest: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
        tokens.take();
        let session = connect(&client.registry, &addr, "berth/copy", Access::Push, Some(&good))
            .await
            .unwrap();
        session.add_pull_scope("library/busybox").await.unwrap();
        let mount = format!("/v2/berth/copy/blobs/uploads/?mount={layer}&from=library/busybox");
        let resp = session
            .send(session.request(reqwest::Method::POST, &mount))
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "cross-repository mount");
        let seen = tokens.take();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            seen[0].scopes,
            ["repository:berth/copy:pull,push", "repository:library/busybox:pull"]
        );
        assert_eq!(seen[0].service.as_deref(), Some(SERVICE));

        // A scope the registry names in its challenge is asked for too.
        let session = connect(&client.registry, &addr, "berth/other", Access::Push, Some(&good))
            .await
            .unwrap();
        let resp = session
            .send(session.request(reqwest::Method::GET, manifest_path).header("accept", accept))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let seen = tokens.take();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].scopes, ["repository:berth/other:pull,push"]);
        assert_eq!(
            seen[1].scopes,
            ["repository:berth/other:pull,push", "repository:library/busybox:pull"]
        );

        // A wrong password: the token server refuses, and the error says why.
        let bad = creds(USER, "nope");
        let session = connect(&client.registry, &addr, "library/busybox", Access::Pull, Some(&bad))
            .await
            .unwrap();
        let err = tags(&session).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
        assert!(
            msg.starts_with(&addr) && msg.contains("incorrect username or password"),
            "{msg}"
        );

        // Anonymous: a token without access, then the registry's refusal, naming `berth login`.
        let session = connect(&client.registry, &addr, "library/busybox", Access::Pull, None)
            .await
            .unwrap();
        let err = tags(&session).await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{msg}");
        assert!(msg.contains(&format!("berth login {addr}")), "{msg}");
        let seen = tokens.take();
        assert!(seen.iter().any(|r| r.user.is_none() && r.scopes == ["repository:library/busybox:pull"]), "{seen:?}");
    });
}

#[test]
fn token_login_keeps_the_identity_token_and_uses_it() {
    let layout = Layout::busybox();
    let rt = runtime();
    let tokens = TokenServer::start(&rt);
    let reg = Distribution::start_with(tokens.registry_auth());
    let addr = reg.addr();
    layout.push(
        &addr,
        "library/busybox",
        Some(&format!("{USER}:{PASSWORD}")),
    );
    tokens.take();
    let client = TestClient::new(|_| {});

    let err = rt
        .block_on(login(&client.registry, &addr, &creds(USER, "nope")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{addr}: unauthorized: incorrect username or password")
    );
    assert!(!client.config_json().exists());

    let outcome = rt
        .block_on(login(&client.registry, &addr, &creds(USER, PASSWORD)))
        .unwrap();
    assert_eq!(outcome.status, LOGIN_SUCCEEDED);
    assert_eq!(
        outcome.identity_token.as_deref(),
        Some(tokens.issuer.refresh_token.as_str())
    );
    let seen = tokens.take();
    let login_request = seen.last().unwrap();
    assert_eq!(login_request.service.as_deref(), Some(SERVICE));
    assert!(login_request.scopes.is_empty(), "{seen:?}");
    assert_eq!(login_request.client_id.as_deref(), Some("berth"));

    // As the docker CLI: the identity token is kept, the password is not.
    let entry = client.read_config()["auths"][&addr].clone();
    assert_eq!(
        entry,
        json!({"auth": b64(&format!("{USER}:")), "identitytoken": tokens.issuer.refresh_token})
    );

    // Later sessions trade the identity token for access tokens (OAuth2 refresh grant).
    rt.block_on(async {
        let session = connect(
            &client.registry,
            &addr,
            "library/busybox",
            Access::Pull,
            None,
        )
        .await
        .unwrap();
        assert_eq!(tags(&session).await.unwrap(), ["latest"]);
    });
    let seen = tokens.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(seen[0].client_id.as_deref(), Some("berth"));
    assert_eq!(seen[0].scopes, ["repository:library/busybox:pull"]);
}

// ---- TLS -----------------------------------------------------------------------------

#[test]
fn certs_d_supplies_the_ca_and_the_client_certificate() {
    let ca = TestCa::new();
    let (server_cert, server_key) = ca.issue(
        "registry",
        &["subjectAltName=IP:127.0.0.1", "extendedKeyUsage=serverAuth"],
    );
    let (client_cert, client_key) = ca.issue("client", &["extendedKeyUsage=clientAuth"]);
    let reg = Distribution::start_tls(
        DistributionAuth::None,
        &DistributionTls {
            cert: server_cert,
            key: server_key,
            client_ca: Some(ca.cert()),
        },
    );
    let addr = reg.addr();
    let client = TestClient::new(|_| {});
    // 127.0.0.1 held to the rules of a remote registry: verified HTTPS only.
    let registry = client.registry.clone().require_tls_on_loopback();
    let certs = client.dir.path().join("certs.d").join(&addr);
    std::fs::create_dir_all(&certs).unwrap();
    let rt = runtime();
    let try_connect = |registry: &Registry| {
        rt.block_on(async {
            let session = connect(registry, &addr, "x", Access::Pull, None).await?;
            let resp = session
                .send(session.request(reqwest::Method::GET, "/v2/"))
                .await?;
            assert_eq!(resp.status(), 200);
            Ok::<_, RegistryError>(session.endpoint().clone())
        })
    };

    // Unknown CA: refused, and the error says where the CA goes.
    let err = try_connect(&registry).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::TlsHandshake { .. }), "{msg}");
    assert!(
        msg.contains(&format!("{}/ca.crt", certs.display())),
        "{msg}"
    );

    // The CA in certs.d: the server is trusted, but it wants a client certificate.
    std::fs::copy(ca.cert(), certs.join("ca.crt")).unwrap();
    let err = try_connect(&registry).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&addr) && msg.contains(&format!("{}/client.cert", certs.display())),
        "{msg}"
    );

    // A client certificate without its key is named as such.
    std::fs::copy(&client_cert, certs.join("client.cert")).unwrap();
    let err = try_connect(&registry).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Tls { .. }), "{msg}");
    assert!(
        msg.contains("missing key") && msg.contains("client.key"),
        "{msg}"
    );

    // With the key: verified HTTPS with a client certificate.
    std::fs::copy(&client_key, certs.join("client.key")).unwrap();
    let endpoint = try_connect(&registry).unwrap();
    assert_eq!(endpoint.scheme(), "https");

    // A file that is no certificate is reported with its path.
    std::fs::write(certs.join("broken.crt"), "not a certificate").unwrap();
    let fresh = TestClient::new(|c| c.certs_dir = client.dir.path().join("certs.d"));
    let err = try_connect(&fresh.registry.clone().require_tls_on_loopback()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RegistryError::Tls { .. }), "{msg}");
    assert!(msg.contains("broken.crt"), "{msg}");
    std::fs::remove_file(certs.join("broken.crt")).unwrap();

    // Loopback under Docker's default rule: HTTPS without verification is accepted (the
    // client certificate is still shown).
    std::fs::remove_file(certs.join("ca.crt")).unwrap();
    let endpoint = try_connect(&fresh.registry).unwrap();
    assert_eq!(endpoint.scheme(), "https");
}

// ---- Mirrors -------------------------------------------------------------------------

#[test]
fn docker_hub_pulls_go_to_the_first_mirror_that_answers() {
    let layout = Layout::busybox();
    let mirror = Distribution::start();
    layout.push(&mirror.addr(), "library/busybox", None);
    // Nothing listens on the first mirror; the second one answers.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let live = format!("http://{}/", mirror.addr());
    let client = TestClient::new(|c| c.registry_mirrors = vec![dead.clone(), live.clone()]);
    let rt = runtime();
    rt.block_on(async {
        let session = connect(
            &client.registry,
            "docker.io",
            "library/busybox",
            Access::Pull,
            None,
        )
        .await
        .unwrap();
        assert_eq!(session.registry(), "docker.io");
        assert_eq!(session.endpoint().as_str(), live);
        assert_eq!(tags(&session).await.unwrap(), ["latest"]);
    });
}
