//! Hijacked connections: `POST /containers/{id}/attach` and `POST /exec/{id}/start`.
//!
//! Everything that can be checked is checked before the `101` goes out (errors after it
//! have no good way back to the client); an exec's process is started only after the `101`,
//! as Docker does, and a failure to start it is written into the stream. Then the upgraded
//! socket is pumped against the monitor's attach
//! socket: client bytes become stdin frames, monitor frames become Docker's multiplexed
//! frames (the same header) or raw bytes for a TTY. A client's half-close only ends stdin;
//! the session ends when the process exits (the monitor's EXIT frame) and the connection
//! is then closed so that `docker run` returns.

use std::sync::Arc;

use berth_engine::Engine;
use berth_monitor::protocol::{frame, AttachRequest};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::http::{
    bad_request, empty_body, engine_error, from_engine, parse_json, read_body, status, HResult,
    Query, MAX_JSON_BODY,
};

fn wants_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

fn upgraded_response(tty: bool) -> crate::http::Resp {
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("Content-Type", ct)
        .header("Connection", "Upgrade")
        .header("Upgrade", "tcp")
        .body(empty_body())
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

/// `POST /containers/{id}/attach`.
pub async fn attach(
    engine: Arc<Engine>,
    mut req: Request<Incoming>,
    id: &str,
    q: &Query,
) -> HResult {
    if !wants_upgrade(&req) {
        return Err(bad_request(
            "attach needs a connection upgrade: send 'Connection: Upgrade' and 'Upgrade: tcp'",
        ));
    }
    let request = AttachRequest {
        stdin: q.bool("stdin"),
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
    };
    let replay_logs = q.bool("logs");
    let stream = q.bool("stream");
    let h = from_engine(engine.container(id))?;
    let c = h.get();
    let tty = c.config.tty;
    let stdin_allowed = c.config.open_stdin;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let monitor = if stream {
        let (_, rx) = from_engine(engine.attach(id, request))?;
        Some(rx)
    } else {
        None
    };
    let log_path = c.log_path.clone();
    let detach_keys = detach_sequence(q.get("detachKeys"));
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "attach upgrade failed");
                return;
            }
        };
        let (mut cr, mut cw) = tokio::io::split(upgraded);
        if replay_logs {
            let opts = berth_engine::logs::LogOptions {
                stdout: request.stdout,
                stderr: request.stderr,
                since: None,
                until: None,
                tail: None,
                timestamps: false,
                follow: false,
                details: false,
            };
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let (_keep, running) = tokio::sync::watch::channel(false);
            tokio::spawn(berth_engine::logs::stream_logs(
                log_path, opts, tty, running, tx,
            ));
            while let Some(b) = rx.recv().await {
                if cw.write_all(&b).await.is_err() {
                    return;
                }
            }
        }
        let Some(rx) = monitor else {
            let _ = cw.shutdown().await;
            return;
        };
        let Ok(sock) = rx.await else {
            // The container never started (or start failed): end the session.
            let _ = cw.shutdown().await;
            return;
        };
        let _ = pump(
            &mut cr,
            &mut cw,
            sock,
            request.stdin && stdin_allowed,
            tty,
            detach_keys,
        )
        .await;
    });
    Ok(upgraded_response(tty))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ExecStart {
    detach: bool,
    tty: bool,
    console_size: Option<[u32; 2]>,
}

/// `POST /exec/{id}/start`.
pub async fn exec_start(engine: Arc<Engine>, mut req: Request<Incoming>, id: &str) -> HResult {
    let upgrade = wants_upgrade(&req);
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
    let opts: ExecStart = parse_json(&body)?;
    let exec = from_engine(engine.exec_instance(id))?;
    if opts.detach {
        from_engine(
            engine
                .exec_start(id, false, Some(opts.tty), opts.console_size)
                .await,
        )?;
        return Ok(status(StatusCode::OK));
    }
    let Some(on_upgrade) = on_upgrade else {
        return Err(bad_request(
            "exec start needs a connection upgrade (or Detach: true): send 'Connection: Upgrade' and 'Upgrade: tcp'",
        ));
    };
    let tty = opts.tty || exec.config.tty;
    let stdin = exec.config.attach_stdin;
    // What can be refused is refused before the 101 ...
    if exec.state.lock().unwrap_or_else(|e| e.into_inner()).started {
        return Err(engine_error(&berth_engine::EngineError::conflict(format!(
            "Error: Exec command {id} has already run"
        ))));
    }
    let running = from_engine(engine.container(&exec.container_id))?
        .get()
        .is_running();
    if !running {
        return Err(engine_error(&berth_engine::EngineError::conflict(format!(
            "container {} is not running",
            exec.container_id
        ))));
    }
    let detach_keys = detach_sequence(Some(exec.config.detach_keys.as_str()));
    let exec_id = id.to_string();
    // ... and the process starts only once the 101 is out, as in Docker: clients that read
    // the response head through a buffer (docker-py) would otherwise swallow the first
    // output with it. A start failure from here on is written into the stream, as Docker
    // does; its exit code is in exec inspect.
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(_) => return,
        };
        let (mut cr, mut cw) = tokio::io::split(upgraded);
        match engine
            .exec_start(&exec_id, true, Some(opts.tty), opts.console_size)
            .await
        {
            Ok(Some(sock)) => {
                if let Some(code) = pump(&mut cr, &mut cw, sock, stdin, tty, detach_keys).await {
                    engine.exec_exited(&exec_id, code);
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = cw.write_all(format!("{}\r\n", e.message).as_bytes()).await;
                let _ = cw.shutdown().await;
            }
        }
    });
    Ok(upgraded_response(tty))
}

/// `ctrl-p,ctrl-q` → `[0x10, 0x11]`.
fn detach_sequence(keys: Option<&str>) -> Vec<u8> {
    let keys = keys.filter(|k| !k.is_empty()).unwrap_or("ctrl-p,ctrl-q");
    keys.split(',')
        .filter_map(|k| {
            if let Some(c) = k.strip_prefix("ctrl-") {
                let b = c.bytes().next()?.to_ascii_lowercase();
                match b {
                    b'a'..=b'z' => Some(b - b'a' + 1),
                    b'@' => Some(0),
                    b'[' => Some(27),
                    b'\\' => Some(28),
                    b']' => Some(29),
                    b'^' => Some(30),
                    b'_' => Some(31),
                    _ => None,
                }
            } else {
                k.bytes().next()
            }
        })
        .collect()
}

/// Returns the exit code when the monitor reported one.
async fn pump<R, W>(
    cr: &mut R,
    cw: &mut W,
    sock: UnixStream,
    stdin: bool,
    tty: bool,
    detach: Vec<u8>,
) -> Option<i32>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut mr, mut mw) = sock.into_split();
    let mut exit_code = None;
    {
        let input = async {
            let mut buf = vec![0u8; 32 * 1024];
            let mut matched = 0usize;
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        if stdin {
                            let _ = mw.write_all(&frame::encode(frame::CLOSE_STDIN, &[])).await;
                        }
                        // Half-close: keep the output going.
                        return false;
                    }
                    Ok(n) => n,
                };
                if !stdin {
                    continue;
                }
                let data = &buf[..n];
                if tty && !detach.is_empty() {
                    // Detach keys end the session without touching the container.
                    for &b in data {
                        if b == detach[matched] {
                            matched += 1;
                            if matched == detach.len() {
                                return true;
                            }
                        } else {
                            matched = usize::from(b == detach[0]);
                        }
                    }
                }
                if mw
                    .write_all(&frame::encode(frame::STDIN, data))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        };
        let output = async {
            let mut header = [0u8; 8];
            let mut payload = Vec::new();
            loop {
                if mr.read_exact(&mut header).await.is_err() {
                    return;
                }
                let (kind, len) = frame::parse(&header);
                if len > frame::MAX_PAYLOAD {
                    return;
                }
                payload.resize(len as usize, 0);
                if mr.read_exact(&mut payload).await.is_err() {
                    return;
                }
                match kind {
                    frame::STDOUT | frame::STDERR => {
                        if payload.is_empty() {
                            continue;
                        }
                        let r = if tty {
                            cw.write_all(&payload).await
                        } else {
                            let mut f = header.to_vec();
                            f.extend_from_slice(&payload);
                            cw.write_all(&f).await
                        };
                        if r.is_err() {
                            return;
                        }
                        let _ = cw.flush().await;
                    }
                    frame::EXIT => {
                        if payload.len() == 4 {
                            exit_code = Some(i32::from_be_bytes([
                                payload[0], payload[1], payload[2], payload[3],
                            ]));
                        }
                        return;
                    }
                    _ => {}
                }
            }
        };
        tokio::pin!(output);
        tokio::pin!(input);
        let mut input_done = false;
        loop {
            tokio::select! {
                _ = &mut output => break,
                detached = &mut input, if !input_done => {
                    if detached { break; }
                    input_done = true;
                }
            }
        }
    }
    let _ = cw.flush().await;
    let _ = cw.shutdown().await;
    exit_code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(detach_sequence(None), vec![0x10, 0x11]);
        assert_eq!(detach_sequence(Some("ctrl-x,y")), vec![0x18, b'y']);
    }
}
