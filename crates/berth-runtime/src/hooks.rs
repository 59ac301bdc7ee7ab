//! OCI hooks: programs the runtime runs at fixed points of the lifecycle, each given the
//! container's state as JSON on stdin.
//!
//! `prestart`, `createRuntime`, `poststart` and `poststop` run in the runtime's namespaces;
//! `createContainer` and `startContainer` run inside the container (the init process runs
//! them). A failing hook before start aborts the operation; after start (poststart,
//! poststop) a failure is reported but the container stays as it is, as the spec says.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Result, RuntimeError};

/// Run `hooks` in order, stopping at the first failure.
pub fn run_hooks(kind: &'static str, hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for (index, hook) in hooks.into_iter().flatten().enumerate() {
        run_hook(hook, state_json).map_err(|reason| RuntimeError::Hook {
            hook: kind,
            index,
            path: hook.path().clone(),
            reason,
        })?;
    }
    Ok(())
}

fn run_hook(hook: &Hook, state_json: &[u8]) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        // args[0] is argv[0], as in execve.
        if let Some((first, rest)) = args.split_first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, first);
            cmd.args(rest);
        }
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {}s", hook.timeout().unwrap_or(0)));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        Ok(())
    } else if let Some(sig) = status.signal() {
        Err(format!("killed by signal {sig}"))
    } else {
        Err(format!("exit status {}", status.code().unwrap_or(-1)))
    }
}
