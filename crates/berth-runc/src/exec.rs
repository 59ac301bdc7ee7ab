//! `exec`: run another process in a running container, runc-style: the process comes from
//! `--process` (a process.json) or from the command line on top of the container's own
//! process settings.

use anyhow::{bail, Context, Result};
use berth_runtime::{ExecOptions, Runtime};
use oci_spec::runtime::{Capability, Process};

use crate::cli::ExecArgs;
use crate::lifecycle::{parse_id, write_pid_file};
use crate::terminal;

pub fn exec(runtime: &Runtime, a: ExecArgs) -> Result<i32> {
    let id = parse_id(&a.id)?;
    let container = runtime.load(&id)?;
    let process = match &a.process {
        Some(path) => {
            let text =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_slice::<Process>(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => build_process(&container, &a)?,
    };
    let tty = process.terminal().unwrap_or(false);
    if tty && a.detach && a.console_socket.is_none() {
        bail!("--tty with --detach needs --console-socket to hand the terminal to");
    }
    let executed = container
        .exec(ExecOptions {
            process,
            preserve_fds: a.preserve_fds,
            stdio: None,
        })
        .with_context(|| format!("exec in container {id}"))?;
    if let Some(path) = &a.pid_file {
        write_pid_file(path, executed.pid)?;
    }
    if let (Some(sock), Some(master)) = (&a.console_socket, &executed.terminal) {
        terminal::send_to_console_socket(sock, master)?;
    }
    if a.detach {
        return Ok(0);
    }
    let signals = terminal::block_forwarded_signals()?;
    let proxy = match (&executed.terminal, tty && a.console_socket.is_none()) {
        (Some(m), true) => Some(terminal::Proxy::start(m)?),
        _ => None,
    };
    let code = terminal::forward_until_exit(executed.pid, &signals, executed.terminal.as_ref());
    terminal::unblock(&signals);
    if let Some(p) = proxy {
        p.finish();
    }
    code
}

fn build_process(container: &berth_runtime::Container, a: &ExecArgs) -> Result<Process> {
    if a.command.is_empty() {
        bail!("exec needs a command (or --process FILE)");
    }
    let spec = container.spec()?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &a.user {
        let resolved = berth_runtime::user::resolve_user(&container.state().rootfs, u)?;
        let mut user = p.user().clone();
        user.set_uid(resolved.uid).set_gid(resolved.gid);
        let mut gids = resolved.additional_gids;
        gids.extend(&a.additional_gids);
        user.set_additional_gids(Some(gids));
        p.set_user(user);
    } else if !a.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(user);
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: Capability =
                serde_json::from_value(serde_json::Value::String(name.to_ascii_uppercase()))
                    .with_context(|| {
                        format!("unknown capability {name:?}: use a name such as CAP_NET_ADMIN")
                    })?;
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            let (b, e, pm) = (
                add(caps.bounding()),
                add(caps.effective()),
                add(caps.permitted()),
            );
            caps.set_bounding(b).set_effective(e).set_permitted(pm);
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}
