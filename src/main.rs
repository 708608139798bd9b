//! The `webhookd` binary: read settings, start the embedded database if no DATABASE_URL is
//! given, then serve (or migrate) until a signal.

use std::process::ExitCode;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use webhookd::config::{Command, LogFormat, Secret, Settings};
use webhookd::embedded_postgres::{self, ClusterOptions, EmbeddedPostgres};
use webhookd::startup::{self, resolve_admin_token, Application};
use webhookd::{db, healthcheck, telemetry};

fn main() -> ExitCode {
    let (command, settings) = match Settings::parse_command_line() {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("webhookd: {error}");
            return ExitCode::from(2);
        }
    };
    let command = command.unwrap_or(Command::Serve);
    if let Command::Healthcheck { url } = command {
        return healthcheck::run(url.as_deref(), settings.http.listen);
    }
    telemetry::init(settings.log_format);
    let log_format = settings.log_format;
    match run(command, settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: as a JSON log record where logs are collected, plain otherwise.
            let line = telemetry::describe_error(&error);
            // (Plainly too when RUST_LOG would drop the record: a fatal error is never silent.)
            match log_format {
                LogFormat::Json if tracing::enabled!(tracing::Level::ERROR) => tracing::error!("{line}"),
                _ => eprintln!("webhookd: {line}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    // The embedded cluster is started from this thread, which lives until the end: the
    // cluster is told to stop if this thread dies, even by SIGKILL.
    let (database_url, cluster) = match &settings.database.url {
        Some(url) => (url.clone(), None),
        None => {
            let cluster = EmbeddedPostgres::start(&ClusterOptions {
                directory: settings.data_dir.join("postgres"),
                server_settings: Vec::new(),
                port: None,
            })?;
            tracing::info!(port = cluster.port(), data_dir = %settings.data_dir.display(), "embedded PostgreSQL started");
            (Secret::new(cluster.database_url()), Some(cluster))
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        let result = execute(command, settings, &database_url, cluster.as_ref()).await;
        // The pool only says it timed out; one direct connection says why (refused, TLS, password).
        match result {
            Err(error) if error.chain().any(|c| matches!(c.downcast_ref(), Some(sqlx::Error::PoolTimedOut))) => {
                match db::connect_once(database_url.expose()).await {
                    Err(cause) => Err(anyhow::Error::new(cause).context("cannot connect to PostgreSQL")),
                    Ok(()) => Err(error),
                }
            }
            other => other,
        }
    });
    drop(runtime);
    if let Some(mut cluster) = cluster {
        cluster.stop();
        tracing::info!("embedded PostgreSQL stopped");
    }
    result
}

/// Runs `command` against the database at `database_url`.
async fn execute(command: Command, settings: Settings, database_url: &Secret, cluster: Option<&EmbeddedPostgres>) -> anyhow::Result<()> {
    if let Some(cluster) = cluster {
        embedded_postgres::create_database_if_missing(&cluster.url_for("postgres"), "webhookd").await?;
    }
    let pool = db::connect_lazy(database_url.expose(), settings.database.pool_size, settings.database.statement_deadline).context("invalid DATABASE_URL")?;
    let result = run_command(command, settings, pool.clone()).await;
    // Every session ends with a goodbye to the server, not a dropped socket (`db::close`).
    db::close(&pool).await;
    result
}

async fn run_command(command: Command, settings: Settings, pool: sqlx::PgPool) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            db::migrate(&pool).await.context("cannot apply migrations")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Maintenance { now } => {
            let now = match now {
                None => time::OffsetDateTime::now_utc(),
                Some(text) => time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .with_context(|| format!("--now `{text}` is not an RFC 3339 time like 2026-12-01T00:00:00Z"))?,
            };
            if settings.database.auto_migrate {
                db::migrate(&pool).await.context("cannot apply migrations")?;
            }
            let report = webhookd::maintenance::run_once(&pool, now, settings.retention.period, settings.database.statement_deadline).await?;
            print!("{report}");
            Ok(())
        }
        Command::EncryptSecrets => {
            if settings.database.auto_migrate {
                db::migrate(&pool).await.context("cannot apply migrations")?;
            }
            let keyring = startup::keyring(&settings)?.context("set WEBHOOKD_ENCRYPTION_KEY to the key to encrypt with")?;
            let report = startup::encrypt_stored_secrets(&pool, &keyring).await?;
            println!("encrypted the secrets of {} subscriptions with key {}", report.rewritten, keyring.key_id());
            for id in &report.dropped_previous {
                println!("subscription {id}: its previous secret did not decrypt and was dropped (the current one signs alone)");
            }
            for id in &report.dropped_of_deleted {
                println!("subscription {id} (deleted): its secret did not decrypt and was dropped");
            }
            if !report.unreadable.is_empty() {
                let ids: Vec<String> = report.unreadable.iter().map(ToString::to_string).collect();
                // Not done: the previous key still seals what these rows hold.
                bail!(
                    "the current secret of {} subscriptions does not decrypt (corrupt at rest): {}. Set new secrets on them \
                     (POST /subscriptions/{{id}}/rotate-secret) and run encrypt-secrets again; until it succeeds, keep any previous key configured",
                    ids.len(),
                    ids.join(", ")
                );
            }
            Ok(())
        }
        Command::Serve => serve(settings, pool).await,
        Command::Healthcheck { .. } => unreachable!("handled before start-up"),
    }
}

async fn serve(settings: Settings, pool: sqlx::PgPool) -> anyhow::Result<()> {
    refuse_untrusted_database(&pool).await?;
    let admin_token = resolve_admin_token(settings.admin_token.as_ref(), &settings.data_dir, settings.admin_token_policy)?;
    let application = Application::build(settings, pool, admin_token).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    application.run_until_stopped(shutdown).await
}

/// The service starts while the database is down (and answers 503 until it is back), but
/// not when the database's certificate is untrusted: that never mends itself.
async fn refuse_untrusted_database(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    match pool.acquire().await {
        Err(error) if telemetry::is_untrusted_certificate(&error.to_string()) => {
            Err(anyhow::Error::new(error).context("cannot connect to PostgreSQL"))
        }
        _ => Ok(()),
    }
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let terminated = async {
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => drop(terminate.recv().await),
            Err(error) => {
                tracing::error!(%error, "cannot handle SIGTERM; only Ctrl-C stops the service gracefully");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminated => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
