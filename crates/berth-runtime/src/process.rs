//! The last steps before a container process runs its program: limits, user and groups,
//! capabilities, no_new_privs, seccomp, descriptor hygiene and `execve`.
//!
//! Shared by the container's init and by exec'd processes. The order follows the kernel's
//! rules: the bounding set shrinks while CAP_SETPCAP is still held; PR_SET_KEEPCAPS keeps
//! the permitted set across the uid switch; seccomp is loaded while CAP_SYS_ADMIN is still
//! held unless no_new_privs allows loading it last, right before `execve`.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process};

use crate::error::{IoContext, Result, RuntimeError};
use crate::seccomp::SeccompProgram;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) fn resource(t: PosixRlimitType) -> Option<Resource> {
    Some(match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    })
}

fn rlimit_name(t: PosixRlimitType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{t:?}"))
}

/// The highest `--preserve-fds` accepted.
const MAX_PRESERVED_FDS: i32 = 1 << 16;

/// Check a process spec before any fork, so a mistake is reported with its field instead of
/// killing a half-made container: rlimits, NUL bytes, capability names, preserved fds.
pub(crate) fn validate(process: &Process, preserve_fds: i32) -> Result<()> {
    validate_rlimits(process)?;
    if !(0..=MAX_PRESERVED_FDS).contains(&preserve_fds) {
        return Err(RuntimeError::invalid(
            "preserve-fds",
            format!("{preserve_fds} is out of range 0..={MAX_PRESERVED_FDS}"),
        ));
    }
    for (field, list) in [
        ("process.args", process.args()),
        ("process.env", process.env()),
    ] {
        if let Some(i) = list.iter().flatten().position(|s| s.contains('\0')) {
            return Err(RuntimeError::invalid(
                format!("{field}[{i}]"),
                "contains a NUL byte",
            ));
        }
    }
    if let Some(caps) = process.capabilities() {
        for set in [
            caps.bounding(),
            caps.effective(),
            caps.permitted(),
            caps.inheritable(),
            caps.ambient(),
        ] {
            for cap in set.iter().flatten() {
                crate::capabilities::to_kernel(*cap)?;
            }
        }
    }
    Ok(())
}

/// Check `process.rlimits` against what this process may set, before any fork. Without
/// CAP_SYS_RESOURCE a hard limit cannot rise above the current one; the containers then
/// keep the host's limits for anything the spec does not mention.
fn validate_rlimits(process: &Process) -> Result<()> {
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    for (i, rl) in process.rlimits().iter().flatten().enumerate() {
        let field = format!("process.rlimits[{i}]");
        let name = rlimit_name(rl.typ());
        let Some(res) = resource(rl.typ()) else {
            return Err(RuntimeError::invalid(
                field,
                format!("{name} is not supported on this system"),
            ));
        };
        if rl.soft() > rl.hard() {
            return Err(RuntimeError::invalid(
                field,
                format!(
                    "{name}: soft limit {} is above hard limit {}",
                    rl.soft(),
                    rl.hard()
                ),
            ));
        }
        let (_, host_hard) =
            nix::sys::resource::getrlimit(res).ctx(|| format!("reading {name}"))?;
        if rl.hard() > host_hard && !can_raise {
            return Err(RuntimeError::invalid(
                field,
                format!(
                    "{name}: hard limit {} is above this host's hard limit {host_hard}, and raising it needs CAP_SYS_RESOURCE; ask for at most {host_hard}",
                    rl.hard()
                ),
            ));
        }
    }
    Ok(())
}

/// Find `args[0]` the way execvp would, but with the container's PATH, inside the
/// container (call after pivot_root).
pub(crate) fn resolve_executable(process: &Process) -> Result<PathBuf> {
    let args = process.args().as_deref().unwrap_or_default();
    let Some(cmd) = args.first() else {
        return Err(RuntimeError::invalid(
            "process.args",
            "no command given: args must have at least one element",
        ));
    };
    if cmd.contains('/') {
        let p = Path::new(cmd);
        let p = if p.is_relative() {
            process.cwd().join(p)
        } else {
            p.to_path_buf()
        };
        return match std::fs::metadata(&p) {
            Ok(m)
                if m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0 =>
            {
                Ok(p)
            }
            Ok(m) if m.is_file() => Err(RuntimeError::invalid(
                "process.args",
                format!("exec: {cmd:?}: permission denied (not executable)"),
            )),
            Ok(_) => Err(RuntimeError::invalid(
                "process.args",
                format!("exec: {cmd:?}: is a directory or not a regular file"),
            )),
            Err(_) => Err(RuntimeError::invalid(
                "process.args",
                format!("exec: {cmd:?}: no such file or directory"),
            )),
        };
    }
    let path = process
        .env()
        .iter()
        .flatten()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(cmd);
        if let Ok(m) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(RuntimeError::invalid(
        "process.args",
        format!("exec: {cmd:?}: executable file not found in $PATH"),
    ))
}

/// Everything about the process except the program: limits, oom score, umask.
pub(crate) fn apply_limits(process: &Process) -> Result<()> {
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .ctx(|| format!("process.oomScoreAdj: setting {adj} (lowering it below the runtime's own needs CAP_SYS_RESOURCE)"))?;
    }
    for rl in process.rlimits().iter().flatten() {
        if let Some(res) = resource(rl.typ()) {
            setrlimit(res, rl.soft(), rl.hard())
                .ctx(|| format!("process.rlimits: setting {}", rlimit_name(rl.typ())))?;
        }
    }
    if let Some(mask) = process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// Switch identity and privileges, then `execve`. Returns only on failure.
pub(crate) fn become_and_exec(
    process: &Process,
    executable: &Path,
    seccomp: Option<&SeccompProgram>,
    keep_fds: i32,
) -> Result<Infallible> {
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let (Some(prog), false) = (seccomp, nnp) {
        crate::sys::seccomp::load(prog).ctx(|| "linux.seccomp: loading the filter".to_string())?;
    }
    let caps = process.capabilities().clone().unwrap_or_default();
    crate::capabilities::drop_bounding(&caps)?;
    nix::sys::prctl::set_keepcaps(true).ctx(|| "PR_SET_KEEPCAPS".to_string())?;
    let user = process.user();
    let gids: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&gids) {
        Ok(()) => {}
        // In a user namespace with setgroups denied, only an empty list was possible anyway.
        Err(nix::Error::EPERM) if gids.is_empty() => {}
        Err(e) => return Err(e).ctx(|| "process.user.additionalGids: setgroups".to_string()),
    }
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid)
        .ctx(|| format!("process.user.gid: switching to gid {}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid)
        .ctx(|| format!("process.user.uid: switching to uid {}", user.uid()))?;
    crate::capabilities::apply_sets(&caps)?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "PR_SET_KEEPCAPS".to_string())?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().ctx(|| "process.noNewPrivileges".to_string())?;
    }

    let to_c = |s: &str| {
        CString::new(s)
            .map_err(|_| RuntimeError::invalid("process", format!("{s:?} contains a NUL byte")))
    };
    let args: Vec<CString> = process
        .args()
        .iter()
        .flatten()
        .map(|a| to_c(a))
        .collect::<Result<_>>()?;
    let env: Vec<CString> = process
        .env()
        .iter()
        .flatten()
        .map(|a| to_c(a))
        .collect::<Result<_>>()?;
    let path = CString::new(executable.as_os_str().as_bytes())
        .map_err(|_| RuntimeError::invalid("process.args", "path contains a NUL byte"))?;

    // Nothing of the runtime's may reach the program: every descriptor above stdio (and
    // the ones --preserve-fds keeps) closes on exec.
    crate::sys::fd::cloexec_from(3 + keep_fds)
        .ctx(|| "closing inherited descriptors".to_string())?;
    if let (Some(prog), true) = (seccomp, nnp) {
        crate::sys::seccomp::load(prog).ctx(|| "linux.seccomp: loading the filter".to_string())?;
    }
    crate::sys::process::reset_signals();
    let Err(err) = nix::unistd::execve(&path, &args, &env);
    Err(RuntimeError::Io {
        context: format!("exec {}", executable.display()),
        source: err.into(),
    })
}
