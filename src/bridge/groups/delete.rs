//! `DELETE /Groups/{id}` under the group's names lock.

use super::rename::take_names;
use super::*;

/// `DELETE /Groups/{id}`: the partner group goes at every site (the partner removes it from
/// its members). A group proven to be one of the partner's built-in ones (by its name, or by
/// the partner's refusal saying so) is not deleted there but emptied of the members the bridge
/// gave it. Any other refusal (a 401/403 is also what a revoked API key gets) is answered as
/// the error it is (503 with `Retry-After` for auth failures) and the store keeps the group,
/// so the IdP's retry deletes it once the partner accepts.
pub async fn delete(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    if_match: Option<&str>,
) -> BridgeResult<()> {
    let _guard = bridge.lock(scope.tenant.name(), id).await;
    let tenant = scope.tenant;
    let old = get_row(bridge, scope, id).await?;
    check_if_match(if_match, old.version)?;
    // No rename (another replica's, a repair) runs while the group goes: it could make the
    // group again under a name this delete has already taken away. Let go whatever the
    // outcome (its partner calls have all ended then); only a cancelled delete leaves it to
    // linger.
    let names = take_names(bridge, tenant, id, None).await?;
    let result = delete_locked(bridge, tenant, &old).await;
    names.release().await;
    result
}

/// The rest of [`delete`], under the group's names lock.
async fn delete_locked(bridge: &Bridge, tenant: &Tenant, old: &GroupRow) -> BridgeResult<()> {
    let id = old.id.as_str();
    let name = old.partner_name.clone();
    // Names the bridge gave the group before, no other group's now: a rename that
    // half-happened (and never committed) may have left the group under one at a site where
    // it is not under its current name.
    let formers: Vec<String> = bridge
        .store
        .former_names_of(tenant.name(), &name)
        .await?
        .into_iter()
        .map(|(former, _)| former)
        .filter(|former| !is_builtin_group(former))
        .collect();
    let dry = tenant.dry_run();
    let named_builtin = is_builtin_group(&name);
    // The members leave the group in the store first, each marked: a member's convergence
    // running meanwhile no longer wants the group (and never makes it again at a site that
    // has already deleted it), and if a site refuses the delete, the convergences still take
    // the group off every member there.
    let members = bridge.store.group_member_ids(tenant.name(), id).await?;
    let marks = if members.is_empty() {
        Vec::new()
    } else {
        change(bridge, tenant, id, None, &[], &members, Pace::Now)
            .await?
            .0
    };
    let results = for_each_site(tenant, |site| {
        let (name, formers) = (name.clone(), &formers);
        async move {
            if named_builtin {
                return Ok(true);
            }
            // An RBAC site's adopted role stays: like a built-in group, it is emptied.
            if site.client.keeps_group_role(&name).await? {
                tracing::info!(site = %site.name, "the group's role was adopted, not created by the bridge: emptying it, the role stays");
                return Ok(true);
            }
            match site.client.delete_group(&name, dry).await.or_gone() {
                Ok(Some(())) => Ok(false),
                // Not under its name here: a rename that half-happened may have left it under
                // a former one.
                Ok(None) => {
                    for former in formers {
                        site.client.delete_group(former, dry).await.or_gone()?;
                    }
                    Ok(false)
                }
                Err(e)
                    if e.kind == PartnerErrorKind::Auth
                        && e.status == Some(403)
                        && message_says_builtin(&e.message) =>
                {
                    tracing::info!(site = %site.name, "the partner keeps a built-in group; emptying it");
                    Ok(true)
                }
                Err(e) => Err(e),
            }
        }
    })
    .await;
    let mut builtin = false;
    for (site, r) in results {
        match r {
            Ok(b) => builtin |= b,
            Err(e) => {
                tracing::warn!(site = %site.name, error = %e, "group delete failed at a site");
                return Err(BridgeError::from(&e));
            }
        }
    }
    // A built-in group goes only once its members are out of it at the partner, waited for.
    if builtin && !marks.is_empty() && !bridge.engine.settle(&marks, bridge.wait_deadline()).await?
    {
        return Err(BridgeError::in_progress(
            "The group's members are still being removed at the partner; retry.",
        ));
    }
    bridge.engine.kick();
    // An RBAC site's role that stays (adopted) is no longer this group's: its link goes with
    // the row, in one transaction, its members being out of it by now.
    bridge.store.delete_group(tenant.name(), id).await?;
    Ok(())
}
