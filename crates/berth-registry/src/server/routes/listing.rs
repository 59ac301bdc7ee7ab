//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, both paginated as the spec says:
//! sorted, `n` entries after `last`, and a `Link: <…>; rel="next"` header while more remain.

use axum::http::header::LINK;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{set, Query};
use crate::server::error::{ApiError, ErrorCode};
use crate::server::metadata::name_unknown;
use crate::server::name::RepositoryName;
use crate::server::RegistryState;

pub async fn tags(
    state: &RegistryState,
    name: RepositoryName,
    query: &Query,
) -> Result<Response, ApiError> {
    let page = Page::from_query(query)?;
    let lookup = name.clone();
    let record = state
        .blocking(move |inner| inner.repositories.load(&lookup))
        .await?
        .ok_or_else(|| name_unknown(&name))?;
    let (tags, next) = page.select(record.tags.into_keys());
    let body = serde_json::json!({ "name": name.as_str(), "tags": tags });
    Ok(with_link(
        Json(body).into_response(),
        next.map(|(n, last)| format!("/v2/{name}/tags/list?n={n}&last={last}")),
    ))
}

pub async fn catalog(state: &RegistryState, query: &Query) -> Result<Response, ApiError> {
    let page = Page::from_query(query)?;
    let names = state.blocking(|inner| inner.repositories.list()).await?;
    let (repositories, next) = page.select(names);
    let body = serde_json::json!({ "repositories": repositories });
    Ok(with_link(
        Json(body).into_response(),
        next.map(|(n, last)| format!("/v2/_catalog?n={n}&last={last}")),
    ))
}

/// `n` and `last` of a listing request.
struct Page {
    n: Option<usize>,
    last: Option<String>,
}

impl Page {
    fn from_query(query: &Query) -> Result<Page, ApiError> {
        let n = match query.get("n") {
            None | Some("") => None,
            Some(n) => Some(n.parse().map_err(|_| {
                ApiError::new(
                    ErrorCode::Unsupported,
                    format!("n={n:?} is not a number of entries"),
                )
                .with_status(StatusCode::BAD_REQUEST)
            })?),
        };
        Ok(Page {
            n,
            last: query.get("last").map(str::to_owned),
        })
    }

    /// The entries of this page from `sorted` (ascending), and `(n, last)` for the next
    /// page if there is one.
    fn select(
        &self,
        sorted: impl IntoIterator<Item = String>,
    ) -> (Vec<String>, Option<(usize, String)>) {
        let mut after = sorted
            .into_iter()
            .filter(|entry| self.last.as_ref().is_none_or(|last| entry > last));
        let Some(n) = self.n else {
            return (after.collect(), None);
        };
        let page: Vec<String> = after.by_ref().take(n).collect();
        // n = 0 is an empty page without a link, as the spec demands.
        let next = match page.last() {
            Some(last) if after.next().is_some() => Some((n, last.clone())),
            _ => None,
        };
        (page, next)
    }
}

fn with_link(mut response: Response, next: Option<String>) -> Response {
    if let Some(next) = next {
        set(
            response.headers_mut(),
            LINK,
            &format!("<{next}>; rel=\"next\""),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: Option<usize>, last: Option<&str>) -> Page {
        Page {
            n,
            last: last.map(str::to_owned),
        }
    }

    fn entries() -> Vec<String> {
        ["v1", "v2", "v3", "v4", "v5"].map(String::from).to_vec()
    }

    #[test]
    fn pages_follow_last_and_link_only_while_more_remain() {
        assert_eq!(page(None, None).select(entries()).0.len(), 5);
        let (first, next) = page(Some(2), None).select(entries());
        assert_eq!(first, ["v1", "v2"]);
        assert_eq!(next, Some((2, "v2".to_owned())));
        let (second, next) = page(Some(2), Some("v2")).select(entries());
        assert_eq!(second, ["v3", "v4"]);
        assert_eq!(next, Some((2, "v4".to_owned())));
        let (third, next) = page(Some(2), Some("v4")).select(entries());
        assert_eq!(third, ["v5"]);
        assert_eq!(next, None);
        let (exact, next) = page(Some(5), None).select(entries());
        assert_eq!(exact.len(), 5);
        assert_eq!(next, None);
        let (empty, next) = page(Some(0), None).select(entries());
        assert!(empty.is_empty());
        assert_eq!(next, None);
        assert_eq!(page(None, Some("v3")).select(entries()).0, ["v4", "v5"]);
    }
}
