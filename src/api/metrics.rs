//! `GET /metrics` for Prometheus, and the per-request counting behind its HTTP series.
//!
//! Requests are labelled by route template (`/ingest/{subscription_id}`), taken from the
//! OpenAPI document itself, so a new operation is labelled without being listed here and a
//! scanner's random paths all count as `unmatched` instead of growing the label set.

use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, OpenApi};

use super::auth::AdminAuth;
use super::{ApiContext, ApiTags};
use crate::error::ApiError;

#[derive(ApiResponse)]
enum MetricsResponse {
    /// Every metric in the Prometheus text format.
    #[oai(status = 200, content_type = "text/plain; version=0.0.4; charset=utf-8")]
    Ok(PlainText<String>),
}

pub struct MetricsApi {
    context: ApiContext,
}

impl MetricsApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[OpenApi(tag = "ApiTags::Health")]
impl MetricsApi {
    /// Metrics for Prometheus (scrape with the admin token as a bearer token).
    #[oai(path = "/metrics", method = "get")]
    /// The queue gauges keep their last values while the database is unreachable.
    async fn metrics(&self, _auth: AdminAuth) -> Result<MetricsResponse, ApiError> {
        Ok(MetricsResponse::Ok(PlainText(self.context.metrics.render(&self.context.pool, &self.context.writers).await)))
    }
}

/// The route templates of the service, matched segment by segment.
pub struct RouteTemplates {
    templates: Vec<(Vec<Segment>, &'static str)>,
}

enum Segment {
    Literal(String),
    Parameter,
}

/// The label of a path that matches no template.
pub const UNMATCHED: &str = "unmatched";

impl RouteTemplates {
    /// Reads the paths of an OpenAPI document (as JSON), plus `extra` templates served
    /// outside it. The templates live as long as the process (they are label values).
    pub fn from_openapi(document: &str, extra: &[&'static str]) -> Self {
        let document: serde_json::Value = serde_json::from_str(document).unwrap_or_default();
        let paths = document["paths"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        let leaked = paths.into_iter().map(|path| &*Box::leak(path.into_boxed_str()));
        let templates = leaked
            .chain(extra.iter().copied())
            .map(|template| (parse_template(template), template))
            .collect();
        Self { templates }
    }

    /// The template `path` belongs to, or [`UNMATCHED`]. A trailing slash is ignored, as
    /// the router ignores it.
    pub fn route_of(&self, path: &str) -> &'static str {
        let path = path.trim_end_matches('/');
        self.templates
            .iter()
            .find(|(template, _)| matches(template, path))
            .map_or(UNMATCHED, |(_, name)| name)
    }
}

fn parse_template(template: &str) -> Vec<Segment> {
    template
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(|s| if s.starts_with('{') { Segment::Parameter } else { Segment::Literal(s.to_owned()) })
        .collect()
}

/// Whether `path` (no trailing slash) has the template's segments. Called on every
/// request, so it walks the path without collecting it.
fn matches(template: &[Segment], path: &str) -> bool {
    let mut segments = path.split('/').skip(1);
    let all_match = template.iter().all(|expected| match (expected, segments.next()) {
        (Segment::Literal(literal), Some(segment)) => literal == segment,
        (Segment::Parameter, Some(segment)) => !segment.is_empty(),
        (_, None) => false,
    });
    all_match && segments.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_labelled_by_template_and_unknown_paths_share_one_label() {
        let document = r#"{"paths": {"/subscriptions": {}, "/subscriptions/{id}": {}, "/ingest/{subscription_id}": {}}}"#;
        let routes = RouteTemplates::from_openapi(document, &["/docs"]);
        assert_eq!(routes.route_of("/subscriptions"), "/subscriptions");
        assert_eq!(routes.route_of("/subscriptions/"), "/subscriptions");
        assert_eq!(routes.route_of("/subscriptions/0196abcd"), "/subscriptions/{id}");
        assert_eq!(routes.route_of("/ingest/x"), "/ingest/{subscription_id}");
        assert_eq!(routes.route_of("/docs"), "/docs");
        assert_eq!(routes.route_of("/wp-admin/setup.php"), UNMATCHED);
        assert_eq!(routes.route_of("/subscriptions/a/b/c"), UNMATCHED);
    }
}
