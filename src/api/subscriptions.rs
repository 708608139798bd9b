//! `/subscriptions`: create, read, list, update and delete the endpoints webhooks go to.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::auth::AdminAuth;
use super::{page_limit, ApiContext, ApiTags};
use crate::db::subscriptions::{self as store, SubscriptionFields, SubscriptionRow};
use crate::db::deliveries;
use crate::delivery::backlog;
use crate::delivery::ssrf;
use crate::domain::event_type::validate_event_pattern;
use crate::domain::signing::generate_secret;
use crate::domain::lifecycle::DisabledReason;
use crate::domain::SubscriptionId;
use crate::secrets::SecretValue;
use crate::domain::target_url::TargetUrl;
use crate::error::ApiError;
use crate::ui::portal_link::IssuedLink;

/// Most event type filters one subscription may have.
const MAX_EVENT_TYPES: usize = 100;
/// Longest name, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Accepted secret lengths, in bytes.
const SECRET_LEN: std::ops::RangeInclusive<usize> = 8..=256;
/// Accepted rate limits, in requests per second.
const RATE_LIMIT: std::ops::RangeInclusive<i32> = 1..=100_000;

/// A subscription as clients see it. The secret is never returned, only whether there is one.
#[derive(Debug, Object)]
pub struct Subscription {
    pub id: Uuid,
    pub name: Option<String>,
    /// Where webhooks are POSTed.
    pub target_url: String,
    /// Event types delivered; empty means all.
    pub event_types: Vec<String>,
    /// Inactive subscriptions refuse ingest and their queued deliveries wait.
    pub is_active: bool,
    /// Whether a secret_key is set (it is never shown).
    pub has_secret: bool,
    /// Most requests a second to the receiver from each webhookd instance; null: no limit.
    pub rate_limit: Option<i32>,
    /// Deliveries also carry GitHub's `X-Hub-Signature-256` (see `CreateSubscription`).
    pub github_signature: bool,
    /// Why webhookd took the subscription out of service (`is_active` is then false):
    /// `endpoint_gone` (the receiver answered 410) or `failing`; null when it did not.
    /// `PATCH {"is_active": true}` re-enables it and clears this.
    pub disabled_reason: Option<DisabledReason>,
    /// When it was disabled.
    pub disabled_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl From<&SubscriptionRow> for Subscription {
    fn from(row: &SubscriptionRow) -> Self {
        Self {
            id: row.id.into(),
            name: row.name.clone(),
            target_url: row.target_url.clone(),
            event_types: row.event_types.clone(),
            is_active: row.is_active,
            has_secret: row.secret_key.is_some(),
            rate_limit: row.rate_limit,
            github_signature: row.github_signature,
            disabled_reason: row.disabled_reason,
            disabled_at: row.disabled_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A new subscription.
#[derive(Object)]
#[oai(deny_unknown_fields, example)]
pub struct CreateSubscription {
    /// Absolute http(s) URL webhooks are POSTed to.
    pub target_url: String,
    /// Shared secret used to sign deliveries; write-only.
    pub secret_key: Option<String>,
    /// Event types to deliver (`order.created`, or a prefix like `order.*`); absent or empty: all.
    pub event_types: Option<Vec<String>>,
    pub name: Option<String>,
    /// Defaults to true.
    pub is_active: Option<bool>,
    /// Most requests a second to the receiver from each instance (1 to 100000); absent: no limit.
    pub rate_limit: Option<i32>,
    /// Also sign deliveries with GitHub's `X-Hub-Signature-256` (default false), for
    /// receivers that only know that scheme. Off by default because that header has no
    /// timestamp and is exactly what `POST /ingest` accepts: whoever sees a delivery (the
    /// receiver, or anyone on the path of an http:// target) could post it to ingest again.
    /// Turn it on only for subscriptions whose producers do not sign ingest with
    /// `X-Hub-Signature-256`. Standard Webhooks headers are on every signed delivery.
    pub github_signature: Option<bool>,
}

impl poem_openapi::types::Example for CreateSubscription {
    fn example() -> Self {
        Self {
            target_url: "https://example.com/webhooks".into(),
            secret_key: Some("a-long-random-secret".into()),
            event_types: Some(vec!["order.*".into()]),
            name: Some("Orders to ACME".into()),
            is_active: Some(true),
            rate_limit: None,
            github_signature: None,
        }
    }
}

/// A full replacement (PUT). An absent `secret_key` keeps the current secret (it cannot be
/// read back, so a read-modify-write client would otherwise erase it); `null` removes it.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct ReplaceSubscription {
    pub target_url: String,
    pub secret_key: MaybeUndefined<String>,
    pub event_types: Option<Vec<String>>,
    pub name: Option<String>,
    pub is_active: Option<bool>,
    pub rate_limit: Option<i32>,
    /// Defaults to false.
    pub github_signature: Option<bool>,
}

/// A partial update (PATCH): only the fields present change; `null` clears `name`,
/// `secret_key` or `rate_limit`.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PatchSubscription {
    pub target_url: Option<String>,
    pub secret_key: MaybeUndefined<String>,
    pub event_types: Option<Vec<String>>,
    pub name: MaybeUndefined<String>,
    pub is_active: Option<bool>,
    pub rate_limit: MaybeUndefined<i32>,
    pub github_signature: Option<bool>,
}

/// One page of subscriptions.
#[derive(Debug, Object)]
pub struct SubscriptionPage {
    pub items: Vec<Subscription>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(ApiResponse)]
enum Created {
    /// The subscription was created.
    #[oai(status = 201)]
    Created(Json<Subscription>),
}

/// A new secret, shown this once.
#[derive(Object)]
pub struct RotatedSecret {
    /// The new `whsec_` secret: store it now, it is never shown again.
    pub secret_key: String,
    /// Until when the previous secret is still accepted and signed for (null if there was none).
    pub previous_secret_expires_at: Option<OffsetDateTime>,
}

/// How long a new portal link lasts.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PortalLinkRequest {
    /// A duration such as `24h`, `7d` or `30m` (1s to 30d); default 24h.
    pub expires_in: Option<String>,
}

/// A portal link: hand the URL to the subscriber.
#[derive(Object)]
pub struct PortalLink {
    /// Opens the portal for this one subscription; whoever has it can use it until it expires.
    pub url: String,
    pub expires_at: OffsetDateTime,
}

#[derive(ApiResponse)]
enum PortalLinkCreated {
    /// The link was issued.
    #[oai(status = 201)]
    Created(Json<PortalLink>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Done (a deleted subscription's waiting deliveries are ended as failed; its logs stay
    /// until retention).
    #[oai(status = 204)]
    NoContent,
}

pub struct SubscriptionsApi {
    context: ApiContext,
}

impl SubscriptionsApi {
    pub fn new(context: ApiContext) -> Self {
        Self { context }
    }
}

#[OpenApi(tag = "ApiTags::Subscriptions")]
impl SubscriptionsApi {
    /// Create a subscription.
    #[oai(path = "/subscriptions", method = "post")]
    async fn create(&self, _auth: AdminAuth, body: Json<CreateSubscription>) -> Result<Created, ApiError> {
        let body = body.0;
        let fields = SubscriptionFields {
            name: body.name,
            target_url: body.target_url,
            secret_key: body.secret_key,
            event_types: body.event_types.unwrap_or_default(),
            is_active: body.is_active.unwrap_or(true),
            rate_limit: body.rate_limit,
            github_signature: body.github_signature.unwrap_or(false),
        };
        let row = self.create_row(fields).await?;
        Ok(Created::Created(Json((&row).into())))
    }

    /// List subscriptions, oldest first, a page at a time.
    #[oai(path = "/subscriptions", method = "get")]
    async fn list(
        &self,
        _auth: AdminAuth,
        /// Page size, 1 to 100 (default 50).
        limit: Query<Option<i64>>,
        /// `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only subscriptions whose name has words starting with each word of `q`
        /// (case-insensitive, e.g. `acme ord` finds "Orders to ACME"); indexed full-text search.
        q: Query<Option<String>>,
    ) -> Result<Json<SubscriptionPage>, ApiError> {
        let limit = page_limit(limit.0, 50, 100)?;
        let cursor = match cursor.0.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<SubscriptionId>()
                    .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API returned"))?,
            ),
        };
        let mut rows = match q.0.as_deref().filter(|q| !q.trim().is_empty()) {
            None => store::list(&self.context.pool, cursor, limit + 1).await?,
            Some(q) => match store::name_query(q) {
                Some(query) => store::search(&self.context.pool, &query, None, cursor, limit + 1).await?,
                None => Vec::new(), // no letter or digit: no name can match
            },
        };
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|row| row.id.to_string())
        } else {
            None
        };
        Ok(Json(SubscriptionPage { items: rows.iter().map(Subscription::from).collect(), next_cursor }))
    }

    /// Get one subscription.
    #[oai(path = "/subscriptions/:id", method = "get")]
    async fn get(&self, _auth: AdminAuth, id: Path<Uuid>) -> Result<Json<Subscription>, ApiError> {
        match store::select(&self.context.pool, id.0.into()).await? {
            Some(row) if row.deleted_at.is_none() => Ok(Json((&row).into())),
            _ => Err(no_subscription()),
        }
    }

    /// Change some fields of a subscription.
    #[oai(path = "/subscriptions/:id", method = "patch")]
    async fn patch(&self, _auth: AdminAuth, id: Path<Uuid>, body: Json<PatchSubscription>) -> Result<Json<Subscription>, ApiError> {
        let patch = body.0;
        let sets_secret = !patch.secret_key.is_undefined();
        let new_target = patch.target_url.clone();
        self.modify(id.0.into(), sets_secret, new_target.as_deref(), |current| SubscriptionFields {
            target_url: patch.target_url.unwrap_or(current.target_url),
            secret_key: merge_nullable(patch.secret_key, stored(current.secret_key)),
            event_types: patch.event_types.unwrap_or(current.event_types),
            name: merge_nullable(patch.name, current.name),
            is_active: patch.is_active.unwrap_or(current.is_active),
            rate_limit: merge_nullable(patch.rate_limit, current.rate_limit),
            github_signature: patch.github_signature.unwrap_or(current.github_signature),
        })
        .await
    }

    /// Replace a subscription (see the schema for how `secret_key` is treated).
    #[oai(path = "/subscriptions/:id", method = "put")]
    async fn put(&self, _auth: AdminAuth, id: Path<Uuid>, body: Json<ReplaceSubscription>) -> Result<Json<Subscription>, ApiError> {
        let replacement = body.0;
        let sets_secret = !replacement.secret_key.is_undefined();
        let new_target = replacement.target_url.clone();
        self.modify(id.0.into(), sets_secret, Some(&new_target), |current| SubscriptionFields {
            target_url: replacement.target_url,
            secret_key: merge_nullable(replacement.secret_key, stored(current.secret_key)),
            event_types: replacement.event_types.unwrap_or_default(),
            name: replacement.name,
            is_active: replacement.is_active.unwrap_or(true),
            rate_limit: replacement.rate_limit,
            github_signature: replacement.github_signature.unwrap_or(false),
        })
        .await
    }

    /// Generate a new secret (`whsec_` + 32 random bytes, base64), returned only here.
    ///
    /// During `WEBHOOKD_SECRET_ROTATION_OVERLAP` (default 24h) deliveries are signed with
    /// both the new and the previous secret, and inbound signatures with either are accepted.
    #[oai(path = "/subscriptions/:id/rotate-secret", method = "post")]
    async fn rotate_secret(&self, _auth: AdminAuth, id: Path<Uuid>) -> Result<Json<RotatedSecret>, ApiError> {
        self.rotate(id.0.into()).await.map(Json)
    }

    /// Delete a subscription. Its waiting deliveries stop; its logs stay until retention.
    #[oai(path = "/subscriptions/:id", method = "delete")]
    async fn delete(&self, _auth: AdminAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        self.remove(id.0.into()).await?;
        Ok(Deleted::NoContent)
    }

    /// Create a link to the subscriber portal: a page where the receiver sees this
    /// subscription's deliveries and attempts, retries failed ones, sends a test event,
    /// rotates the secret and changes the target URL, and nothing else.
    ///
    /// The link is signed by the server (no row is stored) and expires after `expires_in`
    /// (default 24h, at most 30d). `DELETE /subscriptions/{id}/portal-links` revokes every
    /// link issued so far; changing the admin token revokes all links of all subscriptions.
    #[oai(path = "/subscriptions/:id/portal-link", method = "post")]
    async fn create_portal_link(
        &self,
        request: &poem::Request,
        _auth: AdminAuth,
        id: Path<Uuid>,
        body: Json<PortalLinkRequest>,
    ) -> Result<PortalLinkCreated, ApiError> {
        let lifetime = match body.0.expires_in.as_deref() {
            None => crate::ui::portal_link::DEFAULT_LIFETIME,
            Some(text) => crate::ui::portal_link::parse_lifetime(text).map_err(|m| ApiError::bad_request("invalid_expires_in", m))?,
        };
        let id = SubscriptionId::from(id.0);
        let link = self.issue_portal_link(id, lifetime).await?;
        let url = crate::ui::portal_url(&self.context.settings, request, &link.token);
        tracing::info!(subscription.id = %id, "portal link issued");
        Ok(PortalLinkCreated::Created(Json(PortalLink { url, expires_at: link.expires_at })))
    }

    /// Revoke every portal link issued so far for this subscription (links issued later work).
    #[oai(path = "/subscriptions/:id/portal-links", method = "delete")]
    async fn revoke_portal_links(&self, _auth: AdminAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        let id = SubscriptionId::from(id.0);
        if !store::revoke_portal_links(&self.context.pool, id).await? {
            return Err(no_subscription());
        }
        tracing::info!(subscription.id = %id, "portal links revoked");
        Ok(Deleted::NoContent)
    }
}

impl SubscriptionsApi {
    /// A portal link for live subscription `id`, issued at the database's time (the clock
    /// its revocation is compared with).
    pub(crate) async fn issue_portal_link(&self, id: SubscriptionId, lifetime: Duration) -> Result<IssuedLink, ApiError> {
        let issued_at = store::portal_link_issue_time(&self.context.pool, id).await?.ok_or_else(no_subscription)?;
        Ok(self.context.portal_links.signer().await?.issue(id, issued_at, lifetime))
    }

    /// Validates, seals the secret of, and stores a new subscription.
    pub(crate) async fn create_row(&self, fields: SubscriptionFields) -> Result<SubscriptionRow, ApiError> {
        self.check_target(&fields.target_url).await?;
        self.validate(&fields, true)?;
        let id = SubscriptionId::new();
        let fields = self.seal_secret(id, fields);
        let row = store::insert(&self.context.pool, id, &fields).await?;
        tracing::info!(subscription.id = %row.id, "subscription created");
        Ok(row)
    }

    /// Replaces the secret with a generated one (returned this once), keeping the old one
    /// valid for the rotation overlap.
    pub(crate) async fn rotate(&self, id: SubscriptionId) -> Result<RotatedSecret, ApiError> {
        let secret = generate_secret();
        let overlap = self.context.settings.secret_rotation_overlap.as_secs_f64();
        // A secret corrupt at rest is not kept for the overlap: it could verify and sign
        // nothing, and kept, it would stay in the way of a change of encryption key.
        let current_unreadable = matches!(self.context.subscriptions.get(id).await, Err(error) if error.is_unreadable_secret());
        let mut tx = self.context.pool.begin().await?;
        let sealed = self.context.seal(id, &secret);
        let row = store::rotate_secret(&mut *tx, id, &sealed, overlap, !current_unreadable).await?.ok_or_else(no_subscription)?;
        store::notify_changed(&mut *tx, id).await?;
        tx.commit().await?;
        self.context.subscriptions.invalidate(id).await;
        tracing::info!(subscription.id = %id, "subscription secret rotated");
        Ok(RotatedSecret { secret_key: secret, previous_secret_expires_at: row.previous_secret_expires_at })
    }

    /// Soft-deletes a subscription and ends its waiting deliveries as failed (a batch once
    /// the deletion is committed, the rest in the background: `delivery::backlog`).
    pub(crate) async fn remove(&self, id: SubscriptionId) -> Result<(), ApiError> {
        let mut tx = self.context.pool.begin().await?;
        deliveries::take_backlog_turn(&mut *tx, id).await?;
        if !store::soft_delete(&mut *tx, id).await? {
            return Err(no_subscription());
        }
        store::notify_changed(&mut *tx, id).await?;
        tx.commit().await?;
        self.context.subscriptions.invalidate(id).await;
        let cancelled = backlog::start_moving(&self.context.pool, self.context.settings.database.statement_deadline, &self.context.waker, id).await;
        tracing::info!(subscription.id = %id, cancelled, "subscription deleted");
        Ok(())
    }

    /// Read-modify-write of one subscription under its row lock, pausing or resuming its
    /// waiting deliveries when `is_active` changes (a batch once the change is committed, the
    /// rest in the background: `delivery::backlog`).
    /// Applies `change` to the locked row. `sets_secret`: the client gave `secret_key` (a
    /// value or null), which revokes every earlier secret, rotation overlap included.
    ///
    /// `new_target`: the `target_url` the request sends, if it sends one. One that differs
    /// from the stored target is checked before the row is locked (the check may resolve DNS
    /// for seconds, and the outcome writer may need the row meanwhile). The stored target was
    /// checked when it was set and is not checked again: pausing a subscription whose host
    /// now resolves to a private address must not fail on a field the request does not
    /// change (a PUT or a form sends it unchanged).
    pub(crate) async fn modify(
        &self,
        id: SubscriptionId,
        sets_secret: bool,
        new_target: Option<&str>,
        change: impl FnOnce(SubscriptionRow) -> SubscriptionFields,
    ) -> Result<Json<Subscription>, ApiError> {
        if let Some(target) = new_target
            && store::select(&self.context.pool, id).await?.is_none_or(|stored| stored.target_url != target)
        {
            self.check_target(target).await?;
        }
        let mut tx = self.context.pool.begin().await?;
        deliveries::take_backlog_turn(&mut *tx, id).await?;
        let current = store::select_for_update(&mut *tx, id).await?.ok_or_else(no_subscription)?;
        let was_active = current.is_active;
        let fields = change(current);
        self.validate(&fields, sets_secret)?;
        let fields = if sets_secret { self.seal_secret(id, fields) } else { fields };
        let row = store::update(&mut *tx, id, &fields, sets_secret).await?.ok_or_else(no_subscription)?;
        store::notify_changed(&mut *tx, id).await?;
        tx.commit().await?;
        self.context.subscriptions.invalidate(id).await;
        if was_active != row.is_active {
            backlog::start_moving(&self.context.pool, self.context.settings.database.statement_deadline, &self.context.waker, id).await;
        }
        if !was_active && row.is_active {
            self.context.waker.wake();
        }
        tracing::info!(subscription.id = %id, "subscription updated");
        Ok(Json((&row).into()))
    }

    /// A client-given secret as it is to be stored.
    fn seal_secret(&self, owner: SubscriptionId, mut fields: SubscriptionFields) -> SubscriptionFields {
        fields.secret_key = fields.secret_key.map(|secret| self.context.seal(owner, &secret));
        fields
    }

    /// A target to be stored: a valid URL that does not reach a private address unless
    /// allowed (which may take a DNS lookup).
    async fn check_target(&self, target: &str) -> Result<(), ApiError> {
        let target = TargetUrl::parse(target).map_err(|m| ApiError::bad_request("invalid_target_url", m))?;
        if !self.context.settings.delivery.allow_private_targets {
            ssrf::check_target(&target).await.map_err(|m| ApiError::bad_request("target_not_allowed", m))?;
        }
        Ok(())
    }

    /// Checks every field but the target's address ([`Self::check_target`]).
    /// `new_secret`: `secret_key` holds a secret the client just gave (not the stored one).
    fn validate(&self, fields: &SubscriptionFields, new_secret: bool) -> Result<(), ApiError> {
        let invalid = |code: &str, message: String| ApiError::bad_request(code, message);
        TargetUrl::parse(&fields.target_url).map_err(|m| invalid("invalid_target_url", m))?;
        if let Some(secret) = fields.secret_key.as_ref().filter(|_| new_secret) {
            if secret.contains('\0') {
                return Err(invalid("invalid_secret_key", "secret_key must not contain the NUL character".into()));
            }
            if !SECRET_LEN.contains(&secret.len()) {
                return Err(invalid("invalid_secret_key", format!("secret_key must be {} to {} bytes long", SECRET_LEN.start(), SECRET_LEN.end())));
            }
            if crate::secrets::is_sealed(secret) {
                return Err(invalid("invalid_secret_key", "secret_key must not start with `enc:v1:` (how encrypted secrets are stored)".into()));
            }
        }
        if let Some(name) = &fields.name {
            if name.chars().count() > MAX_NAME_CHARS {
                return Err(invalid("invalid_name", format!("name must be at most {MAX_NAME_CHARS} characters")));
            }
            if name.contains('\0') {
                return Err(invalid("invalid_name", "name must not contain the NUL character".into()));
            }
        }
        if fields.rate_limit.is_some_and(|rate| !RATE_LIMIT.contains(&rate)) {
            return Err(invalid("invalid_rate_limit", format!("rate_limit must be {} to {} requests a second", RATE_LIMIT.start(), RATE_LIMIT.end())));
        }
        if fields.event_types.len() > MAX_EVENT_TYPES {
            return Err(invalid("invalid_event_types", format!("at most {MAX_EVENT_TYPES} event types are allowed")));
        }
        for pattern in &fields.event_types {
            validate_event_pattern(pattern).map_err(|m| invalid("invalid_event_types", m))?;
        }
        Ok(())
    }
}

/// A subscription's fields as stored, to be changed in part and written back (the secret
/// unchanged).
pub(crate) fn fields_of(row: SubscriptionRow) -> SubscriptionFields {
    SubscriptionFields {
        name: row.name,
        target_url: row.target_url,
        secret_key: stored(row.secret_key),
        event_types: row.event_types,
        is_active: row.is_active,
        rate_limit: row.rate_limit,
        github_signature: row.github_signature,
    }
}

/// A secret as stored, to be written back unchanged.
fn stored(secret: Option<SecretValue>) -> Option<String> {
    secret.map(|s| s.expose().to_owned())
}

/// Applies a nullable field of a partial update: absent keeps, null clears, a value sets.
fn merge_nullable<T>(update: MaybeUndefined<T>, current: Option<T>) -> Option<T> {
    match update {
        MaybeUndefined::Undefined => current,
        MaybeUndefined::Null => None,
        MaybeUndefined::Value(value) => Some(value),
    }
}

fn no_subscription() -> ApiError {
    ApiError::not_found("no subscription with this id")
}
