//! HTTP plumbing: response bodies (whole, streamed), Docker's error shape, and moby's
//! query-string conventions (Go booleans, both `filters` encodings, repeated keys).

use std::collections::BTreeMap;
use std::convert::Infallible;

use berth_engine::{EngineError, ErrorKind};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

pub type Body = BoxBody<Bytes, std::io::Error>;
pub type Resp = Response<Body>;

/// The API version berthd speaks, and the oldest it accepts.
pub const API_VERSION: &str = "1.50";
pub const MIN_API_VERSION: &str = "1.24";

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

pub fn empty_body() -> Body {
    full(Bytes::new())
}

/// A body fed by a channel: each message is flushed as it comes; the body ends when the
/// sender is dropped.
pub fn channel_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut body = body;
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(empty_body()))
}

pub fn ok_json<T: Serialize>(value: &T) -> Resp {
    json(StatusCode::OK, value)
}

pub fn status(code: StatusCode) -> Resp {
    Response::builder()
        .status(code)
        .body(empty_body())
        .unwrap_or_else(|_| Response::new(empty_body()))
}

/// An error answer in Docker's shape. The content type must be exactly
/// `application/json`: the Go client compares the string.
pub fn error(code: StatusCode, message: impl Into<String>) -> Resp {
    json(code, &serde_json::json!({ "message": message.into() }))
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::NotModified => StatusCode::NOT_MODIFIED,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn engine_error(e: &EngineError) -> Resp {
    let code = status_of(e.kind);
    if code == StatusCode::NOT_MODIFIED {
        return status(code);
    }
    error(code, e.message.clone())
}

/// The result type of handlers: an error is already a response.
pub type HResult = Result<Resp, Resp>;

pub fn from_engine<T>(r: berth_engine::Result<T>) -> Result<T, Resp> {
    r.map_err(|e| engine_error(&e))
}

pub fn bad_request(message: impl Into<String>) -> Resp {
    error(StatusCode::BAD_REQUEST, message)
}

/// The query string, parsed.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Query {
        Query {
            pairs: url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// moby's boolean: anything but "", "0", "no", "false", "none" (any case) is true.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| {
            !matches!(
                v.to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            )
        })
    }

    /// Like [`Query::bool`] but `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        if self.get(key).is_none() {
            default
        } else {
            self.bool(key)
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, Resp> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }

    /// `filters`, in either encoding: `{"k":{"v":true}}` or `{"k":["v"]}`.
    pub fn filters(&self) -> Result<BTreeMap<String, Vec<String>>, Resp> {
        let Some(raw) = self.get("filters").filter(|s| !s.is_empty()) else {
            return Ok(BTreeMap::new());
        };
        parse_filters(raw).map_err(bad_request)
    }
}

pub fn parse_filters(raw: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let v: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| format!("invalid filter: {e}; filters must be JSON"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "invalid filter: filters must be a JSON object".to_string())?;
    let mut out = BTreeMap::new();
    for (k, vals) in obj {
        let list: Vec<String> = match vals {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(true))
                .map(|(v, _)| v.clone())
                .collect(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => return Err(format!("invalid filter '{k}'")),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// The largest JSON body berthd reads.
pub const MAX_JSON_BODY: usize = 4 << 20;

/// Read a whole request body, refusing more than `max` bytes.
pub async fn read_body(body: Incoming, max: usize) -> Result<Bytes, Resp> {
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {} bytes", max),
                ))
            } else {
                Err(bad_request(format!("reading the request body: {e}")))
            }
        }
    }
}

/// Parse a JSON body into `T`; an empty body gives `T::default()`.
pub fn parse_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Resp> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("invalid JSON in the request body: {e}")))
}

/// `(major, minor)` of "1.41".
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_booleans() {
        let q = Query::parse(Some("a=1&b=True&c=false&d=0&e=&f=no&g=None&h=yes"));
        assert!(q.bool("a") && q.bool("b") && q.bool("h"));
        assert!(!q.bool("c") && !q.bool("d") && !q.bool("e") && !q.bool("f") && !q.bool("g"));
        assert!(!q.bool("missing"));
        assert!(q.bool_or("missing", true));
    }

    #[test]
    fn both_filter_encodings() {
        let a = parse_filters(r#"{"label":{"a=b":true},"status":{"running":true}}"#).unwrap();
        assert_eq!(a["label"], vec!["a=b"]);
        assert_eq!(a["status"], vec!["running"]);
        let b = parse_filters(r#"{"label":["a=b"],"name":["x","y"]}"#).unwrap();
        assert_eq!(b["name"], vec!["x", "y"]);
        assert!(parse_filters("nope").is_err());
    }

    #[test]
    fn repeated_keys() {
        let q = Query::parse(Some("t=a&t=b&changes=ENV+A%3D1"));
        assert_eq!(q.all("t"), vec!["a", "b"]);
        assert_eq!(q.get("changes"), Some("ENV A=1"));
    }
}
