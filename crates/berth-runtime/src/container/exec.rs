//! `exec`: start another process inside a running container: same namespaces, same cgroup,
//! and the capabilities, seccomp filter and user its process spec names.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;

use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use crate::state::Status;

use super::create::{recv, recv_pid, unexpected};
use super::Container;
use crate::error::{IoContext, Result};
use crate::init::{exec_process, spawn, ExecPlan, Intermediate};
use crate::namespaces::{namespace_path, NamespacePlan};
use crate::sync::Msg;

/// What to run.
pub struct ExecOptions {
    pub process: Process,
    pub preserve_fds: i32,
    /// The process's stdin, stdout and stderr; `None` inherits the caller's.
    pub stdio: Option<super::Stdio>,
}

/// A started exec process.
pub struct Executed {
    /// Its pid in the runtime's pid namespace (a child of the caller).
    pub pid: i32,
    pub terminal: Option<OwnedFd>,
}

impl Container {
    #[tracing::instrument(name = "exec", skip_all, fields(container.id = %self.state.id))]
    pub fn exec(&self, opts: ExecOptions) -> Result<Executed> {
        let status = self.status();
        if !matches!(status, Status::Running | Status::Created) {
            return Err(self.wrong_state(status, "exec needs a running container"));
        }
        let spec = self.spec()?;
        crate::process::validate(&opts.process, opts.preserve_fds)?;
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(crate::seccomp::compile_cached(
                s,
                &self.runtime.root.join(".seccomp"),
            )?),
            None => None,
        };
        // Pin init with a pidfd while its namespaces are opened by pid: if it died and the
        // pid were reused meanwhile, the re-check below notices and we join nothing.
        let _init = crate::sys::fd::pidfd_open(self.state.pid)
            .ctx(|| format!("opening init of {}", self.state.id))?;
        // Join every namespace the container's init is in that differs from ours.
        let mut ns = NamespacePlan::default();
        for n in spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
        {
            let theirs = namespace_path(self.state.pid, n.typ());
            let ours = namespace_path(std::process::id() as i32, n.typ());
            let same = match (std::fs::metadata(&theirs), std::fs::metadata(&ours)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                let f =
                    std::fs::File::open(&theirs).ctx(|| format!("opening {}", theirs.display()))?;
                ns.join.push((n.typ(), f.into()));
            }
        }
        ns.join
            .sort_by_key(|(t, _)| crate::namespaces::join_order(*t));
        let cgroup_files = self.cgroup()?.self_join_files();

        let intermediate = Intermediate {
            ns: &ns,
            spec: &spec,
            cgroup_files: &cgroup_files,
        };
        let (child, chan) = spawn(&intermediate, |chan| {
            let plan = ExecPlan {
                process: &opts.process,
                seccomp: seccomp.as_ref(),
                preserve_fds: opts.preserve_fds,
                stdio: opts.stdio.as_ref(),
            };
            exec_process(chan, &plan)
        })?;
        drop(opts.stdio);
        let kill = |pid: Pid| {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
        };
        let result = (|| {
            chan.send(&Msg::Continue).ctx(|| "sync".into())?;
            recv_pid(&chan, "starting the exec process")
        })();
        let (pid, mut early) = match result {
            Ok((pid, early)) => (Pid::from_raw(pid), early),
            Err(e) => {
                kill(child);
                return Err(e);
            }
        };
        let _ = waitpid(child, None);
        let mut terminal = None;
        let result = (|| {
            loop {
                let next = match early.pop_front() {
                    Some(m) => m,
                    None => recv(&chan, "setting up the exec process")?,
                };
                match next {
                    (Msg::Terminal, fd) => terminal = fd,
                    (Msg::Created, _) => break,
                    (other, _) => return Err(unexpected(other)),
                }
            }
            // The channel closes on a successful execve; an error arrives otherwise.
            match chan.recv().ctx(|| "waiting for exec".into())? {
                None => Ok(()),
                Some((Msg::Error { step, message }, _)) => {
                    Err(crate::error::RuntimeError::Init { step, message })
                }
                Some((other, _)) => Err(unexpected(other)),
            }
        })();
        if let Err(e) = result {
            kill(pid);
            return Err(e);
        }
        Ok(Executed {
            pid: pid.as_raw(),
            terminal,
        })
    }
}
