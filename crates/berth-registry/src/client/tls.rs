//! HTTP clients per registry host, and which registries may be reached without verified
//! TLS.
//!
//! TLS material follows Docker's `certs.d` layout: in `<certs_dir>/<host[:port]>/`, every
//! `*.crt` is a CA trusted (on top of the system roots) for that registry only, and a
//! `*.cert` with the `*.key` of the same name is the client certificate shown to it. A
//! certificate without its key (or a key without its certificate) is an error that names
//! the missing file, rather than a handshake failure later.
//!
//! A registry is *insecure* — HTTPS without verification, then plain HTTP — when it is on
//! loopback (`localhost`, 127.0.0.0/8, ::1; Docker's default, so a local registry works
//! without set-up) or listed in `insecure_registries` by its exact `host[:port]` or by a
//! CIDR its address falls in. Every other registry is HTTPS only, verified.
//!
//! Clients are cached per host and TLS mode, and rebuilt when the files in the host's
//! `certs.d` directory change, so adding a CA after an error takes effect on the next try.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{ClientConfig, Registry};
use crate::error::{RegistryError, Result};

/// How long to wait for a TCP connection (Docker's dialer waits as long).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a name lookup for the insecure-registry check may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// `host` and `port` of `host[:port]` or `[v6]:port`.
pub fn split_host_port(domain: &str) -> (&str, Option<u16>) {
    if let Some(rest) = domain.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host, port);
        }
    }
    match domain.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (domain, None),
        },
        _ => (domain, None),
    }
}

/// Whether `ip` is in `cidr` (`10.0.0.0/8`, `fd00::/8`); `None` if `cidr` is not one.
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> Option<bool> {
    let (net, bits) = cidr.split_once('/')?;
    let net: IpAddr = net.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Some(u32::from(net) & mask == u32::from(ip) & mask)
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            Some(u128::from(net) & mask == u128::from(ip) & mask)
        }
        (IpAddr::V4(_), IpAddr::V6(_)) if bits <= 32 => Some(false),
        (IpAddr::V6(_), IpAddr::V4(_)) if bits <= 128 => Some(false),
        _ => None,
    }
}

/// The insecure-registry rule for `domain` whose host has the addresses `ips`.
/// `loopback_insecure` is Docker's default exception for local registries.
pub fn is_insecure(
    config: &ClientConfig,
    domain: &str,
    ips: &[IpAddr],
    loopback_insecure: bool,
) -> bool {
    let (host, _) = split_host_port(domain);
    let loopback = host.eq_ignore_ascii_case("localhost") || ips.iter().any(IpAddr::is_loopback);
    if loopback_insecure && loopback {
        return true;
    }
    config.insecure_registries.iter().any(|entry| {
        let entry = entry.trim();
        if entry.contains("://") {
            // Docker refuses a scheme here; tolerate it and match by name.
            crate::credentials::hostname_of(entry).eq_ignore_ascii_case(domain)
        } else if entry.contains('/') {
            ips.iter().any(|ip| cidr_contains(entry, *ip) == Some(true))
        } else {
            entry.eq_ignore_ascii_case(domain)
        }
    })
}

/// The addresses of `domain`'s host: itself if it is an address, else what the resolver
/// says (nothing if it fails, which makes the registry secure, as in Docker).
pub async fn addresses(domain: &str) -> Vec<IpAddr> {
    let (host, port) = split_host_port(domain);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    let lookup = tokio::net::lookup_host((host.to_owned(), port.unwrap_or(443)));
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    }
}

/// What `<certs_dir>/<host>/` holds for one registry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertsDir {
    /// `*.crt`: extra CAs.
    pub cas: Vec<PathBuf>,
    /// `(*.cert, *.key)` pairs: client certificates (the first is used).
    pub client_certs: Vec<(PathBuf, PathBuf)>,
}

/// Read `dir` by Docker's `certs.d` rules. A missing directory is an empty one.
pub fn read_certs_dir(registry: &str, dir: &Path) -> Result<CertsDir> {
    let mut out = CertsDir::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(RegistryError::Tls {
                registry: registry.into(),
                message: format!("reading {}: {e}", dir.display()),
            })
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in &names {
        if name.ends_with(".crt") {
            out.cas.push(dir.join(name));
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = format!("{stem}.key");
            if !names.contains(&key) {
                return Err(RegistryError::Tls {
                    registry: registry.into(),
                    message: format!(
                        "missing key {} for client certificate {}; add the key, or give a CA certificate the extension .crt",
                        dir.join(&key).display(),
                        dir.join(name).display()
                    ),
                });
            }
            out.client_certs.push((dir.join(name), dir.join(key)));
        } else if let Some(stem) = name.strip_suffix(".key") {
            let cert = format!("{stem}.cert");
            if !names.contains(&cert) {
                return Err(RegistryError::Tls {
                    registry: registry.into(),
                    message: format!(
                        "missing client certificate {} for key {}",
                        dir.join(&cert).display(),
                        dir.join(name).display()
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// How a client talks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Verify {
    /// System roots plus the host's `certs.d` CAs.
    Yes,
    /// Any certificate (insecure registries); client certificates are still shown.
    No,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    /// The `certs.d` directory name; `None` for system roots only (Docker Hub).
    certs_host: Option<String>,
    verify: Verify,
    /// Names, sizes and modification times of the directory's files.
    fingerprint: Vec<(String, u64, Option<SystemTime>)>,
}

/// The HTTP clients of a [`Registry`], shared by its clones.
#[derive(Clone, Default)]
pub(crate) struct ClientCache(Arc<Mutex<HashMap<ClientKey, reqwest::Client>>>);

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or_default();
        write!(f, "ClientCache({n} clients)")
    }
}

fn fingerprint(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().ok(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// The client for `registry` (named so in errors) with TLS material from
/// `<certs_dir>/<certs_host>/`.
pub(crate) fn client(
    registry: &Registry,
    name: &str,
    certs_host: Option<&str>,
    verify: Verify,
) -> Result<reqwest::Client> {
    let dir = certs_host.map(|h| registry.config.certs_dir.join(h));
    let key = ClientKey {
        certs_host: certs_host.map(str::to_owned),
        verify,
        fingerprint: dir.as_deref().map(fingerprint).unwrap_or_default(),
    };
    if let Some(c) = registry
        .clients
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(c.clone());
    }
    let client = build_client(&registry.config, name, dir.as_deref(), verify)?;
    let mut map = registry.clients.0.lock().unwrap_or_else(|e| e.into_inner());
    // Drop clients built for an older state of the same directory.
    map.retain(|k, _| k.certs_host != key.certs_host || k.verify != key.verify);
    map.insert(key, client.clone());
    Ok(client)
}

fn build_client(
    config: &ClientConfig,
    name: &str,
    dir: Option<&Path>,
    verify: Verify,
) -> Result<reqwest::Client> {
    let tls_err = |message: String| RegistryError::Tls {
        registry: name.into(),
        message,
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(config.user_agent.clone())
        .connect_timeout(CONNECT_TIMEOUT);
    if verify == Verify::No {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(dir) = dir {
        let files = read_certs_dir(name, dir)?;
        for ca in &files.cas {
            let pem =
                std::fs::read(ca).map_err(|e| tls_err(format!("reading {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| tls_err(format!("{}: no PEM certificate in it", ca.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = files.client_certs.first() {
            if files.client_certs.len() > 1 {
                tracing::warn!(registry = name, cert = %cert.display(), "several client certificates; using the first");
            }
            let mut pem = std::fs::read(cert)
                .map_err(|e| tls_err(format!("reading {}: {e}", cert.display())))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| tls_err(format!("reading {}: {e}", key.display())))?,
            );
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                tls_err(format!(
                    "client certificate {} with key {}: {}",
                    cert.display(),
                    key.display(),
                    error_chain(&e)
                ))
            })?;
            builder = builder.identity(identity);
        }
    }
    builder.build().map_err(|e| tls_err(error_chain(&e)))
}

/// The messages of `e` and its causes, joined with `: ` (reqwest's own message only names
/// the URL; the reason is in the causes).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    // The URL is named by the caller; keep the causes when there are any.
    if parts.len() > 1 && parts[0].starts_with("error sending request") {
        parts.remove(0);
    }
    parts.join(": ")
}

/// What kind of HTTPS failure `e` is, if it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// The server's certificate could not be verified.
    Untrusted,
    /// The registry refused our (missing) client certificate.
    ClientCertificate,
    /// The server does not speak TLS on that port (plain HTTP, most likely).
    NotTls,
    /// Another TLS error.
    Other,
}

pub(crate) fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut next = Some(e);
    while let Some(mut err) = next {
        // `io::Error` shows its inner error's message but hides that error from `source()`;
        // look inside (hyper nests one io::Error in another).
        while let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            err = inner;
        }
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            use rustls::AlertDescription as A;
            return Some(match r {
                rustls::Error::InvalidCertificate(_) => TlsFailure::Untrusted,
                rustls::Error::AlertReceived(
                    A::CertificateRequired | A::BadCertificate | A::UnknownCA | A::HandshakeFailure,
                ) => TlsFailure::ClientCertificate,
                rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                    TlsFailure::NotTls
                }
                _ => TlsFailure::Other,
            });
        }
        next = err.source();
    }
    None
}

/// The error for an HTTPS attempt on `url` of `registry` that failed with `e`, with the fix
/// when it is a TLS problem: where the CA or client certificate goes, or how to allow
/// plain HTTP.
pub(crate) fn https_error(
    config: &ClientConfig,
    registry: &str,
    url: &str,
    e: &reqwest::Error,
) -> RegistryError {
    let cause = error_chain(e);
    let certs = config.certs_dir.join(registry);
    let hint = match tls_failure(e) {
        None => {
            let mut message = format!("{url}: {cause}");
            if !e.is_connect() && !e.is_timeout() {
                // With TLS 1.3 a refused client certificate often shows only as the server
                // closing the connection after the handshake.
                message.push_str(&format!(
                    "; if the registry requires a client certificate, put it in {}/client.cert and its key in client.key",
                    certs.display()
                ));
            }
            return RegistryError::Connect {
                registry: registry.into(),
                message,
            };
        }
        Some(TlsFailure::Untrusted) => format!(
            "if its certificate comes from a private CA, put that CA in {}/ca.crt; to skip verification, add {registry} to insecure-registries",
            certs.display()
        ),
        Some(TlsFailure::ClientCertificate) => format!(
            "the registry wants a client certificate it trusts: put it in {}/client.cert and its key in client.key",
            certs.display()
        ),
        Some(TlsFailure::NotTls) => format!(
            "the registry does not seem to speak HTTPS; to use plain HTTP, add {registry} to insecure-registries"
        ),
        Some(TlsFailure::Other) => format!(
            "CAs go in {}/*.crt, client certificates in *.cert with *.key; or add {registry} to insecure-registries",
            certs.display()
        ),
    };
    RegistryError::TlsHandshake {
        registry: registry.into(),
        message: format!("{url}: {cause}; {hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(insecure: &[&str]) -> ClientConfig {
        ClientConfig {
            insecure_registries: insecure.iter().map(|s| s.to_string()).collect(),
            ..ClientConfig::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("reg:5000"), ("reg", Some(5000)));
        assert_eq!(split_host_port("reg"), ("reg", None));
        assert_eq!(split_host_port("[::1]:5000"), ("::1", Some(5000)));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("reg:x"), ("reg:x", None));
    }

    #[test]
    fn cidrs() {
        assert_eq!(cidr_contains("10.0.0.0/8", ip("10.1.2.3")), Some(true));
        assert_eq!(cidr_contains("10.0.0.0/8", ip("11.0.0.1")), Some(false));
        assert_eq!(
            cidr_contains("192.168.1.7/32", ip("192.168.1.7")),
            Some(true)
        );
        assert_eq!(cidr_contains("0.0.0.0/0", ip("8.8.8.8")), Some(true));
        assert_eq!(cidr_contains("fd00::/8", ip("fd12::1")), Some(true));
        assert_eq!(cidr_contains("fd00::/8", ip("fe80::1")), Some(false));
        assert_eq!(cidr_contains("10.0.0.0/8", ip("::1")), Some(false));
        assert_eq!(cidr_contains("10.0.0.0/33", ip("10.0.0.1")), None);
        assert_eq!(cidr_contains("reg:5000", ip("10.0.0.1")), None);
    }

    #[test]
    fn insecure_rules() {
        let none = config(&[]);
        // Loopback, as Docker: by name or by address, unless the exception is off.
        assert!(is_insecure(&none, "localhost:5000", &[], true));
        assert!(is_insecure(
            &none,
            "127.0.0.1:5000",
            &[ip("127.0.0.1")],
            true
        ));
        assert!(is_insecure(&none, "127.3.4.5", &[ip("127.3.4.5")], true));
        assert!(is_insecure(&none, "[::1]:5000", &[ip("::1")], true));
        assert!(is_insecure(&none, "myhost:5000", &[ip("127.0.1.1")], true));
        assert!(!is_insecure(
            &none,
            "127.0.0.1:5000",
            &[ip("127.0.0.1")],
            false
        ));
        assert!(!is_insecure(
            &none,
            "reg.example.com",
            &[ip("10.0.0.5")],
            true
        ));

        // Exact names, with or without a port (each only as written).
        let named = config(&[
            "reg.example.com:5000",
            "other.example.com",
            "http://old.example.com:80",
        ]);
        assert!(is_insecure(&named, "reg.example.com:5000", &[], true));
        assert!(!is_insecure(&named, "reg.example.com", &[], true));
        assert!(is_insecure(&named, "other.example.com", &[], true));
        assert!(!is_insecure(&named, "other.example.com:443", &[], true));
        assert!(is_insecure(&named, "old.example.com:80", &[], true));

        // CIDRs match the host's addresses.
        let cidr = config(&["10.0.0.0/8", "127.0.0.0/8"]);
        assert!(is_insecure(
            &cidr,
            "reg.example.com",
            &[ip("10.9.9.9")],
            true
        ));
        assert!(!is_insecure(
            &cidr,
            "reg.example.com",
            &[ip("192.168.0.1")],
            true
        ));
        assert!(is_insecure(
            &cidr,
            "127.0.0.1:5000",
            &[ip("127.0.0.1")],
            false
        ));
    }

    #[test]
    fn certs_dir_rules() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_certs_dir("r", &dir.path().join("absent")).unwrap(),
            CertsDir::default()
        );
        std::fs::write(dir.path().join("ca.crt"), "x").unwrap();
        std::fs::write(dir.path().join("client.cert"), "x").unwrap();
        let err = read_certs_dir("r", dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("missing key") && err.contains("client.key"),
            "{err}"
        );
        std::fs::write(dir.path().join("client.key"), "x").unwrap();
        std::fs::write(dir.path().join("README"), "x").unwrap();
        let files = read_certs_dir("r", dir.path()).unwrap();
        assert_eq!(files.cas, [dir.path().join("ca.crt")]);
        assert_eq!(
            files.client_certs,
            [(
                dir.path().join("client.cert"),
                dir.path().join("client.key")
            )]
        );
        std::fs::write(dir.path().join("lonely.key"), "x").unwrap();
        let err = read_certs_dir("r", dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("missing client certificate") && err.contains("lonely.cert"),
            "{err}"
        );
    }
}
