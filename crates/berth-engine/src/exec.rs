//! `docker exec`: extra processes in a running container, each run by its own
//! berth-monitor in exec mode so that it, too, outlives berthd.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_monitor::protocol::{AttachRequest, Mode, MonitorConfig};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::engine::{random_id, Engine, Exec, ExecState};
use crate::error::{EngineError, Result};
use crate::lifecycle::merge_env;
use crate::types::ExecConfig;

impl Engine {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, config: ExecConfig) -> Result<String> {
        let h = self.container(name)?;
        let c = h.get();
        if c.state.status == crate::container::Status::Paused {
            return Err(EngineError::conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            )));
        }
        if !c.is_running() {
            return Err(EngineError::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        if config.cmd.as_ref().is_none_or(|c| c.0.is_empty()) {
            return Err(EngineError::invalid("No exec command specified"));
        }
        let id = random_id();
        let cmd = config.cmd.clone().unwrap_or_default().0.join(" ");
        self.execs.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id.clone(),
            Arc::new(Exec {
                id: id.clone(),
                container_id: c.id.clone(),
                config,
                state: Mutex::new(ExecState::default()),
                changed: tokio::sync::watch::channel(0).0,
            }),
        );
        let mut attrs = c.event_attributes();
        attrs.insert("execID".into(), id.clone());
        self.events
            .emit("container", &format!("exec_create: {cmd}"), &c.id, attrs);
        Ok(id)
    }

    /// `POST /exec/{id}/start`: with `attach`, the connection to the process's stdio.
    pub async fn exec_start(
        self: &Arc<Self>,
        id: &str,
        attach: bool,
        tty: Option<bool>,
        console: Option<[u32; 2]>,
    ) -> Result<Option<tokio::net::UnixStream>> {
        let exec = self.exec_instance(id)?;
        {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.started {
                return Err(EngineError::conflict(format!(
                    "Error: Exec command {id} has already run"
                )));
            }
            st.started = true;
        }
        let h = self.container(&exec.container_id)?;
        let c = h.get();
        if !c.is_running() {
            return Err(EngineError::conflict(format!(
                "container {} is not running",
                c.id
            )));
        }
        let cfg = &exec.config;
        let tty = tty.unwrap_or(false) || cfg.tty;
        let spec_path = self.state_dir(&c.id).join("config.json");
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(
            &std::fs::read(&spec_path)
                .map_err(|e| EngineError::io("reading the container's spec", e))?,
        )
        .map_err(|e| EngineError::internal(format!("container spec: {e}")))?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(cfg.cmd.clone().unwrap_or_default().0));
        let env = merge_env(
            process.env().as_deref().unwrap_or_default(),
            cfg.env.as_deref().unwrap_or_default(),
        );
        process.set_env(Some(env));
        if !cfg.working_dir.is_empty() {
            process.set_cwd(cfg.working_dir.clone().into());
        }
        process.set_terminal(Some(tty));
        let console = console
            .or(cfg.console_size)
            .filter(|s| s[0] > 0 && s[1] > 0);
        if let Some([rows, cols]) = console {
            let size = oci_spec::runtime::BoxBuilder::default()
                .height(rows)
                .width(cols)
                .build()
                .ok();
            process.set_console_size(size);
        }
        if !cfg.user.is_empty() {
            let root = std::path::PathBuf::from(format!("/proc/{}/root", c.state.pid));
            let u = berth_runtime::user::resolve_user(&root, &cfg.user).map_err(|e| {
                EngineError::invalid(format!("unable to find user {}: {e}", cfg.user))
            })?;
            let mut user = process.user().clone();
            user.set_uid(u.uid);
            user.set_gid(u.gid);
            user.set_additional_gids(Some(u.additional_gids.clone()));
            process.set_user(user);
        }
        if cfg.privileged {
            let all = berth_runtime::capabilities::docker_capabilities(&[], &[], true, false, true);
            process.set_capabilities(Some(all));
        }
        let state_dir = self.config.exec_root.join("execs").join(id);
        let mc = MonitorConfig {
            mode: Mode::Exec {
                exec_id: id.to_string(),
                process: Box::new(process),
            },
            container_id: c.id.clone(),
            runtime_root: self.runtime_root(),
            log: None,
            tty,
            open_stdin: cfg.attach_stdin,
            stdin_once: true,
            console_size: console.map(|s| (s[0] as u16, s[1] as u16)),
            oci_runtime: None,
        };
        let bin = self.config.monitor_bin.clone();
        let sd = state_dir.clone();
        let request = AttachRequest {
            stdin: cfg.attach_stdin,
            stdout: cfg.attach_stdout,
            stderr: cfg.attach_stderr,
        };
        let (stream, pid, monitor_pid) = tokio::task::spawn_blocking(move || -> Result<_> {
            let pending = crate::monitor::spawn(&bin, &sd, &mc)?;
            let stream = if attach {
                let mut s = std::os::unix::net::UnixStream::connect(pending.attach_socket())
                    .map_err(|e| EngineError::io("attaching to the exec", e))?;
                let mut line = serde_json::to_vec(&request).unwrap_or_default();
                line.push(b'\n');
                std::io::Write::write_all(&mut s, &line)
                    .map_err(|e| EngineError::io("attaching to the exec", e))?;
                Some(s)
            } else {
                None
            };
            let monitor_pid = pending.monitor_pid();
            let pid = pending.start()?;
            Ok((stream, pid, monitor_pid))
        })
        .await
        .map_err(|e| EngineError::internal(e.to_string()))?
        .inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&state_dir);
        })?;
        {
            let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = true;
            st.pid = pid;
        }
        let mut attrs = c.event_attributes();
        attrs.insert("execID".into(), id.to_string());
        let cmd = cfg.cmd.clone().unwrap_or_default().0.join(" ");
        self.events.emit(
            "container",
            &format!("exec_start: {cmd}"),
            &c.id,
            attrs.clone(),
        );
        let engine = self.clone();
        let exec2 = exec.clone();
        tokio::spawn(async move {
            crate::monitor::wait_pid(monitor_pid).await;
            let status = crate::monitor::exit_status(&state_dir);
            let code = status.map(|s| s.exit_code).unwrap_or(126);
            {
                let mut st = exec2.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running = false;
                st.exit_code = Some(code);
            }
            exec2.changed.send_modify(|v| *v += 1);
            let _ = std::fs::remove_dir_all(&state_dir);
            attrs.insert("exitCode".into(), code.to_string());
            engine
                .events
                .emit("container", "exec_die", &exec2.container_id, attrs);
        });
        match stream {
            Some(s) => {
                s.set_nonblocking(true)
                    .map_err(|e| EngineError::io("attaching to the exec", e))?;
                Ok(Some(tokio::net::UnixStream::from_std(s).map_err(|e| {
                    EngineError::io("attaching to the exec", e)
                })?))
            }
            None => Ok(None),
        }
    }

    /// The exec's process exited with `code` (seen on its attach stream, which can end
    /// before the monitor process is gone): record it so an inspect right after the
    /// stream sees it.
    pub fn exec_exited(&self, id: &str, code: i32) {
        if let Ok(exec) = self.exec_instance(id) {
            {
                let mut st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running = false;
                st.exit_code = Some(code);
            }
            exec.changed.send_modify(|v| *v += 1);
        }
    }

    /// Wait until exec `id` has finished and its exit code is known.
    pub async fn exec_wait(&self, id: &str) -> Result<i32> {
        let exec = self.exec_instance(id)?;
        let mut rx = exec.changed.subscribe();
        loop {
            {
                let st = exec.state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(c) = st.exit_code {
                    return Ok(c);
                }
                if !st.started {
                    return Err(EngineError::conflict("exec was not started"));
                }
            }
            if rx.changed().await.is_err() {
                return Err(EngineError::internal("exec vanished"));
            }
        }
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<Value> {
        let exec = self.exec_instance(id)?;
        let st = exec.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let cfg = &exec.config;
        let args = cfg.cmd.clone().unwrap_or_default().0;
        Ok(json!({
            "ID": exec.id,
            "Running": st.running,
            "ExitCode": st.exit_code,
            "ProcessConfig": {
                "tty": cfg.tty,
                "entrypoint": args.first().cloned().unwrap_or_default(),
                "arguments": args.get(1..).unwrap_or_default(),
                "privileged": cfg.privileged,
                "user": cfg.user,
            },
            "OpenStdin": cfg.attach_stdin,
            "OpenStderr": cfg.attach_stderr,
            "OpenStdout": cfg.attach_stdout,
            "CanRemove": false,
            "ContainerID": exec.container_id,
            "DetachKeys": cfg.detach_keys,
            "Pid": st.pid,
        }))
    }

    /// `POST /exec/{id}/resize`.
    pub async fn exec_resize(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let exec = self.exec_instance(id)?;
        let socket = self
            .config
            .exec_root
            .join("execs")
            .join(&exec.id)
            .join(berth_monitor::protocol::ATTACH_SOCKET);
        crate::lifecycle::resize_via(&socket, rows, cols).await
    }

    /// Run `cmd` in container `id` and collect its output (healthchecks).
    pub(crate) async fn exec_capture(
        self: &Arc<Self>,
        container: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<(i32, String)> {
        let cfg = ExecConfig {
            attach_stdout: true,
            attach_stderr: true,
            cmd: Some(crate::types::StrSlice(cmd)),
            ..Default::default()
        };
        let id = self.exec_create(container, cfg)?;
        let result = async {
            let mut s = self
                .exec_start(&id, true, None, None)
                .await?
                .ok_or_else(|| EngineError::internal("no exec stream"))?;
            let mut out = Vec::new();
            let read = async {
                let mut buf = [0u8; 8192];
                let mut raw = Vec::new();
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                    }
                    if raw.len() > 1 << 20 {
                        break;
                    }
                }
                raw
            };
            let raw = tokio::time::timeout(timeout, read).await.map_err(|_| {
                EngineError::internal(format!(
                    "Health check exceeded timeout ({}s)",
                    timeout.as_secs_f64()
                ))
            })?;
            // Frames: keep stdout and stderr payloads.
            let mut i = 0;
            while i + 8 <= raw.len() {
                let h: [u8; 8] = raw[i..i + 8].try_into().unwrap_or_default();
                let (kind, len) = berth_monitor::protocol::frame::parse(&h);
                let end = (i + 8 + len as usize).min(raw.len());
                if kind == 1 || kind == 2 {
                    out.extend_from_slice(&raw[i + 8..end]);
                }
                i = end;
            }
            let code = self.exec_wait(&id).await?;
            Ok((code, String::from_utf8_lossy(&out).into_owned()))
        }
        .await;
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        result
    }
}
