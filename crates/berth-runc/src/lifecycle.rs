//! create, start, run, state, kill, delete, pause, resume.

use std::path::Path;

use anyhow::{bail, Context, Result};
use berth_runtime::{CreateOptions, Runtime};
use berth_types::ContainerId;
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use crate::cli::{CreateArgs, DeleteArgs, KillArgs, RunArgs};
use crate::terminal;

pub fn parse_id(id: &str) -> Result<ContainerId> {
    id.parse().with_context(|| format!("container id {id:?}"))
}

/// `create` (and the first half of `run`). `attached`: the caller stays to proxy a
/// terminal (foreground `run`); otherwise a terminal needs `--console-socket`.
pub fn create(runtime: &Runtime, a: CreateArgs, attached: bool) -> Result<berth_runtime::Created> {
    if a.no_pivot {
        bail!("--no-pivot is not supported: berth-runc always enters the root with pivot_root; drop the flag");
    }
    let id = parse_id(&a.id)?;
    let config = a.bundle.join("config.json");
    let spec = Spec::load(&config).with_context(|| format!("loading {}", config.display()))?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && !attached && a.console_socket.is_none() {
        bail!("process.terminal is set but nobody would hold the terminal: pass --console-socket, or set terminal to false");
    }
    let created = runtime
        .create(CreateOptions {
            id: id.clone(),
            bundle: a.bundle.clone(),
            spec,
            preserve_fds: a.preserve_fds,
            stdio: None,
        })
        .with_context(|| format!("creating container {id}"))?;
    if let Some(path) = &a.pid_file {
        write_pid_file(path, created.container.pid())?;
    }
    if terminal {
        if let (Some(sock), Some(master)) = (&a.console_socket, &created.terminal) {
            terminal::send_to_console_socket(sock, master)?;
        }
    }
    Ok(created)
}

/// `create` + `start`, then (unless `--detach`) wait, forward signals, and delete.
pub fn run(runtime: &Runtime, a: RunArgs) -> Result<i32> {
    let foreground_tty = a.create.console_socket.is_none() && !a.detach;
    let created = create(runtime, a.create.clone(), foreground_tty)?;
    let container = &created.container;
    let id = container.id().clone();
    if a.detach {
        container.start()?;
        created
            .wait_for_exec()
            .with_context(|| format!("starting container {id}"))?;
        return Ok(0);
    }
    // Block first: the proxy's threads inherit the mask, so no signal is lost to them.
    let signals = terminal::block_forwarded_signals()?;
    let proxy = match (&created.terminal, foreground_tty) {
        (Some(master), true) => Some(terminal::Proxy::start(master)?),
        _ => None,
    };
    let start = container.start().and_then(|_| created.wait_for_exec());
    let code = match start {
        Ok(()) => {
            terminal::forward_until_exit(container.pid(), &signals, created.terminal.as_ref())?
        }
        Err(e) => {
            terminal::unblock(&signals);
            let _ = runtime.load(&id).map(|c| c.delete(true));
            return Err(e).with_context(|| format!("starting container {id}"));
        }
    };
    terminal::unblock(&signals);
    if let Some(p) = proxy {
        p.finish();
    }
    if !a.keep {
        runtime
            .load(&id)?
            .delete(true)
            .with_context(|| format!("deleting container {id}"))?;
    }
    Ok(code)
}

pub fn start(runtime: &Runtime, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    runtime
        .load(&id)?
        .start()
        .with_context(|| format!("starting container {id}"))
}

pub fn state(runtime: &Runtime, id: &str) -> Result<()> {
    let c = runtime.load(&parse_id(id)?)?;
    let mut v = c.oci_state();
    if v["annotations"].as_object().is_some_and(|m| m.is_empty()) {
        if let Some(o) = v.as_object_mut() {
            o.remove("annotations");
        }
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("unknown signal {s:?}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().with_context(|| {
        format!("unknown signal {s:?}: use a name such as TERM or KILL, or a number")
    })
}

pub fn kill(runtime: &Runtime, a: KillArgs) -> Result<()> {
    let id = parse_id(&a.id)?;
    let sig = parse_signal(&a.signal)?;
    runtime
        .load(&id)?
        .kill(sig, a.all)
        .with_context(|| format!("signalling container {id}"))
}

pub fn delete(runtime: &Runtime, a: DeleteArgs) -> Result<()> {
    let id = parse_id(&a.id)?;
    match runtime.load(&id) {
        Ok(c) => c
            .delete(a.force)
            .with_context(|| format!("deleting container {id}")),
        // runc: deleting a missing container with --force succeeds.
        Err(berth_runtime::RuntimeError::NotFound(_)) if a.force => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn pause(runtime: &Runtime, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    runtime
        .load(&id)?
        .pause()
        .with_context(|| format!("pausing container {id}"))
}

pub fn resume(runtime: &Runtime, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    runtime
        .load(&id)?
        .resume()
        .with_context(|| format!("resuming container {id}"))
}

/// Write a pid file atomically (callers poll for it).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("tmp-berth");
    std::fs::write(&tmp, pid.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
