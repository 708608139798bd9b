//! Settings: read once from environment variables (each also a CLI flag) and validated
//! before anything starts. Every error names the variable so an operator can fix it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::retry::RetrySchedule;

/// Command line of the `webhookd` binary.
#[derive(Debug, Parser)]
#[command(name = "webhookd", version, about = "Webhook delivery service: PostgreSQL is the queue.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub raw: RawSettings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the delivery workers (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run one maintenance pass now (partitions, retention) and print what it did.
    Maintenance {
        /// Run as if it were this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        now: Option<String>,
    },
    /// Exit 0 if the running service's /health answers 200, 1 otherwise (for container
    /// health checks: needs no curl).
    Healthcheck {
        /// URL to probe instead of http://<WEBHOOKD_LISTEN>/health.
        #[arg(long)]
        url: Option<String>,
    },
}

/// Settings exactly as given; [`Settings::from_raw`] validates them.
#[derive(Debug, Clone, Args, Default)]
pub struct RawSettings {
    /// PostgreSQL URL. Unset: run an embedded cluster under the data directory.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory for the embedded cluster and the generated admin token.
    #[arg(long, env = "WEBHOOKD_DATA_DIR", global = true)]
    pub data_dir: Option<String>,
    /// Address the HTTP API listens on.
    #[arg(long, env = "WEBHOOKD_LISTEN", global = true)]
    pub listen: Option<String>,
    /// Bearer token for the API. Unset: generated on first start and kept in the data directory.
    #[arg(long, env = "WEBHOOKD_ADMIN_TOKEN", global = true, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Waits between attempts, e.g. `10s,30s,1m,5m,15m` (6 attempts in all).
    #[arg(long, env = "WEBHOOKD_RETRY_SCHEDULE", global = true)]
    pub retry_schedule: Option<String>,
    /// Random extra wait added to each retry, as a fraction of it (0 turns jitter off).
    #[arg(long, env = "WEBHOOKD_RETRY_JITTER", global = true)]
    pub retry_jitter: Option<String>,
    /// Time limit for one delivery attempt (connect, send, and read the response).
    #[arg(long, env = "WEBHOOKD_DELIVERY_TIMEOUT", global = true)]
    pub delivery_timeout: Option<String>,
    /// How long a claimed delivery stays leased before another worker may take it over.
    #[arg(long, env = "WEBHOOKD_LEASE_DURATION", global = true)]
    pub lease_duration: Option<String>,
    /// Largest accepted webhook body, in bytes (suffixes KiB and MiB allowed).
    #[arg(long, env = "WEBHOOKD_MAX_PAYLOAD", global = true)]
    pub max_payload: Option<String>,
    /// Deliveries sent at once by this instance (0: an API-only instance that delivers nothing).
    #[arg(long, env = "WEBHOOKD_WORKER_CONCURRENCY", global = true)]
    pub worker_concurrency: Option<String>,
    /// Most attempts one subscription may have in flight on this instance while its
    /// receiver answers (at most 4 while it has not answered for a second).
    #[arg(long, env = "WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION", global = true)]
    pub max_in_flight_per_subscription: Option<String>,
    /// Allow targets on loopback, private and other non-public addresses.
    #[arg(long, env = "WEBHOOKD_ALLOW_PRIVATE_TARGETS", global = true)]
    pub allow_private_targets: Option<String>,
    /// Apply migrations when `serve` starts.
    #[arg(long, env = "WEBHOOKD_AUTO_MIGRATE", global = true)]
    pub auto_migrate: Option<String>,
    /// Connections in the PostgreSQL pool.
    #[arg(long, env = "WEBHOOKD_DB_POOL_SIZE", global = true)]
    pub db_pool_size: Option<String>,
    /// Time given to in-flight deliveries on shutdown before they are released.
    #[arg(long, env = "WEBHOOKD_SHUTDOWN_GRACE", global = true)]
    pub shutdown_grace: Option<String>,
    /// Longest a worker sleeps without a wake-up before looking for due work.
    #[arg(long, env = "WEBHOOKD_POLL_INTERVAL", global = true)]
    pub poll_interval: Option<String>,
    /// Time-to-live of cached subscriptions.
    #[arg(long, env = "WEBHOOKD_SUBSCRIPTION_CACHE_TTL", global = true)]
    pub subscription_cache_ttl: Option<String>,
    /// How long attempt logs and finished deliveries are kept.
    #[arg(long, env = "WEBHOOKD_RETENTION", global = true)]
    pub retention: Option<String>,
    /// How often the background maintenance pass runs (on one instance at a time).
    #[arg(long, env = "WEBHOOKD_MAINTENANCE_INTERVAL", global = true)]
    pub maintenance_interval: Option<String>,
    /// Most subscriptions kept in the in-process cache.
    #[arg(long, env = "WEBHOOKD_SUBSCRIPTION_CACHE_CAPACITY", global = true)]
    pub subscription_cache_capacity: Option<String>,
    /// Optional Redis shared by instances as a second cache level.
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Longest wait for Redis before falling back to PostgreSQL.
    #[arg(long, env = "WEBHOOKD_REDIS_TIMEOUT", global = true)]
    pub redis_timeout: Option<String>,
    /// How long the previous secret stays valid after a rotation.
    #[arg(long, env = "WEBHOOKD_SECRET_ROTATION_OVERLAP", global = true)]
    pub secret_rotation_overlap: Option<String>,
    /// Time a client has to send a request's headers (also closes idle keep-alive connections).
    #[arg(long, env = "WEBHOOKD_HTTP_HEADER_TIMEOUT", global = true)]
    pub http_header_timeout: Option<String>,
    /// Time a client has to send a request's body once its headers arrived.
    #[arg(long, env = "WEBHOOKD_HTTP_BODY_TIMEOUT", global = true)]
    pub http_body_timeout: Option<String>,
    /// Most client connections served at once (default 4096, fewer if the open-files limit is low).
    #[arg(long, env = "WEBHOOKD_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<String>,
    /// Without WEBHOOKD_ADMIN_TOKEN: `generate` one into the data directory, or
    /// `require-or-volume` (the container image): generate only onto a mounted volume.
    #[arg(long, env = "WEBHOOKD_ADMIN_TOKEN_POLICY", global = true)]
    pub admin_token_policy: Option<String>,
    /// Key that encrypts subscription secrets at rest: 32 random bytes in base64.
    #[arg(long, env = "WEBHOOKD_ENCRYPTION_KEY", global = true, hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// The key before WEBHOOKD_ENCRYPTION_KEY, while secrets are re-encrypted after a key rotation.
    #[arg(long, env = "WEBHOOKD_PREVIOUS_ENCRYPTION_KEY", global = true, hide_env_values = true)]
    pub previous_encryption_key: Option<String>,
    /// Log format: `pretty` or `json`.
    #[arg(long, env = "WEBHOOKD_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
}

/// A secret setting (token, URL with a password, key) that never shows up in logs or
/// debug output.
#[derive(Clone, Debug)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// What to do when no admin token is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminTokenPolicy {
    /// Generate one and keep it in the data directory (the default for `cargo run`).
    Generate,
    /// Generate one only if the data directory is a mounted volume, where it survives a
    /// restart; otherwise refuse to start (a container would mint a new token every time).
    RequireOrVolume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Validated settings of one webhookd process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Option<Secret>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub admin_token_policy: AdminTokenPolicy,
    pub http: HttpSettings,
    pub delivery: DeliverySettings,
    pub max_payload_bytes: usize,
    pub allow_private_targets: bool,
    pub auto_migrate: bool,
    pub db_pool_size: u32,
    pub shutdown_grace: Duration,
    pub subscription_cache_ttl: Duration,
    pub secret_rotation_overlap: Duration,
    pub retention: Duration,
    pub maintenance_interval: Duration,
    pub subscription_cache_capacity: u64,
    pub redis_url: Option<Secret>,
    pub redis_timeout: Duration,
    /// Base64 keys for secrets at rest (checked to be 32 bytes each).
    pub encryption_key: Option<Secret>,
    pub previous_encryption_key: Option<Secret>,
    pub log_format: LogFormat,
}

/// Limits of the HTTP server (see `http_server.rs`).
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// `None`: derived from the open-files limit at start.
    pub max_connections: Option<usize>,
}

/// What the delivery engine needs to know.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry_schedule: RetrySchedule,
    pub timeout: Duration,
    pub lease_duration: Duration,
    pub concurrency: usize,
    pub max_in_flight_per_subscription: usize,
    pub poll_interval: Duration,
}

/// A setting that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError { variable, reason: reason.into() }
}

impl Settings {
    /// Validates every setting, applying defaults for the unset ones.
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let timeout = duration_or(&raw.delivery_timeout, "WEBHOOKD_DELIVERY_TIMEOUT", "10s")?;
        let lease_duration = match &raw.lease_duration {
            Some(_) => duration_or(&raw.lease_duration, "WEBHOOKD_LEASE_DURATION", "0s")?,
            // Long enough that a live attempt always finishes (or times out) first.
            None => timeout * 2 + Duration::from_secs(30),
        };
        if lease_duration <= timeout {
            return Err(invalid(
                "WEBHOOKD_LEASE_DURATION",
                "must be longer than WEBHOOKD_DELIVERY_TIMEOUT, or a live attempt could be delivered twice",
            ));
        }
        let jitter = match raw.retry_jitter.as_deref() {
            None => 0.1,
            Some(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|j| (0.0..=1.0).contains(j))
                .ok_or_else(|| invalid("WEBHOOKD_RETRY_JITTER", "expected a fraction between 0 and 1"))?,
        };
        let schedule_text = raw.retry_schedule.as_deref().unwrap_or("10s,30s,1m,5m,15m");
        let retry_schedule = RetrySchedule::parse(schedule_text, jitter)
            .map_err(|reason| invalid("WEBHOOKD_RETRY_SCHEDULE", reason))?;

        let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8000");
        let listen = listen.parse().map_err(|_| {
            invalid("WEBHOOKD_LISTEN", format!("`{listen}` is not an address like 127.0.0.1:8000"))
        })?;

        let admin_token = match raw.admin_token.as_deref() {
            None => None,
            Some(token) if token.len() < 16 => {
                return Err(invalid("WEBHOOKD_ADMIN_TOKEN", "must be at least 16 characters"));
            }
            Some(token) => Some(Secret::new(token)),
        };
        let database_url = match raw.database_url.as_deref() {
            None | Some("") => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Some(Secret::new(url))
            }
            Some(_) => return Err(invalid("DATABASE_URL", "expected a postgres:// URL")),
        };

        Ok(Settings {
            database_url,
            data_dir: PathBuf::from(raw.data_dir.as_deref().unwrap_or("./data")),
            listen,
            admin_token,
            admin_token_policy: match raw.admin_token_policy.as_deref().unwrap_or("generate") {
                "generate" => AdminTokenPolicy::Generate,
                "require-or-volume" => AdminTokenPolicy::RequireOrVolume,
                other => {
                    return Err(invalid(
                        "WEBHOOKD_ADMIN_TOKEN_POLICY",
                        format!("`{other}` is not `generate` or `require-or-volume`"),
                    ));
                }
            },
            http: HttpSettings {
                header_timeout: duration_or(&raw.http_header_timeout, "WEBHOOKD_HTTP_HEADER_TIMEOUT", "10s")?,
                body_timeout: duration_or(&raw.http_body_timeout, "WEBHOOKD_HTTP_BODY_TIMEOUT", "30s")?,
                max_connections: match &raw.max_connections {
                    None => None,
                    Some(_) => Some(number_or(&raw.max_connections, "WEBHOOKD_MAX_CONNECTIONS", 0, 1..=1_000_000)?),
                },
            },
            delivery: DeliverySettings {
                retry_schedule,
                timeout,
                lease_duration,
                concurrency: number_or(&raw.worker_concurrency, "WEBHOOKD_WORKER_CONCURRENCY", 512, 0..=10_000)?,
                max_in_flight_per_subscription: number_or(
                    &raw.max_in_flight_per_subscription,
                    "WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION",
                    64,
                    1..=10_000,
                )?,
                poll_interval: duration_or(&raw.poll_interval, "WEBHOOKD_POLL_INTERVAL", "5s")?,
            },
            max_payload_bytes: byte_size_or(&raw.max_payload, "WEBHOOKD_MAX_PAYLOAD", 1024 * 1024)?,
            allow_private_targets: bool_or(&raw.allow_private_targets, "WEBHOOKD_ALLOW_PRIVATE_TARGETS", false)?,
            auto_migrate: bool_or(&raw.auto_migrate, "WEBHOOKD_AUTO_MIGRATE", true)?,
            db_pool_size: number_or(&raw.db_pool_size, "WEBHOOKD_DB_POOL_SIZE", 16, 2..=1000)? as u32,
            shutdown_grace: duration_or(&raw.shutdown_grace, "WEBHOOKD_SHUTDOWN_GRACE", "30s")?,
            subscription_cache_ttl: duration_or(
                &raw.subscription_cache_ttl,
                "WEBHOOKD_SUBSCRIPTION_CACHE_TTL",
                "60s",
            )?,
            secret_rotation_overlap: duration_or(
                &raw.secret_rotation_overlap,
                "WEBHOOKD_SECRET_ROTATION_OVERLAP",
                "24h",
            )?,
            retention: duration_or(&raw.retention, "WEBHOOKD_RETENTION", "72h")?,
            maintenance_interval: duration_or(&raw.maintenance_interval, "WEBHOOKD_MAINTENANCE_INTERVAL", "5m")?,
            subscription_cache_capacity: number_or(
                &raw.subscription_cache_capacity,
                "WEBHOOKD_SUBSCRIPTION_CACHE_CAPACITY",
                100_000,
                1..=10_000_000,
            )? as u64,
            redis_url: match raw.redis_url.as_deref() {
                None | Some("") => None,
                Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => Some(Secret::new(url)),
                Some(_) => return Err(invalid("REDIS_URL", "expected a redis:// URL, or rediss:// for TLS")),
            },
            redis_timeout: duration_or(&raw.redis_timeout, "WEBHOOKD_REDIS_TIMEOUT", "100ms")?,
            encryption_key: encryption_key(&raw.encryption_key, "WEBHOOKD_ENCRYPTION_KEY")?,
            previous_encryption_key: encryption_key(&raw.previous_encryption_key, "WEBHOOKD_PREVIOUS_ENCRYPTION_KEY")?,
            log_format: match raw.log_format.as_deref().unwrap_or("pretty") {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                other => return Err(invalid("WEBHOOKD_LOG_FORMAT", format!("`{other}` is not `pretty` or `json`"))),
            },
        })
    }
}

fn encryption_key(value: &Option<String>, variable: &'static str) -> Result<Option<Secret>, ConfigError> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => {
            crate::secrets::Keyring::new(text, None).map_err(|reason| invalid(variable, reason))?;
            Ok(Some(Secret::new(text)))
        }
    }
}

fn duration_or(value: &Option<String>, variable: &'static str, default: &str) -> Result<Duration, ConfigError> {
    let text = value.as_deref().unwrap_or(default).trim();
    let duration = humantime::parse_duration(text)
        .map_err(|e| invalid(variable, format!("`{text}` is not a duration like 10s or 5m ({e})")))?;
    if duration.is_zero() && variable != "WEBHOOKD_LEASE_DURATION" {
        return Err(invalid(variable, "must be greater than zero"));
    }
    Ok(duration)
}

fn number_or(
    value: &Option<String>,
    variable: &'static str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let Some(text) = value.as_deref() else { return Ok(default) };
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| invalid(variable, format!("`{text}` is not a whole number in {range:?}")))
}

fn bool_or(value: &Option<String>, variable: &'static str, default: bool) -> Result<bool, ConfigError> {
    match value.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(invalid(variable, format!("`{v}` is not true or false"))),
    }
}

fn byte_size_or(value: &Option<String>, variable: &'static str, default: usize) -> Result<usize, ConfigError> {
    let Some(text) = value.as_deref() else { return Ok(default) };
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "kb" | "k" => 1024,
        "mib" | "mb" | "m" => 1024 * 1024,
        _ => return Err(invalid(variable, format!("`{text}` is not a size like 1048576, 512KiB or 1MiB"))),
    };
    digits
        .parse::<usize>()
        .ok()
        .map(|n| n * multiplier)
        .filter(|n| (1..=64 * 1024 * 1024).contains(n))
        .ok_or_else(|| invalid(variable, format!("`{text}` must be between 1 byte and 64 MiB")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_values() {
        let settings = Settings::from_raw(&RawSettings::default()).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(settings.max_payload_bytes, 1024 * 1024);
        assert_eq!(settings.delivery.timeout, Duration::from_secs(10));
        assert_eq!(settings.delivery.retry_schedule.max_attempts(), 6);
        assert!(!settings.allow_private_targets);
        assert!(settings.delivery.lease_duration > settings.delivery.timeout);
    }

    #[test]
    fn errors_name_the_variable() {
        let raw = RawSettings { retry_schedule: Some("soon".into()), ..Default::default() };
        let error = Settings::from_raw(&raw).unwrap_err();
        assert!(error.to_string().contains("WEBHOOKD_RETRY_SCHEDULE"), "{error}");

        let raw = RawSettings { max_payload: Some("lots".into()), ..Default::default() };
        assert_eq!(Settings::from_raw(&raw).unwrap_err().variable, "WEBHOOKD_MAX_PAYLOAD");

        let raw = RawSettings { allow_private_targets: Some("maybe".into()), ..Default::default() };
        assert_eq!(Settings::from_raw(&raw).unwrap_err().variable, "WEBHOOKD_ALLOW_PRIVATE_TARGETS");
    }

    #[test]
    fn sizes_accept_binary_suffixes() {
        let raw = RawSettings { max_payload: Some("512KiB".into()), ..Default::default() };
        assert_eq!(Settings::from_raw(&raw).unwrap().max_payload_bytes, 512 * 1024);
    }

    #[test]
    fn secrets_do_not_print() {
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }
}
