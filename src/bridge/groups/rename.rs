//! A group's names at the partner: the shared tail of PUT and PATCH (a rename at every site
//! under the group's names lock, undone where it cannot be committed, then the commit), and
//! that lock, which one writer at a time holds across every replica.

use super::*;

/// The lock on a group's partner names for a request (a rename, a delete), with the lock
/// on the displayName a rename takes (`new_name`, a `group_name_key`), or the 503 that says
/// another writer holds one of them.
pub(super) async fn take_names(
    bridge: &Bridge,
    tenant: &Tenant,
    group_id: &str,
    new_name: Option<String>,
) -> BridgeResult<WriteLock> {
    let lease = tenant_lease_ms(bridge.options.rename_settle_ms, tenant);
    let mut keys = vec![crate::store::group_names_key(group_id)];
    keys.extend(new_name);
    WriteLock::take(&bridge.store, tenant.name(), keys, lease)
        .await?
        .ok_or_else(names_busy)
}

/// The lock on the names group `group_id` carries at the partner: one writer at a time
/// renames, finishes or undoes a rename of a group, or deletes it, across every replica.
pub(crate) async fn names_lock(
    store: &crate::store::Store,
    tenant: &str,
    group_id: &str,
    lease: (u64, u64),
) -> Result<Option<WriteLock>, StoreError> {
    WriteLock::take(
        store,
        tenant,
        vec![crate::store::group_names_key(group_id)],
        lease,
    )
    .await
}

/// The answer to a rename while another writer changes the group's names (or creates or
/// renames a group of the name it takes).
fn names_busy() -> BridgeError {
    BridgeError::contended("Another change of this group's name is being finished; retry shortly.")
}

/// The shared tail of PUT and PATCH: rename at the partner, then group row and memberships in
/// one transaction, then wait for the workers.
pub(super) async fn write(
    bridge: &Bridge,
    scope: Scope<'_>,
    old: GroupRow,
    resource: Value,
    view: &GroupView,
    (add, remove): (&[String], &[String]),
    pace: Pace,
) -> BridgeResult<Pending> {
    let tenant = scope.tenant;
    validate_group_name(&view.display_name)?;
    let renamed = view.display_name != old.display_name;
    if !renamed {
        return rename_then_commit(bridge, scope, old, resource, view, (add, remove), pace).await;
    }
    check_grantable(tenant, &view.display_name)?;
    // Held from before the check and the partner calls until the new name is committed or
    // undone, and let go before the answer (an IdP that retries at once finds it free): the
    // group's names, and a new displayName (no create of a group of that name meanwhile).
    let new_name = !view.display_name.eq_ignore_ascii_case(&old.display_name);
    let taking = new_name.then(|| crate::store::group_name_key(&view.display_name));
    let lock = take_names(bridge, tenant, &old.id, taking).await?;
    if new_name {
        if let Err(e) = check_display_name(bridge, tenant, &view.display_name, Some(&old.id)).await
        {
            lock.release().await;
            return Err(e);
        }
    }
    let result = rename_then_commit(bridge, scope, old, resource, view, (add, remove), pace).await;
    lock.release().await;
    result
}

/// The rest of [`write`], under the group's names lock for a rename: rename at the
/// partner, then group row and memberships in one transaction.
async fn rename_then_commit(
    bridge: &Bridge,
    scope: Scope<'_>,
    old: GroupRow,
    resource: Value,
    view: &GroupView,
    (add, remove): (&[String], &[String]),
    pace: Pace,
) -> BridgeResult<Pending> {
    let tenant = scope.tenant;
    let renamed = view.display_name != old.display_name;
    if renamed {
        rename_at_sites(bridge, tenant, &old, &view.display_name).await?;
    }
    let now = now_ms();
    let row = GroupRow {
        tenant: old.tenant.clone(),
        id: old.id.clone(),
        display_name: view.display_name.clone(),
        external_id: view.external_id.clone(),
        partner_name: if renamed {
            view.display_name.clone()
        } else {
            old.partner_name.clone()
        },
        access: old.access.clone(),
        resource: storable(resource),
        created_ms: old.created_ms,
        last_modified_ms: now.max(old.last_modified_ms + 1),
        version: old.version + 1,
    };
    let (marks, _gone) = match change(
        bridge,
        tenant,
        &row.id,
        Some((&row, old.version)),
        add,
        remove,
        pace,
    )
    .await
    {
        Ok(m) => m,
        Err(e) => {
            // Undo the partner rename so partner and store agree again, unless another write
            // of the group committed meanwhile (another replica's, or the IdP's retry of this
            // very rename): its name is the store's now, and undoing would take it away.
            if renamed && still_named(bridge, &old).await? {
                undo_at_sites(tenant, &row.display_name, &old.partner_name).await;
            }
            return Err(e);
        }
    };
    Ok(Pending { row, marks, pace })
}

/// Renames the group from its partner name in `old` to `to` at every site, both names
/// recorded as managed first. When some site fails, the sites that did rename are put back
/// (unless another write of the group committed meanwhile), and the failure is the answer.
async fn rename_at_sites(
    bridge: &Bridge,
    tenant: &Tenant,
    old: &GroupRow,
    to: &str,
) -> BridgeResult<()> {
    let (from, to) = (old.partner_name.clone(), to.to_owned());
    // Both names count as managed from now on, whatever happens at the partner (a rename
    // applied whose answer is lost, an undo that fails, the process killed before the
    // commit): a convergence never takes either for an unmanaged group and keeps it on a
    // user who left.
    bridge
        .store
        .add_group_known_names(
            tenant.name(),
            &old.id,
            &[from.clone(), to.clone()],
            now_ms(),
        )
        .await?;
    let results = for_each_site(tenant, |site| {
        let (from, to) = (from.clone(), to.clone());
        async move { rename_at(tenant, site, &from, &to).await }
    })
    .await;
    let renamed_at: Vec<&Site> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(site, _)| *site)
        .collect();
    // Put the sites that did rename back, so partner and store agree until the client's
    // retry (unless that retry, or another replica, committed meanwhile).
    if renamed_at.len() < results.len() && still_named(bridge, old).await? {
        join_all(
            renamed_at
                .iter()
                .map(|site| undo_rename(tenant, site, &to, &from)),
        )
        .await;
    }
    all_sites(results)
}

/// Undoes a rename from `from` back to `to` at every site, after its commit failed; a site
/// that fails is left to the engine, which finishes or undoes the rename later.
async fn undo_at_sites(tenant: &Tenant, from: &str, to: &str) {
    let results = for_each_site(tenant, |site| async move {
        undo_rename(tenant, site, from, to).await
    })
    .await;
    for (site, r) in results {
        if let Err(e) = r {
            tracing::warn!(site = %site.name, error = %e, "undoing a group rename failed; the engine finishes or undoes it later");
        }
    }
}

/// Whether the store still gives the group the partner name it had in `old` (no other write
/// of it, another replica's or the IdP's retry of the same rename, committed meanwhile).
async fn still_named(bridge: &Bridge, old: &GroupRow) -> BridgeResult<bool> {
    Ok(bridge
        .store
        .get_group(&old.tenant, &old.id)
        .await?
        .is_some_and(|g| g.partner_name == old.partner_name))
}

/// Renames a partner group back after a rename that did not commit; a site that does not
/// carry the new name (its rename never happened) is left as it is.
async fn undo_rename(
    tenant: &Tenant,
    site: &Site,
    from: &str,
    to: &str,
) -> Result<(), PartnerError> {
    let update = GroupUpdate {
        name: Some(to.to_owned()),
        access: None,
    };
    site.client
        .update_group(from, &update, tenant.dry_run())
        .await
        .or_gone()
        .map(drop)
}

/// Renames a partner group; a missing one is created under the new name.
async fn rename_at(tenant: &Tenant, site: &Site, from: &str, to: &str) -> Result<(), PartnerError> {
    // A configured override for the new name applies; otherwise the access stays as it is.
    let access = tenant
        .config
        .group_access
        .iter()
        .find(|(k, _)| k.to_lowercase() == to.to_lowercase())
        .map(|(_, a)| *a);
    let update = GroupUpdate {
        name: Some(to.to_owned()),
        access,
    };
    match site
        .client
        .update_group(from, &update, tenant.dry_run())
        .await
        .or_gone()?
    {
        Some(_) => Ok(()),
        None => create_or_adopt_group(tenant, site, to).await,
    }
}
