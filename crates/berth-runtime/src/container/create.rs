//! `create`: validate the spec, prepare the cgroup, start the container's init in its
//! namespaces and wait until it reports that it is set up and waiting for `start`.
//!
//! Any failure undoes everything: the guard kills what was started, removes the cgroup and
//! the state directory, so a failed create leaves nothing behind.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use berth_types::ContainerId;
use chrono::Utc;
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::{Container, Runtime};
use crate::cgroups::{Cgroup, CgroupMode};
use crate::error::{IoContext, Result, RuntimeError};
use crate::init::{container_init, spawn, InitPlan, Intermediate};
use crate::rootfs::{CgroupMountSource, CgroupView};
use crate::state::{process_start_time, write_atomic, ContainerState, CONFIG_FILE, EXEC_FIFO};
use crate::sync::{Channel, Msg};

/// What to create.
pub struct CreateOptions {
    pub id: ContainerId,
    /// The bundle directory (`root.path` is relative to it).
    pub bundle: PathBuf,
    pub spec: Spec,
    /// Keep descriptors 3..3+n open in the container (`--preserve-fds`).
    pub preserve_fds: i32,
    /// The init's stdin, stdout and stderr (pipes, files, sockets); `None` inherits the
    /// caller's. A terminal (`process.terminal`) replaces them.
    pub stdio: Option<Stdio>,
}

/// Descriptors that become a container process's 0, 1 and 2.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// A created container, and the master side of its terminal if it asked for one.
pub struct Created {
    pub container: Container,
    pub terminal: Option<OwnedFd>,
    /// Still connected to init until it execs the program.
    channel: Channel,
}

impl Created {
    /// After [`Container::start`]: wait until init has exec'd the program, and report what
    /// went wrong if it could not (a missing library, a failing startContainer hook...).
    pub fn wait_for_exec(&self) -> Result<()> {
        match self
            .channel
            .recv()
            .ctx(|| "waiting for the container's program to start".into())?
        {
            None => Ok(()),
            Some((Msg::Error { step, message }, _)) => Err(RuntimeError::Init { step, message }),
            Some((other, _)) => Err(unexpected(other)),
        }
    }
}

/// Undoes a half-done create on drop.
struct Cleanup {
    dir: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    children: Vec<Pid>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in self.children.drain(..) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cg) = self.cgroup.take() {
            for pid in cg.pids().unwrap_or_default() {
                let _ =
                    nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            if let Err(e) = cg.destroy() {
                tracing::warn!(error = %e, "removing the cgroup of a failed create");
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Runtime {
    /// Create a container: on success its init waits for [`Container::start`].
    #[tracing::instrument(name = "create", skip_all, fields(container.id = %opts.id))]
    pub fn create(&self, opts: CreateOptions) -> Result<Created> {
        let CreateOptions {
            id,
            bundle,
            mut spec,
            preserve_fds,
            stdio,
        } = opts;
        let bundle =
            std::fs::canonicalize(&bundle).ctx(|| format!("bundle {}", bundle.display()))?;
        spec.canonicalize_rootfs(&bundle)
            .map_err(|e| RuntimeError::invalid("root.path", e.to_string()))?;
        let rootfs = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .ok_or_else(|| {
                RuntimeError::invalid("root", "missing: the spec must name a root filesystem")
            })?;
        if !rootfs.is_dir() {
            return Err(RuntimeError::invalid(
                "root.path",
                format!("{} is not a directory", rootfs.display()),
            ));
        }
        let process = spec.process().clone().ok_or_else(|| {
            RuntimeError::invalid("process", "missing: the spec must say what to run")
        })?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(RuntimeError::invalid(
                "process.args",
                "no command given: args must have at least one element",
            ));
        }
        let ns = crate::namespaces::plan(&spec)?;
        crate::rootfs::validate(&spec)?;
        crate::process::validate(&process, preserve_fds)?;
        crate::rootfs::validate_sysctl(&spec, &ns)?;
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(crate::seccomp::compile_cached(
                s,
                &self.root.join(".seccomp"),
            )?),
            None => None,
        };
        let cgroups_path = match spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) {
            Some(p) if p.is_absolute() => p,
            Some(p) => {
                return Err(RuntimeError::invalid(
                    "linux.cgroupsPath",
                    format!("{} is not absolute; systemd slices are not supported, use a path such as /berth/{id}", p.display()),
                ))
            }
            None => PathBuf::from(format!("/berth/{id}")),
        };

        std::fs::create_dir_all(&self.root)
            .ctx(|| format!("creating state root {}", self.root.display()))?;
        let dir = self.container_dir(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists(id))
            }
            Err(e) => return Err(e).ctx(|| format!("creating {}", dir.display())),
        }
        let mut cleanup = Cleanup {
            dir: Some(dir.clone()),
            cgroup: None,
            children: Vec::new(),
        };

        let mode = self.cgroup_mode()?;
        let cgroup = self.cgroup(&cgroups_path)?;
        cgroup.create()?;
        let cgroup = cleanup.cgroup.insert(cgroup);
        if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            cgroup.apply(res)?;
            cgroup.apply_devices(res.devices().as_deref().unwrap_or_default())?;
        }
        let view = cgroup_view(
            mode,
            cgroup,
            ns.clone_flags
                .contains(nix::sched::CloneFlags::CLONE_NEWCGROUP),
        );

        let fifo = dir.join(EXEC_FIFO);
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))
            .ctx(|| "creating exec.fifo".into())?;
        // In a user namespace, init is the mapped root: it must be able to reach and open
        // the fifo (as runc arranges it too).
        if let Some((uid, gid)) = mapped_root(&spec) {
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
                .ctx(|| format!("chmod {}", dir.display()))?;
            nix::unistd::chown(
                &fifo,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .ctx(|| "chown exec.fifo".into())?;
        }
        let config = serde_json::to_vec(&spec)
            .map_err(std::io::Error::other)
            .ctx(|| "encoding the spec".into())?;
        write_atomic(&dir.join(CONFIG_FILE), &config)?;
        let state_dir = nix::fcntl::open(
            &dir,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {}", dir.display()))?;

        let cgroup_files = cgroup.self_join_files();
        let intermediate = Intermediate {
            ns: &ns,
            spec: &spec,
            cgroup_files: &cgroup_files,
        };
        let (child, chan) = spawn(&intermediate, |chan| {
            let plan = InitPlan {
                spec: &spec,
                rootfs: &rootfs,
                ns: &ns,
                cgroups: &view,
                seccomp: seccomp.as_ref(),
                state_dir: &state_dir,
                preserve_fds,
                stdio: stdio.as_ref(),
                id: &id,
                bundle: &bundle,
            };
            container_init(chan, &plan)
        })?;
        drop(state_dir);
        // The container holds its own copies now: ours would keep pipes from reaching EOF.
        drop(stdio);
        cleanup.children.push(child);

        if ns.new_user {
            expect(&chan, "creating the user namespace", |m| {
                matches!(m, Msg::MapIds)
            })?;
            crate::namespaces::write_id_maps(child.as_raw(), &spec)?;
        }
        chan.send(&Msg::Continue).ctx(|| "sync".into())?;
        // Init may speak before the intermediate child reports its pid: both write to the
        // same socket. Keep what init said for the loop below.
        let (init_pid, mut early) = recv_pid(&chan, "starting the container process")?;
        let init_pid = Pid::from_raw(init_pid);
        cleanup.children.push(init_pid);
        let _ = waitpid(child, None);
        cleanup.children.retain(|p| *p != child);

        let state = ContainerState {
            id: id.clone(),
            pid: init_pid.as_raw(),
            pid_start_time: match process_start_time(init_pid.as_raw()) {
                Some(t) => t,
                None => return Err(init_gone(&chan, &mut early)),
            },
            bundle,
            rootfs,
            created: Utc::now(),
            owner: String::new(),
            cgroups_path,
            annotations: spec.annotations().clone().unwrap_or_default(),
        };
        // Saved at once: should this process die during set-up, `delete --force` still
        // finds (and removes) the container.
        state.save(&dir)?;
        let mut terminal = None;
        loop {
            let next = match early.pop_front() {
                Some(m) => m,
                None => recv(&chan, "setting up the container")?,
            };
            match next {
                (Msg::NamespacesReady, _) => {
                    let hooks = spec.hooks().as_ref();
                    let hs = serde_json::to_vec(&serde_json::json!({"ociVersion": spec.version(), "id": id, "status": "creating", "pid": init_pid.as_raw(), "bundle": state.bundle, "annotations": state.annotations})).unwrap_or_default();
                    crate::hooks::run_hooks(
                        "prestart",
                        hooks.and_then(|h| h.prestart().as_ref()),
                        &hs,
                    )?;
                    crate::hooks::run_hooks(
                        "createRuntime",
                        hooks.and_then(|h| h.create_runtime().as_ref()),
                        &hs,
                    )?;
                    chan.send(&Msg::Continue).ctx(|| "sync".into())?;
                }
                (Msg::Terminal, fd) => terminal = fd,
                (Msg::Created, _) => break,
                (other, _) => return Err(unexpected(other)),
            }
        }

        // Success: the container now owns its cgroup, directory and process.
        cleanup.dir = None;
        cleanup.cgroup = None;
        cleanup.children.clear();
        drop(cleanup);
        Ok(Created {
            container: Container {
                runtime: self.clone(),
                dir,
                state,
            },
            terminal,
            channel: chan,
        })
    }
}

/// The host uid and gid that container root maps to, when the spec has a user namespace.
fn mapped_root(spec: &Spec) -> Option<(u32, u32)> {
    let linux = spec.linux().as_ref()?;
    let find = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.iter()
            .flatten()
            .find(|m| m.container_id() == 0)
            .map(|m| m.host_id())
    };
    Some((find(linux.uid_mappings())?, find(linux.gid_mappings())?))
}

fn cgroup_view(mode: CgroupMode, cgroup: &Cgroup, has_cgroupns: bool) -> CgroupView {
    let paths = cgroup.paths();
    match mode {
        CgroupMode::V2 => CgroupView::Unified {
            host_dir: paths.first().map(|p| p.dir.clone()).unwrap_or_default(),
            has_cgroupns,
        },
        CgroupMode::V1 | CgroupMode::Hybrid => CgroupView::Legacy(
            paths
                .into_iter()
                .filter(|p| p.name != "unified")
                .map(|p| {
                    let name = p.name.trim_start_matches("name=").to_owned();
                    let aliases = if name.contains(',') {
                        name.split(',').map(str::to_owned).collect()
                    } else {
                        Vec::new()
                    };
                    CgroupMountSource {
                        name,
                        host_dir: p.dir,
                        aliases,
                    }
                })
                .collect(),
        ),
    }
}

/// Receive the next message; a child's `Error` or its death becomes our error.
pub(crate) fn recv(chan: &Channel, doing: &str) -> Result<(Msg, Option<OwnedFd>)> {
    match chan
        .recv()
        .ctx(|| format!("{doing}: reading from the container process"))?
    {
        Some((Msg::Error { step, message }, _)) => Err(RuntimeError::Init { step, message }),
        Some(m) => Ok(m),
        None => Err(RuntimeError::Init {
            step: doing.to_owned(),
            message: "the container process exited unexpectedly".to_owned(),
        }),
    }
}

/// Init is gone before its start time could be read: it failed a step and said which
/// (an `Error` already received, or still in the channel), which beats a bare "exited".
fn init_gone(chan: &Channel, early: &mut Pending) -> RuntimeError {
    let said = early.iter().find_map(|(m, _)| match m {
        Msg::Error { step, message } => Some(RuntimeError::Init {
            step: step.clone(),
            message: message.clone(),
        }),
        _ => None,
    });
    said.or_else(|| recv(chan, "starting the container process").err())
        .unwrap_or_else(|| RuntimeError::Init {
            step: "starting the container process".into(),
            message: "the container's init exited".into(),
        })
}

/// Messages received ahead of the one being waited for, with any descriptor they carried.
pub(crate) type Pending = std::collections::VecDeque<(Msg, Option<OwnedFd>)>;

/// Receive until the intermediate child's `InitPid`, keeping (in order) any message the
/// new process sent before it.
pub(crate) fn recv_pid(chan: &Channel, doing: &str) -> Result<(i32, Pending)> {
    let mut early = std::collections::VecDeque::new();
    loop {
        match recv(chan, doing) {
            Ok((Msg::InitPid(pid), _)) => return Ok((pid, early)),
            Ok(other) => early.push_back(other),
            Err(e) => {
                // The new process failed before we learnt its pid: learn it now (the
                // intermediate still reports it) and reap it, or it stays a zombie child.
                while let Ok(Some((m, _))) = chan.recv() {
                    if let Msg::InitPid(pid) = m {
                        let pid = Pid::from_raw(pid);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        break;
                    }
                }
                return Err(e);
            }
        }
    }
}

pub(crate) fn expect(chan: &Channel, doing: &str, ok: impl Fn(&Msg) -> bool) -> Result<()> {
    let (m, _) = recv(chan, doing)?;
    if ok(&m) {
        Ok(())
    } else {
        Err(unexpected(m))
    }
}

pub(crate) fn unexpected(m: Msg) -> RuntimeError {
    RuntimeError::Init {
        step: "sync".into(),
        message: format!("unexpected message {m:?}"),
    }
}
