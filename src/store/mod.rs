//! The store (DESIGN.md section 3): sqlx over SQLite and PostgreSQL. It owns what the partner
//! cannot hold: the id map and the last accepted SCIM resources, the `active` state, the
//! group -> members index, the outbox of the membership engine (section 4) and the audit log.
//!
//! One [`Store`] type serves both back ends: it holds either pool, and every query is written
//! once and expanded for each back end by the `with_pool!` macro, so both run the same SQL
//! (`$1` placeholders, `ON CONFLICT`, `RETURNING`, `CASE` instead of `MIN`/`LEAST`). Queries are
//! checked at run time (`sqlx::query`), so building never needs a database. Migrations live in
//! `migrations/sqlite` and `migrations/postgres` (same history in intent) and are embedded.
//!
//! Everything is scoped by tenant: every table has a `tenant` column and every statement that
//! reads or writes a resource names it.

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// Runs `$body` with `$pool` bound to the concrete pool of this store. The body is written once
/// and compiled for each back end, so each query keeps its static types.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

mod audit;
mod credentials;
mod error;
mod explain;
mod groups;
mod links;
mod liveness;
mod locks;
mod outbox;
mod outbox_retry;
mod outbox_view;
mod types;
mod users;

pub use credentials::SiteCredentials;
use error::Fail;
pub use error::StoreError;
pub use explain::{OutboxRow, Tombstone};
pub use links::PartnerLink;
pub use liveness::WorkerLock;
pub use locks::{group_name_key, group_names_key, user_email_key, user_name_key};
pub use outbox::Quiet;
pub use outbox_retry::RetryFilter;
pub use outbox_view::{OutboxFailure, OutboxHealth, OutboxSiteStats, PendingDeletions};
pub use types::{
    audit_entry_json, AuditEntry, AuditQuery, GroupRow, IndexTerm, MembershipChange, OutboxAges,
    OutboxItem, OutboxMark, OutboxStats, UserRow,
};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long SQLite waits on a locked database before answering `SQLITE_BUSY`.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Transient failures (`SQLITE_BUSY`, PostgreSQL serialization failures and deadlocks) are
/// retried this many times, the whole operation each time, with doubling backoff.
const TRANSIENT_RETRIES: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Rows per multi-row statement. Well under SQLite's 32766 and PostgreSQL's 65535 parameters,
/// and few distinct statement shapes for the prepared-statement cache.
const CHUNK: usize = 1000;

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The store: a cheap, cloneable handle on a connection pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl std::fmt::Debug for Store {
    // Hand-written: the pools' own Debug would print connect options, password included.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to `sqlite://path` (`?mode=rwc` optional), `sqlite::memory:` or
    /// `postgres://...`.
    ///
    /// SQLite runs in WAL mode with a 5 s busy timeout and foreign keys on; the file and its
    /// parent folder are created when missing. An in-memory SQLite database is held by a single
    /// connection that never closes. Errors never repeat the URL, which may hold a password.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let redact = |e: sqlx::Error| -> StoreError {
            match StoreError::from(Fail::Db(e)) {
                StoreError::Unavailable(m) => StoreError::Unavailable(error::redact(&m, url)),
                StoreError::Other(m) => StoreError::Other(error::redact(&m, url)),
                other => other,
            }
        };
        if url.starts_with("sqlite:") {
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let mut options = SqliteConnectOptions::from_str(url)
                .map_err(redact)?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            let pool_options = if memory {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
            } else {
                // synchronous stays FULL (the default): a write the IdP saw acknowledged
                // survives a power loss.
                options = options.journal_mode(SqliteJournalMode::Wal);
                create_parent_folder(options.get_filename()).await?;
                SqlitePoolOptions::new().max_connections(8)
            };
            // No ping before each use: a connection to a local file does not go stale, and the
            // ping was a round trip to the connection's thread on every query (perf: 9% of a
            // lookup storm's CPU).
            let pool = pool_options
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(redact)?;
            Ok(Store {
                pool: Pool::Sqlite(pool),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(redact)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(redact)?;
            Ok(Store {
                pool: Pool::Postgres(pool),
            })
        } else {
            Err(StoreError::Other(
                "unsupported store URL: expected sqlite:... or postgres://...".into(),
            ))
        }
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }

    fn migrator(&self) -> &'static Migrator {
        match self.pool {
            Pool::Sqlite(_) => &SQLITE_MIGRATOR,
            Pool::Postgres(_) => &POSTGRES_MIGRATOR,
        }
    }

    /// Applies the embedded migrations not yet applied; running it again changes nothing.
    ///
    /// Before migration 2 (one SCIM user per partner email) it looks for what would make that
    /// migration fail, and refuses with an error an operator can act on.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.check_unique_partner_emails().await?;
        let migrator = self.migrator();
        let result = with_pool!(self, pool => migrator.run(pool).await);
        result.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from(Fail::Db(e)),
            other => StoreError::Other(format!("migration failed: {other}")),
        })
    }

    /// Whether `table` exists in the database (the current schema on PostgreSQL).
    async fn table_exists(&self, table: &str) -> Result<bool, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let n: i64 = with_pool!(self, pool => {
            sqlx::query_scalar(sql).bind(table).fetch_one(pool).await
        })?;
        Ok(n > 0)
    }

    /// The preflight of migration 2, which adds a unique index on (tenant, partner email): on
    /// a store where it is not yet applied, users sharing a partner email would make it fail
    /// with the database's bare "UNIQUE constraint failed". This names, per tenant, how many
    /// partner emails are shared and by which user ids (never the emails or anything secret),
    /// and how to repair it.
    async fn check_unique_partner_emails(&self) -> Result<(), StoreError> {
        if !self.table_exists("users").await? {
            return Ok(());
        }
        if self.table_exists("_sqlx_migrations").await? {
            let applied: i64 = with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = $1 AND success",
                )
                .bind(UNIQUE_PARTNER_EMAIL_MIGRATION)
                .fetch_one(pool)
                .await
            })?;
            if applied > 0 {
                return Ok(());
            }
        }
        let shared: Vec<(String, String)> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT tenant, partner_email_lc FROM users WHERE partner_email_lc <> '' \
                 GROUP BY tenant, partner_email_lc HAVING COUNT(*) > 1 \
                 ORDER BY tenant, partner_email_lc",
            )
            .fetch_all(pool)
            .await
        })?;
        if shared.is_empty() {
            return Ok(());
        }
        // tenant -> the user ids of each shared email, in email order.
        let mut by_tenant: Vec<(String, Vec<Vec<String>>)> = Vec::new();
        for (tenant, email_lc) in &shared {
            let ids: Vec<String> = with_pool!(self, pool => {
                sqlx::query_scalar(
                    "SELECT id FROM users WHERE tenant = $1 AND partner_email_lc = $2 \
                     ORDER BY created_ms, id",
                )
                .bind(tenant)
                .bind(email_lc)
                .fetch_all(pool)
                .await
            })?;
            match by_tenant.last_mut() {
                Some((t, sets)) if t == tenant => sets.push(ids),
                _ => by_tenant.push((tenant.clone(), vec![ids])),
            }
        }
        Err(StoreError::Other(duplicate_partner_emails_message(
            &by_tenant,
        )))
    }

    /// A round trip to the database, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Whether every embedded migration has been applied successfully.
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        if !self.table_exists("_sqlx_migrations").await? {
            return Ok(false);
        }
        let applied: Vec<i64> = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await
        })?;
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .all(|m| applied.contains(&m.version)))
    }

    /// The statement that opens a write transaction. SQLite takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes cannot fail halfway
    /// with `SQLITE_BUSY` when it upgrades its lock.
    fn begin_write(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }
}

/// The version of the migration that makes partner emails unique per tenant
/// (`migrations/*/0002_fenced_claims_tombstones.sql`).
const UNIQUE_PARTNER_EMAIL_MIGRATION: i64 = 2;
/// Sets of user ids listed per tenant in the preflight's error.
const DUPLICATES_LISTED: usize = 20;

/// The preflight's error: per tenant, how many partner emails are shared and the user ids of
/// each, then how to repair it.
fn duplicate_partner_emails_message(by_tenant: &[(String, Vec<Vec<String>>)]) -> String {
    let mut out = String::from(
        "cannot apply migration 2 (one SCIM user per partner email): users share a partner email",
    );
    for (tenant, sets) in by_tenant {
        out.push_str(&format!(
            "; tenant '{tenant}': {} partner email{} held by more than one user (ids, oldest first):",
            sets.len(),
            if sets.len() == 1 { "" } else { "s" }
        ));
        for ids in sets.iter().take(DUPLICATES_LISTED) {
            out.push_str(&format!(" [{}]", ids.join(", ")));
        }
        if sets.len() > DUPLICATES_LISTED {
            out.push_str(&format!(" and {} more", sets.len() - DUPLICATES_LISTED));
        }
    }
    out.push_str(
        ". Keep one user per partner email: delete the others (DELETE /Users/{id} with the \
         previous release of scim-bridge, or their rows in users, user_emails and memberships) \
         or change their userName/email so they map to another address, then migrate again",
    );
    out
}

/// Runs `op`, retrying it on transient database failures, and maps the outcome to a
/// [`StoreError`]. Each try must be a whole transaction (or a single statement).
async fn retrying<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Fail>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut retries = 0;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(Fail::Db(e)) if retries < TRANSIENT_RETRIES && error::is_transient(&e) => {
                tracing::debug!(error = %e, retries, "transient store failure, retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                retries += 1;
            }
            Err(fail) => return Err(fail.into()),
        }
    }
}

/// A row type both back ends read (every record of the store is).
trait Record:
    Send
    + Unpin
    + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
{
}

impl<R> Record for R where
    R: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
{
}

impl Store {
    /// Every row of `sql` with `binds` bound to its placeholders in order (text values).
    async fn fetch_bound<R: Record>(
        &self,
        sql: &str,
        binds: &[String],
    ) -> Result<Vec<R>, StoreError> {
        retrying(move || async move {
            let records: Vec<R> = with_pool!(self, pool => {
                let mut query = sqlx::query_as(sql);
                for value in binds {
                    query = query.bind(value.as_str());
                }
                query.fetch_all(pool).await
            })?;
            Ok(records)
        })
        .await
    }

    /// The rows of `select` (which ends in its tenant condition on `$1`) that match every
    /// term, in `order`: `condition` gives a term's SQL for placeholder `$n` and the value
    /// bound to it (an error for a term that is no index of the table).
    async fn find_where<R: Record>(
        &self,
        select: &str,
        tenant: &str,
        terms: &[IndexTerm],
        order: &str,
        condition: impl Fn(&IndexTerm, usize) -> Result<(String, String), StoreError>,
    ) -> Result<Vec<R>, StoreError> {
        let mut sql = String::from(select);
        let mut binds: Vec<String> = vec![tenant.to_owned()];
        for term in terms {
            let (sql_term, value) = condition(term, binds.len() + 1)?;
            sql.push_str(" AND ");
            sql.push_str(&sql_term);
            binds.push(value);
        }
        sql.push_str(order);
        self.fetch_bound(&sql, &binds).await
    }

    /// How many rows of `table` the tenant has.
    async fn count_of(&self, table: &'static str, tenant: &str) -> Result<u64, StoreError> {
        let sql = &format!("SELECT COUNT(*) FROM {table} WHERE tenant = $1");
        retrying(move || async move {
            let n: i64 = with_pool!(self, pool => {
                sqlx::query_scalar(sql).bind(tenant).fetch_one(pool).await
            })?;
            Ok(to_u64(n))
        })
        .await
    }

    /// One page of `sql` (which takes the tenant, a limit and an offset, in that order).
    async fn fetch_page<R: Record>(
        &self,
        sql: &'static str,
        tenant: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<R>, StoreError> {
        retrying(move || async move {
            let records: Vec<R> = with_pool!(self, pool => {
                sqlx::query_as(sql)
                    .bind(tenant)
                    .bind(to_i64(limit))
                    .bind(to_i64(offset))
                    .fetch_all(pool)
                    .await
            })?;
            Ok(records)
        })
        .await
    }
}

async fn create_parent_folder(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| StoreError::Other(format!("cannot create the SQLite folder: {e}"))),
        _ => Ok(()),
    }
}

/// `$from, $from+1, ...` for `count` values: the placeholders of an `IN (...)` list.
fn placeholders(from: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 6);
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(&(from + i).to_string());
    }
    out
}

/// The values in first-seen order, without repeats.
fn dedup(values: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for v in values {
        let v = v.as_ref();
        if seen.insert(v.to_owned()) {
            out.push(v.to_owned());
        }
    }
    out
}

/// `u64` paging arguments as SQL `BIGINT`s.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
