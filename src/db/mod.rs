//! The repository layer: one small function per SQL statement in `sql/`. Callers own the
//! transaction; every function takes any executor (pool, connection or transaction).

pub(crate) mod attempts;
pub(crate) mod cluster;
pub mod deliveries;
pub(crate) mod events;
mod held;
pub(crate) mod idempotency;
pub(crate) mod maintenance;
pub(crate) mod operational_events;
pub mod partitions;
pub(crate) mod recoveries;
pub(crate) mod silence;
pub(crate) mod subscriptions;
pub(crate) mod ui_keys;
pub(crate) mod ui_sessions;

pub use held::HeldConnection;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::PgPool;

/// Longest a caller waits for a pooled connection.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens the connection pool. Connections are made lazily so that the service starts (and
/// answers 503) even while the database is down. Each new connection is set up by
/// `sql/cluster/limit_session.sql`, so that the server ends a session whose client vanished
/// (see [`idle_in_transaction_limit`]).
pub fn connect_lazy(url: &str, max_connections: u32, statement_deadline: Duration) -> Result<PgPool, sqlx::Error> {
    let options = connect_options(url)?.application_name("webhookd");
    Ok(pool_options(max_connections, statement_deadline, Session::Shared).connect_lazy_with(options))
}

/// The loops that write every webhook (the ingest writer, its flusher, the outcome
/// recorder) and hold their connection between statements (`HeldConnection`).
pub const WRITER_LOOPS: u32 = 3;

/// Opens the writers' own pool beside `pool` (same database, same checks and session
/// limits): a connection for each of the [`WRITER_LOOPS`], so that a loop holding its
/// connection never leaves the API without one, and one to spare, since a connection
/// keeps its place in the pool while sqlx checks or closes it (which a vanished database
/// can stretch to minutes). Each session is set up for the few statements those loops run
/// (`sql/cluster/writer_session.sql`: each planned once).
pub fn connect_writers(pool: &PgPool, statement_deadline: Duration) -> PgPool {
    let options = (*pool.connect_options()).clone();
    pool_options(WRITER_LOOPS + 1, statement_deadline, Session::Writer).connect_lazy_with(options)
}

/// Longest the sessions of a pool, or one connection, are given to end at shutdown.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// Closes `pool` at shutdown: each connection ends its session with a goodbye to the
/// server (a Terminate message) instead of a dropped socket. Over TLS, PostgreSQL logs
/// every session that just vanishes ("could not receive data from client: Connection
/// reset by peer"): on a managed database, a line per connection at every deploy.
///
/// The idle connections are ended first, one by one: `Pool::close` waits for every
/// connection to come back before it ends any, so one still in use would keep all the
/// others from their goodbye. Those in use end theirs when given back, within
/// [`CLOSE_LIMIT`]; one still held then, or a silent server, is left to the exit.
pub async fn close(pool: &PgPool) {
    let ending = async {
        while let Some(idle) = pool.try_acquire() {
            let _ = idle.close().await;
        }
        pool.close().await;
    };
    let _ = tokio::time::timeout(CLOSE_LIMIT, ending).await;
}

/// Ends one connection's session as [`close`] does a pool's.
pub async fn close_connection(connection: sqlx::PgConnection) {
    let _ = tokio::time::timeout(CLOSE_LIMIT, sqlx::Connection::close(connection)).await;
}

/// What a new pooled session is set up for.
#[derive(Clone, Copy)]
enum Session {
    /// Any statement: the API, the engine's other writes, maintenance.
    Shared,
    /// Only the writer loops' statements.
    Writer,
}

fn pool_options(max_connections: u32, statement_deadline: Duration, session: Session) -> PgPoolOptions {
    let idle_in_transaction = format!("{}ms", idle_in_transaction_limit(statement_deadline).as_millis());
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        // A request that cannot get a connection in time answers 503 instead of hanging.
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |connection, _| {
            let idle_in_transaction = idle_in_transaction.clone();
            Box::pin(async move {
                limit_session(connection, &idle_in_transaction).await;
                if let Session::Writer = session {
                    set_up_writer_session(connection).await;
                }
                Ok(())
            })
        })
        // Instead of sqlx's own ping, which waits as long as the acquire timeout allows.
        .test_before_acquire(false)
        .before_acquire(silence::check_idle)
        // Before sqlx's own check on release, which has no time limit.
        .after_release(silence::check_released)
}

/// The options of `url`, with `sslmode=require` read as libpq reads it: given a root CA
/// (`sslrootcert`, or `PGSSLROOTCERT`), libpq checks the server's certificate against it,
/// as `verify-ca` does. sqlx accepts any certificate under `require` even then, so the
/// setting many managed databases' guides give (`require` and their CA) would have left
/// the connection open to a man in the middle.
fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    if matches!(options.get_ssl_mode(), PgSslMode::Require) && names_a_root_certificate(url) {
        return Ok(options.ssl_mode(PgSslMode::VerifyCa));
    }
    Ok(options)
}

/// Whether `url` (or the environment, as sqlx reads it) names a root CA certificate.
fn names_a_root_certificate(url: &str) -> bool {
    let in_url = url::Url::parse(url)
        .map(|url| url.query_pairs().any(|(name, _)| matches!(name.as_ref(), "sslrootcert" | "ssl-root-cert" | "ssl-ca")))
        .unwrap_or(false);
    in_url || std::env::var_os("PGSSLROOTCERT").is_some_and(|value| !value.is_empty())
}

/// How long the server lets one of our sessions sit idle inside a transaction: the statement
/// deadline (a request given up at its deadline frees its locks about as soon again), but
/// at least 10 s, for what a transaction of ours may wait on between statements other than
/// the database (a target's DNS look-up, at most 5 s), and at most what PostgreSQL accepts.
fn idle_in_transaction_limit(statement_deadline: Duration) -> Duration {
    statement_deadline.clamp(Duration::from_secs(10), Duration::from_millis(i32::MAX as u64))
}

/// Applies the session limits; a database that refuses them (one that only looks like
/// PostgreSQL) is still used, with a warning: they are a safety net, not a requirement.
async fn limit_session(connection: &mut sqlx::PgConnection, idle_in_transaction: &str) {
    if let Err(error) = sqlx::query_file!("sql/cluster/limit_session.sql", idle_in_transaction).fetch_one(connection).await {
        tracing::warn!(%error, "cannot set the session limits that let the database end sessions whose client vanished");
    }
}

/// Sets up a writer loop's session; on a database that refuses (one that only looks like
/// PostgreSQL) the statements are planned as on any session, at some CPU cost.
async fn set_up_writer_session(connection: &mut sqlx::PgConnection) {
    if let Err(error) = sqlx::query_file!("sql/cluster/writer_session.sql").fetch_one(connection).await {
        tracing::warn!(%error, "cannot set up the writers' sessions to plan their statements once: they are planned at every call");
    }
}

/// Runs `statement` on a connection from `pool` (whose wait for one is bounded by the pool's
/// acquire timeout) for at most `deadline`. Past it, the connection is closed rather than
/// given back to the pool, and the caller gets an I/O error (so an API caller answers 503,
/// and the engine retries on a new connection).
///
/// Why: sqlx sets no TCP keepalive, so a statement sent to a database that vanished
/// without closing the socket (a failover, a dropped NAT mapping) waits for its answer for
/// ever, and a connection given back to the pool after such a wait hangs the pool's own
/// check of it in the same way, holding its place in the pool for good.
pub async fn within_deadline<T>(
    pool: &PgPool,
    deadline: Duration,
    statement: impl AsyncFnOnce(&mut sqlx::PgConnection) -> sqlx::Result<T>,
) -> sqlx::Result<T> {
    let mut connection = pool.acquire().await?;
    match before_deadline(deadline, statement(&mut connection)).await {
        Some(result) => result,
        None => {
            connection.close_on_drop();
            Err(no_answer_within(deadline))
        }
    }
}

/// Runs `work` (statements on connections it takes from the pool: a transaction, say) for
/// at most `deadline`, then gives up with [`no_answer_within`]'s error. For work that
/// cannot close its connection itself, as `within_deadline` does: the silence is recorded
/// before `work` is dropped, so that the pool checks the connections it gives back within a
/// second (`silence::check_released`) instead of waiting on them for good.
pub async fn bounded<T>(deadline: Duration, work: impl Future<Output = sqlx::Result<T>>) -> sqlx::Result<T> {
    before_deadline(deadline, work).await.unwrap_or_else(|| Err(no_answer_within(deadline)))
}

/// `work`'s output, or `None` once `deadline` has passed; then the silence is recorded
/// first, and `work` (with whatever connections it holds) dropped after. No answer at all
/// is how a silent database shows: every wait for the database given up at a deadline
/// goes through here, and so records it (`silence::found_silent`).
pub async fn before_deadline<F: Future>(deadline: Duration, work: F) -> Option<F::Output> {
    let work = std::pin::pin!(work);
    tokio::select! {
        output = work => Some(output),
        () = tokio::time::sleep(deadline) => {
            silence::found_silent();
            None
        }
    }
}

/// The error of a statement that had no answer within `deadline` ([`before_deadline`]).
pub fn no_answer_within(deadline: Duration) -> sqlx::Error {
    let message = format!("the database did not answer within {deadline:?} (WEBHOOKD_DB_STATEMENT_DEADLINE)");
    sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
}

/// Opens one connection outside the pool and closes it: the pool reports a failed connect
/// only as a timeout, this says what went wrong.
pub async fn connect_once(url: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let options = connect_options(url)?;
    let connect = sqlx::PgConnection::connect_with(&options);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(connection) => connection?.close().await,
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 10 s"))),
    }
}

/// How often an instance waiting for another's migrations asks for the lock again.
const MIGRATION_LOCK_POLL: Duration = Duration::from_millis(100);

/// Applies the migrations in `migrations/` (embedded at build time). Concurrent callers
/// (instances starting together) take turns on an advisory lock, asked for again every
/// 100 ms rather than waited for: sqlx's own lock is a `pg_advisory_lock` that waits inside
/// a statement, holding a snapshot, and a migration that builds or drops an index
/// `CONCURRENTLY` waits for every older snapshot to go away, so the two instances waited
/// for each other until PostgreSQL broke the deadlock by failing one start. The winner
/// applies everything; the others then find nothing to do.
///
/// Two states a plain run cannot get out of are mended first:
/// - an index build of a no-transaction migration that an earlier start began and did not
///   record (killed, timed out, disconnected: PostgreSQL may even finish the build): its
///   index is dropped and built again, where sqlx would fail on "already exists" at every
///   start from then on;
/// - migrations applied by a newer webhookd (a rollback, or an old instance restarting
///   during a rolling upgrade): they are left alone with a warning, where sqlx would refuse
///   to start.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut connection = pool.acquire().await?;
    check_encoding(&mut connection).await?;
    let mut waited = Duration::ZERO;
    while !sqlx::query_file_scalar!("sql/cluster/try_migration_lock.sql").fetch_one(&mut *connection).await? {
        if waited.as_millis().is_multiple_of(10_000) && !waited.is_zero() {
            tracing::info!(waited_s = waited.as_secs(), "waiting for another instance's migrations");
        }
        tokio::time::sleep(MIGRATION_LOCK_POLL).await;
        waited += MIGRATION_LOCK_POLL;
    }
    let applied = async {
        let mut migrator = sqlx::migrate!("./migrations");
        migrator.set_ignore_missing(true);
        let done = applied_versions(&mut connection).await?;
        let known: HashSet<i64> = migrator.iter().map(|m| m.version).collect();
        if let Some(newer) = done.iter().filter(|v| !known.contains(v)).max() {
            tracing::warn!(migration = newer, "the database has migrations this build does not know (a newer webhookd applied them); running on the newer schema");
        }
        for migration in migrator.iter().filter(|m| m.no_tx && !done.contains(&m.version)) {
            if let Some(build) = concurrent_index_build(migration.sql.as_str()) {
                drop_unrecorded_index(&mut connection, migration.version, build).await?;
            }
        }
        migrator.run(&mut *connection).await
    }
    .await;
    let unlocked = sqlx::query_file_scalar!("sql/cluster/migration_unlock.sql").fetch_one(&mut *connection).await;
    applied?;
    unlocked?;
    Ok(())
}

/// Refuses a database whose encoding cannot hold any text: names, event types and URLs come
/// from clients and error texts and response excerpts from receivers, any of them in any
/// script. In a LATIN1 database, say, a name in Cyrillic failed its statement (a 500), and a
/// receiver's answer in Chinese failed the write of a whole batch of outcomes, again at
/// every try. SQL_ASCII stores text as sent, unchecked, which holds it.
async fn check_encoding(connection: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    let (encoding, database): (String, String) =
        sqlx::query_as("SELECT current_setting('server_encoding'), current_database()").fetch_one(&mut *connection).await?;
    if matches!(encoding.as_str(), "UTF8" | "SQL_ASCII") {
        return Ok(());
    }
    Err(sqlx::Error::Configuration(
        format!(
            "database {database} is encoded {encoding}, which cannot hold every text webhookd stores (names, event types, receivers' answers): \
             create it with ENCODING 'UTF8' (CREATE DATABASE {database} ENCODING 'UTF8' TEMPLATE template0)"
        )
        .into(),
    ))
}

/// The versions recorded in sqlx's table (none before the first migration). Read with
/// runtime statements: the table is sqlx's, not in the migrations the statement checks use.
async fn applied_versions(connection: &mut sqlx::PgConnection) -> sqlx::Result<HashSet<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&mut *connection).await?;
    if !exists {
        return Ok(HashSet::new());
    }
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&mut *connection).await?;
    Ok(versions.into_iter().collect())
}

/// Drops the index of `build` if it exists although migration `version`, which builds it,
/// is not recorded: a build interrupted (or finished after its client went away) at an
/// earlier start. An invalid one always goes; a valid one only if the migration would fail
/// on it (no `IF NOT EXISTS`: the migrations before 35), since sqlx cannot be told to
/// record a migration without running it.
async fn drop_unrecorded_index(connection: &mut sqlx::PgConnection, version: i64, build: IndexBuild<'_>) -> sqlx::Result<()> {
    let found: Option<bool> = sqlx::query_scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)")
        .bind(build.name)
        .fetch_optional(&mut *connection)
        .await?;
    let Some(valid) = found else { return Ok(()) };
    if valid && build.if_not_exists {
        return Ok(());
    }
    tracing::warn!(migration = version, index = build.name, valid, "an earlier start left this migration's index unrecorded; building it again");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP INDEX CONCURRENTLY IF EXISTS {}", build.name))).execute(&mut *connection).await?;
    Ok(())
}

/// An index a migration builds with `CREATE [UNIQUE] INDEX CONCURRENTLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexBuild<'a> {
    name: &'a str,
    if_not_exists: bool,
}

/// The index a migration builds concurrently (comments aside), if its name is a plain
/// identifier.
fn concurrent_index_build(sql: &str) -> Option<IndexBuild<'_>> {
    sql.lines().map(|line| line.split("--").next().unwrap_or("")).find_map(|line| {
        let rest = line.trim_start();
        let rest = rest.strip_prefix("CREATE UNIQUE INDEX CONCURRENTLY ").or_else(|| rest.strip_prefix("CREATE INDEX CONCURRENTLY "))?;
        let (rest, if_not_exists) = match rest.strip_prefix("IF NOT EXISTS ") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let name = rest.split_whitespace().next()?;
        let plain = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        plain.then_some(IndexBuild { name, if_not_exists })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_a_migration_builds_concurrently_is_found_past_its_comments() {
        let build = |name, if_not_exists| Some(IndexBuild { name, if_not_exists });
        assert_eq!(
            concurrent_index_build(include_str!("../../migrations/20261201000034_parked_since_index.sql")),
            build("deliveries_parked_since_idx", false)
        );
        assert_eq!(
            concurrent_index_build(include_str!("../../migrations/20261201000035_filtered_deliveries_index.sql")),
            build("deliveries_filtered_idx", true)
        );
        assert_eq!(concurrent_index_build("-- CREATE INDEX CONCURRENTLY not_this ON t (a)\nSELECT 1"), None);
        assert_eq!(concurrent_index_build("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS a_b ON t (a)"), build("a_b", true));
        assert_eq!(concurrent_index_build("CREATE INDEX CONCURRENTLY \"Odd\" ON t (a)"), None, "only plain names are dropped by name");
        assert_eq!(concurrent_index_build(include_str!("../../migrations/20261201000033_drop_due_index.sql")), None);
    }

    #[test]
    fn sslmode_require_with_a_root_certificate_verifies_it_as_libpq_does() {
        let mode = |url: &str| format!("{:?}", connect_options(url).unwrap().get_ssl_mode());
        assert_eq!(mode("postgres://u@db.example.com/w?sslmode=require&sslrootcert=/etc/ca.pem"), "VerifyCa");
        assert_eq!(mode("postgres://u@db.example.com/w?sslmode=require"), "Require");
        assert_eq!(mode("postgres://u@db.example.com/w?sslmode=verify-full&sslrootcert=/etc/ca.pem"), "VerifyFull");
    }
}
