//! Credentials in the docker CLI's `config.json` form.
//!
//! OWNED BY THE AUTH HELPER: reading and writing `auths`, `credsStore` and `credHelpers`
//! (the `docker-credential-<name>` protocol), so `berth login` and `docker login` share them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Docker's `AuthConfig` (the `X-Registry-Auth` header and `POST /auth` body use it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(default, rename = "serveraddress", skip_serializing_if = "String::is_empty")]
    pub server_address: String,
    #[serde(default, rename = "identitytoken", skip_serializing_if = "String::is_empty")]
    pub identity_token: String,
    #[serde(default, rename = "registrytoken", skip_serializing_if = "String::is_empty")]
    pub registry_token: String,
}

/// A docker config directory (`$DOCKER_CONFIG`, else `~/.docker`).
#[derive(Debug, Clone)]
pub struct CredentialStore {
    pub dir: PathBuf,
}

impl CredentialStore {
    pub fn new(dir: PathBuf) -> CredentialStore {
        CredentialStore { dir }
    }

    /// Credentials for `registry` (a reference's domain), if any are stored.
    pub fn get(&self, _registry: &str) -> crate::error::Result<Option<AuthConfig>> {
        Ok(None)
    }
}
