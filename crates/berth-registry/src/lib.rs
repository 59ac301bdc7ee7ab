//! OCI distribution for berth: the client that pulls and pushes images between the image
//! store and registries, and a registry server that serves the same store.
//!
//! - [`client`]: registry sessions (TLS per `certs.d`, insecure and loopback HTTP, mirrors,
//!   basic and bearer-token auth), [`client::pull`] and [`client::push`].
//! - [`credentials`]: `~/.docker/config.json` (`auths`, `credsStore`, `credHelpers`), so
//!   `login` is shared with the docker CLI.
//! - [`manifest`]: the four manifest media types, platform selection.
//! - [`progress`]: per-layer progress events, which berthd forwards as Docker's JSON
//!   progress messages.
//! - [`server`]: the distribution API over the content store (`berth registry serve`).
#![forbid(unsafe_code)]

pub mod client;
pub mod credentials;
pub mod error;
pub mod manifest;
pub mod progress;
pub mod server;

pub use client::{ClientConfig, Registry};
pub use error::RegistryError;
