//! The endpoints: [`dispatch`] matches path and method and calls one handler per endpoint
//! (manifests, blobs, uploads, tag and repository listings).
//!
//! Handlers do their file work on the blocking pool ([`RegistryState::blocking`]): the
//! content store and metadata are plain files, fsynced, which must not stall the async
//! workers that stream other clients' blobs.

mod blobs;
mod listing;
mod manifests;
mod uploads;

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, LOCATION};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_types::Digest;
use futures_util::StreamExt;
use tracing::{debug, Instrument as _};

use super::error::{ApiError, ErrorCode};
use super::name::Route;
use super::{RegistryState, StateInner};

pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// The query parameters of a request, decoded, in order (`digest` may repeat).
pub struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every request of the API comes through here.
pub async fn dispatch(State(state): State<RegistryState>, request: Request) -> Response {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    );
    async move {
        let mut response = route(state, request)
            .await
            .unwrap_or_else(IntoResponse::into_response);
        response
            .headers_mut()
            .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        debug!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

async fn route(state: RegistryState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let not_found = || {
        ApiError::new(
            ErrorCode::Unsupported,
            format!(
                "{} is not an endpoint of the distribution API",
                parts.uri.path()
            ),
        )
        .with_status(StatusCode::NOT_FOUND)
    };
    let path: Cow<str> = percent_encoding::percent_decode_str(parts.uri.path())
        .decode_utf8()
        .map_err(|_| not_found())?;
    let route = Route::parse(&path)?.ok_or_else(not_found)?;
    let query = Query::parse(parts.uri.query());
    let headers = &parts.headers;
    let method = &parts.method;
    let head = method == Method::HEAD;
    match route {
        Route::Base if head || method == Method::GET => Ok((
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response()),
        Route::Catalog if method == Method::GET => listing::catalog(&state, &query).await,
        Route::Tags(name) if method == Method::GET => listing::tags(&state, name, &query).await,
        Route::Manifest(name, reference) => match *method {
            Method::GET | Method::HEAD => manifests::get(&state, name, &reference, head).await,
            Method::PUT => manifests::put(&state, name, &reference, headers, body).await,
            Method::DELETE => manifests::delete(&state, name, &reference).await,
            _ => Err(method_not_allowed(method)),
        },
        Route::Blob(name, digest) => match *method {
            Method::GET | Method::HEAD => blobs::get(&state, name, &digest, headers, head).await,
            Method::DELETE => blobs::delete(&state, name, &digest).await,
            _ => Err(method_not_allowed(method)),
        },
        Route::UploadStart(name) if method == Method::POST => {
            uploads::start(&state, name, &query, body).await
        }
        Route::Upload(name, id) => match *method {
            Method::GET => uploads::status(&state, name, id).await,
            Method::PATCH => uploads::patch(&state, name, id, headers, body).await,
            Method::PUT => uploads::finish(&state, name, id, &query, headers, body).await,
            Method::DELETE => uploads::cancel(&state, name, id).await,
            _ => Err(method_not_allowed(method)),
        },
        _ => Err(method_not_allowed(method)),
    }
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        ErrorCode::Unsupported,
        format!("{method} is not supported on this endpoint"),
    )
}

impl RegistryState {
    /// Runs file work on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&StateInner) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| ApiError::internal("a request's file work failed", e))?
    }
}

/// `201 Created` for a stored blob or manifest at `location`.
fn created(location: String, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    set(headers, LOCATION, &location);
    set(headers, DOCKER_CONTENT_DIGEST, &digest.to_string());
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// Request bodies we refuse are read and thrown away up to this size before we answer: a
/// client still sending when the answer comes and the connection closes sees a reset
/// (EPIPE) instead of our error. Past it, closing is cheaper than reading.
const DISCARD_LIMIT: u64 = 64 << 20;

/// Reads and drops what remains of a refused request's body (up to [`DISCARD_LIMIT`]).
async fn discard(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.len() as u64;
        if read > DISCARD_LIMIT {
            break;
        }
    }
}

/// `result`'s value with the body to read on; or its error, once the body was discarded.
async fn unless_refused<T>(result: Result<T, ApiError>, body: Body) -> Result<(T, Body), ApiError> {
    match result {
        Ok(value) => Ok((value, body)),
        Err(e) => {
            discard(body).await;
            Err(e)
        }
    }
}

/// Sets a header we formatted ourselves; such text is always a valid value.
fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A request header as text, if present and printable.
fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Content-Length` as a number, if present and valid.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    header(headers, &CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}
