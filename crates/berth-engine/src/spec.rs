//! A Docker container's `Config` and `HostConfig` turned into the OCI runtime spec that
//! berth-runtime executes.
//!
//! Images and clients are written against what dockerd + runc give a container, so this
//! module reproduces moby's `daemon/oci_linux.go` on top of `oci/defaults.go` (checked
//! against moby master of 2026, Docker 29.x) rather than inventing its own defaults: the
//! default mounts in Docker's order, the masked and read-only `/proc` and `/sys` paths,
//! Docker's 14 capabilities and its seccomp profile, the device cgroup rules, the two
//! network sysctls Docker sets, the cgroup namespace default (private on cgroup v2, the
//! host's on v1/hybrid) and a time namespace where the kernel has them. Requests dockerd
//! refuses are refused here with dockerd's own message (`Minimum memory limit allowed is
//! 6MB`...), so clients and their tests see the same errors; options berth cannot honour
//! yet are refused by name rather than silently ignored.
//!
//! What is *not* decided here: the caller resolves volumes to host paths, prepares
//! `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, merges the environment, looks up
//! other containers' namespaces (as `/proc/<pid>/ns/<x>` paths) and picks the cgroup path;
//! berth-runtime creates the default `/dev` nodes, the `/dev/ptmx` link and the
//! `c *:* m`/pts/ptmx device rules itself, as runc does, so the spec carries exactly what
//! dockerd writes.
//!
//! Host facts that change the spec are gathered once in [`HostInfo`]; [`build_with`]
//! takes them explicitly so tests can build a v2 host's spec on a v1 machine.

mod host;
mod resources;
mod seccomp;

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use berth_runtime::cgroups::CgroupMode;
use oci_spec::runtime::{Capability, PosixRlimitType, Spec};
use serde_json::{json, Map, Value};

pub use host::HostInfo;
pub use resources::MIN_MEMORY;

use crate::error::{EngineError, Result};
use crate::types::{ContainerConfig, HostConfig};

/// The container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNs {
    /// Share the host's (`--network host`).
    Host,
    /// A new, empty namespace: loopback only (`--network none`).
    None,
    /// Join this namespace (`container:<x>`, or one berth prepared).
    Path(PathBuf),
    /// A new namespace that berth configures after creation.
    New,
}

/// How a pid, ipc or uts namespace is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareNs {
    /// A new namespace of the container's own.
    Private,
    /// The host's: no namespace entry.
    Host,
    /// Join another container's, by its `/proc/<pid>/ns/<x>` path.
    Container(PathBuf),
}

/// What is mounted at a [`MountSpec`]'s destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind mount of a host path (binds, volumes resolved to their directories, the
    /// network files).
    Bind {
        source: PathBuf,
        read_only: bool,
        /// `private`, `rprivate` (the default), `shared`, `rshared`, `slave`, `rslave`.
        propagation: Option<String>,
        /// `rbind` (submounts too) rather than `bind`.
        recursive: bool,
    },
    /// A tmpfs with the user's options (as [`parse_tmpfs_options`] returns them, or
    /// `size=`/`mode=` from `--mount type=tmpfs`); Docker's `noexec,nosuid,nodev` defaults
    /// are merged in by [`build`].
    Tmpfs { options: Vec<String> },
}

/// One mount the caller adds to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: String,
    pub kind: MountKind,
}

/// Everything [`build`] needs; see the module docs for what the caller prepares.
#[derive(Debug)]
pub struct SpecInput<'a> {
    pub id: &'a str,
    /// Already merged with the image's config.
    pub config: &'a ContainerConfig,
    pub host: &'a HostConfig,
    /// The merged overlay directory (absolute).
    pub rootfs: &'a Path,
    /// Final argv (entrypoint + cmd), non-empty.
    pub args: Vec<String>,
    /// Final environment (image + request + PATH default + HOSTNAME).
    pub env: Vec<String>,
    pub hostname: String,
    /// `Config.User`: `""`, `name`, `uid`, `uid:gid`, `name:group`.
    pub user: &'a str,
    /// Binds, volumes, tmpfs mounts and the /etc/hosts, /etc/hostname, /etc/resolv.conf
    /// binds.
    pub mounts: Vec<MountSpec>,
    pub net: NetNs,
    pub pid: ShareNs,
    pub ipc: ShareNs,
    pub uts: ShareNs,
    /// e.g. `/berth/<id>`; `HostConfig.CgroupParent` replaces its parent, as in Docker.
    pub cgroups_path: String,
    /// With `HostConfig.Init`, the host path of a static init, bound read-only at
    /// `/sbin/docker-init` and put before the command (only with a private pid namespace,
    /// as Docker does).
    pub init_binary: Option<PathBuf>,
}

/// Where Docker puts the init binary inside the container.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// Docker's default `/dev/shm` size (64 MiB).
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The spec of a container, for this host.
pub fn build(input: &SpecInput) -> Result<Spec> {
    build_with(input, HostInfo::get())
}

/// [`build`] for a host described by `info`.
pub fn build_with(input: &SpecInput, info: &HostInfo) -> Result<Spec> {
    let value = build_json(input, info)?;
    serde_json::from_value(value)
        .map_err(|e| EngineError::internal(format!("building the OCI spec: {e}")))
}

/// The checks of [`build`] that need neither the root filesystem nor other containers,
/// for refusing a bad request at create time as dockerd does (resources, security
/// options, capabilities, ulimits, devices, tmpfs options, sysctls, modes).
pub fn validate(config: &ContainerConfig, host: &HostConfig) -> Result<()> {
    validate_with(config, host, HostInfo::get())
}

/// [`validate`] for a host described by `info`.
pub fn validate_with(config: &ContainerConfig, host: &HostConfig, info: &HostInfo) -> Result<()> {
    check_host_config(host)?;
    check_config(config, host, &config.hostname)?;
    let sec = SecurityOpts::parse(host.security_opt.as_deref().unwrap_or_default())?;
    let caps = capabilities(host)?;
    rlimits(host.ulimits.as_deref().unwrap_or_default())?;
    resources::resources(host, info)?;
    resources::devices(host, host.privileged)?;
    for options in host.tmpfs.iter().flat_map(|t| t.values()) {
        parse_tmpfs_options(options)?;
    }
    let mut sysctl: BTreeMap<String, String> = host.sysctls.clone().unwrap_or_default();
    if !config.domainname.is_empty() {
        sysctl.insert("kernel.domainname".to_owned(), config.domainname.clone());
    }
    check_sysctls(
        &sysctl,
        host.network_mode == "host",
        host.ipc_mode == "host",
        host.uts_mode == "host",
    )?;
    if let Some(profile) = sec
        .seccomp
        .as_deref()
        .filter(|p| !matches!(*p, "unconfined" | "builtin" | "default"))
    {
        seccomp::load_profile(profile, &bounding_names(&caps), info)?;
    }
    Ok(())
}

/// `Config`-level checks dockerd makes at create.
fn check_config(config: &ContainerConfig, host: &HostConfig, hostname: &str) -> Result<()> {
    if !config.working_dir.is_empty() && !config.working_dir.starts_with('/') {
        return Err(EngineError::invalid(format!(
            "the working directory '{}' is invalid, it needs to be an absolute path",
            config.working_dir
        )));
    }
    if hostname.len() > 64 {
        return Err(EngineError::invalid(format!(
            "hostname {hostname:?} is too long (maximum 64 bytes)"
        )));
    }
    if !(-1000..=1000).contains(&host.oom_score_adj) {
        return Err(EngineError::invalid(format!(
            "Invalid value {}, range for oom score adj is [-1000, 1000]",
            host.oom_score_adj
        )));
    }
    Ok(())
}

fn bounding_names(caps: &Value) -> Vec<String> {
    caps.get("bounding")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn build_json(input: &SpecInput, info: &HostInfo) -> Result<Value> {
    let host = input.host;
    let config = input.config;
    check_host_config(host)?;
    let sec = SecurityOpts::parse(host.security_opt.as_deref().unwrap_or_default())?;
    let privileged = host.privileged;

    // process
    if input.args.is_empty() {
        return Err(EngineError::invalid("No command specified"));
    }
    let init = input
        .init_binary
        .as_ref()
        .filter(|_| input.pid == ShareNs::Private);
    let mut args = Vec::with_capacity(input.args.len() + 2);
    if init.is_some() {
        args.extend([INIT_PATH.to_owned(), "--".to_owned()]);
    }
    args.extend(input.args.iter().cloned());
    check_config(config, host, &input.hostname)?;
    let cwd = if config.working_dir.is_empty() {
        "/".to_owned()
    } else {
        clean_path(&config.working_dir)
    };
    let user = resolve_user(
        input.rootfs,
        input.user,
        host.group_add.as_deref().unwrap_or_default(),
    )?;
    let caps = capabilities(host)?;
    let bounding = bounding_names(&caps);
    let mut process = Map::new();
    process.insert("terminal".into(), config.tty.into());
    if config.tty {
        if let Some([h, w]) = host.console_size.filter(|[h, w]| *h > 0 || *w > 0) {
            process.insert("consoleSize".into(), json!({"height": h, "width": w}));
        }
    }
    process.insert("user".into(), user);
    process.insert("args".into(), args.into());
    process.insert("env".into(), input.env.clone().into());
    process.insert("cwd".into(), cwd.into());
    process.insert("capabilities".into(), caps);
    let rlimits = rlimits(host.ulimits.as_deref().unwrap_or_default())?;
    if !rlimits.is_empty() {
        process.insert("rlimits".into(), rlimits.into());
    }
    if sec.no_new_privileges {
        process.insert("noNewPrivileges".into(), true.into());
    }
    process.insert("oomScoreAdj".into(), host.oom_score_adj.into());

    // mounts
    let writable_cgroups = sec.writable_cgroups.unwrap_or(privileged);
    let (mounts, rootfs_propagation) = mounts(input, init.map(PathBuf::as_path), writable_cgroups)?;

    // namespaces
    let cgroupns_private = match host.cgroupns_mode.as_str() {
        "private" => true,
        "host" => false,
        // Docker's default: private on a pure v2 host (even when privileged), the host's
        // on v1 and hybrid hosts.
        _ => info.cgroup_mode == CgroupMode::V2,
    };
    let mut namespaces = vec![json!({"type": "mount"})];
    match &input.net {
        NetNs::Host => {}
        NetNs::None | NetNs::New => namespaces.push(json!({"type": "network"})),
        NetNs::Path(p) => namespaces.push(json!({"type": "network", "path": p})),
    }
    if info.time_namespace {
        namespaces.push(json!({"type": "time"}));
    }
    for (typ, share) in [
        ("uts", &input.uts),
        ("pid", &input.pid),
        ("ipc", &input.ipc),
    ] {
        match share {
            ShareNs::Host => {}
            ShareNs::Private => namespaces.push(json!({"type": typ})),
            ShareNs::Container(p) => namespaces.push(json!({"type": typ, "path": p})),
        }
    }
    if cgroupns_private {
        namespaces.push(json!({"type": "cgroup"}));
    }

    // sysctls: Docker's two defaults for a network namespace of the container's own, then
    // the request's, then the NIS domain name.
    let own_net = !matches!(input.net, NetNs::Host) && !host.network_mode.starts_with("container:");
    let mut sysctl = BTreeMap::new();
    if own_net {
        if info.ping_group_range {
            sysctl.insert(
                "net.ipv4.ping_group_range".to_owned(),
                "0 2147483647".to_owned(),
            );
        }
        if info.unprivileged_port_start {
            sysctl.insert(
                "net.ipv4.ip_unprivileged_port_start".to_owned(),
                "0".to_owned(),
            );
        }
    }
    for (k, v) in host.sysctls.iter().flatten() {
        sysctl.insert(k.clone(), v.clone());
    }
    if !config.domainname.is_empty() {
        sysctl.insert("kernel.domainname".to_owned(), config.domainname.clone());
    }
    check_sysctls(
        &sysctl,
        input.net == NetNs::Host,
        input.ipc == ShareNs::Host,
        input.uts == ShareNs::Host,
    )?;

    // resources and devices
    let mut res = resources::resources(host, info)?;
    let (devices, rules) = resources::devices(host, privileged)?;
    res.insert("devices".into(), rules.into());

    // seccomp
    let seccomp = match sec.seccomp.as_deref() {
        Some("unconfined") => None,
        None | Some("builtin") | Some("default") if privileged => None,
        None | Some("builtin") | Some("default") => {
            let caps: Vec<Capability> = bounding
                .iter()
                .filter_map(|c| serde_json::from_value(Value::String(c.clone())).ok())
                .collect();
            Some(berth_runtime::seccomp::docker_default(&caps))
        }
        Some(profile) => seccomp::load_profile(profile, &bounding, info)?,
    };

    // masked and read-only paths
    let (mut masked, mut readonly) = if privileged || sec.unconfined_system_paths {
        (Vec::new(), Vec::new())
    } else {
        (default_masked_paths(info), default_readonly_paths())
    };
    if let Some(p) = &host.masked_paths {
        masked = p.clone();
    }
    if let Some(p) = &host.readonly_paths {
        readonly = p.clone();
    }

    let mut linux = Map::new();
    linux.insert(
        "cgroupsPath".into(),
        cgroups_path(&input.cgroups_path, &host.cgroup_parent, input.id)?.into(),
    );
    linux.insert("namespaces".into(), namespaces.into());
    if !devices.is_empty() {
        linux.insert("devices".into(), devices.into());
    }
    linux.insert("resources".into(), Value::Object(res));
    if !sysctl.is_empty() {
        linux.insert("sysctl".into(), json!(sysctl));
    }
    if let Some(s) = seccomp {
        linux.insert(
            "seccomp".into(),
            serde_json::to_value(s).map_err(|e| EngineError::internal(e.to_string()))?,
        );
    }
    if !masked.is_empty() {
        linux.insert("maskedPaths".into(), masked.into());
    }
    if !readonly.is_empty() {
        linux.insert("readonlyPaths".into(), readonly.into());
    }
    if let Some(p) = rootfs_propagation {
        linux.insert("rootfsPropagation".into(), p.into());
    }

    let mut spec = Map::new();
    spec.insert("ociVersion".into(), "1.2.1".into());
    spec.insert("process".into(), Value::Object(process));
    spec.insert(
        "root".into(),
        json!({"path": input.rootfs, "readonly": host.readonly_rootfs}),
    );
    if input.uts == ShareNs::Private && !input.hostname.is_empty() {
        spec.insert("hostname".into(), input.hostname.clone().into());
    }
    spec.insert("mounts".into(), mounts.into());
    spec.insert("linux".into(), Value::Object(linux));
    Ok(Value::Object(spec))
}

/// HostConfig fields that decide nothing in the spec but that berth cannot honour, or
/// whose values Docker refuses.
fn check_host_config(host: &HostConfig) -> Result<()> {
    let ipc = host.ipc_mode.as_str();
    let ipc_ok = matches!(ipc, "" | "none" | "private" | "shareable" | "host")
        || ipc
            .strip_prefix("container:")
            .is_some_and(|c| !c.is_empty());
    if !ipc_ok {
        return Err(EngineError::invalid(format!("invalid IPC mode: {ipc}")));
    }
    let pid = host.pid_mode.as_str();
    let pid_ok = matches!(pid, "" | "host")
        || pid
            .strip_prefix("container:")
            .is_some_and(|c| !c.is_empty());
    if !pid_ok {
        return Err(EngineError::invalid(format!("invalid PID mode: {pid}")));
    }
    if !matches!(host.uts_mode.as_str(), "" | "host") {
        return Err(EngineError::invalid(format!(
            "invalid UTS mode: {}",
            host.uts_mode
        )));
    }
    if !matches!(host.cgroupns_mode.as_str(), "" | "private" | "host") {
        return Err(EngineError::invalid(format!(
            "invalid cgroup namespace mode: {}",
            host.cgroupns_mode
        )));
    }
    match host.userns_mode.as_str() {
        "" | "host" => {}
        other => {
            return Err(EngineError::invalid(format!(
                "UsernsMode {other:?} is not supported by berth: user namespace remapping is not available"
            )))
        }
    }
    if !matches!(host.isolation.as_str(), "" | "default") {
        return Err(EngineError::invalid(format!(
            "Invalid isolation: {:?} - linux only supports 'default'",
            host.isolation
        )));
    }
    if host.storage_opt.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(EngineError::invalid(
            "--storage-opt is not supported by berth's overlay storage",
        ));
    }
    if !host.cgroup.is_empty() {
        return Err(EngineError::invalid(format!(
            "Cgroup {:?} is not supported by berth: containers always get a cgroup of their own",
            host.cgroup
        )));
    }
    if host.shm_size < 0 {
        return Err(EngineError::invalid("SHM size can not be less than 0"));
    }
    Ok(())
}

/// What `HostConfig.SecurityOpt` asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct SecurityOpts {
    no_new_privileges: bool,
    /// `unconfined`, `builtin`/`default`, or a profile's JSON text.
    seccomp: Option<String>,
    writable_cgroups: Option<bool>,
    /// `systempaths=unconfined` (the CLI's spelling of empty masked and read-only paths).
    unconfined_system_paths: bool,
}

impl SecurityOpts {
    /// dockerd's `parseSecurityOpt`, messages included. AppArmor and SELinux labels are
    /// accepted and have no effect: berth loads neither.
    fn parse(opts: &[String]) -> Result<SecurityOpts> {
        let mut out = SecurityOpts::default();
        for opt in opts {
            match opt.as_str() {
                "no-new-privileges" => {
                    out.no_new_privileges = true;
                    continue;
                }
                "writable-cgroups" => {
                    out.writable_cgroups = Some(true);
                    continue;
                }
                "disable" => continue,
                _ => {}
            }
            let split = if opt.contains('=') {
                opt.split_once('=')
            } else {
                opt.split_once(':')
            };
            let Some((k, v)) = split else {
                return Err(EngineError::invalid(format!(
                    "invalid --security-opt 1: {opt:?}"
                )));
            };
            let invalid2 = || EngineError::invalid(format!("invalid --security-opt 2: {opt:?}"));
            match k {
                "label" | "apparmor" => {}
                "seccomp" => out.seccomp = Some(v.to_owned()),
                "no-new-privileges" => {
                    out.no_new_privileges = parse_go_bool(v).ok_or_else(invalid2)?
                }
                "writable-cgroups" => {
                    out.writable_cgroups = Some(parse_go_bool(v).ok_or_else(invalid2)?)
                }
                "systempaths" if v == "unconfined" => out.unconfined_system_paths = true,
                _ => return Err(invalid2()),
            }
        }
        Ok(out)
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn runtime_error(e: berth_runtime::RuntimeError) -> EngineError {
    match e {
        berth_runtime::RuntimeError::InvalidSpec { reason, .. } => EngineError::invalid(reason),
        other => {
            let mut msg = other.to_string();
            let mut src = std::error::Error::source(&other);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            EngineError::internal(msg)
        }
    }
}

/// `process.user` the way runc's `GetExecUser` and dockerd's `getUser` resolve it: names
/// from the container's own /etc/passwd and /etc/group, numbers as they are, an empty user
/// as uid 0 (with root's groups), the primary gid first in `additionalGids`, then the
/// user's other groups, then `GroupAdd`.
fn resolve_user(rootfs: &Path, user: &str, group_add: &[String]) -> Result<Value> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, g),
        None => (user, ""),
    };
    let u = if u.is_empty() { "0" } else { u };
    let spec = if g.is_empty() {
        u.to_owned()
    } else {
        format!("{u}:{g}")
    };
    let resolved = berth_runtime::user::resolve_user(rootfs, &spec).map_err(runtime_error)?;
    let mut gids = vec![resolved.gid];
    for gid in resolved.additional_gids {
        if !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    for group in group_add {
        let gid = match group.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                berth_runtime::user::resolve_user(rootfs, &format!("0:{group}"))
                    .map_err(runtime_error)?
                    .gid
            }
        };
        if !gids.contains(&gid) {
            gids.push(gid);
        }
    }
    Ok(json!({"uid": resolved.uid, "gid": resolved.gid, "additionalGids": gids}))
}

/// A `CapAdd`/`CapDrop` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapName {
    /// `ALL`.
    All,
    One(Capability),
}

/// `NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin` or `ALL`, as Docker normalises them. Unknown
/// names and capabilities this kernel lacks are refused with Docker's messages.
pub fn parse_capability(name: &str) -> Result<CapName> {
    let upper = name.to_uppercase();
    if upper == "ALL" {
        return Ok(CapName::All);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    let cap: Capability = serde_json::from_value(Value::String(full.clone()))
        .ok()
        .filter(|c: &Capability| {
            // oci-spec strips any number of CAP_ prefixes; Docker strips none.
            serde_json::to_value(c)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                == Some(full.clone())
        })
        .ok_or_else(|| EngineError::invalid(format!("unknown capability: {full:?}")))?;
    if !available_capabilities().contains(&cap) {
        return Err(EngineError::invalid(format!(
            "capability not supported by your kernel or not available in the current environment: {full:?}"
        )));
    }
    Ok(CapName::One(cap))
}

/// The capabilities a container can get on this host: those the kernel knows and this
/// process holds (containerd's `cap.Current`, which dockerd uses for `ALL` and
/// `--privileged`). A capability the runtime lacks cannot be granted: asking for it would
/// fail the container's start.
pub fn available_capabilities() -> &'static HashSet<Capability> {
    static AVAILABLE: std::sync::OnceLock<HashSet<Capability>> = std::sync::OnceLock::new();
    AVAILABLE.get_or_init(|| {
        let known = berth_runtime::capabilities::all_known();
        let effective = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            });
        let Some(effective) = effective else {
            return known;
        };
        known
            .into_iter()
            .filter(|c| {
                berth_runtime::capabilities::to_kernel(*c)
                    .is_ok_and(|k| effective & k.bitmask() != 0)
            })
            .collect()
    })
}

/// `process.capabilities`: Docker's defaults adjusted by `CapAdd`/`CapDrop`, or every
/// capability for privileged containers. Inheritable and ambient stay empty, as in Docker.
fn capabilities(host: &HostConfig) -> Result<Value> {
    let (mut add, mut drop) = (Vec::new(), Vec::new());
    let (mut add_all, mut drop_all) = (false, false);
    // Docker validates the names only when they matter: not for privileged containers.
    if !host.privileged {
        for (list, caps, all) in [
            (&host.cap_add, &mut add, &mut add_all),
            (&host.cap_drop, &mut drop, &mut drop_all),
        ] {
            for name in list.iter().flatten() {
                match parse_capability(name)? {
                    CapName::All => *all = true,
                    CapName::One(c) => caps.push(c),
                }
            }
        }
    }
    let caps = berth_runtime::capabilities::docker_capabilities(
        &add,
        &drop,
        add_all,
        drop_all,
        host.privileged,
    );
    let available = available_capabilities();
    let names = |set: &Option<HashSet<Capability>>| -> Value {
        let v: Vec<String> = set
            .iter()
            .flatten()
            .filter(|c| available.contains(c))
            .filter_map(|c| {
                serde_json::to_value(c)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            })
            .collect();
        v.into()
    };
    Ok(json!({
        "bounding": names(caps.bounding()),
        "effective": names(caps.effective()),
        "permitted": names(caps.permitted()),
    }))
}

/// A `Ulimits[].Name` (`nofile`) as the spec's rlimit type (`RLIMIT_NOFILE`).
pub fn parse_ulimit_name(name: &str) -> Result<PosixRlimitType> {
    const NAMES: [&str; 16] = [
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let lower = name.to_lowercase();
    let lower = lower.strip_prefix("rlimit_").unwrap_or(&lower);
    if !NAMES.contains(&lower) {
        return Err(EngineError::invalid(format!("invalid ulimit type: {name}")));
    }
    serde_json::from_value(Value::String(format!("RLIMIT_{}", lower.to_uppercase())))
        .map_err(|_| EngineError::invalid(format!("invalid ulimit type: {name}")))
}

/// `process.rlimits`; a later entry for the same limit replaces an earlier one. `-1` is
/// unlimited.
fn rlimits(ulimits: &[crate::types::Ulimit]) -> Result<Vec<Value>> {
    let mut out: Vec<(PosixRlimitType, Value)> = Vec::new();
    for ul in ulimits {
        let typ = parse_ulimit_name(&ul.name)?;
        let value = |v: i64| -> Result<u64> {
            match v {
                -1 => Ok(u64::MAX),
                v if v >= 0 => Ok(v as u64),
                v => Err(EngineError::invalid(format!(
                    "invalid ulimit {}: {v} is not a valid value (use -1 for unlimited)",
                    ul.name
                ))),
            }
        };
        let (soft, hard) = (value(ul.soft)?, value(ul.hard)?);
        if soft > hard {
            return Err(EngineError::invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                ul.soft, ul.hard
            )));
        }
        let entry = json!({"type": typ, "soft": soft, "hard": hard});
        match out.iter_mut().find(|(t, _)| *t == typ) {
            Some(slot) => slot.1 = entry,
            None => out.push((typ, entry)),
        }
    }
    Ok(out.into_iter().map(|(_, v)| v).collect())
}

/// `HostConfig.Tmpfs` options (`"rw,noexec,size=65536k"`), checked the way Docker's
/// `MergeTmpfsOptions` checks them: mount flags, or `size`, `mode`, `uid`, `gid`,
/// `nr_inodes`, `nr_blocks`, `mpol` with a value. Returned as given; [`build`] merges in
/// Docker's defaults.
pub fn parse_tmpfs_options(s: &str) -> Result<Vec<String>> {
    let options: Vec<String> = s
        .split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    merge_tmpfs_options(&options)?;
    Ok(options)
}

/// Mount flags as `mount(8)` spells them, with the flag each one sets or clears (options
/// of one key override each other; propagation modes share one key).
fn tmpfs_flag_key(option: &str) -> Option<&'static str> {
    Some(match option {
        "ro" | "rw" => "rdonly",
        "suid" | "nosuid" => "nosuid",
        "dev" | "nodev" => "nodev",
        "exec" | "noexec" => "noexec",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "remount" => "remount",
        "mand" | "nomand" => "mand",
        "atime" | "noatime" => "noatime",
        "diratime" | "nodiratime" => "nodiratime",
        "relatime" | "norelatime" => "relatime",
        "strictatime" | "nostrictatime" => "strictatime",
        "bind" | "rbind" | "unbindable" | "runbindable" | "private" | "rprivate" | "shared"
        | "rshared" | "slave" | "rslave" => "propagation",
        _ => return None,
    })
}

/// moby's `MergeTmpfsOptions`: the last of each flag or `key=value` wins, order kept.
pub fn merge_tmpfs_options(options: &[String]) -> Result<Vec<String>> {
    const DATA: [&str; 7] = [
        "size",
        "mode",
        "uid",
        "gid",
        "nr_inodes",
        "nr_blocks",
        "mpol",
    ];
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for option in options.iter().rev() {
        if option == "defaults" {
            continue;
        }
        let key = match tmpfs_flag_key(option) {
            Some(k) => k.to_owned(),
            None => {
                let key = option.split_once('=').map(|(k, _)| k);
                match key {
                    Some(k) if DATA.contains(&k) => format!("data:{k}"),
                    _ => {
                        let k = key.unwrap_or(option);
                        return Err(EngineError::invalid(format!("invalid tmpfs option {k:?}")));
                    }
                }
            }
        };
        if seen.insert(key) {
            out.push(option.clone());
        }
    }
    out.reverse();
    Ok(out)
}

/// One entry of `mounts`.
#[derive(Debug, Clone)]
struct OciMount {
    destination: String,
    typ: &'static str,
    source: String,
    options: Vec<String>,
}

impl OciMount {
    fn new(destination: &str, typ: &'static str, source: &str, options: &[&str]) -> OciMount {
        OciMount {
            destination: destination.to_owned(),
            typ,
            source: source.to_owned(),
            options: options.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "destination": self.destination,
            "type": self.typ,
            "source": self.source,
            "options": self.options,
        })
    }
}

/// moby's `DefaultLinuxSpec` mounts, in its order.
fn default_mounts() -> Vec<OciMount> {
    vec![
        OciMount::new("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        OciMount::new(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        OciMount::new(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        OciMount::new(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        OciMount::new(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        OciMount::new(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        OciMount::new(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777"],
        ),
    ]
}

/// `filepath.Clean` of an absolute path.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The spec's mounts in Docker's order (defaults not overridden, the init binary, then
/// the caller's sorted parents-first) and the root propagation shared or slave binds need.
fn mounts(
    input: &SpecInput,
    init: Option<&Path>,
    writable_cgroups: bool,
) -> Result<(Vec<Value>, Option<String>)> {
    let host = input.host;
    let mut user: Vec<OciMount> = Vec::new();
    let mut rootfs_propagation: Option<String> = None;
    let mut taken = HashSet::new();
    for m in &input.mounts {
        if !m.destination.starts_with('/') {
            return Err(EngineError::invalid(format!(
                "invalid mount config: mount path must be absolute: {}",
                m.destination
            )));
        }
        let dest = clean_path(&m.destination);
        if dest == "/" {
            return Err(EngineError::invalid(
                "invalid mount config: destination can't be '/'",
            ));
        }
        if !taken.insert(dest.clone()) {
            return Err(EngineError::invalid(format!(
                "Duplicate mount point: {dest}"
            )));
        }
        match &m.kind {
            MountKind::Tmpfs { options } => {
                let mut all: Vec<String> = ["noexec", "nosuid", "nodev", "rprivate"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                all.extend(
                    options
                        .iter()
                        .flat_map(|o| o.split(','))
                        .filter(|o| !o.is_empty())
                        .map(str::to_owned),
                );
                user.push(OciMount {
                    destination: dest,
                    typ: "tmpfs",
                    source: "tmpfs".into(),
                    options: merge_tmpfs_options(&all)?,
                });
            }
            MountKind::Bind {
                source,
                read_only,
                propagation,
                recursive,
            } => {
                if !source.is_absolute() {
                    return Err(EngineError::invalid(format!(
                        "invalid mount config for type \"bind\": invalid mount path: '{}' mount path must be absolute",
                        source.display()
                    )));
                }
                if std::fs::symlink_metadata(source).is_err() {
                    return Err(EngineError::invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        source.display()
                    )));
                }
                let propagation = propagation
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("rprivate");
                match propagation {
                    "private" | "rprivate" => {}
                    "shared" | "rshared" => {
                        ensure_propagation(source, &["shared:"], "shared")?;
                        if !matches!(rootfs_propagation.as_deref(), Some("shared" | "rshared")) {
                            rootfs_propagation = Some("shared".into());
                        }
                    }
                    "slave" | "rslave" => {
                        ensure_propagation(source, &["shared:", "master:"], "shared or slave")?;
                        if rootfs_propagation.is_none() {
                            rootfs_propagation = Some("rslave".into());
                        }
                    }
                    other => {
                        return Err(EngineError::invalid(format!(
                            "invalid propagation mode: {other}"
                        )))
                    }
                }
                let mut options = vec![if *recursive { "rbind" } else { "bind" }.to_owned()];
                if *read_only {
                    options.push("ro".into());
                }
                options.push(propagation.to_owned());
                user.push(OciMount {
                    destination: dest,
                    typ: "bind",
                    source: source.to_string_lossy().into_owned(),
                    options,
                });
            }
        }
    }
    // --ipc host: the host's /dev/shm, as dockerd's IpcMounts gives it.
    if input.ipc == ShareNs::Host && !taken.contains("/dev/shm") {
        taken.insert("/dev/shm".to_owned());
        user.push(OciMount::new(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "rprivate"],
        ));
    }
    // Parents before children: fewer path components first (a stable sort, where moby's
    // is not).
    user.sort_by_key(|m| m.destination.matches('/').count());

    let user_dev = taken.contains("/dev");
    let shm_size = if host.shm_size == 0 {
        DEFAULT_SHM_SIZE
    } else {
        host.shm_size
    };
    let mut out: Vec<OciMount> = Vec::new();
    for mut m in default_mounts() {
        if taken.contains(&m.destination) {
            continue;
        }
        if user_dev && m.destination.starts_with("/dev/") {
            continue;
        }
        if m.destination == "/dev/shm" {
            if host.ipc_mode == "none" {
                continue;
            }
            m.options.push(format!("size={shm_size}"));
        }
        out.push(m);
    }
    if let Some(init) = init {
        if !taken.contains(INIT_PATH) {
            out.push(OciMount {
                destination: INIT_PATH.into(),
                typ: "bind",
                source: init.to_string_lossy().into_owned(),
                options: vec!["bind".into(), "ro".into()],
            });
        }
    }
    if host.readonly_rootfs {
        for m in &mut out {
            if matches!(
                m.destination.as_str(),
                "/proc" | "/dev/pts" | "/dev/shm" | "/dev/mqueue" | "/dev"
            ) {
                continue;
            }
            if !m.options.iter().any(|o| o == "ro") {
                m.options.push("ro".into());
            }
        }
    }
    for m in &mut out {
        if (host.privileged && m.destination == "/sys") || (writable_cgroups && m.typ == "cgroup") {
            m.options.retain(|o| o != "ro");
        }
    }
    out.extend(user);
    Ok((
        out.iter().map(OciMount::to_json).collect(),
        rootfs_propagation,
    ))
}

/// dockerd's `ensureShared`/`ensureSharedOrSlave`: the mount holding `source` must
/// propagate for a shared or slave bind to mean anything.
fn ensure_propagation(source: &Path, tags: &[&str], what: &str) -> Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| EngineError::io("reading /proc/self/mountinfo", e))?;
    let real = std::fs::canonicalize(source)
        .map_err(|e| EngineError::invalid(format!("{}: {e}", source.display())))?;
    let (mountpoint, optional) = source_mount(&real, &mountinfo).ok_or_else(|| {
        EngineError::invalid(format!("Can't find mount point of {}", source.display()))
    })?;
    if !optional
        .split(' ')
        .any(|o| tags.iter().any(|t| o.starts_with(t)))
    {
        return Err(EngineError::invalid(format!(
            "path {} is mounted on {mountpoint} but it is not a {what} mount",
            source.display()
        )));
    }
    Ok(())
}

/// The mount point (and its optional fields) of the longest mount that contains `path`,
/// preferring later lines on ties, from mountinfo text.
fn source_mount(path: &Path, mountinfo: &str) -> Option<(String, String)> {
    let mut best: Option<(String, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 7 {
            continue;
        }
        let mountpoint = unescape_mountinfo(fields[4]);
        if !path.starts_with(&mountpoint) {
            continue;
        }
        let optional = fields[6..]
            .iter()
            .take_while(|f| **f != "-")
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if best
            .as_ref()
            .is_none_or(|(m, _)| mountpoint.len() >= m.len())
        {
            best = Some((mountpoint, optional));
        }
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(b) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `linux.sysctl` keys the container may set: only those of a namespace it has of its own,
/// as runc checks (and berth-runtime again before any fork). Messages are runc's.
fn check_sysctls(
    sysctl: &BTreeMap<String, String>,
    host_net: bool,
    host_ipc: bool,
    host_uts: bool,
) -> Result<()> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    for key in sysctl.keys() {
        let well_formed = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
            && !key.split('.').any(str::is_empty);
        if !well_formed {
            return Err(EngineError::invalid(format!("invalid sysctl name {key:?}")));
        }
        if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            if host_ipc {
                return Err(EngineError::invalid(format!(
                    "sysctl {key:?} is not allowed in the hosts ipc namespace"
                )));
            }
        } else if key.starts_with("net.") {
            if host_net {
                return Err(EngineError::invalid(format!(
                    "sysctl {key:?} not allowed in host network namespace"
                )));
            }
        } else if key == "kernel.domainname" || key == "kernel.hostname" {
            if host_uts {
                return Err(EngineError::invalid(format!(
                    "sysctl {key:?} is not allowed in the hosts uts namespace"
                )));
            }
        } else {
            return Err(EngineError::invalid(format!(
                "sysctl {key:?} is not in a separate kernel namespace"
            )));
        }
    }
    Ok(())
}

/// moby's default masked paths, plus the host's per-CPU thermal_throttle directories.
fn default_masked_paths(info: &HostInfo) -> Vec<String> {
    let mut v: Vec<String> = [
        "/proc/acpi",
        "/proc/asound",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/sys/devices/virtual/powercap",
        "/sys/firmware",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.extend(info.thermal_throttle.iter().cloned());
    v
}

fn default_readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// `linux.cgroupsPath`: the caller's, or `<CgroupParent>/<id>` when the request names a
/// parent (made absolute; it may not climb out of the cgroup root).
fn cgroups_path(default: &str, parent: &str, id: &str) -> Result<String> {
    if parent.is_empty() {
        return Ok(default.to_owned());
    }
    if Path::new(parent)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(EngineError::invalid(format!(
            "invalid CgroupParent {parent:?}: it may not contain '..'"
        )));
    }
    if parent.contains(':') || parent.ends_with(".slice") {
        return Err(EngineError::invalid(format!(
            "invalid CgroupParent {parent:?}: berth uses the cgroupfs driver, systemd slices are not supported"
        )));
    }
    Ok(clean_path(&format!("/{parent}/{id}")))
}

/// A list like `0-2,5` (cpuset syntax) as numbers, as docker's `ParseUintList`.
pub(crate) fn parse_uint_list(s: &str) -> std::result::Result<Vec<u32>, String> {
    let bad = || format!("invalid format: {s}");
    if s.is_empty() {
        return Err(bad());
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            None => out.push(part.parse::<u32>().map_err(|_| bad())?),
            Some((a, b)) => {
                let a: u32 = a.parse().map_err(|_| bad())?;
                let b: u32 = b.parse().map_err(|_| bad())?;
                if b < a || b - a > 65536 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A v1 host like this VM, fixed so tests do not depend on the machine.
    pub(crate) fn v1_host() -> HostInfo {
        HostInfo {
            cgroup_mode: CgroupMode::V1,
            ncpus: 2,
            cpus: "0-1".into(),
            mems: "0".into(),
            swap_accounting: true,
            blkio_weight: true,
            time_namespace: true,
            kernel: (6, 1),
            thermal_throttle: Vec::new(),
            ping_group_range: true,
            unprivileged_port_start: true,
        }
    }

    #[test]
    fn tmpfs_options_are_checked_and_merged_like_docker() {
        assert_eq!(
            parse_tmpfs_options("rw,noexec,nosuid,size=65536k").unwrap(),
            ["rw", "noexec", "nosuid", "size=65536k"]
        );
        assert_eq!(parse_tmpfs_options("").unwrap(), Vec::<String>::new());
        let e = parse_tmpfs_options("size=1m,foo=bar").unwrap_err();
        assert_eq!(e.message, "invalid tmpfs option \"foo\"");
        assert_eq!(
            parse_tmpfs_options("tmpcopyup").unwrap_err().message,
            "invalid tmpfs option \"tmpcopyup\""
        );
        let merged = merge_tmpfs_options(
            &[
                "noexec", "nosuid", "nodev", "rprivate", "exec", "size=1m", "ro", "rw", "size=2m",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(
            merged,
            ["nosuid", "nodev", "rprivate", "exec", "rw", "size=2m"]
        );
        let merged =
            merge_tmpfs_options(&["rprivate", "rshared", "defaults"].map(String::from)).unwrap();
        assert_eq!(merged, ["rshared"]);
    }

    #[test]
    fn capabilities_parse_in_every_spelling() {
        for s in [
            "NET_ADMIN",
            "CAP_NET_ADMIN",
            "net_admin",
            "cap_net_admin",
            "Net_Admin",
        ] {
            assert_eq!(
                parse_capability(s).unwrap(),
                CapName::One(Capability::NetAdmin),
                "{s}"
            );
        }
        assert_eq!(parse_capability("all").unwrap(), CapName::All);
        assert_eq!(parse_capability("ALL").unwrap(), CapName::All);
        assert_eq!(
            parse_capability("FOO").unwrap_err().message,
            "unknown capability: \"CAP_FOO\""
        );
        assert!(parse_capability("CAP_CAP_CHOWN").is_err());
        assert!(parse_capability("").is_err());
    }

    #[test]
    fn ulimit_names() {
        assert_eq!(
            parse_ulimit_name("nofile").unwrap(),
            PosixRlimitType::RlimitNofile
        );
        assert_eq!(
            parse_ulimit_name("NPROC").unwrap(),
            PosixRlimitType::RlimitNproc
        );
        assert_eq!(parse_ulimit_name("as").unwrap(), PosixRlimitType::RlimitAs);
        assert_eq!(
            parse_ulimit_name("files").unwrap_err().message,
            "invalid ulimit type: files"
        );
    }

    #[test]
    fn security_opts() {
        let p =
            |v: &[&str]| SecurityOpts::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(p(&["no-new-privileges"]).unwrap().no_new_privileges);
        assert!(p(&["no-new-privileges:true"]).unwrap().no_new_privileges);
        assert!(p(&["no-new-privileges=1"]).unwrap().no_new_privileges);
        assert!(!p(&["no-new-privileges=false"]).unwrap().no_new_privileges);
        assert_eq!(
            p(&["no-new-privileges=maybe"]).unwrap_err().message,
            "invalid --security-opt 2: \"no-new-privileges=maybe\""
        );
        let ok = p(&[
            "apparmor=unconfined",
            "label=disable",
            "label:type:svirt_t",
            "disable",
            "seccomp=unconfined",
        ])
        .unwrap();
        assert_eq!(ok.seccomp.as_deref(), Some("unconfined"));
        assert_eq!(
            p(&["bogus"]).unwrap_err().message,
            "invalid --security-opt 1: \"bogus\""
        );
        assert_eq!(
            p(&["foo=bar"]).unwrap_err().message,
            "invalid --security-opt 2: \"foo=bar\""
        );
        let json = p(&[r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#]).unwrap();
        assert_eq!(
            json.seccomp.as_deref(),
            Some(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#)
        );
        assert_eq!(
            p(&["writable-cgroups=false"]).unwrap().writable_cgroups,
            Some(false)
        );
        assert!(
            p(&["systempaths=unconfined"])
                .unwrap()
                .unconfined_system_paths
        );
    }

    #[test]
    fn uint_lists() {
        assert_eq!(parse_uint_list("0-2,5").unwrap(), [0, 1, 2, 5]);
        assert_eq!(parse_uint_list("3").unwrap(), [3]);
        for bad in ["", "a", "1-", "2-1", "1,,2", "-1"] {
            assert!(parse_uint_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_cgroup_rules() {
        assert_eq!(
            resources::parse_device_cgroup_rule("c 1:3 rwm").unwrap(),
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})
        );
        assert_eq!(
            resources::parse_device_cgroup_rule("b *:* m").unwrap(),
            json!({"allow": true, "type": "b", "major": -1, "minor": -1, "access": "m"})
        );
        for bad in [
            "c 1:3",
            "x 1:3 r",
            "c 1:3 rwx",
            "c 1-3 r",
            "c  1:3 r",
            "c 1:3 rwmr",
        ] {
            assert_eq!(
                resources::parse_device_cgroup_rule(bad)
                    .unwrap_err()
                    .message,
                format!("invalid device cgroup rule format: '{bad}'")
            );
        }
    }

    #[test]
    fn device_mappings() {
        let m = resources::parse_mapping(&json!({"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rw"})).unwrap();
        assert_eq!(
            (
                m.on_host.as_str(),
                m.in_container.as_str(),
                m.permissions.as_str()
            ),
            ("/dev/null", "/dev/mynull", "rw")
        );
        let m = resources::parse_mapping(&json!({"PathOnHost": "/dev/null"})).unwrap();
        assert_eq!(
            (m.in_container.as_str(), m.permissions.as_str()),
            ("/dev/null", "rwm")
        );
        let m = resources::parse_mapping(&json!("/dev/null:/dev/x:r")).unwrap();
        assert_eq!(
            (m.in_container.as_str(), m.permissions.as_str()),
            ("/dev/x", "r")
        );
        let m = resources::parse_mapping(&json!("/dev/null:rw")).unwrap();
        assert_eq!(
            (m.in_container.as_str(), m.permissions.as_str()),
            ("/dev/null", "rw")
        );
        assert!(resources::parse_mapping(
            &json!({"PathOnHost": "/dev/null", "CgroupPermissions": "rwx"})
        )
        .is_err());
        assert!(resources::parse_mapping(&json!({"PathInContainer": "/dev/x"})).is_err());
        assert!(resources::parse_mapping(&json!(3)).is_err());
    }

    #[test]
    fn mountinfo_lookup() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /mnt rw master:3 - tmpfs tmpfs rw
31 22 0:6 / /mnt/with\\040space rw - tmpfs tmpfs rw
32 30 0:7 / /mnt/sub rw shared:9 master:4 - tmpfs tmpfs rw
";
        assert_eq!(
            source_mount(Path::new("/etc"), text).unwrap(),
            ("/".into(), "shared:1".into())
        );
        assert_eq!(
            source_mount(Path::new("/mnt/x"), text).unwrap(),
            ("/mnt".into(), "master:3".into())
        );
        assert_eq!(
            source_mount(Path::new("/mnt/with space/a"), text)
                .unwrap()
                .0,
            "/mnt/with space"
        );
        assert_eq!(
            source_mount(Path::new("/mnt/sub"), text).unwrap().1,
            "shared:9 master:4"
        );
        assert_eq!(source_mount(Path::new("/mntx"), text).unwrap().0, "/");
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/a/./b//c/../d/"), "/a/b/d");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(cgroups_path("/berth/x", "", "x").unwrap(), "/berth/x");
        assert_eq!(
            cgroups_path("/berth/x", "mygroup/", "x").unwrap(),
            "/mygroup/x"
        );
        assert!(cgroups_path("/berth/x", "../up", "x").is_err());
        assert!(cgroups_path("/berth/x", "system.slice", "x").is_err());
    }

    #[test]
    fn kernel_release() {
        assert_eq!(host::parse_kernel_release("6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(host::parse_kernel_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(host::parse_kernel_release("5.10+"), Some((5, 10)));
        assert_eq!(host::parse_kernel_release("garbage"), None);
    }
}
