//! Converging one (site, user): the worker's whole job for one claimed row. From the store at
//! that moment, what the user must be at the site (present or not, names, managed groups);
//! from the partner, what it is; one write under the claim's fence brings it in line.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ConvergeError, Converged, Fence};
use crate::bridge::mapping::{converge_groups, partner_names, same_groups};
use crate::bridge::{now_ms, Site, Tenant};
use crate::config::DeprovisionPolicy;
use crate::partner::client::{NewUser, UserUpdate};
use crate::partner::error::{OrGone, PartnerErrorKind};
use crate::scim::resource::UserView;
use crate::store::{Store, StoreError};

/// Converges one user at one site: the worker's whole job for one claimed row.
pub async fn converge_user(
    store: &Store,
    tenant: &Tenant,
    site: &Site,
    user_id: &str,
    writes: &AtomicU64,
    fence: &Fence,
    rename_settle_ms: i64,
) -> Result<Converged, ConvergeError> {
    let Some(user) = store.get_user(tenant.name(), user_id).await? else {
        return converge_deleted(store, tenant, site, user_id, writes, fence).await;
    };
    let present = !user.partner_email.is_empty()
        && (user.active || tenant.config.deprovision != DeprovisionPolicy::Remove);
    let current = converge_live(store, tenant, site, &user, writes, fence, rename_settle_ms).await;
    // Former emails of the user (an email change, or its removal) whose accounts may still be
    // at this site: a change that half-happened, or was cut short, leaves nothing behind. Only
    // once the current account is in line (a site that refuses the new email keeps the user's
    // old account rather than none), or when the user must not be at the partner at all.
    let mut waiting = false;
    if current.is_ok() || !present {
        for (email, kind, since) in store.pending_tombstones(tenant.name(), user_id).await? {
            if email.eq_ignore_ascii_case(&user.partner_email) {
                continue;
            }
            if kind == "claimed" {
                if now_ms() - since < rename_settle_ms {
                    // An email change in flight is taking it: its own flow decides. The row
                    // is looked at again (not completed, which would drop the account the
                    // change may leave behind if it never ends).
                    waiting = true;
                    continue;
                }
                // The change is surely over without committing (its process died): the
                // email is retired, and its account removed like any former email's.
                store
                    .release_claimed_email(tenant.name(), user_id, &email, &tenant.site_names())
                    .await?;
            }
            remove_account(store, tenant, site, &email, writes, fence).await?;
        }
    }
    if waiting && current.is_ok() {
        return Err(ConvergeError::Waiting(
            "an email change in flight claims a former email of the user; looking again later",
        ));
    }
    current
}

/// [`converge_user`] for the user's current email.
async fn converge_live(
    store: &Store,
    tenant: &Tenant,
    site: &Site,
    user: &crate::store::UserRow,
    writes: &AtomicU64,
    fence: &Fence,
    rename_settle_ms: i64,
) -> Result<Converged, ConvergeError> {
    let user_id = user.id.as_str();
    if user.partner_email.is_empty() {
        // No email address: the user cannot exist at the partner.
        return Ok(Converged::Skipped);
    }
    let policy = tenant.config.deprovision;
    let dry_run = tenant.dry_run();
    let present = user.active || policy != DeprovisionPolicy::Remove;
    let email = user.partner_email.clone();
    let protected = tenant.protects(&email);
    // A user that should be at the site may be answered absent from a recent reading of an
    // RBAC site's user list (its create then finds it); one about to be taken as gone never.
    let partner = if present {
        site.client.get_user_to_create(&email).await?
    } else {
        site.client.get_user(&email).await?
    };
    if !present && !protected {
        let partner = match partner {
            Some(p) => Some(p),
            None => site.client.find_missed_user(&email).await?,
        };
        if partner.is_some() {
            return delete_at(site, &email, dry_run, writes, fence).await;
        }
        return Ok(Converged::Unchanged);
    }
    // Active, kept (`keep`), or a protected account deactivated under `remove` (no groups).
    let desired: Vec<String> = if user.active || policy == DeprovisionPolicy::Keep {
        store
            .groups_of_user(tenant.name(), user_id)
            .await?
            .into_iter()
            .map(|g| g.partner_name)
            .collect()
    } else {
        Vec::new()
    };
    // Groups unmapped at the site (no role, and the site does not create roles) have no
    // partner effect: wanting them would rewrite the user on every convergence.
    let desired = site.client.groups_with_roles(desired).await?;
    let (first, last) = match UserView::from_resource(&user.resource) {
        Ok(v) => partner_names(&v, &email),
        Err(_) => (email.clone(), String::new()),
    };
    // A protected account keeps the names it has at the partner (`allow_protected_changes`).
    let (first, last) = match &partner {
        Some(p) if tenant.keeps_profile(&email) => (p.first_name.clone(), p.last_name.clone()),
        _ => (first, last),
    };
    let at = AtSite {
        store,
        tenant,
        site,
        user_id,
        writes,
        fence,
        rename_settle_ms,
    };
    match partner {
        // A deactivated protected account that is not at the site is not created there.
        None if !present => Ok(Converged::Unchanged),
        None => {
            let new = NewUser {
                email: email.clone(),
                first_name: first,
                last_name: last,
                groups: desired,
                invited_by_email: tenant.config.invited_by_email.clone(),
            };
            at.create(&new, protected).await
        }
        Some(p) => {
            at.update(&email, &p, (first, last), &desired, present)
                .await
        }
    }
}

/// One (site, user) a convergence works on, with what its writes need.
struct AtSite<'a> {
    store: &'a Store,
    tenant: &'a Tenant,
    site: &'a Site,
    user_id: &'a str,
    writes: &'a AtomicU64,
    fence: &'a Fence,
    rename_settle_ms: i64,
}

impl AtSite<'_> {
    /// [`repair_groups`] for a write naming `groups` that the site refused: true when it
    /// changed something (the write is worth another try).
    async fn repair(&self, groups: &[String]) -> Result<bool, ConvergeError> {
        repair_groups(
            self.store,
            self.tenant,
            self.site,
            self.user_id,
            groups,
            self.fence,
            self.rename_settle_ms,
        )
        .await
    }

    /// Creates the user at the site (repairing a group the create names that the site lacks),
    /// and undoes the create if a deletion or deactivation committed meanwhile.
    async fn create(&self, new: &NewUser, protected: bool) -> Result<Converged, ConvergeError> {
        let AtSite {
            store,
            tenant,
            site,
            user_id,
            writes,
            fence,
            ..
        } = *self;
        let (email, dry_run) = (&new.email, tenant.dry_run());
        let policy = tenant.config.deprovision;
        let mut created = fence.guard(site.client.create_user(new, dry_run)).await;
        if refused_groups(&created, &new.groups) && self.repair(&new.groups).await? {
            created = fence.guard(site.client.create_user(new, dry_run)).await;
        }
        if matches!(created, Err(ConvergeError::ClaimLost)) {
            return created.map(|_| Converged::Created);
        }
        // A DELETE or deactivation committed while this convergence ran (after it read the
        // store) would leave the user at the partner: look at the store again, and undo
        // the create (which may have landed even when its answer was lost).
        let still = store.get_user(tenant.name(), user_id).await?;
        if !protected && !still.is_some_and(|u| u.active || policy != DeprovisionPolicy::Remove) {
            return delete_at(site, email, dry_run, writes, fence).await;
        }
        created?;
        writes.fetch_add(1, Ordering::Relaxed);
        Ok(Converged::Created)
    }

    /// Brings the partner user `p` (of the store's `email`) in line: its managed groups to `desired` (its unmanaged
    /// ones kept), its names to `names`; `present` false strips a protected account.
    async fn update(
        &self,
        email: &str,
        p: &crate::partner::PartnerUser,
        (first, last): (String, String),
        desired: &[String],
        present: bool,
    ) -> Result<Converged, ConvergeError> {
        let AtSite {
            store,
            tenant,
            site,
            writes,
            fence,
            ..
        } = *self;
        let dry_run = tenant.dry_run();
        let mut managed = managed_names(store, tenant, site).await?;
        if tenant.keeps_profile(email) {
            // The site's owner and protected accounts keep their administrator rights.
            managed.retain(|g| !site.privileged(g));
        }
        let groups = converge_groups(&p.groups, &managed, desired);
        let mut update = UserUpdate::default();
        if !same_groups(&p.groups, &groups) {
            update.groups = Some(groups);
        }
        if p.first_name != first {
            update.first_name = Some(first);
        }
        if p.last_name != last {
            update.last_name = Some(last);
        }
        if update.groups.is_none() && update.first_name.is_none() && update.last_name.is_none() {
            return Ok(Converged::Unchanged);
        }
        let mut updated = fence
            .guard(site.client.update_user(email, &update, dry_run))
            .await;
        if refused_groups(&updated, desired) && self.repair(desired).await? {
            updated = fence
                .guard(site.client.update_user(email, &update, dry_run))
                .await;
        }
        updated?;
        writes.fetch_add(1, Ordering::Relaxed);
        Ok(if present {
            Converged::Updated
        } else {
            Converged::Stripped
        })
    }
}

/// Whether a user write naming `groups` was refused as invalid: a group it names may be
/// missing at the site (a rename that half-happened, a group deleted in the vendor's UI).
fn refused_groups<T>(result: &Result<T, ConvergeError>, groups: &[String]) -> bool {
    !groups.is_empty()
        && matches!(result, Err(ConvergeError::Partner(e)) if e.kind == PartnerErrorKind::Invalid)
}

/// Brings the site's groups in line with the names the store gives them, for the groups a
/// user write needs: a group missing under its current name is renamed from a former name the
/// site still carries (finishing a rename that half-happened), else created. True when it
/// changed something (the write is worth another try).
async fn repair_groups(
    store: &Store,
    tenant: &Tenant,
    site: &Site,
    user_id: &str,
    groups: &[String],
    fence: &Fence,
    rename_settle_ms: i64,
) -> Result<bool, ConvergeError> {
    let mut repaired = false;
    for name in groups {
        if site.client.get_group(name).await?.is_some() {
            continue;
        }
        // Re-read: a rename may have committed since this convergence read the user's groups,
        // or a group DELETE (which takes the members out first) may be under way; a group is
        // made again only while the store still has this user in a group of that name (the
        // next try reads what is current).
        let Some(group_id) = store
            .groups_of_user(tenant.name(), user_id)
            .await?
            .into_iter()
            .find(|g| g.partner_name.eq_ignore_ascii_case(name))
            .map(|g| g.id)
        else {
            continue;
        };
        // One writer at a time changes the group's names (a rename's request, its retry,
        // another replica's repair): without the lock, a rename retried while this repair
        // puts the group back under the store's name leaves it under both.
        let lease =
            crate::bridge::write_lock::lease_ms(u64::try_from(rename_settle_ms).unwrap_or(0), site);
        let Some(lock) =
            crate::bridge::groups::names_lock(store, tenant.name(), &group_id, lease).await?
        else {
            return Ok(false);
        };
        let formers = store.former_names_of(tenant.name(), name).await?;
        if formers
            .iter()
            .any(|(_, since)| now_ms() - since < rename_settle_ms)
            || !store
                .groups_of_user(tenant.name(), user_id)
                .await?
                .iter()
                .any(|g| g.id == group_id && g.partner_name.eq_ignore_ascii_case(name))
        {
            // A rename of this group may still be under way (its request, or the flow the
            // request left running), or committed since the first look: repairing now would
            // race it or undo it. The write is retried later.
            lock.release().await;
            return Ok(false);
        }
        let done = put_under_name(tenant, site, name, formers, fence).await;
        // A write the fence abandoned may still land: the lock lingers (dropped) for the
        // time it takes; any other outcome has ended every call, so it is let go.
        if matches!(done, Err(ConvergeError::ClaimLost)) {
            drop(lock);
        } else {
            lock.release().await;
        }
        done?;
        repaired = true;
    }
    Ok(repaired)
}

/// Gives the site a group under `name`: renamed from the first of `formers` the site still
/// carries (finishing a rename that half-happened), else created (or adopted).
async fn put_under_name(
    tenant: &Tenant,
    site: &Site,
    name: &str,
    formers: Vec<(String, i64)>,
    fence: &Fence,
) -> Result<(), ConvergeError> {
    for (former, _) in formers {
        if site.client.get_group(&former).await?.is_some() {
            tracing::info!(site = %site.name, "finishing a group rename that half-happened");
            let update = crate::partner::client::GroupUpdate {
                name: Some(name.to_owned()),
                access: None,
            };
            fence
                .guard(site.client.update_group(&former, &update, tenant.dry_run()))
                .await?;
            return Ok(());
        }
    }
    tracing::info!(site = %site.name, "a managed group is missing at the site; creating it");
    fence
        .guard(crate::bridge::groups::create_or_adopt_group(
            tenant, site, name,
        ))
        .await?;
    Ok(())
}

/// The lowercased partner names of the tenant's managed groups.
pub(crate) async fn managed_names(
    store: &Store,
    tenant: &Tenant,
    site: &Site,
) -> Result<HashSet<String>, StoreError> {
    let managed = store.managed_group_names(tenant.name()).await?;
    // Only when a privileged name is among them (rare) is a second look needed.
    let current = if !site.allow_admin_grant && managed.iter().any(|g| site.privileged(g)) {
        store.current_group_names(tenant.name()).await?
    } else {
        Vec::new()
    };
    Ok(site.managed_here(managed, current.iter().map(String::as_str)))
}

/// Converges a (site, user) whose user row is gone: each pending tombstone's partner account
/// is removed ([`remove_account`]); without one there is nothing to do.
async fn converge_deleted(
    store: &Store,
    tenant: &Tenant,
    site: &Site,
    user_id: &str,
    writes: &AtomicU64,
    fence: &Fence,
) -> Result<Converged, ConvergeError> {
    let emails = store.pending_tombstones(tenant.name(), user_id).await?;
    let mut outcome = Converged::Skipped;
    for (email, _, _) in emails {
        outcome = remove_account(store, tenant, site, &email, writes, fence).await?;
    }
    Ok(outcome)
}

/// Removes a partner account the IdP's intent no longer has (a deleted user's, or a live
/// user's former email): deleted, or stripped of its managed groups when protected; left alone
/// when a live user of the tenant holds that email now (its own convergence keeps it in line).
async fn remove_account(
    store: &Store,
    tenant: &Tenant,
    site: &Site,
    email: &str,
    writes: &AtomicU64,
    fence: &Fence,
) -> Result<Converged, ConvergeError> {
    if !store
        .users_by_partner_email(tenant.name(), email)
        .await?
        .is_empty()
    {
        return Ok(Converged::Skipped);
    }
    let dry_run = tenant.dry_run();
    if !tenant.protects(email) {
        return delete_at(site, email, dry_run, writes, fence).await;
    }
    let Some(p) = site.client.get_user(email).await? else {
        return Ok(Converged::Unchanged);
    };
    let mut managed = managed_names(store, tenant, site).await?;
    if tenant.keeps_profile(email) {
        managed.retain(|g| !site.privileged(g));
    }
    let groups = converge_groups(&p.groups, &managed, &[]);
    if same_groups(&p.groups, &groups) {
        return Ok(Converged::Unchanged);
    }
    tracing::info!(site = %site.name, "a protected account left SCIM: its managed groups are removed, the account kept");
    let update = UserUpdate {
        groups: Some(groups),
        ..UserUpdate::default()
    };
    fence
        .guard(site.client.update_user(email, &update, dry_run))
        .await?;
    writes.fetch_add(1, Ordering::Relaxed);
    Ok(Converged::Stripped)
}

/// Deletes the partner user (one already gone counts as deleted).
async fn delete_at(
    site: &Site,
    email: &str,
    dry_run: bool,
    writes: &AtomicU64,
    fence: &Fence,
) -> Result<Converged, ConvergeError> {
    fence
        .guard(async { site.client.delete_user(email, dry_run).await.or_gone() })
        .await?;
    writes.fetch_add(1, Ordering::Relaxed);
    Ok(Converged::Deleted)
}
