//! The server's TLS configuration from a PEM certificate chain and private key.
//!
//! The ring provider is passed to the builder explicitly rather than installed as the
//! process default, so embedding the server never fights over that global with the
//! registry client or anything else in berthd.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::error::ServerError;

/// A rustls server configuration serving `cert` (leaf first, then intermediates) with `key`.
pub fn load(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServerError> {
    let certs = read_certificates(cert)?;
    let key = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            tls_error(
                cert,
                format_args!("the certificate does not fit the key: {e}"),
            )
        })?;
    // HTTP/1.1 only: registry clients all speak it, and blob streams gain nothing from h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let file = File::open(path).map_err(ServerError::io("cannot open", path))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, format_args!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    let file = File::open(path).map_err(ServerError::io("cannot open", path))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| tls_error(path, format_args!("not a PEM key file: {e}")))?
        .ok_or_else(|| {
            tls_error(
                path,
                "no PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1) in the file",
            )
        })
}

fn tls_error(path: &Path, message: impl std::fmt::Display) -> ServerError {
    ServerError::Tls {
        path: path.to_owned(),
        message: message.to_string(),
    }
}
