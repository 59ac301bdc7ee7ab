//! The kernel calls that no safe crate wraps for us.
//!
//! Every `unsafe` block of berth-runtime lives under this module, each with a `SAFETY:`
//! comment. Everything else in the crate calls these functions or `nix`'s safe wrappers.

pub mod exe_protection;
pub mod fd;
pub mod memory;
pub mod openat2;
pub mod process;
pub mod seccomp;
pub mod tty;
