//! Raw SQL, for the tests that must break or inspect the database, the benchmarks that seed it, and
//! the documented report queries analysts run. The application itself never uses it: everything
//! it does is an operation of `Store`.

use sqlx::Row;

use super::{Backend, Store, StoreError};

pub struct AdHoc<'a> {
    store: &'a Store,
}

/// Connections taken out of the store's pool until this is dropped (a test of pool exhaustion, or
/// of a session lock held by another replica).
pub enum HeldConnections {
    Postgres(Vec<sqlx::pool::PoolConnection<sqlx::Postgres>>),
    Sqlite(Vec<sqlx::pool::PoolConnection<sqlx::Sqlite>>),
}

impl HeldConnections {
    /// Runs `sql` on the first held connection.
    pub async fn execute(&mut self, sql: &str) -> Result<(), StoreError> {
        match self {
            HeldConnections::Postgres(held) => {
                sqlx::raw_sql(sql).execute(&mut *held[0]).await?;
            }
            HeldConnections::Sqlite(held) => {
                sqlx::raw_sql(sql).execute(&mut *held[0]).await?;
            }
        }
        Ok(())
    }
}

impl<'a> AdHoc<'a> {
    pub(super) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Runs one or more statements (on SQLite through the writer, as every write goes).
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        match &self.store.backend {
            Backend::Postgres(pg) => {
                sqlx::raw_sql(sql).execute(&pg.pool).await?;
            }
            Backend::Sqlite(lite) => {
                sqlx::raw_sql(sql).execute(&lite.writer).await?;
            }
        }
        Ok(())
    }

    /// Every row of a query, each column as text (`null` for NULL), whatever its type.
    pub async fn rows(&self, sql: &str) -> Result<Vec<Vec<String>>, StoreError> {
        Ok(match &self.store.backend {
            Backend::Postgres(pg) => sqlx::query(sql).fetch_all(&pg.pool).await?.iter().map(as_text).collect(),
            Backend::Sqlite(lite) => sqlx::query(sql).fetch_all(&lite.readers).await?.iter().map(as_text).collect(),
        })
    }

    /// The first column of every row, as text.
    pub async fn column(&self, sql: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.rows(sql).await?.into_iter().filter_map(|row| row.into_iter().next()).collect())
    }

    /// Every row of every table (the migrations' bookkeeping aside) as one line of text, with its
    /// table's name: for tests that must prove a value is nowhere. Bytes appear as hex (Postgres
    /// `\x…`, SQLite `X'…'`), so a search must look for the hex form too.
    pub async fn every_row(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut rows = Vec::new();
        match &self.store.backend {
            Backend::Postgres(pg) => {
                let tables: Vec<(String,)> = sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                       AND table_name <> '_sqlx_migrations' ORDER BY 1",
                )
                .fetch_all(&pg.pool)
                .await?;
                for (table,) in tables {
                    let sql = format!("SELECT CAST(t AS TEXT) FROM \"{table}\" t");
                    let lines: Vec<(String,)> = sqlx::query_as(&sql).fetch_all(&pg.pool).await?;
                    rows.extend(lines.into_iter().map(|(line,)| (table.clone(), line)));
                }
            }
            Backend::Sqlite(lite) => {
                let tables: Vec<(String,)> = sqlx::query_as(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT IN ('_sqlx_migrations', 'sqlite_sequence') ORDER BY 1",
                )
                .fetch_all(&lite.readers)
                .await?;
                for (table,) in tables {
                    let columns: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info(?1)")
                        .bind(&table)
                        .fetch_all(&lite.readers)
                        .await?;
                    let line: Vec<String> = columns.iter().map(|(c,)| format!("quote(\"{c}\")")).collect();
                    let sql = format!("SELECT {} FROM \"{table}\"", line.join(" || '|' || "));
                    let lines: Vec<(String,)> = sqlx::query_as(&sql).fetch_all(&lite.readers).await?;
                    rows.extend(lines.into_iter().map(|(line,)| (table.clone(), line)));
                }
            }
        }
        Ok(rows)
    }

    /// Takes every connection of the pool that serves callbacks (Postgres), until dropped.
    pub async fn hold_every_connection(&self, connections: u32) -> Result<HeldConnections, StoreError> {
        Ok(match &self.store.backend {
            Backend::Postgres(pg) => {
                let mut held = Vec::new();
                for _ in 0..connections {
                    held.push(pg.pool.acquire().await?);
                }
                HeldConnections::Postgres(held)
            }
            Backend::Sqlite(lite) => {
                let mut held = Vec::new();
                for _ in 0..connections {
                    held.push(lite.readers.acquire().await?);
                }
                HeldConnections::Sqlite(held)
            }
        })
    }
}

fn as_text<R: Row>(row: &R) -> Vec<String>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<f64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<chrono::DateTime<chrono::Utc>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    (0..row.columns().len())
        .map(|i| {
            let text = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                v.map(|v| v.to_string())
            } else if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                v.map(|v| v.to_string())
            } else if let Ok(v) = row.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(i) {
                v.map(|v| v.to_rfc3339())
            } else {
                row.try_get::<Option<String>, _>(i).unwrap_or_else(|e| Some(format!("<{e}>")))
            };
            text.unwrap_or_else(|| "null".into())
        })
        .collect()
}
