//! `/images/...`, `/commit`, `/auth`.
//!
//! Image names contain `/` and `:`, so the path after `/images/` is split on its known
//! last segment (`json`, `history`, `tag`, `push`, `get`) rather than routed by segments.

use std::sync::Arc;

use base64::Engine as _;
use berth_engine::Engine;
use berth_registry::client::pull::{pull, PullOptions};
use berth_registry::client::push::{push, PushOptions};
use berth_registry::credentials::AuthConfig;
use berth_registry::progress::{Phase, ProgressSink};
use berth_types::Reference;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::containers::{tar_stream, ChannelReader};
use crate::http::{
    bad_request, channel_body, error, from_engine, json, ok_json, parse_json, read_body, status,
    HResult, Query, Resp, MAX_JSON_BODY,
};

pub async fn route(engine: Arc<Engine>, req: Request<Incoming>, path: &str, q: Query) -> HResult {
    let rest = path
        .strip_prefix("/images")
        .unwrap_or("")
        .trim_start_matches('/');
    let method = req.method().clone();
    match (rest, &method) {
        ("json", &Method::GET) => list(&engine, &q),
        ("create", &Method::POST) => create(engine, req, &q).await,
        ("get", &Method::GET) => save(&engine, q.all("names")),
        ("load", &Method::POST) => load(engine, req, &q).await,
        ("prune", &Method::POST) => prune(&engine, &q).await,
        ("search", &Method::GET) => Err(error(
            StatusCode::NOT_IMPLEMENTED,
            "berth has no registry search; browse the registry instead",
        )),
        _ => {
            let (name, action) = match rest.rsplit_once('/') {
                Some((n, a)) if matches!(a, "json" | "history" | "tag" | "push" | "get") => (n, a),
                _ => (rest, ""),
            };
            if name.is_empty() {
                return Err(crate::not_found_route(&method, req.uri().path()));
            }
            match (action, &method) {
                ("json", &Method::GET) => inspect(&engine, name),
                ("history", &Method::GET) => {
                    let h = engine
                        .images
                        .history(name)
                        .map_err(|e| manage_err(name, e))?;
                    Ok(ok_json(&h))
                }
                ("tag", &Method::POST) => tag(&engine, name, &q),
                ("push", &Method::POST) => push_image(engine, &req, name, &q).await,
                ("get", &Method::GET) => save(&engine, vec![name.to_string()]),
                ("", &Method::DELETE) => remove(&engine, name, &q).await,
                _ => Err(crate::not_found_route(&method, req.uri().path())),
            }
        }
    }
}

fn manage_err(name: &str, e: berth_image::manage::ManageError) -> Resp {
    use berth_image::manage::ErrorKind as K;
    match e.kind() {
        K::NotFound => error(StatusCode::NOT_FOUND, format!("No such image: {name}")),
        K::Conflict => error(StatusCode::CONFLICT, e.to_string()),
        K::Invalid => bad_request(e.to_string()),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn list(engine: &Arc<Engine>, q: &Query) -> HResult {
    let filters = q.filters()?;
    let mut all = engine
        .images
        .summaries(q.bool("all"))
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    for key in filters.keys() {
        if !matches!(
            key.as_str(),
            "reference" | "dangling" | "label" | "before" | "since" | "until"
        ) {
            return Err(bad_request(format!("invalid filter '{key}'")));
        }
    }
    if let Some(refs) = filters.get("reference") {
        all.retain(|i| {
            refs.iter()
                .any(|r| i.repo_tags.iter().any(|t| reference_matches(t, r)))
        });
    }
    if let Some(d) = filters.get("dangling").and_then(|v| v.first()) {
        let want = d == "true" || d == "1";
        all.retain(|i| i.repo_tags.is_empty() == want);
    }
    if let Some(labels) = filters.get("label") {
        all.retain(|i| {
            labels.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => i.labels.get(k).is_some_and(|x| x == v),
                None => i.labels.contains_key(l.as_str()),
            })
        });
    }
    let counts = container_counts(engine);
    let out: Vec<Value> = all
        .iter()
        .map(|i| {
            let mut v = serde_json::to_value(i).unwrap_or(json!({}));
            v["Containers"] = json!(counts.get(&i.id.to_string()).copied().unwrap_or(0));
            if v["Labels"].as_object().is_some_and(|m| m.is_empty()) {
                v["Labels"] = json!({});
            }
            v
        })
        .collect();
    Ok(ok_json(&out))
}

fn container_counts(engine: &Arc<Engine>) -> std::collections::HashMap<String, i64> {
    let mut m = std::collections::HashMap::new();
    for h in engine.all_containers() {
        *m.entry(h.get().image_id).or_insert(0) += 1;
    }
    m
}

/// `busybox`, `busybox:latest`, `bus*` against a familiar `name:tag`.
fn reference_matches(tag: &str, pattern: &str) -> bool {
    let (name, t) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let (pname, ptag) = match pattern.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (pattern, None),
    };
    let glob = |p: &str, s: &str| -> bool {
        match p.split_once('*') {
            Some((a, b)) => s.starts_with(a) && s.ends_with(b) && s.len() >= a.len() + b.len(),
            None => p == s,
        }
    };
    let pname = Reference::parse_normalized_named(pname)
        .map(|r| r.familiar_name().to_string())
        .unwrap_or_else(|_| pname.to_string());
    glob(&pname, name) && ptag.is_none_or(|pt| glob(pt, t))
}

fn inspect(engine: &Arc<Engine>, name: &str) -> HResult {
    let i = engine
        .images
        .inspect(name)
        .map_err(|e| manage_err(name, e))?;
    let mut v = serde_json::to_value(&i).unwrap_or(json!({}));
    // Fields old clients still read (docker-compose 1.29: ContainerConfig).
    let cfg = v["Config"].clone();
    let mut config = json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false,
        "AttachStderr": false, "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": null,
        "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "", "Entrypoint": null,
        "OnBuild": null, "Labels": null,
    });
    if let (Some(dst), Some(src)) = (config.as_object_mut(), cfg.as_object()) {
        for (k, val) in src {
            dst.insert(k.clone(), val.clone());
        }
    }
    v["Config"] = config.clone();
    v["ContainerConfig"] = config;
    v["Container"] = json!("");
    v["DockerVersion"] = json!("");
    v["VirtualSize"] = v["Size"].clone();
    v["GraphDriver"] = json!({"Name": "overlay2", "Data": null});
    Ok(ok_json(&v))
}

fn tag(engine: &Arc<Engine>, name: &str, q: &Query) -> HResult {
    let repo = q.get("repo").unwrap_or("");
    if repo.is_empty() {
        return Err(bad_request(
            "repository name must have at least one component",
        ));
    }
    let mut target = repo.to_string();
    if let Some(t) = q.get("tag").filter(|t| !t.is_empty()) {
        target = format!("{target}:{t}");
    }
    let r = Reference::parse_normalized_named(&target)
        .map_err(|e| bad_request(format!("invalid reference format: {e}")))?
        .with_default_tag();
    let img = from_engine(engine.resolve_image(name))?;
    engine
        .images
        .tag(&img.id, &r)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    engine.events.emit(
        "image",
        "tag",
        &img.id.to_string(),
        [("name".to_string(), r.familiar_string())].into(),
    );
    Ok(status(StatusCode::CREATED))
}

async fn remove(engine: &Arc<Engine>, name: &str, q: &Query) -> HResult {
    let images = engine.images.clone();
    let n = name.to_string();
    let force = q.bool("force");
    let prune = !q.bool("noprune");
    let r = tokio::task::spawn_blocking(move || images.remove_image(&n, force, prune))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| manage_err(name, e))?;
    for item in &r {
        match item {
            berth_image::manage::DeleteResponse::Untagged(t) => {
                engine.events.emit("image", "untag", t, Default::default())
            }
            berth_image::manage::DeleteResponse::Deleted(d) => {
                engine
                    .events
                    .emit("image", "delete", &d.to_string(), Default::default())
            }
        }
    }
    Ok(ok_json(&r))
}

async fn prune(engine: &Arc<Engine>, q: &Query) -> HResult {
    let filters = q.filters()?;
    let dangling_only = filters
        .get("dangling")
        .and_then(|v| v.first())
        .is_none_or(|d| d == "true" || d == "1");
    let images = engine.images.clone();
    let r = tokio::task::spawn_blocking(move || images.prune(dangling_only))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut v = serde_json::to_value(&r).unwrap_or(json!({}));
    if r.images_deleted.is_empty() {
        v["ImagesDeleted"] = Value::Null;
    }
    Ok(ok_json(&v))
}

/// `X-Registry-Auth`: base64url JSON of an AuthConfig; `{}` means none.
fn registry_auth(req: &Request<Incoming>) -> Option<AuthConfig> {
    let raw = req.headers().get("X-Registry-Auth")?.to_str().ok()?;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(raw)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('='))
        })
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(raw))
        .ok()?;
    let auth: AuthConfig = serde_json::from_slice(&bytes).ok()?;
    let empty = auth.username.is_empty()
        && auth.password.is_empty()
        && auth.auth.is_empty()
        && auth.identity_token.is_empty();
    (!empty).then_some(auth)
}

/// One JSON-message line.
fn msg(v: Value) -> Bytes {
    let mut d = serde_json::to_vec(&v).unwrap_or_default();
    d.extend_from_slice(b"\r\n");
    Bytes::from(d)
}

fn stream_error(message: &str) -> Bytes {
    msg(json!({"errorDetail": {"message": message}, "error": message}))
}

fn progress_bar(current: u64, total: u64) -> String {
    let width = 50usize;
    let filled = if total > 0 {
        ((current as f64 / total as f64) * width as f64) as usize
    } else {
        0
    }
    .min(width);
    let mut bar = "=".repeat(filled.saturating_sub(1));
    if filled > 0 {
        bar.push('>');
    }
    format!("[{:<width$}] {}/{}", bar, human(current), human(total))
}

fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

fn phase_json(id: &str, phase: &Phase, first: bool) -> Value {
    let status = if first && *phase == Phase::Waiting {
        "Pulling fs layer".to_string()
    } else {
        phase.status()
    };
    match phase.detail() {
        Some((current, total)) => json!({
            "status": status, "id": id,
            "progressDetail": {"current": current, "total": total},
            "progress": progress_bar(current, total),
        }),
        None => json!({"status": status, "progressDetail": {}, "id": id}),
    }
}

/// A progress sink whose events go to the client as JSON messages. For a pull, a layer's
/// first `Waiting` is shown as Docker's `Pulling fs layer`.
fn forward_progress(
    tx: mpsc::Sender<Bytes>,
    pulling: bool,
) -> (ProgressSink, tokio::task::JoinHandle<()>) {
    let (sink, mut rx) = ProgressSink::channel();
    let task = tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        while let Some(p) = rx.recv().await {
            let first = pulling && seen.insert(p.id.clone());
            if tx
                .send(msg(phase_json(&p.id, &p.phase, first)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    (sink, task)
}

fn json_stream(rx: mpsc::Receiver<Bytes>) -> Resp {
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(channel_body(rx))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

async fn create(engine: Arc<Engine>, req: Request<Incoming>, q: &Query) -> HResult {
    if let Some(src) = q.get("fromSrc").filter(|s| !s.is_empty()) {
        return import(engine, req, src, q).await;
    }
    let from = q.get("fromImage").unwrap_or("").to_string();
    if from.is_empty() {
        return Err(bad_request("fromImage or fromSrc is required"));
    }
    let tag = q.get("tag").unwrap_or("").to_string();
    let full = if tag.is_empty() {
        from.clone()
    } else if tag.starts_with("sha256:") {
        format!("{from}@{tag}")
    } else {
        format!("{from}:{tag}")
    };
    let reference = Reference::parse_normalized_named(&full)
        .map_err(|e| bad_request(format!("invalid reference format: {e}")))?
        .with_default_tag();
    let platform = match q.get("platform").filter(|p| !p.is_empty()) {
        Some(p) => Some(
            p.parse()
                .map_err(|e| bad_request(format!("invalid platform {p}: {e}")))?,
        ),
        None => None,
    };
    let opts = PullOptions {
        platform,
        auth: registry_auth(&req),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let tag_id = reference.tag().unwrap_or("latest").to_string();
    tokio::spawn(async move {
        let path = reference.path().to_string();
        let _ = tx
            .send(msg(
                json!({"status": format!("Pulling from {}", path), "id": tag_id}),
            ))
            .await;
        let (sink, fwd) = forward_progress(tx.clone(), true);
        let result = pull(
            &engine.registry,
            engine.images.clone(),
            &reference,
            &opts,
            &sink,
        )
        .await;
        drop(sink);
        let _ = fwd.await;
        match result {
            Ok(pulled) => {
                let _ = tx
                    .send(msg(json!({"status": format!("Digest: {}", pulled.digest)})))
                    .await;
                let _ = tx
                    .send(msg(
                        json!({"status": format!("Status: {}", pulled.status())}),
                    ))
                    .await;
                engine.events.emit(
                    "image",
                    "pull",
                    &reference.familiar_string(),
                    Default::default(),
                );
            }
            Err(e) => {
                let _ = tx.send(stream_error(&e.to_string())).await;
            }
        }
    });
    Ok(json_stream(rx))
}

async fn import(engine: Arc<Engine>, req: Request<Incoming>, src: &str, q: &Query) -> HResult {
    if src != "-" {
        return Err(bad_request(
            "berth imports from the request body only (fromSrc=-); download the archive first",
        ));
    }
    let repo = q.get("repo").unwrap_or("").to_string();
    let tag = q.get("tag").unwrap_or("").to_string();
    let changes = q.all("changes");
    let message = q.get("message").unwrap_or("").to_string();
    let reference = if repo.is_empty() {
        None
    } else {
        let full = if tag.is_empty() {
            repo.clone()
        } else {
            format!("{repo}:{tag}")
        };
        Some(
            Reference::parse_normalized_named(&full)
                .map_err(|e| bad_request(format!("invalid reference format: {e}")))?
                .with_default_tag(),
        )
    };
    let mut config = oci_spec::image::Config::default();
    berth_image::config_changes::apply_changes(&mut config, &changes)
        .map_err(|e| bad_request(e.to_string()))?;
    let (btx, brx) = mpsc::channel::<Bytes>(16);
    let images = engine.images.clone();
    let job = tokio::task::spawn_blocking(move || {
        let r = ChannelReader {
            rx: brx,
            buf: Bytes::new(),
        };
        let (reader, _) = berth_image::unpack::decompressed(r).map_err(|e| e.to_string())?;
        images
            .import(reader, config, &message)
            .map_err(|e| e.to_string())
    });
    pump_body(req.into_body(), btx).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let id = job
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match id {
        Ok(id) => {
            if let Some(r) = reference {
                engine
                    .images
                    .tag(&id, &r)
                    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            }
            engine
                .events
                .emit("image", "import", &id.to_string(), Default::default());
            let _ = tx.send(msg(json!({"status": id.to_string()}))).await;
        }
        Err(e) => {
            let _ = tx
                .send(stream_error(&format!("importing the archive: {e}")))
                .await;
        }
    }
    Ok(json_stream(rx))
}

async fn pump_body(mut body: Incoming, tx: mpsc::Sender<Bytes>) -> Result<(), Resp> {
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
            Err(e) => return Err(bad_request(format!("reading the request body: {e}"))),
        }
    }
    Ok(())
}

async fn push_image(
    engine: Arc<Engine>,
    req: &Request<Incoming>,
    name: &str,
    q: &Query,
) -> HResult {
    let tag = q.get("tag").unwrap_or("");
    let full = if tag.is_empty() {
        name.to_string()
    } else {
        format!("{name}:{tag}")
    };
    let reference = Reference::parse_normalized_named(&full)
        .map_err(|e| bad_request(format!("invalid reference format: {e}")))?
        .with_default_tag();
    // The image must exist locally before streaming starts.
    from_engine(engine.resolve_image(&reference.to_string())).map_err(|_| {
        error(
            StatusCode::NOT_FOUND,
            format!("No such image: {}", reference.familiar_string()),
        )
    })?;
    let opts = PushOptions {
        auth: registry_auth(req),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let repo = reference.to_string();
        let repo = repo
            .rsplit_once(':')
            .map(|(r, _)| r.to_string())
            .unwrap_or(repo);
        let _ = tx
            .send(msg(
                json!({"status": format!("The push refers to repository [{repo}]")}),
            ))
            .await;
        let (sink, fwd) = forward_progress(tx.clone(), false);
        let result = push(
            &engine.registry,
            engine.images.clone(),
            &reference,
            &opts,
            &sink,
        )
        .await;
        drop(sink);
        let _ = fwd.await;
        match result {
            Ok(p) => {
                let _ = tx.send(msg(json!({"status": p.status()}))).await;
                let _ = tx
                    .send(msg(json!({"progressDetail": {}, "aux": {"Tag": reference.tag().unwrap_or("latest"), "Digest": p.digest.to_string(), "Size": p.size}})))
                    .await;
                engine.events.emit(
                    "image",
                    "push",
                    &reference.familiar_string(),
                    Default::default(),
                );
            }
            Err(e) => {
                let _ = tx.send(stream_error(&e.to_string())).await;
            }
        }
    });
    Ok(json_stream(rx))
}

fn save(engine: &Arc<Engine>, names: Vec<String>) -> HResult {
    if names.is_empty() {
        return Err(bad_request("no image names given: use ?names=<image>"));
    }
    let mut images = Vec::new();
    for n in &names {
        let rec = from_engine(engine.resolve_image(n))?;
        let refs: Vec<Reference> = match Reference::parse_normalized_named(n) {
            Ok(r) if !n.starts_with("sha256:") && !rec.id.to_string().contains(n.as_str()) => {
                vec![r.with_default_tag()]
            }
            _ => Vec::new(),
        };
        images.push((rec, refs));
    }
    let store = engine.images.clone();
    let body = tar_stream(move |w| {
        berth_image::archive::save_docker_archive(&store, &images, w).map_err(|e| e.to_string())
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/x-tar")
        .body(body)
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)))
}

async fn load(engine: Arc<Engine>, req: Request<Incoming>, q: &Query) -> HResult {
    let quiet = q.bool("quiet");
    let (btx, brx) = mpsc::channel::<Bytes>(16);
    let images = engine.images.clone();
    let job = tokio::task::spawn_blocking(move || {
        let r = ChannelReader {
            rx: brx,
            buf: Bytes::new(),
        };
        let (reader, _) = berth_image::unpack::decompressed(r).map_err(|e| e.to_string())?;
        berth_image::archive::load_docker_archive(&images, reader).map_err(|e| e.to_string())
    });
    pump_body(req.into_body(), btx).await?;
    let loaded = job
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    match loaded {
        Ok(list) => {
            for (id, refs) in list {
                if refs.is_empty() {
                    let _ = tx
                        .send(msg(json!({"stream": format!("Loaded image ID: {id}\n")})))
                        .await;
                }
                for r in refs {
                    let _ = tx
                        .send(msg(
                            json!({"stream": format!("Loaded image: {}\n", r.familiar_string())}),
                        ))
                        .await;
                }
                engine
                    .events
                    .emit("image", "load", &id.to_string(), Default::default());
            }
        }
        Err(e) => {
            let _ = tx
                .send(stream_error(&format!("loading the archive: {e}")))
                .await;
        }
    }
    let _ = quiet;
    Ok(json_stream(rx))
}

/// `POST /commit`.
pub async fn commit(engine: &Arc<Engine>, req: Request<Incoming>, q: &Query) -> HResult {
    let container = q.get("container").unwrap_or("").to_string();
    if container.is_empty() {
        return Err(bad_request(
            "container is required: give the container to commit (?container=)",
        ));
    }
    let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
    let config: Option<berth_engine::types::ContainerConfig> =
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            None
        } else {
            Some(parse_json(&body)?)
        };
    let repo = q.get("repo").unwrap_or("");
    let tag = q.get("tag").unwrap_or("");
    let repo_tag = if repo.is_empty() {
        None
    } else if tag.is_empty() {
        Some(repo.to_string())
    } else {
        Some(format!("{repo}:{tag}"))
    };
    let author = q.get("author").filter(|a| !a.is_empty()).map(String::from);
    let comment = q.get("comment").unwrap_or("").to_string();
    let changes = q.all("changes");
    let pause = q.bool_or("pause", true);
    let engine2 = engine.clone();
    let paused = if pause {
        engine.pause(&container, true).await.is_ok()
    } else {
        false
    };
    let c2 = container.clone();
    let r = tokio::task::spawn_blocking(move || {
        engine2.commit(&c2, repo_tag.as_deref(), author, &comment, &changes, config)
    })
    .await
    .map_err(|e| berth_engine::EngineError::internal(e.to_string()))
    .and_then(|r| r);
    if paused {
        let _ = engine.pause(&container, false).await;
    }
    let id = from_engine(r)?;
    Ok(json(StatusCode::CREATED, &json!({"Id": id})))
}

/// `POST /auth`: check the credentials against the registry.
pub async fn auth(engine: &Arc<Engine>, req: Request<Incoming>) -> HResult {
    let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
    let auth: AuthConfig = parse_json(&body)?;
    let server = if auth.server_address.is_empty() {
        "https://index.docker.io/v1/".to_string()
    } else {
        auth.server_address.clone()
    };
    match berth_registry::client::login::check_login(&engine.registry, &server, &auth).await {
        Ok(o) => Ok(ok_json(
            &json!({"Status": o.status, "IdentityToken": o.identity_token.unwrap_or_default()}),
        )),
        Err(e) => {
            let code = match &e {
                berth_registry::RegistryError::Unauthorized { .. }
                | berth_registry::RegistryError::Credentials { .. } => StatusCode::UNAUTHORIZED,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(error(code, e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filters() {
        assert!(reference_matches("busybox:latest", "busybox"));
        assert!(reference_matches("busybox:latest", "busybox:latest"));
        assert!(reference_matches("busybox:1", "bus*"));
        assert!(!reference_matches("busybox:1", "busybox:2"));
        assert!(reference_matches(
            "localhost:5000/bb:1",
            "localhost:5000/bb"
        ));
    }

    #[test]
    fn bars() {
        assert!(progress_bar(5, 10).starts_with("[========================>"));
        assert_eq!(human(1500), "1.500kB");
    }
}
