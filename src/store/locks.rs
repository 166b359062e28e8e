//! Write locks (`write_locks`, migration `0004_write_locks.sql`): leases that let one writer
//! at a time act on a name at the partner, across every replica. A lock is a row per key; a
//! holder takes all its keys or none, and holds them until it lets go or its lease ends.

use super::{retrying, Store, StoreError};

/// The key of the lock on the names group `group_id` carries at the partner.
pub fn group_names_key(group_id: &str) -> String {
    format!("group-names:{group_id}")
}

/// The key of the lock on a group displayName (any case) while a group takes it (a create,
/// a rename).
pub fn group_name_key(display_name: &str) -> String {
    format!("group-name:{}", super::types::lc(display_name))
}

/// The key of the lock on a userName (any case) while a user takes it.
pub fn user_name_key(user_name: &str) -> String {
    format!("user-name:{}", super::types::lc(user_name))
}

/// The key of the lock on a partner email (any case) while a user takes it.
pub fn user_email_key(email: &str) -> String {
    format!("user-email:{}", super::types::lc(email))
}

impl Store {
    /// Takes the locks `keys` of `tenant` for `holder` until `until_ms`, all or none: none
    /// when another holder's lock on one of them is still live at `now_ms`. A holder taking
    /// its own keys again moves their end to `until_ms`. True when `holder` has them now.
    pub async fn take_write_locks(
        &self,
        tenant: &str,
        keys: &[String],
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let keys = &super::dedup(keys);
        let begin = self.begin_write();
        retrying(move || async move {
            let taken = with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                let mut all = true;
                for key in keys {
                    let n = sqlx::query(
                        "INSERT INTO write_locks (tenant, lock_key, holder, until_ms) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, lock_key) DO UPDATE \
                         SET holder = excluded.holder, until_ms = excluded.until_ms \
                         WHERE write_locks.until_ms <= $5 \
                         OR write_locks.holder = excluded.holder",
                    )
                    .bind(tenant)
                    .bind(key.as_str())
                    .bind(holder)
                    .bind(until_ms)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n != 1 {
                        all = false;
                        break;
                    }
                }
                if all {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                all
            });
            Ok(taken)
        })
        .await
    }

    /// Lets go of the locks `keys` [`Store::take_write_locks`] gave `holder` (nothing for a
    /// key that has passed to another holder meanwhile).
    pub async fn release_write_locks(
        &self,
        tenant: &str,
        keys: &[String],
        holder: &str,
    ) -> Result<(), StoreError> {
        let keys = &super::dedup(keys);
        let begin = self.begin_write();
        retrying(move || async move {
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(begin).await?;
                for key in keys {
                    sqlx::query(
                        "DELETE FROM write_locks WHERE tenant = $1 AND lock_key = $2 \
                         AND holder = $3",
                    )
                    .bind(tenant)
                    .bind(key.as_str())
                    .bind(holder)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// [`Store::take_write_locks`] of the names of group `group_id` (see
    /// [`group_names_key`]).
    pub async fn lock_group_names(
        &self,
        tenant: &str,
        group_id: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        self.take_write_locks(
            tenant,
            &[group_names_key(group_id)],
            holder,
            now_ms,
            until_ms,
        )
        .await
    }

    /// [`Store::release_write_locks`] of the names of group `group_id`.
    pub async fn unlock_group_names(
        &self,
        tenant: &str,
        group_id: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        self.release_write_locks(tenant, &[group_names_key(group_id)], holder)
            .await
    }
}
