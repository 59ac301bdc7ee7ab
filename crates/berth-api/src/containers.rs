//! `/containers/...` and `/exec/...`.

use std::sync::Arc;
use std::time::Duration;

use berth_engine::lifecycle::WaitCondition;
use berth_engine::query::ListOptions;
use berth_engine::types::{CreateRequest, ExecConfig, HostConfig};
use berth_engine::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use crate::http::{
    bad_request, channel_body, error, from_engine, json, ok_json, parse_json, read_body, status,
    HResult, Query, MAX_JSON_BODY,
};

pub async fn route(
    engine: Arc<Engine>,
    req: Request<Incoming>,
    segs: &[&str],
    q: Query,
) -> HResult {
    let method = req.method().clone();
    match (segs, &method) {
        (["json"], &Method::GET) => list(&engine, &q),
        (["create"], &Method::POST) => create(&engine, req, &q).await,
        (["prune"], &Method::POST) => {
            let f = q.filters()?;
            Ok(ok_json(&from_engine(engine.prune_containers(&f).await)?))
        }
        ([id, "json"], &Method::GET) => {
            Ok(ok_json(&from_engine(engine.inspect(id, q.bool("size")))?))
        }
        ([id, "start"], &Method::POST) => {
            if let Some(keys) = q.get("detachKeys").filter(|k| !k.is_empty()) {
                validate_detach_keys(keys)?;
            }
            from_engine(engine.start(id).await)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, "stop"], &Method::POST) => {
            let t = q.int("t")?.or(q.int("timeout")?);
            from_engine(engine.stop(id, t, q.get("signal")).await)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, "restart"], &Method::POST) => {
            let t = q.int("t")?.or(q.int("timeout")?);
            from_engine(engine.restart(id, t, q.get("signal")).await)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, "kill"], &Method::POST) => {
            from_engine(engine.kill(id, q.get("signal")).await)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, "pause"], &Method::POST) => {
            from_engine(engine.pause(id, true).await)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, "unpause"], &Method::POST) => {
            from_engine(engine.pause(id, false).await)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, "wait"], &Method::POST) => wait(&engine, id, &q),
        ([id], &Method::DELETE) => {
            if q.bool("link") {
                return Err(bad_request("legacy links are not supported by berth; remove the container by name without --link"));
            }
            from_engine(engine.remove(id, q.bool("force"), q.bool("v")).await)?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, "rename"], &Method::POST) => {
            let name = q.get("name").unwrap_or("");
            from_engine(engine.rename(id, name))?;
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, "update"], &Method::POST) => update(&engine, id, req).await,
        ([id, "resize"], &Method::POST) => {
            let (h, w) = size(&q)?;
            from_engine(engine.resize(id, h, w).await)?;
            Ok(status(StatusCode::OK))
        }
        ([id, "attach"], &Method::POST) => crate::hijack::attach(engine.clone(), req, id, &q).await,
        ([id, "logs"], &Method::GET) => logs(&engine, id, &q),
        ([id, "top"], &Method::GET) => Ok(ok_json(&from_engine(
            engine.top(id, q.get("ps_args").unwrap_or("")).await,
        )?)),
        ([id, "stats"], &Method::GET) => stats(&engine, id, &q),
        ([id, "changes"], &Method::GET) => Ok(ok_json(&from_engine(engine.changes(id))?)),
        ([id, "export"], &Method::GET) => export(&engine, id),
        ([id, "archive"], m) if *m == Method::GET || *m == Method::HEAD || *m == Method::PUT => {
            archive(&engine, req, id, &q).await
        }
        ([id, "exec"], &Method::POST) => {
            let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
            let cfg: ExecConfig = parse_json(&body)?;
            if let Some(keys) = Some(cfg.detach_keys.as_str()).filter(|k| !k.is_empty()) {
                validate_detach_keys(keys)?;
            }
            let id = from_engine(engine.exec_create(id, cfg))?;
            Ok(json(StatusCode::CREATED, &json!({ "Id": id })))
        }
        _ => Err(crate::not_found_route(&method, req.uri().path())),
    }
}

pub async fn route_exec(
    engine: Arc<Engine>,
    req: Request<Incoming>,
    segs: &[&str],
    q: Query,
) -> HResult {
    let method = req.method().clone();
    match (segs, &method) {
        ([id, "start"], &Method::POST) => crate::hijack::exec_start(engine.clone(), req, id).await,
        ([id, "resize"], &Method::POST) => {
            let (h, w) = size(&q)?;
            from_engine(engine.exec_resize(id, h, w).await)?;
            Ok(status(StatusCode::OK))
        }
        ([id, "json"], &Method::GET) => Ok(ok_json(&from_engine(engine.exec_inspect(id))?)),
        _ => Err(crate::not_found_route(&method, req.uri().path())),
    }
}

fn validate_detach_keys(keys: &str) -> Result<(), crate::http::Resp> {
    for k in keys.split(',') {
        let ok = k.len() == 1 || (k.starts_with("ctrl-") && k.len() == 6);
        if !ok {
            return Err(bad_request(format!(
                "Invalid detach keys ({keys}) provided"
            )));
        }
    }
    Ok(())
}

fn size(q: &Query) -> Result<(u16, u16), crate::http::Resp> {
    let h = q.int("h")?.unwrap_or(0);
    let w = q.int("w")?.unwrap_or(0);
    if !(0..=u16::MAX as i64).contains(&h) || !(0..=u16::MAX as i64).contains(&w) {
        return Err(bad_request(
            "invalid terminal size: h and w must be between 0 and 65535",
        ));
    }
    Ok((h as u16, w as u16))
}

fn list(engine: &Arc<Engine>, q: &Query) -> HResult {
    let limit = q.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
    let opts = ListOptions {
        all: q.bool("all"),
        limit,
        size: q.bool("size"),
        filters: q.filters()?,
    };
    Ok(ok_json(&from_engine(engine.list(&opts))?))
}

async fn create(engine: &Arc<Engine>, req: Request<Incoming>, q: &Query) -> HResult {
    let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
    let create: CreateRequest = parse_json(&body)?;
    if let Some(p) = q.get("platform").filter(|p| !p.is_empty()) {
        if !p.starts_with("linux") {
            return Err(bad_request(format!(
                "unsupported platform {p}: berth runs linux containers"
            )));
        }
    }
    let name = q.get("name").map(str::to_string);
    let engine2 = engine.clone();
    let (id, warnings) = from_engine(
        tokio::task::spawn_blocking(move || engine2.create(create, name.as_deref()))
            .await
            .map_err(|e| berth_engine::EngineError::internal(e.to_string()))
            .and_then(|r| r),
    )?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"Id": id, "Warnings": warnings}),
    ))
}

/// The status line and headers go out at once; the body follows when the condition is
/// met (`docker run` sends `start` only after these headers arrive).
fn wait(engine: &Arc<Engine>, id: &str, q: &Query) -> HResult {
    let cond = from_engine(WaitCondition::parse(q.get("condition").unwrap_or("")))?;
    let fut = from_engine(engine.wait_future(id, cond))?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let (code, err) = fut.await;
        let body = json!({"StatusCode": code, "Error": err.map(|m| json!({"Message": m}))});
        let mut data = serde_json::to_vec(&body).unwrap_or_default();
        data.push(b'\n');
        let _ = tx.send(Bytes::from(data)).await;
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(channel_body(rx))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)))
}

async fn update(engine: &Arc<Engine>, id: &str, req: Request<Incoming>) -> HResult {
    let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
    let update: HostConfig = parse_json(&body)?;
    let warnings = from_engine(engine.update(id, update).await)?;
    Ok(ok_json(&json!({"Warnings": warnings})))
}

fn logs(engine: &Arc<Engine>, id: &str, q: &Query) -> HResult {
    let h = from_engine(engine.container(id))?;
    let c = h.get();
    let stdout = q.bool("stdout");
    let stderr = q.bool("stderr");
    if !stdout && !stderr {
        return Err(bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let opts = berth_engine::logs::LogOptions {
        stdout,
        stderr,
        since: match q.get("since").filter(|s| !s.is_empty() && *s != "0") {
            Some(s) => Some(from_engine(berth_engine::logs::parse_timestamp(s))?),
            None => None,
        },
        until: match q.get("until").filter(|s| !s.is_empty() && *s != "0") {
            Some(s) => Some(from_engine(berth_engine::logs::parse_timestamp(s))?),
            None => None,
        },
        tail: from_engine(berth_engine::logs::parse_tail(
            q.get("tail").unwrap_or("all"),
        ))?,
        timestamps: q.bool("timestamps"),
        follow: q.bool("follow"),
        details: q.bool("details"),
    };
    if c.host_config.log_config.r#type == "none" {
        return Err(error(
            StatusCode::NOT_IMPLEMENTED,
            "configured logging driver does not support reading",
        ));
    }
    let running = running_watch(&h);
    let (tx, rx) = mpsc::channel(64);
    let tty = c.config.tty;
    tokio::spawn(berth_engine::logs::stream_logs(
        c.log_path.clone(),
        opts,
        tty,
        running,
        tx,
    ));
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", ct)
        .body(channel_body(rx))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)))
}

/// A `watch` that is true while the container runs.
pub fn running_watch(h: &Arc<berth_engine::engine::Handle>) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(h.get().is_running());
    let h = h.clone();
    tokio::spawn(async move {
        let mut changed = h.changed.subscribe();
        let mut removed = h.removed.subscribe();
        loop {
            let running = h.get().is_running() && !*removed.borrow();
            if tx.send(running).is_err() || !running {
                return;
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { let _ = tx.send(false); return; },
                r = removed.changed() => if r.is_err() { let _ = tx.send(false); return; },
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

fn stats(engine: &Arc<Engine>, id: &str, q: &Query) -> HResult {
    let stream = q.bool_or("stream", true);
    let one_shot = q.bool("one-shot");
    let h = from_engine(engine.container(id))?;
    let name = h.id();
    let (tx, rx) = mpsc::channel(4);
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut prev: Option<serde_json::Value> = None;
        if !stream && !one_shot {
            prev = engine.stats_sample(&name, None).ok();
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        loop {
            let Ok(sample) = engine.stats_sample(&name, prev.as_ref()) else {
                return;
            };
            let mut data = serde_json::to_vec(&sample).unwrap_or_default();
            data.push(b'\n');
            if tx.send(Bytes::from(data)).await.is_err() || !stream {
                return;
            }
            prev = Some(sample);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tx.closed() => return,
            }
            if engine.container(&name).is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(channel_body(rx))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)))
}

/// Stream a tar produced by blocking code `f` writing into a pipe.
pub fn tar_stream(
    f: impl FnOnce(&mut dyn std::io::Write) -> Result<(), String> + Send + 'static,
) -> crate::http::Body {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::task::spawn_blocking(move || {
        // Tar writers emit 512-byte headers; batch them into 64 KiB chunks.
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, ChannelWriter { tx });
        if let Err(e) = f(&mut w).and_then(|()| {
            use std::io::Write as _;
            w.flush().map_err(|e| e.to_string())
        }) {
            tracing::warn!(error = %e, "writing a tar stream");
        }
    });
    channel_body(rx)
}

struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn export(engine: &Arc<Engine>, id: &str) -> HResult {
    let (c, root) = from_engine(engine.files_root(id))?;
    engine
        .events
        .emit("container", "export", &c.id, c.event_attributes());
    let body = tar_stream(move |w| berth_engine::archive::export(&root, w).map_err(|e| e.message));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .body(body)
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)))
}

async fn archive(engine: &Arc<Engine>, req: Request<Incoming>, id: &str, q: &Query) -> HResult {
    let path = q.get("path").unwrap_or("").to_string();
    if path.is_empty() {
        return Err(bad_request(
            "path is required: give the path inside the container (?path=/etc/hosts)",
        ));
    }
    let (c, root) = from_engine(engine.files_root(id))?;
    let method = req.method().clone();
    if method == Method::PUT {
        let no_overwrite = q.bool("noOverwriteDirNonDir");
        let copy_ids = q.bool("copyUIDGID");
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let reader = tokio::task::spawn_blocking(move || {
            let r = ChannelReader {
                rx,
                buf: Bytes::new(),
            };
            berth_engine::archive::put(&root, &path, r, no_overwrite, copy_ids)
        });
        let name = c.name.clone();
        let mut body = req.into_body();
        use http_body_util::BodyExt;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        if tx.send(data).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => return Err(bad_request(format!("reading the archive: {e}"))),
            }
        }
        drop(tx);
        from_engine(
            reader
                .await
                .map_err(|e| berth_engine::EngineError::internal(e.to_string()))
                .and_then(|r| r)
                .map_err(|e| name_container(e, &name)),
        )?;
        return Ok(status(StatusCode::OK));
    }
    let root2 = root.clone();
    let p2 = path.clone();
    let st = from_engine(
        tokio::task::spawn_blocking(move || berth_engine::archive::stat(&root2, &p2))
            .await
            .map_err(|e| berth_engine::EngineError::internal(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| name_container(e, &c.name)),
    )?;
    // Docker's clients decode this with standard base64.
    use base64::Engine as _;
    let header = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&st).unwrap_or_default());
    if method == Method::HEAD {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("X-Docker-Container-Path-Stat", header)
            .body(crate::http::empty_body())
            .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)));
    }
    let body =
        tar_stream(move |w| berth_engine::archive::get(&root, &path, w).map_err(|e| e.message));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .header("X-Docker-Container-Path-Stat", header)
        .body(body)
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)))
}

/// "Could not find the file /x in container" gets the container's name, as Docker says it.
fn name_container(mut e: berth_engine::EngineError, name: &str) -> berth_engine::EngineError {
    if e.kind == berth_engine::ErrorKind::NotFound {
        e.message = format!("{} {}", e.message, name.trim_start_matches('/'));
    }
    e
}

/// A blocking reader over body chunks.
pub struct ChannelReader {
    pub rx: mpsc::Receiver<Bytes>,
    pub buf: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.buf = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}
