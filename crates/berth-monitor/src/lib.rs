//! The contract between berthd and `berth-monitor`, its per-container process.
//!
//! berthd never holds a container's stdio: a monitor does, so the container outlives the
//! daemon. [`protocol`] is the whole interface: command-line arguments, the readiness
//! pipe, the files in the state directory and the framed attach socket.

#![forbid(unsafe_code)]

pub mod protocol;
