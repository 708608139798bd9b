//! What every request goes through around its route, in one layer:
//!
//! 1. it is counted in the request metrics, by route template (metrics.rs);
//! 2. past its deadline it answers 503 (deadline.rs);
//! 3. an overlong URI is refused with 414;
//! 4. trailing and repeated slashes are dropped from the path;
//! 5. `GET /` goes to the dashboard;
//! 6. a body that is not a webhook's is read whole, up to 64 KiB (body.rs);
//! 7. the admin token is put in the request's data, for the bearer check (auth.rs);
//!
//! and an error on the way becomes the standard error body.
//!
//! Why one layer and not poem's middleware chain: each layer takes the request by value
//! and nests its future in the next, so the request (a few hundred bytes) and the growing
//! future were copied at every step. With seven layers, memmove was about 12 % of the
//! service's CPU while ingesting; poem's path normalisation also ran a regex and built a
//! string for every request, and the token's data a copy of the secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::http::uri::PathAndQuery;
use poem::http::{Method, Uri};
use poem::{Endpoint, IntoResponse, Request, Response};

use super::auth::AdminToken;
use super::body::{limit_api_body, streams_its_body};
use super::deadline;
use super::metrics::RouteTemplates;
use crate::error::standard_error_response;
use crate::metrics::Metrics;

/// Longest accepted request URI, in bytes.
const MAX_URI_BYTES: usize = 8 * 1024;

/// The layer in front of every route (see the module's documentation).
pub struct Front<E> {
    pub inner: E,
    /// A request's whole time: its body's, then its database's.
    pub limit: Duration,
    pub metrics: Arc<Metrics>,
    pub routes: Arc<RouteTemplates>,
    pub admin_token: AdminToken,
}

impl<E: Endpoint> Endpoint for Front<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let method = request.method().clone();
        let route = self.routes.route_of(request.uri().path());
        // Boxed: kept inline, the route's future (the screening's and the endpoint's) was
        // copied whole into each layer of the request's future, 32 KiB a request in all,
        // and copying it was a tenth of webhookd's CPU in saturated ingest (`memmove`).
        let response = deadline::answer_within(self.limit, &method, route, Box::pin(self.route(request))).await;
        self.metrics.http_request(method.as_str(), route, response.status().as_u16(), started.elapsed());
        Ok(response)
    }
}

impl<E: Endpoint> Front<E> {
    /// Screens the request, then answers it through its route; errors in the standard body.
    async fn route(&self, request: Request) -> Response {
        let answered = match screen(request).await {
            Ok(mut request) => {
                request.extensions_mut().insert(self.admin_token.clone());
                self.inner.call(request).await.map(IntoResponse::into_response)
            }
            Err(refused) => Err(refused),
        };
        match answered {
            Ok(response) => response,
            Err(error) => standard_error_response(error).await,
        }
    }
}

/// What is checked and mended before routing: steps 3 to 6 of the module's list.
async fn screen(mut request: Request) -> poem::Result<Request> {
    refuse_long_uri(request.uri())?;
    if let Some(uri) = normalized(request.uri()) {
        *request.uri_mut() = uri;
    }
    if request.uri().path() == "/" && request.method() == Method::GET {
        return Err(poem::Error::from_response(poem::web::Redirect::see_other("/ui").into_response()));
    }
    // Webhooks and events stream their bodies through `read_limited` after authentication,
    // against WEBHOOKD_MAX_PAYLOAD: a stranger cannot make us hold a megabyte each. Boxed,
    // and only for the other requests: reading a body is most of a route's future's size.
    if streams_its_body(request.uri().path()) {
        return Ok(request);
    }
    Box::pin(limit_api_body(request)).await
}

/// Refuses overlong URIs with 414, before any routing or parsing.
fn refuse_long_uri(uri: &Uri) -> poem::Result<()> {
    // A server reads the origin form (path and query) but a client may send the absolute
    // form: count what was sent, without building it.
    let length = uri.scheme_str().map_or(0, |scheme| scheme.len() + 3)
        + uri.authority().map_or(0, |authority| authority.as_str().len())
        + uri.path_and_query().map_or(0, |path| path.as_str().len());
    if length > MAX_URI_BYTES {
        return Err(poem::Error::from_string(
            format!("the request URI is {length} bytes long; the limit is {MAX_URI_BYTES}"),
            poem::http::StatusCode::URI_TOO_LONG,
        ));
    }
    Ok(())
}

/// The URI without trailing or repeated slashes in its path, or `None` when it has none
/// (nearly always: then nothing is allocated).
fn normalized(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let trailing = path.len() > 1 && path.ends_with('/');
    if !trailing && !path.contains("//") {
        return None;
    }
    let mut mended = String::with_capacity(path.len() + 1);
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        mended.push('/');
        mended.push_str(segment);
    }
    if mended.is_empty() {
        mended.push('/');
    }
    if let Some(query) = uri.query() {
        mended.push('?');
        mended.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(mended).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mended(uri: &str) -> Option<String> {
        normalized(&uri.parse().unwrap()).map(|uri| uri.to_string())
    }

    #[test]
    fn only_paths_with_extra_slashes_are_rewritten() {
        assert_eq!(mended("/subscriptions"), None);
        assert_eq!(mended("/subscriptions?limit=2"), None);
        assert_eq!(mended("/"), None);
        assert_eq!(mended("/subscriptions/").as_deref(), Some("/subscriptions"));
        assert_eq!(mended("/subscriptions//?limit=2").as_deref(), Some("/subscriptions?limit=2"));
        assert_eq!(mended("//ingest///x").as_deref(), Some("/ingest/x"));
        assert_eq!(mended("//").as_deref(), Some("/"));
    }

    #[test]
    fn the_uri_is_measured_as_sent() {
        let long = format!("/subscriptions?q={}", "a".repeat(MAX_URI_BYTES));
        assert!(refuse_long_uri(&long.parse().unwrap()).is_err());
        assert!(refuse_long_uri(&"/subscriptions?limit=2".parse().unwrap()).is_ok());
        let absolute: Uri = format!("http://example.com{}", "/a".repeat(MAX_URI_BYTES / 2 - 8)).parse().unwrap();
        assert_eq!(absolute.to_string().len(), MAX_URI_BYTES + 2);
        assert!(refuse_long_uri(&absolute).is_err(), "the scheme and host count too");
    }
}
