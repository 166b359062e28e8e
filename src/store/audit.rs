//! The audit log: who (credential name), what (operation, resource), when, outcome, request id.
//! Appended to, read newest first, and pruned of entries past the retention
//! (`audit.retention_days`, see `bridge::retention`).

use super::error::Fail;
use super::{retrying, AuditEntry, AuditQuery, Store, StoreError};

/// Rows one pruning statement deletes at most.
pub const PRUNE_CHUNK: u32 = 5_000;

#[derive(sqlx::FromRow)]
struct AuditRecord {
    at_ms: i64,
    tenant: String,
    credential: String,
    client: String,
    request_id: String,
    operation: String,
    resource_type: String,
    resource_id: Option<String>,
    status: i32,
    detail: Option<String>,
}

impl TryFrom<AuditRecord> for AuditEntry {
    type Error = Fail;

    fn try_from(r: AuditRecord) -> Result<Self, Fail> {
        Ok(AuditEntry {
            at_ms: r.at_ms,
            tenant: r.tenant,
            credential: r.credential,
            client: r.client,
            request_id: r.request_id,
            operation: r.operation,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            status: u16::try_from(r.status)
                .map_err(|_| StoreError::Other(format!("bad audit status {}", r.status)))?,
            detail: r.detail,
        })
    }
}

impl Store {
    /// Appends one entry to the audit log and emits it as one structured log line (target
    /// `audit`). A store failure is logged, not returned: the audited work is done already.
    pub async fn record_audit(&self, entry: &AuditEntry) {
        tracing::info!(
            target: "audit",
            tenant = %entry.tenant,
            credential = %entry.credential,
            client = %entry.client,
            request_id = %entry.request_id,
            operation = %entry.operation,
            resource_type = %entry.resource_type,
            resource_id = entry.resource_id.as_deref().unwrap_or(""),
            status = entry.status,
            detail = entry.detail.as_deref().unwrap_or(""),
            "audit"
        );
        if let Err(e) = self.append_audit(entry).await {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }

    /// Appends one entry to the audit log.
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        retrying(move || async move {
            with_pool!(self, pool => {
                sqlx::query(
                    "INSERT INTO audit (at_ms, tenant, credential, client, request_id, \
                     operation, resource_type, resource_id, status, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(entry.at_ms)
                .bind(entry.tenant.as_str())
                .bind(entry.credential.as_str())
                .bind(entry.client.as_str())
                .bind(entry.request_id.as_str())
                .bind(entry.operation.as_str())
                .bind(entry.resource_type.as_str())
                .bind(entry.resource_id.as_deref())
                .bind(i32::from(entry.status))
                .bind(entry.detail.as_deref())
                .execute(pool)
                .await
                .map(|_| ())
            })?;
            Ok(())
        })
        .await
    }

    /// Test support: the tenant's latest `limit` audit entries, newest first.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn audit_entries(
        &self,
        tenant: &str,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        retrying(move || async move {
            let records: Vec<AuditRecord> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT at_ms, tenant, credential, client, request_id, operation, \
                     resource_type, resource_id, status, detail FROM audit WHERE tenant = $1 \
                     ORDER BY seq DESC LIMIT $2",
                )
                .bind(tenant)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
            })?;
            records.into_iter().map(AuditEntry::try_from).collect()
        })
        .await
    }

    /// Audit entries matching every given condition, newest first: the tenant, entries at or
    /// after `since_ms`, and a resource (an id, or a type such as `Users`).
    pub async fn search_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        retrying(move || async move {
            let records: Vec<AuditRecord> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT at_ms, tenant, credential, client, request_id, operation, \
                     resource_type, resource_id, status, detail FROM audit \
                     WHERE (CAST($1 AS TEXT) IS NULL OR tenant = $1) \
                     AND (CAST($2 AS BIGINT) IS NULL OR at_ms >= $2) \
                     AND (CAST($3 AS TEXT) IS NULL OR resource_id = $3 OR resource_type = $3) \
                     ORDER BY seq DESC LIMIT $4",
                )
                .bind(q.tenant.as_deref())
                .bind(q.since_ms)
                .bind(q.resource.as_deref())
                .bind(i64::from(q.limit))
                .fetch_all(pool)
                .await
            })?;
            records.into_iter().map(AuditEntry::try_from).collect()
        })
        .await
    }

    /// Deletes audit entries older than `before_ms` (retention); returns how many. Deletes in
    /// chunks of [`PRUNE_CHUNK`] rows, each its own short statement, so a table that grew
    /// large never holds a lock (SQLite: the whole database) for long.
    pub async fn prune_audit(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.prune_audit_in_chunks(before_ms, PRUNE_CHUNK).await
    }

    /// [`Store::prune_audit`] with chunks of `chunk` rows (at least 1).
    pub async fn prune_audit_in_chunks(
        &self,
        before_ms: i64,
        chunk: u32,
    ) -> Result<u64, StoreError> {
        let chunk = i64::from(chunk.max(1));
        let mut total = 0;
        loop {
            let deleted = retrying(move || async move {
                let result = with_pool!(self, pool => {
                    sqlx::query(
                        "DELETE FROM audit WHERE seq IN \
                         (SELECT seq FROM audit WHERE at_ms < $1 ORDER BY seq LIMIT $2)",
                    )
                    .bind(before_ms)
                    .bind(chunk)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
                })?;
                Ok(result)
            })
            .await?;
            total += deleted;
            if deleted < chunk.unsigned_abs() {
                return Ok(total);
            }
            // Let the requests waiting for the store in between.
            tokio::task::yield_now().await;
        }
    }
}
