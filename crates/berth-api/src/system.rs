//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`, `/volumes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_engine::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::http::{
    bad_request, channel_body, error, from_engine, full, json, ok_json, parse_json, read_body,
    status, HResult, Query, Resp, API_VERSION, MAX_JSON_BODY, MIN_API_VERSION,
};

pub fn ping(method: &Method) -> Resp {
    let b = Response::builder()
        .status(StatusCode::OK)
        .header("Cache-Control", "no-cache, no-store, must-revalidate")
        .header("Pragma", "no-cache")
        .header("Builder-Version", "1")
        .header("Swarm", "inactive");
    let r = if *method == Method::HEAD {
        b.header("Content-Type", "text/plain; charset=utf-8")
            .header("Content-Length", "0")
            .body(crate::http::empty_body())
    } else {
        b.header("Content-Type", "text/plain; charset=utf-8")
            .body(full("OK"))
    };
    r.unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

pub fn version(_engine: &Arc<Engine>) -> Resp {
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let ver = env!("CARGO_PKG_VERSION");
    ok_json(&json!({
        "Platform": {"Name": format!("berth {ver}")},
        "Components": [{
            "Name": "Engine", "Version": ver,
            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch,
                        "KernelVersion": kernel, "GitCommit": "", "GoVersion": "", "BuildTime": "", "Experimental": "false"}
        }],
        "Version": ver,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

pub fn info(engine: &Arc<Engine>) -> Resp {
    ok_json(&engine.info())
}

/// `since`/`until` as Unix seconds (`<secs>` or `<secs>.<nanos>`) or RFC 3339.
fn parse_time(s: &str) -> Result<i64, Resp> {
    if let Some((a, b)) = s.split_once('.') {
        let secs: i64 = a
            .parse()
            .map_err(|_| bad_request(format!("invalid timestamp {s:?}")))?;
        let mut nanos = b.to_string();
        nanos.truncate(9);
        while nanos.len() < 9 {
            nanos.push('0');
        }
        let n: i64 = nanos
            .parse()
            .map_err(|_| bad_request(format!("invalid timestamp {s:?}")))?;
        return Ok(secs * 1_000_000_000 + n);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * 1_000_000_000);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_nanos_opt().unwrap_or_default())
        .map_err(|_| {
            bad_request(format!(
                "invalid timestamp {s:?}: use Unix seconds or RFC 3339"
            ))
        })
}

pub fn events(engine: &Arc<Engine>, q: &Query) -> HResult {
    let filters = q.filters()?;
    let since = match q.get("since").filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_time(s)?),
        None => None,
    };
    let until = match q.get("until").filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_time(s)?),
        None => None,
    };
    if let (Some(s), Some(u)) = (since, until) {
        if u < s {
            return Err(bad_request("`since` time must be before `until` time"));
        }
    }
    let (past, mut live) = engine.events.subscribe(since);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let line = |e: &berth_engine::events::Event| {
        let mut d = serde_json::to_vec(e).unwrap_or_default();
        d.push(b'\n');
        Bytes::from(d)
    };
    tokio::spawn(async move {
        for e in past.iter().filter(|e| e.matches(&filters)) {
            if until.is_some_and(|u| e.time_nano > u) {
                return;
            }
            if tx.send(line(e)).await.is_err() {
                return;
            }
        }
        let deadline = until.map(|u| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
            std::time::Duration::from_nanos((u - now).max(0) as u64)
        });
        let sleep =
            tokio::time::sleep(deadline.unwrap_or(std::time::Duration::from_secs(u64::MAX / 4)));
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep, if deadline.is_some() => return,
                _ = tx.closed() => return,
                r = live.recv() => match r {
                    Ok(e) => {
                        if e.matches(&filters) && tx.send(line(&e)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", "application/json")
        .body(channel_body(rx))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR)))
}

pub async fn df(engine: &Arc<Engine>, _q: &Query) -> HResult {
    let e = engine.clone();
    let v = tokio::task::spawn_blocking(move || {
        let usage = e.images.disk_usage().unwrap_or_default();
        let images = e.images.summaries(false).unwrap_or_default();
        let mut counts = std::collections::HashMap::new();
        for h in e.all_containers() {
            *counts.entry(h.get().image_id).or_insert(0i64) += 1;
        }
        let images: Vec<Value> = images
            .iter()
            .map(|i| {
                let mut v = serde_json::to_value(i).unwrap_or(json!({}));
                v["Containers"] = json!(counts.get(&i.id.to_string()).copied().unwrap_or(0));
                v
            })
            .collect();
        let volumes: Vec<Value> = e
            .volumes
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                let refs = e
                    .all_containers()
                    .iter()
                    .filter(|h| h.get().mounts.iter().any(|m| m.name == v.name))
                    .count();
                let size = e.volumes.size(&v.name).unwrap_or(-1);
                let mut j = serde_json::to_value(&v).unwrap_or(json!({}));
                j["UsageData"] = json!({"Size": size, "RefCount": refs});
                j
            })
            .collect();
        json!({
            "LayersSize": usage.total_size,
            "Images": images,
            "Containers": e.df_containers(),
            "Volumes": volumes,
            "BuildCache": [],
        })
    })
    .await
    .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(ok_json(&v))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeCreate {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

fn label_match(labels: &BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    }
}

pub async fn volumes(
    engine: Arc<Engine>,
    req: Request<Incoming>,
    segs: &[&str],
    q: Query,
) -> HResult {
    let method = req.method().clone();
    match (segs, &method) {
        ([] | [""], &Method::GET) => {
            let filters = q.filters()?;
            for k in filters.keys() {
                if !matches!(k.as_str(), "name" | "label" | "driver" | "dangling") {
                    return Err(bad_request(format!("invalid filter '{k}'")));
                }
            }
            let mut list = from_engine(engine.volumes.list())?;
            list.retain(|v| {
                filters
                    .get("name")
                    .is_none_or(|n| n.iter().any(|x| v.name.contains(x.as_str())))
                    && filters
                        .get("label")
                        .is_none_or(|l| l.iter().all(|x| label_match(&v.labels, x)))
                    && filters
                        .get("driver")
                        .is_none_or(|d| d.iter().any(|x| x == &v.driver))
                    && filters
                        .get("dangling")
                        .and_then(|d| d.first())
                        .is_none_or(|d| {
                            let dangling = !engine.volume_in_use(&v.name);
                            (d == "true" || d == "1") == dangling
                        })
            });
            Ok(ok_json(&json!({"Volumes": list, "Warnings": []})))
        }
        (["create"], &Method::POST) => {
            let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
            let r: VolumeCreate = parse_json(&body)?;
            let driver = r.driver.unwrap_or_default();
            let name = r.name.filter(|n| !n.is_empty());
            let v = from_engine(engine.volumes.create(
                name.as_deref(),
                if driver.is_empty() { "local" } else { &driver },
                r.driver_opts.unwrap_or_default(),
                r.labels.unwrap_or_default(),
            ))?;
            engine.events.emit(
                "volume",
                "create",
                &v.name,
                [("driver".to_string(), "local".to_string())].into(),
            );
            Ok(json(StatusCode::CREATED, &v))
        }
        (["prune"], &Method::POST) => {
            let filters = q.filters()?;
            let all = filters
                .get("all")
                .and_then(|v| v.first())
                .is_some_and(|v| v == "true" || v == "1");
            let labels = filters.get("label").cloned().unwrap_or_default();
            let in_use: std::collections::HashSet<String> = engine
                .all_containers()
                .iter()
                .flat_map(|h| {
                    h.get()
                        .mounts
                        .into_iter()
                        .filter(|m| m.kind == "volume")
                        .map(|m| m.name)
                })
                .collect();
            let (deleted, space) = from_engine(engine.volumes.prune(&in_use, &labels, all))?;
            for d in &deleted {
                engine
                    .events
                    .emit("volume", "destroy", d, Default::default());
            }
            Ok(ok_json(
                &json!({"VolumesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) }, "SpaceReclaimed": space}),
            ))
        }
        ([name], &Method::GET) => Ok(ok_json(&from_engine(engine.volumes.get(name))?)),
        ([name], &Method::DELETE) => {
            let v = from_engine(engine.volumes.get(name))?;
            if engine.volume_in_use(&v.name) {
                let users: Vec<String> = engine
                    .all_containers()
                    .iter()
                    .map(|h| h.get())
                    .filter(|c| c.mounts.iter().any(|m| m.name == v.name))
                    .map(|c| c.id)
                    .collect();
                return Err(error(
                    StatusCode::CONFLICT,
                    format!(
                        "remove {}: volume is in use - [{}]",
                        v.name,
                        users.join(", ")
                    ),
                ));
            }
            from_engine(engine.volumes.remove(name))?;
            engine
                .events
                .emit("volume", "destroy", name, Default::default());
            Ok(status(StatusCode::NO_CONTENT))
        }
        _ => Err(crate::not_found_route(&method, req.uri().path())),
    }
}
