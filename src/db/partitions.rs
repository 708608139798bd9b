//! Daily partitions of `attempts`, created ahead of time so an insert never lacks one.
//! (Dropping old ones is retention's job, a later piece of work.)

use sqlx::{AssertSqlSafe, PgPool};
use time::{Date, Duration, OffsetDateTime};

/// Days of partitions kept ready beyond today.
pub const DAYS_AHEAD: i64 = 3;

/// Name of the partition holding attempts made on `day` (UTC).
pub fn partition_name(day: Date) -> String {
    format!("attempts_{:04}{:02}{:02}", day.year(), u8::from(day.month()), day.day())
}

/// DDL creating the partition for `day`, if it does not exist. Built from a date only, so
/// it is safe to run as dynamic SQL.
fn create_partition_sql(day: Date) -> String {
    let next = day + Duration::days(1);
    format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF attempts \
         FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00')",
        partition_name(day)
    )
}

/// Creates the partitions for yesterday through `DAYS_AHEAD` days after `now`; returns the
/// names of those it created.
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
        sqlx::query(AssertSqlSafe(create_partition_sql(day))).execute(pool).await?;
        created.push(name);
    }
    Ok(created)
}

/// Names of the existing partitions of `attempts`.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(include_str!("../../sql/attempts/list_partitions.sql")).fetch_all(pool).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn partitions_cover_one_utc_day() {
        assert_eq!(partition_name(date!(2026 - 01 - 09)), "attempts_20260109");
        let sql = create_partition_sql(date!(2026 - 12 - 31));
        assert!(sql.contains("FROM ('2026-12-31 00:00:00+00') TO ('2027-01-01 00:00:00+00')"), "{sql}");
    }
}
