//! Statements on the cluster itself, run by the embedded PostgreSQL's set-up.

use sqlx::PgConnection;

/// Whether a database named `name` exists.
pub async fn database_exists(db: &mut PgConnection, name: &str) -> sqlx::Result<bool> {
    sqlx::query_file_scalar!("sql/cluster/database_exists.sql", name).fetch_one(db).await
}

/// Creates database `name`. Not checked at compile time: a database name cannot be a bound
/// parameter, so the statement is built here (from our own name, never from user input).
pub async fn create_database(db: &mut PgConnection, name: &str) -> sqlx::Result<()> {
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', ""));
    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(db).await?;
    Ok(())
}
