//! Worker liveness (DESIGN.md section 4, "dead workers are noticed in seconds"): on PostgreSQL
//! each engine holds a session-level advisory lock, keyed by its worker id, on a connection of
//! its own for as long as it lives. The lock dies with the connection, so when a replica is
//! killed its lock is free at once, and the claims it left are released by the next live
//! worker that looks ([`Store::release_dead_claims`]) instead of waiting out their leases.
//!
//! A free lock alone is not proof of death (the server may have dropped a live worker's
//! session): a dead worker's claims are only released when they have also gone unrenewed for a
//! while, and a worker that finds its own lock connection broken stops every write it has in
//! flight before it claims anything again (`bridge::engine`). SQLite serves one process, which
//! releases every claim when it starts (`Store::release_stale_claims`): nothing to do there.

use sqlx::PgConnection;

use super::error::Fail;
use super::{retrying, Pool, Store, StoreError};

/// The advisory-lock namespace of worker liveness (the first key of PostgreSQL's two-key
/// form), so the bridge's locks cannot meet another application's one-key locks.
const LOCK_SPACE: i32 = 0x5c1b_0001;

/// The lock's second key: a stable 32-bit hash of the worker id (FNV-1a). Two workers whose
/// ids collide look alive while either lives, which only ever delays a takeover.
fn lock_key(worker: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in worker.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

/// The liveness lock of one worker: held while this value lives and its connection is sound.
/// The connection is detached from the pool: dropping the lock closes it, which frees the
/// lock (a pooled connection would go back to the pool still holding it).
pub struct WorkerLock {
    conn: PgConnection,
}

impl WorkerLock {
    /// Whether the lock is still held: its connection answers. A broken connection means the
    /// server may have released the lock, and other workers may take this worker's claims.
    pub async fn check(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&mut self.conn)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from(Fail::Db(e)))
    }
}

impl Store {
    /// Takes the liveness lock of `worker` on a connection taken out of the pool for it.
    /// `None` on SQLite, which needs none.
    pub async fn hold_worker_lock(&self, worker: &str) -> Result<Option<WorkerLock>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| StoreError::from(Fail::Db(e)))?
            .detach();
        // `try`: the only other holder can be a worker checking whether this one is dead
        // (for an instant), or a worker whose id hashes alike; the caller tries again.
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_SPACE)
            .bind(lock_key(worker))
            .fetch_one(&mut conn)
            .await
            .map_err(|e| StoreError::from(Fail::Db(e)))?;
        if !held {
            return Err(StoreError::Unavailable(
                "the worker's liveness lock is taken; trying again".into(),
            ));
        }
        Ok(Some(WorkerLock { conn }))
    }

    /// Releases the claims of workers that are gone: another worker's claims whose lease was
    /// last renewed before `renewed_before_ms` (the caller passes "now minus a few renewal
    /// periods", so a live worker that renews on time is never touched) and whose liveness lock
    /// nobody holds. Returns the workers found dead and how many claims each left. Does
    /// nothing on SQLite. `lease_ms` is the lease a renewal grants (`claimed_until_ms` minus
    /// it is when the claim was last renewed).
    pub async fn release_dead_claims(
        &self,
        me: &str,
        renewed_before_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(Vec::new());
        };
        let until_before = renewed_before_ms.saturating_add(lease_ms);
        let candidates: Vec<String> = retrying(move || async move {
            let rows = sqlx::query_scalar(
                "SELECT DISTINCT claimed_by FROM outbox WHERE claimed_by IS NOT NULL \
                 AND claimed_by <> $1 AND claimed_until_ms < $2",
            )
            .bind(me)
            .bind(until_before)
            .fetch_all(pool)
            .await?;
            Ok(rows)
        })
        .await?;
        let mut dead = Vec::new();
        for worker in candidates {
            let released = release_if_dead(pool, &worker, until_before)
                .await
                .map_err(|e| StoreError::from(Fail::Db(e)))?;
            if released > 0 {
                dead.push((worker, released));
            }
        }
        Ok(dead)
    }
}

/// Takes `worker`'s liveness lock for a moment: when that succeeds its session is gone, and
/// its claims not renewed since `until_before - lease` are released (re-checked in the
/// `UPDATE`, so a worker that came back and renewed keeps its rows).
async fn release_if_dead(
    pool: &sqlx::PgPool,
    worker: &str,
    until_before: i64,
) -> Result<u64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let key = lock_key(worker);
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(LOCK_SPACE)
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    if !free {
        return Ok(0);
    }
    let released = sqlx::query(
        "UPDATE outbox SET claimed_by = NULL, claimed_until_ms = NULL, claim_token = NULL \
         WHERE claimed_by = $1 AND claimed_until_ms < $2",
    )
    .bind(worker)
    .bind(until_before)
    .execute(&mut *conn)
    .await
    .map(|r| r.rows_affected());
    // Unlocked whatever the update did: a session-level lock would outlive this use of the
    // pooled connection. If the unlock itself fails, the connection is closed instead.
    let unlocked: Result<bool, sqlx::Error> =
        sqlx::query_scalar("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_SPACE)
            .bind(key)
            .fetch_one(&mut *conn)
            .await;
    if unlocked.is_err() {
        conn.close_on_drop();
    }
    released
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_are_stable_and_spread() {
        assert_eq!(lock_key("a"), lock_key("a"));
        assert_ne!(lock_key("host-1"), lock_key("host-2"));
    }
}
