//! Store errors: what the bridge and the HTTP layer need to tell apart (conflict, missing,
//! stale version, database unavailable), mapped once from sqlx errors. Messages never carry the
//! database URL, which may hold a password.

use sqlx::error::{DatabaseError, ErrorKind};

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule of the database refused the write; `what` names the attribute
    /// (`userName`, `displayName` or `id`).
    #[error("{what} is already taken")]
    Conflict { what: String },
    /// The resource does not exist (in this tenant), or a membership named a missing user.
    #[error("not found")]
    NotFound,
    /// The stored version differs from the expected one (optimistic concurrency).
    #[error("version mismatch")]
    VersionMismatch,
    /// The database cannot serve now (connection lost, pool timeout, database down, locked):
    /// the HTTP layer answers 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("store error: {0}")]
    Other(String),
}

/// An operation's failure before mapping: a raw database error (which may be retried) or an
/// outcome decided by the store itself.
#[derive(Debug)]
pub(super) enum Fail {
    Db(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<serde_json::Error> for Fail {
    fn from(e: serde_json::Error) -> Self {
        Fail::Store(StoreError::Other(format!("stored JSON is invalid: {e}")))
    }
}

impl From<Fail> for StoreError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Store(e) => e,
            Fail::Db(e) => classify(e),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        classify(e)
    }
}

fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict {
                what: conflict_what(db.as_ref()).into(),
            },
            ErrorKind::ForeignKeyViolation => StoreError::NotFound,
            _ if is_unavailable(db.as_ref()) => StoreError::Unavailable(db.message().into()),
            _ => StoreError::Other(db.message().into()),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::RowNotFound => StoreError::NotFound,
        _ => StoreError::Other(e.to_string()),
    }
}

/// The SCIM attribute behind a unique index, from the index name in the message (SQLite names
/// the columns, PostgreSQL the constraint).
fn conflict_what(db: &dyn DatabaseError) -> &'static str {
    let text = format!("{} {}", db.message(), db.constraint().unwrap_or_default());
    if text.contains("user_name_lc") {
        "userName"
    } else if text.contains("display_name_lc") {
        "displayName"
    } else if text.contains("partner_email_lc") {
        "the partner email"
    } else {
        "id"
    }
}

/// SQLite result codes (primary code in the low byte of the extended code).
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;

fn sqlite_primary_code(db: &dyn DatabaseError) -> Option<i64> {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    db.code()?.parse::<i64>().ok().map(|c| c & 0xff)
}

fn pg_code(db: &dyn DatabaseError) -> Option<String> {
    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    db.code().map(|c| c.into_owned())
}

fn is_unavailable(db: &dyn DatabaseError) -> bool {
    if let Some(code) = sqlite_primary_code(db) {
        return matches!(
            code,
            SQLITE_BUSY
                | SQLITE_LOCKED
                | SQLITE_READONLY
                | SQLITE_IOERR
                | SQLITE_FULL
                | SQLITE_CANTOPEN
        );
    }
    match pg_code(db) {
        // 08: connection exception; 53: insufficient resources; 57P0x: shutdown, cannot connect
        // now; 40001/40P01 left over after retries.
        Some(code) => {
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }
        None => false,
    }
}

/// Whether retrying the whole operation may succeed: SQLite busy/locked, PostgreSQL
/// serialization failure or deadlock.
pub(super) fn is_transient(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    if let Some(code) = sqlite_primary_code(db.as_ref()) {
        return code == SQLITE_BUSY || code == SQLITE_LOCKED;
    }
    matches!(pg_code(db.as_ref()).as_deref(), Some("40001" | "40P01"))
}

/// `message` with the URL and its password (if any) replaced by `***`.
pub(super) fn redact(message: &str, url: &str) -> String {
    let mut out = message.replace(url, "***");
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(password) = parsed.password().filter(|p| !p.is_empty()) {
            out = out.replace(password, "***");
            if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                if !decoded.is_empty() {
                    out = out.replace(decoded.as_ref(), "***");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_url_and_password() {
        let url = "postgres://app:s%40cret@db:5432/scim";
        assert_eq!(redact(&format!("bad {url}"), url), "bad ***");
        assert_eq!(redact("auth failed for s@cret", url), "auth failed for ***");
        assert_eq!(
            redact("auth failed for s%40cret", url),
            "auth failed for ***"
        );
    }
}
