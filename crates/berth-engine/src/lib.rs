#![recursion_limit = "512"]
//! berthd's domain services, independent of HTTP: containers (created from image configs
//! merged with the request, run by one `berth-monitor` each), images (the image store and
//! the registry client), volumes, events, and the state persisted under the data root.
//!
//! `berth-api` is its only caller. Errors carry an [`ErrorKind`] that the API maps to
//! Docker's HTTP statuses.

pub mod archive;
pub mod error;
pub mod logs;
pub mod spec;
pub mod types;
pub mod volumes;

pub use error::{EngineError, ErrorKind, Result};

pub mod container;
pub mod engine;
pub mod events;
pub mod exec;
pub mod health;
pub mod lifecycle;
pub mod links;
pub mod monitor;
pub mod netfiles;
pub mod networking;
pub mod query;

pub use engine::{Engine, EngineConfig};
