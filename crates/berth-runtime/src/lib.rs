//! berth's OCI runtime as a library: an OCI runtime spec and a root filesystem in, an
//! isolated container process out.
//!
//! - [`Runtime::create`] validates the spec, creates the cgroup, forks an intermediate
//!   child that enters or creates the user namespace and joins namespaces by path, and
//!   that child clones the container's init straight into its new namespaces (as a child
//!   of the caller, so the caller can wait for it). Init builds the root filesystem,
//!   `pivot_root`s into it and waits on `exec.fifo`.
//! - [`Container::start`] releases it; [`Container::kill`], [`Container::delete`],
//!   [`Container::exec`], [`Container::pause`] and [`Container::resume`] follow the OCI
//!   state machine.
//! - cgroups v1, v2 and hybrid hosts sit behind [`cgroups::Cgroup`]; seccomp filters are
//!   compiled with libseccomp in the caller and only loaded in the child.
//!
//! All `unsafe` code lives in [`sys`].

pub mod capabilities;
pub mod cgroups;
mod container;
pub mod error;
mod hooks;
mod init;
mod namespaces;
mod process;
mod rootfs;
pub mod seccomp;
pub mod state;
mod sync;
pub mod sys;
pub mod user;

pub use container::{Container, CreateOptions, Created, ExecOptions, Executed, Runtime, Stdio};
pub use error::RuntimeError;
pub use namespaces::namespace_path;
pub use rootfs::{parse_options as parse_mount_options, MountOptions};
pub use state::ContainerState;
