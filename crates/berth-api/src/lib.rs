//! The Docker Engine API over berth-engine.
//!
//! One hyper HTTP/1.1 connection per client connection, with upgrades for attach and exec.
//! Routing is by hand rather than with a segment router: image names contain `/` and `:`
//! (`/images/localhost:5000/bb/push`), so `/images/...` paths are split on their known
//! suffix. Every path may carry a `/v1.NN` prefix; versions above [`http::API_VERSION`]
//! or below [`http::MIN_API_VERSION`] get Docker's 400.

// Handlers return `Result<Response, Response>`: an error is already the answer to send.
// The error side is one response per request, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod containers;
pub mod hijack;
pub mod http;
pub mod images;
pub mod networks;
pub mod system;

use std::sync::Arc;

use berth_engine::Engine;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use http::{error, Resp};

/// Serve one client connection until it closes.
pub async fn serve_connection<IO>(engine: Arc<Engine>, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let engine = engine.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(engine, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "client connection ended");
    }
}

/// Answer one request, adding the headers every answer carries.
pub async fn handle(engine: Arc<Engine>, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let mut resp = route(engine, req).await;
    let h = resp.headers_mut();
    h.insert(
        "Server",
        hyper::header::HeaderValue::from_static(concat!(
            "berth/",
            env!("CARGO_PKG_VERSION"),
            " (linux)"
        )),
    );
    h.insert(
        "Api-Version",
        hyper::header::HeaderValue::from_static(http::API_VERSION),
    );
    h.insert("Ostype", hyper::header::HeaderValue::from_static("linux"));
    h.insert(
        "Docker-Experimental",
        hyper::header::HeaderValue::from_static("false"),
    );
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

/// Strip `/v1.NN`; reject unsupported versions.
fn strip_version(path: &str) -> Result<&str, Resp> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(path);
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let Some(v) = http::parse_version(ver) else {
        return Ok(path);
    };
    let max = http::parse_version(http::API_VERSION).unwrap_or((1, 50));
    let min = http::parse_version(http::MIN_API_VERSION).unwrap_or((1, 24));
    if v > max {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "client version {ver} is too new. Maximum supported API version is {}",
                http::API_VERSION
            ),
        ));
    }
    if v < min {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "client version {ver} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                http::MIN_API_VERSION
            ),
        ));
    }
    Ok(if tail.is_empty() { "/" } else { tail })
}

async fn route(engine: Arc<Engine>, req: Request<Incoming>) -> Resp {
    let full_path = req.uri().path().to_string();
    let path = match strip_version(&full_path) {
        Ok(p) => p.to_string(),
        Err(r) => return r,
    };
    let path = path.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let q = http::Query::parse(req.uri().query());
    let method = req.method().clone();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let r = match (segs.first().copied().unwrap_or(""), &method) {
        ("_ping", &Method::GET) | ("_ping", &Method::HEAD) => Ok(system::ping(&method)),
        ("version", &Method::GET) => Ok(system::version(&engine)),
        ("info", &Method::GET) => Ok(system::info(&engine)),
        ("events", &Method::GET) => system::events(&engine, &q),
        ("system", _) if segs.get(1) == Some(&"df") => system::df(&engine, &q).await,
        ("auth", &Method::POST) => images::auth(&engine, req).await,
        ("containers", _) => containers::route(engine, req, &segs[1..], q).await,
        ("exec", _) => containers::route_exec(engine, req, &segs[1..], q).await,
        ("images", _) => images::route(engine, req, path, q).await,
        ("commit", &Method::POST) => images::commit(&engine, req, &q).await,
        ("volumes", _) => system::volumes(engine, req, &segs[1..], q).await,
        ("networks", _) => networks::networks(&engine, req, &segs[1..], q).await,
        ("build", _) if segs.get(1) == Some(&"prune") => Ok(http::ok_json(
            &serde_json::json!({"CachesDeleted": null, "SpaceReclaimed": 0}),
        )),
        ("build", &Method::POST) => Err(error(
            StatusCode::NOT_IMPLEMENTED,
            "berthd does not build images yet (Dockerfile builds are a later milestone)",
        )),
        ("session", _) | ("grpc", _) => Err(error(
            StatusCode::NOT_IMPLEMENTED,
            "berthd has no BuildKit: set DOCKER_BUILDKIT=0 to use the classic builder",
        )),
        ("swarm", _) | ("services", _) | ("nodes", _) | ("tasks", _) | ("secrets", _)
        | ("configs", _) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
        )),
        _ => Err(not_found_route(&method, &full_path)),
    };
    r.unwrap_or_else(|e| e)
}

/// Unknown routes are 404 (not 405): clients fall back on 404.
pub fn not_found_route(method: &Method, path: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        format!("page not found: {method} {path}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            strip_version("/v1.50/containers/json").ok(),
            Some("/containers/json")
        );
        assert_eq!(strip_version("/v1.24/_ping").ok(), Some("/_ping"));
        assert_eq!(
            strip_version("/containers/json").ok(),
            Some("/containers/json")
        );
        assert!(strip_version("/v1.99/info").is_err());
        assert!(strip_version("/v1.12/info").is_err());
        // A path segment that merely starts with v is not a version.
        assert_eq!(strip_version("/volumes").ok(), Some("/volumes"));
    }
}
