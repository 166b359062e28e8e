//! The wall clock the store and the audit log record in: unix milliseconds. A leaf.

/// Milliseconds since the Unix epoch (saturating far in the future).
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}
