//! What the HTTP layer asks of the bridge besides SCIM resources: the readiness checks, the
//! audit log, and running an IdP's write with its partner calls recorded. The HTTP layer sees
//! the store and the partner client only through these.

use std::future::Future;
use std::time::Duration;

use super::Bridge;
use crate::partner::patience::impatient;
use crate::partner::record::recording;
use crate::store::{audit_entry_json, StoreError};

pub use crate::partner::client::MinuteCalls;
pub use crate::partner::record::CallRecorder;
pub use crate::store::{
    AuditEntry, AuditQuery, OutboxFailure, OutboxHealth, OutboxSiteStats, RetryFilter,
};

impl Bridge {
    /// Whether the store answers a trivial query.
    pub async fn ping_store(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Whether every migration this version needs is applied.
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        self.store.migrations_applied().await
    }

    /// The outbox's health at `now_ms`; stuck after failing for `stuck_after`.
    pub async fn outbox_health(
        &self,
        now_ms: i64,
        stuck_after: Option<Duration>,
    ) -> Result<OutboxHealth, StoreError> {
        self.store.outbox_health(now_ms, stuck_after).await
    }

    /// The operator's "retry now" (`scim-bridge retry`, the console): the failing and parked
    /// outbox items `filter` matches that wait for a later try (not those a worker holds)
    /// become due now, and this process's workers are woken. Returns how many it moved.
    pub async fn retry_failing(&self, filter: &RetryFilter) -> Result<u64, StoreError> {
        let count = retry_failing_in(&self.store, filter).await?;
        if count > 0 {
            self.engine.kick();
        }
        Ok(count)
    }

    /// The outbox gauges of every (tenant, site) with rows, of one tenant or of all.
    pub async fn outbox_by_site(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<OutboxSiteStats>, StoreError> {
        self.store.outbox_by_site(tenant).await
    }

    /// Up to `limit` failing outbox items, the longest-marked first.
    pub async fn outbox_failures(
        &self,
        tenant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxFailure>, StoreError> {
        self.store.outbox_failures(tenant, limit).await
    }

    /// The audit entry of the last reconcile run of (tenant, site), if any.
    pub async fn last_reconcile(
        &self,
        tenant: &str,
        site: &str,
    ) -> Result<Option<AuditEntry>, StoreError> {
        last_reconcile_in(&self.store, tenant, site).await
    }

    /// The audit entries matching `q` (at most `q.limit`), newest first, as stored.
    pub async fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.search_audit(q).await
    }

    /// Records one audit entry (also logged; a store failure is logged, never fatal).
    pub async fn record_audit(&self, entry: &AuditEntry) {
        self.store.record_audit(entry).await;
    }

    /// The audit entries matching `q`, newest first, as their JSON documents.
    pub async fn search_audit(&self, q: &AuditQuery) -> Result<Vec<serde_json::Value>, StoreError> {
        let entries = self.store.search_audit(q).await?;
        Ok(entries.iter().map(audit_entry_json).collect())
    }

    /// Runs an IdP's request: the partner calls it makes go to `recorder`, and it waits for
    /// partner limits at most `request_partner_wait_ms` (then answers 503 + Retry-After).
    pub async fn answering<F: Future>(&self, recorder: CallRecorder, request: F) -> F::Output {
        let patience = Duration::from_millis(self.options.request_partner_wait_ms);
        recording(recorder, impatient(patience, request)).await
    }
}

/// The store side of [`Bridge::retry_failing`], for `scim-bridge retry`, which runs no workers
/// of its own (a running `serve` picks the items up at its next poll).
pub async fn retry_failing_in(
    store: &crate::store::Store,
    filter: &RetryFilter,
) -> Result<u64, StoreError> {
    store.retry_outbox_now(filter, super::now_ms()).await
}

/// Audit entries read per site to find its last reconcile.
const RECONCILE_LOOKBACK: u32 = 50;

/// The audit entry of the last reconcile run of (tenant, site) in `store` (`scim-bridge
/// status` and the console).
pub async fn last_reconcile_in(
    store: &crate::store::Store,
    tenant: &str,
    site: &str,
) -> Result<Option<AuditEntry>, StoreError> {
    use super::reconcile::{AUDIT_OPERATION, AUDIT_RESOURCE_TYPE};
    // `resource` matches the resource id (the site) or the type; user and group ids are UUIDs,
    // so the entries of this site are all that comes back, newest first.
    let entries = store
        .search_audit(&AuditQuery {
            tenant: Some(tenant.to_owned()),
            since_ms: None,
            resource: Some(site.to_owned()),
            resource_type: Some(AUDIT_RESOURCE_TYPE.to_owned()),
            limit: RECONCILE_LOOKBACK,
        })
        .await?;
    Ok(entries.into_iter().find(|e| {
        e.operation == AUDIT_OPERATION
            && e.resource_type == AUDIT_RESOURCE_TYPE
            && e.resource_id.as_deref() == Some(site)
    }))
}
