//! Settings: read once from environment variables (each also a command-line flag), parsed
//! into typed values by clap and checked before anything starts. Each setting is declared
//! once, with its variable, its default (shown by `webhookd --help`) and its parser; a bad
//! value exits with status 2 and a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::retry::RetrySchedule;

/// Command line of the `webhookd` binary.
#[derive(Debug, Parser)]
#[command(name = "webhookd", version, about = "Webhook delivery service: PostgreSQL is the queue.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
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
    /// Encrypt every stored secret with WEBHOOKD_ENCRYPTION_KEY (plaintext ones, and those
    /// sealed with WEBHOOKD_PREVIOUS_ENCRYPTION_KEY). Run once every instance has the key.
    EncryptSecrets,
    /// Exit 0 if the running service's /health answers 200, 1 otherwise (for container
    /// health checks: needs no curl).
    Healthcheck {
        /// URL to probe instead of http://<WEBHOOKD_LISTEN>/health.
        #[arg(long)]
        url: Option<String>,
    },
}

/// Every setting of one webhookd process.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Directory for the embedded cluster and the generated admin token.
    #[arg(long, env = "WEBHOOKD_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Bearer token for the API (16+ characters). Unset: generated on first start and kept
    /// in the data directory.
    #[arg(long, env = "WEBHOOKD_ADMIN_TOKEN", value_parser = parse_admin_token, hide_env_values = true, global = true)]
    pub admin_token: Option<Secret>,
    /// Without an admin token: `generate` one, or `require-or-volume` (the container image):
    /// generate only onto a mounted volume, else refuse to start.
    #[arg(long, env = "WEBHOOKD_ADMIN_TOKEN_POLICY", value_enum, default_value_t = AdminTokenPolicy::Generate, global = true)]
    pub admin_token_policy: AdminTokenPolicy,
    /// How long the previous secret stays valid after a rotation.
    #[arg(long, env = "WEBHOOKD_SECRET_ROTATION_OVERLAP", default_value = "24h", value_parser = positive_duration, global = true)]
    pub secret_rotation_overlap: Duration,
    /// Log format.
    #[arg(long, env = "WEBHOOKD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub delivery: DeliverySettings,
    #[command(flatten)]
    pub cache: CacheSettings,
    #[command(flatten)]
    pub retention: RetentionSettings,
}

/// The database.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseSettings {
    /// PostgreSQL URL (`sslmode`, `sslrootcert` as in libpq). Unset: run an embedded cluster
    /// under the data directory.
    #[arg(id = "database_url", long = "database-url", env = "DATABASE_URL", value_parser = parse_database_url, hide_env_values = true, global = true)]
    pub url: Option<Secret>,
    /// Connections in the PostgreSQL pool.
    #[arg(long = "db-pool-size", env = "WEBHOOKD_DB_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..=1000), global = true)]
    pub pool_size: u32,
    /// Longest the delivery engine and the ingest writer wait for one statement's answer;
    /// then the connection is dropped and the work retried on a new one. A database that
    /// vanishes without closing its sockets (a failover, a dropped NAT mapping) never
    /// answers, and nothing else would end the wait.
    #[arg(long = "db-statement-deadline", env = "WEBHOOKD_DB_STATEMENT_DEADLINE", default_value = "30s", value_parser = positive_duration, global = true)]
    pub statement_deadline: Duration,
    /// Apply migrations when `serve` starts.
    #[arg(long, env = "WEBHOOKD_AUTO_MIGRATE", default_value = "true", value_parser = BoolishValueParser::new(), action = ArgAction::Set, global = true)]
    pub auto_migrate: bool,
    /// Key that encrypts subscription secrets at rest: 32 random bytes in base64.
    #[arg(long, env = "WEBHOOKD_ENCRYPTION_KEY", value_parser = parse_encryption_key, hide_env_values = true, global = true)]
    pub encryption_key: Option<Secret>,
    /// The key before WEBHOOKD_ENCRYPTION_KEY, while secrets are re-encrypted after a key rotation.
    #[arg(long, env = "WEBHOOKD_PREVIOUS_ENCRYPTION_KEY", value_parser = parse_encryption_key, hide_env_values = true, global = true)]
    pub previous_encryption_key: Option<Secret>,
}

/// The HTTP server (see `http_server.rs`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpSettings {
    /// Address the HTTP API listens on.
    #[arg(long, env = "WEBHOOKD_LISTEN", default_value = "127.0.0.1:8000", global = true)]
    pub listen: SocketAddr,
    /// Time a client has to send a request's headers (also closes idle keep-alive connections).
    #[arg(long = "http-header-timeout", env = "WEBHOOKD_HTTP_HEADER_TIMEOUT", default_value = "10s", value_parser = positive_duration, global = true)]
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its headers arrived.
    #[arg(long = "http-body-timeout", env = "WEBHOOKD_HTTP_BODY_TIMEOUT", default_value = "30s", value_parser = positive_duration, global = true)]
    pub body_timeout: Duration,
    /// Most client connections served at once [default: 4096, fewer if the open-files limit is low].
    #[arg(long, env = "WEBHOOKD_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_connections: Option<u32>,
    /// Largest accepted webhook body (bytes, or with a unit: 512KiB, 1MiB; at most 64MiB).
    #[arg(long = "max-payload", env = "WEBHOOKD_MAX_PAYLOAD", default_value = "1MiB", value_parser = parse_payload_size, global = true)]
    pub max_payload: usize,
    /// The service's public base URL (e.g. https://hooks.example.com), used for portal links
    /// and accepted as the dashboard's origin. Unset: taken from each request's Host header.
    #[arg(long, env = "WEBHOOKD_PUBLIC_URL", value_parser = parse_public_url, global = true)]
    pub public_url: Option<url::Url>,
    /// Mark the dashboard's session cookie `Secure` (also when WEBHOOKD_PUBLIC_URL is https).
    #[arg(long = "ui-secure-cookies", env = "WEBHOOKD_UI_SECURE_COOKIES", default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set, global = true)]
    pub secure_cookies: bool,
}

/// The delivery engine.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Delivery")]
pub struct DeliverySettings {
    /// Waits between attempts: `n` intervals allow `n + 1` attempts (empty: a single attempt).
    /// Carries `retry_jitter` once the settings are checked.
    #[arg(long, env = "WEBHOOKD_RETRY_SCHEDULE", default_value = "10s,30s,1m,5m,15m", value_parser = parse_retry_schedule, global = true)]
    pub retry_schedule: RetrySchedule,
    /// Random extra wait added to each retry, as a fraction of it (0 turns jitter off).
    #[arg(long, env = "WEBHOOKD_RETRY_JITTER", default_value_t = 0.1, value_parser = parse_fraction, global = true)]
    pub retry_jitter: f64,
    /// Time limit for one delivery attempt (connect, send, and read the response).
    #[arg(long = "delivery-timeout", env = "WEBHOOKD_DELIVERY_TIMEOUT", default_value = "10s", value_parser = positive_duration, global = true)]
    pub timeout: Duration,
    /// How long a claimed delivery stays leased before another worker may take it over;
    /// must exceed the delivery timeout [default: 2 × timeout + 30s].
    #[arg(long = "lease-duration", env = "WEBHOOKD_LEASE_DURATION", value_parser = humantime::parse_duration, global = true)]
    pub lease: Option<Duration>,
    /// Deliveries sent at once by this instance (0: an API-only instance that delivers nothing).
    #[arg(long = "worker-concurrency", env = "WEBHOOKD_WORKER_CONCURRENCY", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(0..=10_000), global = true)]
    pub concurrency: u32,
    /// Most attempts one subscription may have in flight on this instance while its
    /// receiver answers (at most 4 while it has not answered for a second).
    #[arg(long, env = "WEBHOOKD_MAX_IN_FLIGHT_PER_SUBSCRIPTION", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub max_in_flight_per_subscription: u32,
    /// Longest a worker sleeps without a wake-up before looking for due work.
    #[arg(long, env = "WEBHOOKD_POLL_INTERVAL", default_value = "5s", value_parser = positive_duration, global = true)]
    pub poll_interval: Duration,
    /// Time given to in-flight deliveries on shutdown before they are released.
    #[arg(long, env = "WEBHOOKD_SHUTDOWN_GRACE", default_value = "30s", value_parser = positive_duration, global = true)]
    pub shutdown_grace: Duration,
    /// Disable a subscription whose attempts have all failed for this long (with at least 3
    /// failures; any success resets it). `0` turns it off.
    #[arg(long, env = "WEBHOOKD_AUTO_DISABLE_AFTER", default_value = "5d", value_parser = duration_or_zero, global = true)]
    pub auto_disable_after: Duration,
    /// Most deliveries one bulk recovery (`POST /subscriptions/{id}/recover`) may re-queue.
    #[arg(long, env = "WEBHOOKD_RECOVER_MAX", default_value_t = 100_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000), global = true)]
    pub recover_max: u32,
    /// Deliveries a recovery re-queues per transaction (each batch locks only these rows).
    #[arg(long, env = "WEBHOOKD_RECOVER_BATCH", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000), global = true)]
    pub recover_batch: u32,
    /// Allow targets on loopback, private and other non-public addresses.
    #[arg(long, env = "WEBHOOKD_ALLOW_PRIVATE_TARGETS", default_value = "false", value_parser = BoolishValueParser::new(), action = ArgAction::Set, global = true)]
    pub allow_private_targets: bool,
}

impl DeliverySettings {
    /// The lease: as configured, or long enough that a live attempt always finishes (or
    /// times out) first.
    pub fn lease_duration(&self) -> Duration {
        self.lease.unwrap_or(self.timeout * 2 + Duration::from_secs(30))
    }
}

/// The subscription cache.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cache")]
pub struct CacheSettings {
    /// Time-to-live of cached subscriptions, in memory and in Redis.
    #[arg(long = "subscription-cache-ttl", env = "WEBHOOKD_SUBSCRIPTION_CACHE_TTL", default_value = "60s", value_parser = positive_duration, global = true)]
    pub ttl: Duration,
    /// Most subscriptions kept in the in-process cache.
    #[arg(long = "subscription-cache-capacity", env = "WEBHOOKD_SUBSCRIPTION_CACHE_CAPACITY", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000), global = true)]
    pub capacity: u64,
    /// Optional Redis shared by instances as a second cache level (`rediss://` for TLS).
    #[arg(long, env = "REDIS_URL", value_parser = parse_redis_url, hide_env_values = true, global = true)]
    pub redis_url: Option<Secret>,
    /// Longest wait for Redis before reading PostgreSQL instead.
    #[arg(long, env = "WEBHOOKD_REDIS_TIMEOUT", default_value = "100ms", value_parser = positive_duration, global = true)]
    pub redis_timeout: Duration,
}

/// Retention and upkeep.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Retention")]
pub struct RetentionSettings {
    /// How long attempt logs and finished deliveries are kept.
    #[arg(long = "retention", env = "WEBHOOKD_RETENTION", default_value = "72h", value_parser = positive_duration, global = true)]
    pub period: Duration,
    /// How often the background maintenance pass runs (on one instance at a time).
    #[arg(long, env = "WEBHOOKD_MAINTENANCE_INTERVAL", default_value = "5m", value_parser = positive_duration, global = true)]
    pub maintenance_interval: Duration,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdminTokenPolicy {
    /// Generate one and keep it in the data directory (the default for `cargo run`).
    Generate,
    /// Generate one only if the data directory is a mounted volume, where it survives a
    /// restart; otherwise refuse to start (a container would mint a new token every time).
    RequireOrVolume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A setting that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub reason: String,
}

impl Settings {
    /// Reads the command line and the environment: the subcommand and the checked settings.
    /// `--help` and `--version` print and exit here.
    pub fn parse_command_line() -> Result<(Option<Command>, Settings), ConfigError> {
        let matches = Cli::command().try_get_matches().map_err(|error| {
            use clap::error::ErrorKind::{DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion};
            if matches!(error.kind(), DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand) {
                error.exit();
            }
            from_clap(error)
        })?;
        let cli = Cli::from_arg_matches(&matches).map_err(from_clap)?;
        cli.settings.checked().map(|settings| (cli.command, settings))
    }

    /// Settings from `variables` (name, value) alone, as if set in the environment, with
    /// every other setting at its default: the environment itself is not read (tests). A
    /// later value of the same variable wins.
    pub fn from_variables(variables: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let command = Cli::command().mut_args(|arg| arg.env(None::<&str>)).args_override_self(true);
        let mut args = vec!["webhookd".to_owned()];
        for (name, value) in variables {
            let flag = flag_for(name).ok_or_else(|| ConfigError { variable: (*name).to_owned(), reason: "no such setting".into() })?;
            args.push(format!("--{flag}={value}"));
        }
        let matches = command.try_get_matches_from(args).map_err(from_clap)?;
        Cli::from_arg_matches(&matches).map_err(from_clap)?.settings.checked()
    }

    /// The checks that involve more than one setting, and the jitter put into the schedule.
    /// An empty URL or key means unset (compose files often pass `${VAR:-}`).
    fn checked(mut self) -> Result<Self, ConfigError> {
        for secret in [&mut self.database.url, &mut self.cache.redis_url, &mut self.database.encryption_key, &mut self.database.previous_encryption_key] {
            if secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
                *secret = None;
            }
        }
        self.delivery.retry_schedule = self.delivery.retry_schedule.with_jitter(self.delivery.retry_jitter);
        if self.delivery.lease_duration() <= self.delivery.timeout {
            return Err(ConfigError {
                variable: "WEBHOOKD_LEASE_DURATION".into(),
                reason: "must be longer than WEBHOOKD_DELIVERY_TIMEOUT, or a live attempt could be delivered twice".into(),
            });
        }
        Ok(self)
    }
}

/// The command-line flag of the setting read from environment variable `variable`.
pub fn flag_for(variable: &str) -> Option<String> {
    Cli::command()
        .get_arguments()
        .find(|arg| arg.get_env().is_some_and(|env| env == variable))
        .and_then(|arg| arg.get_long().map(str::to_owned))
}

/// clap's error, with the environment variable of the offending setting named first.
fn from_clap(error: clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue};
    let flag = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(text)) => text.split_whitespace().next().unwrap_or_default().trim_start_matches('-').to_owned(),
        _ => String::new(),
    };
    let command = Cli::command();
    let arg = command.get_arguments().find(|arg| arg.get_long() == Some(flag.as_str()));
    let variable = arg
        .and_then(|arg| arg.get_env().map(|env| env.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "command line".to_owned());
    // A secret's value is never repeated back (it would end up in logs): only why it is wrong.
    let reason = match (arg.is_some_and(|arg| arg.is_hide_env_values_set()), std::error::Error::source(&error)) {
        (true, Some(cause)) => cause.to_string(),
        (true, None) => "not a valid value".to_owned(),
        (false, _) => {
            let rendered = error.render().to_string();
            rendered.trim().trim_start_matches("error: ").lines().next().unwrap_or_default().to_owned()
        }
    };
    ConfigError { variable, reason }
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim()).map_err(|e| format!("`{text}` is not a duration like 10s or 5m ({e})"))?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

fn duration_or_zero(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "0" => Ok(Duration::ZERO),
        other => humantime::parse_duration(other).map_err(|e| format!("`{text}` is not a duration like 5d or 12h, or 0 ({e})")),
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|fraction| (0.0..=1.0).contains(fraction))
        .ok_or_else(|| "expected a fraction between 0 and 1".to_owned())
}

fn parse_retry_schedule(text: &str) -> Result<RetrySchedule, String> {
    RetrySchedule::parse(text, 0.0)
}

fn parse_payload_size(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text.trim().parse().map_err(|_| format!("`{text}` is not a size like 1048576, 512KiB or 1MiB"))?;
    usize::try_from(size.as_u64())
        .ok()
        .filter(|bytes| (1..=64 * 1024 * 1024).contains(bytes))
        .ok_or_else(|| format!("`{text}` must be between 1 byte and 64 MiB"))
}

fn parse_public_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    Ok(url)
}

fn parse_admin_token(text: &str) -> Result<Secret, String> {
    if text.len() < 16 {
        return Err("must be at least 16 characters".into());
    }
    Ok(Secret::new(text))
}

fn parse_database_url(text: &str) -> Result<Secret, String> {
    if !(text.is_empty() || text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        return Err("expected a postgres:// URL".into());
    }
    Ok(Secret::new(text))
}

fn parse_redis_url(text: &str) -> Result<Secret, String> {
    if !(text.is_empty() || text.starts_with("redis://") || text.starts_with("rediss://")) {
        return Err("expected a redis:// URL, or rediss:// for TLS".into());
    }
    Ok(Secret::new(text))
}

fn parse_encryption_key(text: &str) -> Result<Secret, String> {
    if !text.is_empty() {
        crate::secrets::Keyring::new(text, None)?;
    }
    Ok(Secret::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_values() {
        let settings = Settings::from_variables(&[]).unwrap();
        assert_eq!(settings.http.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(settings.http.max_payload, 1024 * 1024);
        assert_eq!(settings.delivery.timeout, Duration::from_secs(10));
        assert_eq!(settings.delivery.retry_schedule.max_attempts(), 6);
        assert!(!settings.delivery.allow_private_targets);
        assert!(settings.delivery.lease_duration() > settings.delivery.timeout);
        assert!(settings.database.url.is_none() && settings.admin_token.is_none());
    }

    #[test]
    fn errors_name_the_variable() {
        for (variable, value) in [
            ("WEBHOOKD_RETRY_SCHEDULE", "soon"),
            ("WEBHOOKD_MAX_PAYLOAD", "lots"),
            ("WEBHOOKD_ALLOW_PRIVATE_TARGETS", "maybe"),
            ("WEBHOOKD_WORKER_CONCURRENCY", "-1"),
            ("WEBHOOKD_LISTEN", "everywhere"),
            ("DATABASE_URL", "mysql://x"),
            ("WEBHOOKD_LEASE_DURATION", "1s"),
        ] {
            let error = Settings::from_variables(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable, "{error}");
        }
    }

    #[test]
    fn empty_urls_and_keys_are_unset_and_bad_secrets_are_not_repeated() {
        let settings = Settings::from_variables(&[("DATABASE_URL", ""), ("REDIS_URL", ""), ("WEBHOOKD_ENCRYPTION_KEY", "")]).unwrap();
        assert!(settings.database.url.is_none() && settings.cache.redis_url.is_none() && settings.database.encryption_key.is_none());
        let error = Settings::from_variables(&[("WEBHOOKD_ENCRYPTION_KEY", "c2VjcmV0LWJ1dC1zaG9ydA==")]).unwrap_err();
        assert!(!error.to_string().contains("c2VjcmV0LWJ1dC1zaG9ydA=="), "{error}");
        let error = Settings::from_variables(&[("DATABASE_URL", "mysql://user:pa55word@host/db")]).unwrap_err();
        assert!(!error.to_string().contains("pa55word"), "{error}");
    }

    #[test]
    fn the_public_url_must_be_http_and_https_turns_secure_cookies_on_in_the_dashboard() {
        let settings = Settings::from_variables(&[("WEBHOOKD_PUBLIC_URL", "https://hooks.example.com")]).unwrap();
        assert_eq!(settings.http.public_url.unwrap().host_str(), Some("hooks.example.com"));
        assert!(!settings.http.secure_cookies, "the https check is the dashboard's (src/ui/mod.rs)");
        for bad in ["ftp://hooks.example.com", "hooks.example.com", "http://"] {
            let error = Settings::from_variables(&[("WEBHOOKD_PUBLIC_URL", bad)]).unwrap_err();
            assert!(error.to_string().contains("WEBHOOKD_PUBLIC_URL"), "{error}");
        }
    }

    #[test]
    fn sizes_accept_binary_suffixes() {
        let settings = Settings::from_variables(&[("WEBHOOKD_MAX_PAYLOAD", "512KiB")]).unwrap();
        assert_eq!(settings.http.max_payload, 512 * 1024);
        assert_eq!(parse_payload_size("1048576"), Ok(1024 * 1024));
    }

    #[test]
    fn every_setting_has_its_variable_and_a_flag() {
        for arg in Cli::command().get_arguments().filter(|a| a.get_id() != "help" && a.get_id() != "version") {
            assert!(arg.get_env().is_some(), "{} has no environment variable", arg.get_id());
            assert!(arg.get_long().is_some(), "{} has no flag", arg.get_id());
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        // clap checks ids, flags and defaults here (two settings sharing an id panics at start).
        Cli::command().debug_assert();
    }

    #[test]
    fn secrets_do_not_print() {
        assert!(!format!("{:?}", Secret::new("hunter2")).contains("hunter2"));
    }
}
