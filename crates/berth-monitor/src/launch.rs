//! What the monitor runs, through berth-runtime: before `Ready` the container is created
//! (run mode: its init waits on `exec.fifo`) or the exec is checked and its pipes made;
//! after the start byte the process is started; on abandon or failure everything made is
//! undone.
//!
//! Error messages are the runtime's own words (with their causes), because the docker CLI
//! decides its exit code from them: "executable file not found" and "no such file or
//! directory" give 127, "permission denied" 126.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use berth_monitor::protocol::{Mode, MonitorConfig, OciRuntime};
use berth_runtime::{Container, CreateOptions, Created, ExecOptions, Runtime, RuntimeError, Stdio};
use berth_types::ContainerId;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};

use crate::serve::ProcessIo;

/// Ready to start.
pub struct Prepared {
    /// What `Ready` reports: init's pid in run mode.
    pub ready_pid: Option<i32>,
    /// The monitor's ends of the process's stdio known so far.
    io: ProcessIo,
    plan: Plan,
}

enum Plan {
    Run {
        created: Created,
    },
    /// Created by an external OCI runtime.
    Oci {
        rt: OciRuntime,
        id: ContainerId,
        pid: i32,
    },
    Exec {
        container: Container,
        process: Box<Process>,
        /// The process's ends of the pipes (none with a terminal).
        stdio: Option<Stdio>,
        tty: bool,
        open_stdin: bool,
    },
}

/// A started process.
pub struct Running {
    pub pid: i32,
    pub io: ProcessIo,
}

/// `err` and its causes on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// Create the container (run mode) or get the exec ready, up to the start gate.
pub fn prepare(
    cfg: &MonitorConfig,
    runtime: &Runtime,
    id: &ContainerId,
) -> Result<Prepared, String> {
    match &cfg.mode {
        Mode::Run { bundle } => {
            let config = bundle.join("config.json");
            let spec = Spec::load(&config)
                .map_err(|e| format!("container {id}: loading {}: {e}", config.display()))?;
            let terminal = spec.process().as_ref().and_then(|p| p.terminal());
            check_terminal(
                cfg.tty,
                terminal.unwrap_or(false),
                id,
                &config.display().to_string(),
            )?;
            let (mut io, stdio) = if cfg.tty {
                (ProcessIo::default(), None)
            } else {
                let (io, stdio) = pipes(cfg.open_stdin)
                    .map_err(|e| format!("container {id}: creating stdio pipes: {e}"))?;
                (io, Some(stdio))
            };
            if let Some(rt) = &cfg.oci_runtime {
                let created = crate::oci::create(rt, runtime, id, bundle, spec, stdio)?;
                if let Some(master) = created.terminal {
                    let result = terminal_setup(master, cfg, id);
                    match result {
                        Ok(t) => io = t,
                        Err(msg) => {
                            discard_container(runtime, Some(rt), id, created.pid);
                            return Err(msg);
                        }
                    }
                }
                return Ok(Prepared {
                    ready_pid: Some(created.pid),
                    io,
                    plan: Plan::Oci {
                        rt: rt.clone(),
                        id: id.clone(),
                        pid: created.pid,
                    },
                });
            }
            let mut created = runtime
                .create(CreateOptions {
                    id: id.clone(),
                    bundle: bundle.clone(),
                    spec,
                    preserve_fds: 0,
                    stdio,
                })
                .map_err(|e| error_chain(&e))?;
            let pid = created.container.pid();
            if cfg.tty {
                let terminal = created.terminal.take();
                let result = terminal
                    .ok_or_else(|| format!("container {id}: the runtime returned no terminal"))
                    .and_then(|master| terminal_setup(master, cfg, id));
                match result {
                    Ok(t) => io = t,
                    Err(msg) => {
                        drop(created);
                        discard_container(runtime, None, id, pid);
                        return Err(msg);
                    }
                }
            }
            Ok(Prepared {
                ready_pid: Some(pid),
                io,
                plan: Plan::Run { created },
            })
        }
        Mode::Exec { exec_id, process } => {
            let container = runtime.load(id).map_err(|e| error_chain(&e))?;
            let mut process = process.clone();
            let what = format!("exec {exec_id}");
            check_terminal(cfg.tty, process.terminal().unwrap_or(false), id, &what)?;
            if let (true, Some((rows, cols))) = (cfg.tty, cfg.console_size) {
                let size = oci_spec::runtime::BoxBuilder::default()
                    .height(rows)
                    .width(cols)
                    .build()
                    .map_err(|e| format!("container {id}: {what}: console size: {e}"))?;
                process.set_console_size(Some(size));
            }
            let (io, stdio) = if cfg.tty {
                (ProcessIo::default(), None)
            } else {
                let (io, stdio) = pipes(cfg.open_stdin)
                    .map_err(|e| format!("container {id}: {what}: creating stdio pipes: {e}"))?;
                (io, Some(stdio))
            };
            Ok(Prepared {
                ready_pid: None,
                io,
                plan: Plan::Exec {
                    container,
                    process,
                    stdio,
                    tty: cfg.tty,
                    open_stdin: cfg.open_stdin,
                },
            })
        }
    }
}

/// Size the new terminal and take it as the process's stdio.
fn terminal_setup(
    master: OwnedFd,
    cfg: &MonitorConfig,
    id: &ContainerId,
) -> Result<ProcessIo, String> {
    if let Some((rows, cols)) = cfg.console_size {
        berth_runtime::sys::tty::set_window_size(master.as_fd(), rows, cols)
            .map_err(|e| format!("container {id}: setting the terminal size: {e}"))?;
    }
    terminal_io(master, cfg.open_stdin).map_err(|e| format!("container {id}: {e}"))
}

fn check_terminal(tty: bool, terminal: bool, id: &ContainerId, what: &str) -> Result<(), String> {
    if tty == terminal {
        return Ok(());
    }
    Err(format!(
        "container {id}: monitor.json has tty={tty} but {what} has process.terminal={terminal}; \
         they must agree"
    ))
}

impl Prepared {
    /// Start the process: release init (run), or exec into the container.
    pub fn start(self) -> Result<Running, String> {
        let mut io = self.io;
        match self.plan {
            Plan::Run { created } => {
                let pid = created.container.pid();
                created
                    .container
                    .start()
                    .and_then(|()| created.wait_for_exec())
                    .map_err(|e| error_chain(&e))?;
                Ok(Running { pid, io })
            }
            Plan::Oci { rt, id, pid } => {
                crate::oci::start(&rt, &id)?;
                Ok(Running { pid, io })
            }
            Plan::Exec {
                container,
                process,
                stdio,
                tty,
                open_stdin,
            } => {
                let executed = container
                    .exec(ExecOptions {
                        process: *process,
                        preserve_fds: 0,
                        stdio,
                    })
                    .map_err(|e| error_chain(&e))?;
                if tty {
                    let id = container.id();
                    let kill = || {
                        let _ =
                            nix::sys::signal::kill(Pid::from_raw(executed.pid), Signal::SIGKILL);
                        let _ = nix::sys::wait::waitpid(Pid::from_raw(executed.pid), None);
                    };
                    let Some(master) = executed.terminal else {
                        kill();
                        return Err(format!(
                            "container {id}: the runtime returned no terminal for the exec"
                        ));
                    };
                    match terminal_io(master, open_stdin) {
                        Ok(t) => io = t,
                        Err(e) => {
                            kill();
                            return Err(format!("container {id}: {e}"));
                        }
                    }
                }
                Ok(Running {
                    pid: executed.pid,
                    io,
                })
            }
        }
    }

    /// berthd gave up before the start: remove the created container.
    pub fn abandon(self, runtime: &Runtime, id: &ContainerId) {
        match self.plan {
            Plan::Run { created } => {
                let pid = created.container.pid();
                drop(created);
                discard_container(runtime, None, id, pid);
            }
            Plan::Oci { rt, pid, .. } => discard_container(runtime, Some(&rt), id, pid),
            Plan::Exec { .. } => {}
        }
    }
}

/// Pipes for a process without a terminal: (the monitor's ends, the process's ends).
/// Without `open_stdin` the process reads `/dev/null`.
fn pipes(open_stdin: bool) -> std::io::Result<(ProcessIo, Stdio)> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let (ours, theirs) = if open_stdin {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        (Some(w), r)
    } else {
        (None, OwnedFd::from(File::open("/dev/null")?))
    };
    Ok((
        ProcessIo {
            stdout: Some(out_r),
            stderr: Some(err_r),
            stdin: ours,
            terminal: None,
        },
        Stdio {
            stdin: theirs,
            stdout: out_w,
            stderr: err_w,
        },
    ))
}

/// The monitor's view of a terminal: output, input (with `open_stdin`) and resizes all go
/// through the master.
fn terminal_io(master: OwnedFd, open_stdin: bool) -> Result<ProcessIo, String> {
    let dup = |what: &str| {
        master
            .try_clone()
            .map_err(|e| format!("duplicating the terminal for {what}: {e}"))
    };
    Ok(ProcessIo {
        stdin: if open_stdin {
            Some(dup("stdin")?)
        } else {
            None
        },
        terminal: Some(dup("resizing")?),
        stdout: Some(master),
        stderr: None,
    })
}

/// Kill and reap init (our child: `CLONE_PARENT`, or being a subreaper for an external
/// runtime, made it so, and as we have not reaped it its pid cannot have been reused), then
/// delete the container from the runtime.
pub fn discard_container(
    runtime: &Runtime,
    oci: Option<&OciRuntime>,
    id: &ContainerId,
    init_pid: i32,
) {
    let pid = Pid::from_raw(init_pid);
    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    delete_container(runtime, oci, id);
}

/// Remove the container's cgroup and runtime state (its processes are killed first).
pub fn delete_container(runtime: &Runtime, oci: Option<&OciRuntime>, id: &ContainerId) {
    if let Some(rt) = oci {
        crate::oci::delete(rt, runtime, id);
        return;
    }
    let result = match runtime.load(id) {
        Ok(c) => c.delete(true),
        Err(RuntimeError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        crate::daemon::diag(&format!("deleting container {id}: {}", error_chain(&e)));
    }
}

/// OOM kills recorded in the container's cgroup so far (0 when not accounted).
pub fn oom_kills(runtime: &Runtime, id: &ContainerId) -> u64 {
    runtime
        .load(id)
        .and_then(|c| c.stats())
        .ok()
        .and_then(|s| s.memory)
        .and_then(|m| m.oom_kills)
        .unwrap_or(0)
}
