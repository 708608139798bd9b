//! Daily partitions of `attempts`: created ahead of time so an insert never lacks one, and
//! dropped whole once past the retention.

use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use time::{Date, Duration, OffsetDateTime};

/// Days of partitions kept ready beyond today.
pub const DAYS_AHEAD: i64 = 3;

/// Name of the partition holding attempts made on `day` (UTC).
pub fn partition_name(day: Date) -> String {
    format!("attempts_{:04}{:02}{:02}", day.year(), u8::from(day.month()), day.day())
}

/// DDL creating the partition for `day`, if it does not exist. Built from a date only, so
/// it is safe to run as dynamic SQL; like the DETACH and DROP below, it names a table
/// computed at run time and so cannot be checked at compile time.
fn create_partition_sql(day: Date) -> String {
    let next = day + Duration::days(1);
    format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF attempts \
         FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
        partition_name(day)
    )
}

/// Creates the partitions for yesterday through `DAYS_AHEAD` days after `now`; returns the
/// names of those it created. One that cannot get its lock within 500 ms is left for the
/// next call, with a warning (`sql/attempts/wait_briefly_for_partition_locks.sql`).
pub async fn ensure_partitions(pool: &PgPool, now: OffsetDateTime) -> sqlx::Result<Vec<String>> {
    let today = now.to_offset(time::UtcOffset::UTC).date();
    let existing = list(pool).await?;
    let mut created = Vec::new();
    for offset in -1..=DAYS_AHEAD {
        let day = today + Duration::days(offset);
        let name = partition_name(day);
        if existing.contains(&name) {
            continue;
        }
        match create_partition(pool, day).await {
            Ok(()) => created.push(name),
            // Another instance created it at the same moment.
            Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("42P07" | "23505")) => {}
            Err(error) if is_lock_timeout(&error) => {
                tracing::warn!(partition = %name, "an attempts partition waited 500 ms for its lock on `attempts` (a long query on it?) and was not created; trying again at the next maintenance pass");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(created)
}

/// Whether `error` is a lock not obtained within `lock_timeout` (SQLSTATE 55P03).
pub fn is_lock_timeout(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().as_deref() == Some("55P03"))
}

async fn create_partition(pool: &PgPool, day: Date) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query_file!("sql/attempts/wait_briefly_for_partition_locks.sql").execute(&mut *tx).await?;
    sqlx::query(AssertSqlSafe(create_partition_sql(day))).execute(&mut *tx).await?;
    tx.commit().await
}

/// The day a partition name stands for, if it is one of ours.
pub fn partition_day(name: &str) -> Option<Date> {
    let digits = name.strip_prefix("attempts_").filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))?;
    let format = time::macros::format_description!("[year][month][day]");
    Date::parse(digits, &format).ok()
}

/// A table that is, was, or is becoming a partition of `attempts`.
#[derive(Debug, Clone)]
pub struct PartitionTable {
    pub name: String,
    pub day: Date,
    pub attached: bool,
    pub detach_pending: bool,
}

/// Every daily attempts table, attached or not.
pub async fn list_tables(db: &mut PgConnection) -> sqlx::Result<Vec<PartitionTable>> {
    let rows = sqlx::query_file!("sql/attempts/list_partition_tables.sql").fetch_all(db).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(PartitionTable { day: partition_day(&row.name)?, attached: row.attached, detach_pending: row.detach_pending, name: row.name })
        })
        .collect())
}

/// Removes a partition without blocking writers: `DETACH ... CONCURRENTLY` takes only a
/// SHARE UPDATE EXCLUSIVE lock on `attempts` (inserts continue), then the detached table is
/// dropped on its own. An interrupted earlier detach is finished first.
pub async fn detach_and_drop(db: &mut PgConnection, table: &PartitionTable) -> sqlx::Result<()> {
    // The name comes from pg_class and matched attempts_<8 digits>: safe to splice.
    let name = &table.name;
    if table.detach_pending {
        sqlx::raw_sql(AssertSqlSafe(format!("ALTER TABLE attempts DETACH PARTITION {name} FINALIZE"))).execute(&mut *db).await?;
    } else if table.attached {
        sqlx::raw_sql(AssertSqlSafe(format!("ALTER TABLE attempts DETACH PARTITION {name} CONCURRENTLY")))
            .execute(&mut *db)
            .await?;
    }
    sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}"))).execute(db).await?;
    Ok(())
}

/// Names of the existing partitions of `attempts`.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_file_scalar!("sql/attempts/list_partitions.sql").fetch_all(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn partition_names_map_back_to_their_day() {
        assert_eq!(partition_day("attempts_20260109"), Some(date!(2026 - 01 - 09)));
        assert_eq!(partition_day("attempts_2026010"), None);
        assert_eq!(partition_day("attempts_20261399"), None);
        assert_eq!(partition_day("other_20260109"), None);
    }

    #[test]
    fn partitions_cover_one_utc_day() {
        assert_eq!(partition_name(date!(2026 - 01 - 09)), "attempts_20260109");
        let sql = create_partition_sql(date!(2026 - 12 - 31));
        assert!(sql.contains("FROM ('2026-12-31 00:00:00+00') TO ('2027-01-01 00:00:00+00')"), "{sql}");
    }
}
