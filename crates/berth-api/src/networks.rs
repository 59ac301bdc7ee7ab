//! `/networks`: list, inspect, create, remove, prune (berth-net does the work; its calls
//! talk to the kernel and run `nft`, so they run on blocking threads).

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_engine::{Engine, EngineError};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{
    bad_request, engine_error, json, ok_json, parse_json, read_body, status, HResult, Query,
    MAX_JSON_BODY,
};

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: bool,
    attachable: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    labels: Option<BTreeMap<String, String>>,
    options: Option<BTreeMap<String, String>>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: Option<String>,
    config: Option<Vec<IpamConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<Value>,
}

fn net_error(e: berth_net::NetError) -> hyper::Response<crate::http::Body> {
    engine_error(&EngineError::net(e))
}

/// Run a blocking network call.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, berth_net::NetError> + Send + 'static,
) -> Result<T, hyper::Response<crate::http::Body>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::http::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(net_error)
}

fn label_matches(labels: &BTreeMap<String, String>, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    }
}

const FILTERS: &[&str] = &[
    "name", "id", "driver", "type", "label", "dangling", "scope", "until",
];

pub async fn networks(
    engine: &Arc<Engine>,
    req: Request<Incoming>,
    segs: &[&str],
    q: Query,
) -> HResult {
    let method = req.method().clone();
    let net = engine.net.clone();
    match (segs, &method) {
        ([] | [""], &Method::GET) => {
            let filters = q.filters()?;
            if let Some(k) = filters.keys().find(|k| !FILTERS.contains(&k.as_str())) {
                return Err(bad_request(format!("invalid filter '{k}'")));
            }
            let list: Vec<Value> = net
                .list()
                .into_iter()
                .filter(|n| {
                    let f = |k: &str| filters.get(k).filter(|v| !v.is_empty());
                    let dangling = || net.endpoints_on(&n.id).is_empty();
                    f("name").is_none_or(|v| v.iter().any(|x| n.name.contains(x.as_str())))
                        && f("id").is_none_or(|v| v.iter().any(|x| n.id.starts_with(x.as_str())))
                        && f("driver").is_none_or(|v| v.contains(&n.driver))
                        && f("type")
                            .is_none_or(|v| v.iter().any(|x| (x == "builtin") == n.is_builtin()))
                        && f("label").is_none_or(|v| v.iter().all(|x| label_matches(&n.labels, x)))
                        && f("dangling").is_none_or(|v| {
                            v.iter().any(|x| (x == "true" || x == "1") == dangling())
                        })
                })
                .map(|n| n.inspect(&[]))
                .collect();
            Ok(ok_json(&list))
        }
        (["create"], &Method::POST) => {
            let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
            let b: CreateBody = parse_json(&body)?;
            if b.enable_ipv6 == Some(true) {
                return Err(bad_request(
                    "IPv6 networks are not supported by berth: leave --ipv6 off",
                ));
            }
            if let Some(d) = b.ipam.as_ref().and_then(|i| i.driver.as_deref()) {
                if !d.is_empty() && d != "default" {
                    return Err(bad_request(format!(
                        "IPAM driver {d} is not available: berth has the default one only"
                    )));
                }
            }
            let configs = b.ipam.and_then(|i| i.config).unwrap_or_default();
            if configs.len() > 1 {
                return Err(bad_request(
                    "berth's networks have one IPv4 subnet: give one --subnet",
                ));
            }
            let c = configs.into_iter().next().unwrap_or_default();
            let r = berth_net::CreateRequest {
                name: b.name,
                driver: b.driver.unwrap_or_default(),
                internal: b.internal,
                attachable: b.attachable,
                labels: b.labels.unwrap_or_default(),
                options: b.options.unwrap_or_default(),
                subnet: c.subnet,
                gateway: c.gateway,
                ip_range: c.ip_range,
            };
            let n = blocking(move || net.create(r)).await?;
            engine.events.emit(
                "network",
                "create",
                &n.id,
                [
                    ("name".to_string(), n.name.clone()),
                    ("type".to_string(), n.driver.clone()),
                ]
                .into(),
            );
            Ok(json(
                StatusCode::CREATED,
                &json!({"Id": n.id, "Warning": ""}),
            ))
        }
        (["prune"], &Method::POST) => {
            let filters = q.filters()?;
            let labels = filters.get("label").cloned().unwrap_or_default();
            let mut deleted = Vec::new();
            for n in net.list() {
                if n.is_builtin()
                    || !net.endpoints_on(&n.id).is_empty()
                    || !labels.iter().all(|l| label_matches(&n.labels, l))
                    || engine_uses(engine, &n)
                {
                    continue;
                }
                let (net2, id) = (net.clone(), n.id.clone());
                if blocking(move || net2.remove(&id)).await.is_ok() {
                    engine.events.emit(
                        "network",
                        "destroy",
                        &n.id,
                        [("name".to_string(), n.name.clone())].into(),
                    );
                    deleted.push(n.name);
                }
            }
            Ok(ok_json(&json!({"NetworksDeleted": deleted})))
        }
        ([id], &Method::GET) => {
            let n = net.get(id).map_err(net_error)?;
            Ok(ok_json(&n.inspect(&net.endpoints_on(&n.id))))
        }
        ([id], &Method::DELETE) => {
            let n = net.get(id).map_err(net_error)?;
            let id = n.id.clone();
            blocking(move || net.remove(&id)).await?;
            engine.events.emit(
                "network",
                "destroy",
                &n.id,
                [("name".to_string(), n.name.clone())].into(),
            );
            Ok(status(StatusCode::NO_CONTENT))
        }
        ([id, action @ ("connect" | "disconnect")], &Method::POST) => {
            let body = read_body(req.into_body(), MAX_JSON_BODY).await?;
            let b: ConnectBody = parse_json(&body)?;
            if b.container.is_empty() {
                return Err(bad_request("no container given: the body needs Container"));
            }
            let r = if *action == "connect" {
                engine
                    .network_connect(id, &b.container, b.endpoint_config)
                    .await
            } else {
                engine.network_disconnect(id, &b.container).await
            };
            r.map_err(|e| engine_error(&e))?;
            Ok(status(StatusCode::OK))
        }
        _ => Err(crate::not_found_route(&method, req.uri().path())),
    }
}

/// Whether a container (running or not) is configured for network `n` (prune keeps it).
fn engine_uses(engine: &Arc<Engine>, n: &berth_net::Network) -> bool {
    engine
        .all_containers()
        .iter()
        .any(|h| h.with(|c| c.network_names().iter().any(|x| *x == n.name || *x == n.id)))
}
