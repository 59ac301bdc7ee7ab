//! Errors of the cgroup layer.
//!
//! Every variant carries the object it is about (a path, a controller, an OCI field) so the
//! caller can print one line that says what failed and what to change. Messages do not repeat
//! their `#[source]`: the binary prints the chain.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result of every fallible operation in [`crate::cgroups`].
pub type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// What went wrong while detecting, creating, configuring, reading or removing a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `linux.cgroupsPath` is not an absolute, normalized path below the hierarchy root.
    #[error(
        "linux.cgroupsPath {path:?} is invalid: {reason}; use an absolute path such as /berth/<id>"
    )]
    InvalidCgroupsPath { path: PathBuf, reason: &'static str },

    /// `statfs` on the cgroup mount root failed.
    #[error("cannot inspect the cgroup mount root {path:?}; is /sys mounted?")]
    Statfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    /// The cgroup mount root is neither cgroup2 nor a tmpfs holding v1 hierarchies.
    #[error(
        "{path:?} is not a cgroup mount (filesystem magic {magic}); mount cgroup2 there \
         or a tmpfs with cgroup v1 hierarchies below it"
    )]
    NotCgroupFs { path: PathBuf, magic: String },

    /// The v1 mount table could not be read.
    #[error("cannot read the mount table {path:?}")]
    ReadMountinfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// No v1 hierarchy with a controller is mounted below the mount root.
    #[error(
        "no cgroup v1 controller is mounted below {mount_root:?}; mount the v1 hierarchies \
         there or run on a cgroup v2 host"
    )]
    NoV1Hierarchy { mount_root: PathBuf },

    /// Reading a cgroup file failed.
    #[error("cannot read cgroup file {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing a value into a cgroup file failed (the kernel rejected it, or the file is gone).
    #[error("cannot write {value:?} to cgroup file {path:?}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    /// The kernel refused a value `apply` wrote for a spec field.
    #[error(
        "the kernel refused {field} = {value:?} (writing {path:?}); change the value in the \
         spec to one this host accepts"
    )]
    Rejected {
        field: &'static str,
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    /// A cgroup file held something the kernel never writes there.
    #[error("cgroup file {path:?} holds {content:?}, expected {expected}")]
    Parse {
        path: PathBuf,
        content: String,
        expected: &'static str,
    },

    /// Creating a cgroup directory failed.
    #[error(
        "cannot create cgroup directory {path:?}; are you root and is the hierarchy writable?"
    )]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Listing a cgroup directory failed.
    #[error("cannot list cgroup directory {path:?}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Removing a cgroup directory failed, after retries if it was busy.
    #[error(
        "cannot remove cgroup directory {path:?}; kill the processes still in it \
         (see its cgroup.procs) and retry"
    )]
    RemoveDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The spec asks for a limit whose controller this host does not provide.
    #[error(
        "{field} needs the {controller} cgroup controller, which this host does not provide \
         ({path:?} is missing); remove {field} from the spec or enable the controller"
    )]
    MissingController {
        field: &'static str,
        controller: &'static str,
        path: PathBuf,
    },

    /// The spec sets a resource field berth does not apply; failing beats ignoring a limit.
    #[error("{field} is not supported by berth: {reason}; remove it from the spec")]
    Unsupported {
        field: &'static str,
        reason: &'static str,
    },

    /// The spec sets a resource field to a value no kernel accepts.
    #[error("{field} = {value} is invalid: {reason}")]
    InvalidValue {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    /// The spec limits swap but the kernel does not account swap per cgroup. Docker warns and
    /// drops the limit; berth refuses, because the container would run without it.
    #[error(
        "linux.resources.memory.swap asks for swap beyond the memory limit, but this host \
         does not account swap per cgroup ({path:?} is missing); enable swap accounting \
         (boot with swapaccount=1) or set swap to the memory limit or -1"
    )]
    SwapAccountingUnavailable { path: PathBuf },

    /// A process id that cannot name a process (zero or negative).
    #[error("pid {pid} cannot be added to a cgroup; pass the id of a running process")]
    InvalidPid { pid: i32 },

    /// The freezer did not reach the requested state in time.
    #[error(
        "cgroup {path:?} did not become {target} within {timeout:?}; a process may be stuck \
         in uninterruptible sleep (state D), check and retry"
    )]
    FreezerTimeout {
        path: PathBuf,
        target: &'static str,
        timeout: Duration,
    },

    /// Freezing needs the freezer (v1) or `cgroup.freeze` (v2, Linux 5.2+).
    #[error("cannot {action} cgroup {path:?}: {reason}")]
    FreezerUnavailable {
        action: &'static str,
        path: PathBuf,
        reason: &'static str,
    },
}
