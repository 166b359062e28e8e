//! The audit log: who (credential name), what (operation, resource), when, outcome, request id.
//! Appended to, read newest first, and pruned of entries past the retention
//! (`audit.retention_days`, see `bridge::retention`).

use super::error::Fail;
use super::types::lc;
use super::{retrying, AuditEntry, AuditQuery, Store, StoreError};

/// Entries [`Store::record_audit_batch`] writes in one transaction.
pub const AUDIT_BATCH: usize = 500;

const INSERT_AUDIT: &str = "INSERT INTO audit (at_ms, tenant, credential, client, request_id, \
    operation, resource_type, resource_id, status, detail) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

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
                sqlx::query(INSERT_AUDIT)
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

    /// Appends many entries (a bulk command's rows), a transaction per [`AUDIT_BATCH`]
    /// entries. A store failure is logged, not returned, as for [`Store::record_audit`];
    /// the entries are not logged one by one (the command prints them itself).
    pub async fn record_audit_batch(&self, entries: &[AuditEntry]) {
        for chunk in entries.chunks(AUDIT_BATCH) {
            if let Err(e) = retrying(|| self.append_audit_chunk(chunk)).await {
                tracing::warn!(error = %e, entries = chunk.len(), "cannot write the audit log");
            }
        }
    }

    async fn append_audit_chunk(&self, entries: &[AuditEntry]) -> Result<(), Fail> {
        let begin = self.begin_write();
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            for entry in entries {
                sqlx::query(INSERT_AUDIT)
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
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
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
    /// after `since_ms`, a resource type (any case, singular or plural), and a resource.
    ///
    /// The resource is a name as an operator knows it, resolved in each entry's tenant: an
    /// entry matches when its resource id is the text itself, or the id of a user whose
    /// userName or any email (or partner email) is the text, or of a deleted user whose
    /// email it was (its tombstone, kept a week after the deletion converged; also a live
    /// user's former email), or of a group with that display name; or when the text (an
    /// email) is the entry's resource id, as the bulk commands record their rows; or when
    /// the text is the entry's resource type. Names compare case-insensitively.
    pub async fn search_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let resource = q.resource.as_deref().map(str::trim);
        let resource_lc = resource.map(lc);
        let resource_type = q.resource.as_deref().map(AuditQuery::type_spellings);
        let only_type = q.resource_type.as_deref().map(AuditQuery::type_spellings);
        let (resource_lc, resource_type, only_type) = (&resource_lc, &resource_type, &only_type);
        retrying(move || async move {
            let records: Vec<AuditRecord> = with_pool!(self, pool => {
                sqlx::query_as(
                    "SELECT at_ms, tenant, credential, client, request_id, operation, \
                     resource_type, resource_id, status, detail FROM audit a \
                     WHERE (CAST($1 AS TEXT) IS NULL OR a.tenant = $1) \
                     AND (CAST($2 AS BIGINT) IS NULL OR a.at_ms >= $2) \
                     AND (CAST($3 AS TEXT) IS NULL OR a.resource_id = $3 OR a.resource_id = $4 \
                       OR lower(a.resource_type) IN ($5, $6) \
                       OR a.resource_id IN (SELECT u.id FROM users u WHERE u.tenant = a.tenant \
                         AND (u.user_name_lc = $4 OR u.partner_email_lc = $4)) \
                       OR a.resource_id IN (SELECT e.user_id FROM user_emails e \
                         WHERE e.tenant = a.tenant AND e.value_lc = $4) \
                       OR a.resource_id IN (SELECT t.id FROM user_tombstones t \
                         WHERE t.tenant = a.tenant AND t.partner_email_lc = $4) \
                       OR a.resource_id IN (SELECT g.id FROM groups g \
                         WHERE g.tenant = a.tenant AND g.display_name_lc = $4)) \
                     AND (CAST($7 AS TEXT) IS NULL OR lower(a.resource_type) IN ($7, $8)) \
                     ORDER BY a.seq DESC LIMIT $9",
                )
                .bind(q.tenant.as_deref())
                .bind(q.since_ms)
                .bind(resource)
                .bind(resource_lc.as_deref())
                .bind(resource_type.as_ref().map(|t| t.0.as_str()))
                .bind(resource_type.as_ref().map(|t| t.1.as_str()))
                .bind(only_type.as_ref().map(|t| t.0.as_str()))
                .bind(only_type.as_ref().map(|t| t.1.as_str()))
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
