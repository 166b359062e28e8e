//! `PUT` and `PATCH /Users/{id}`: partner calls for what changed at every site (an email
//! change under the user's outbox claims, as a convergence's writes are), then the row and
//! its marks in one transaction, holding a new userName or email the change takes.

use super::*;

/// `PUT /Users/{id}`.
pub async fn replace(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    body: Value,
    if_match: Option<&str>,
) -> BridgeResult<Value> {
    let _guard = bridge.lock(scope.tenant.name(), id).await;
    let old = get_row(bridge, scope, id).await?;
    check_if_match(if_match, old.version)?;
    let mut resource = canonicalize(&USER_RESOURCE, body, InputMode::Replace)?;
    keep_write_only(&mut resource);
    update(bridge, scope, old, resource).await
}

/// `PATCH /Users/{id}`.
pub async fn patch(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    request: &PatchRequest,
    if_match: Option<&str>,
) -> BridgeResult<Value> {
    let _guard = bridge.lock(scope.tenant.name(), id).await;
    let old = get_row(bridge, scope, id).await?;
    check_if_match(if_match, old.version)?;
    let mut current = old.resource.clone();
    if let Some(obj) = current.as_object_mut() {
        obj.insert("id".into(), Value::String(old.id.clone()));
    }
    let outcome = apply_patch(&USER_RESOURCE, &current, request)?;
    if !outcome.changed {
        return render(bridge, scope, &old).await;
    }
    let mut resource = outcome.resource;
    keep_write_only(&mut resource);
    update(bridge, scope, old, resource).await
}

/// `password` is accepted and never kept.
fn keep_write_only(resource: &mut Value) {
    if let Some(obj) = resource.as_object_mut() {
        obj.remove("password");
    }
}

/// The shared tail of PUT and PATCH: partner calls for what changed, then the store, holding
/// a new userName or email the change takes (see [`take_identity`]) until it commits.
async fn update(
    bridge: &Bridge,
    scope: Scope<'_>,
    old: UserRow,
    resource: Value,
) -> BridgeResult<Value> {
    let resource = storable(resource);
    if resource == old.resource {
        // Nothing changed: no partner call, no version bump.
        return render(bridge, scope, &old).await;
    }
    let view = UserView::from_resource(&resource)?;
    let mut keys = Vec::new();
    if !view.user_name.eq_ignore_ascii_case(&old.user_name) {
        keys.push(crate::store::user_name_key(&view.user_name));
    }
    if let Some(email) = partner_email(&view)? {
        if !email.eq_ignore_ascii_case(&old.partner_email) {
            keys.push(crate::store::user_email_key(&email));
        }
    }
    let lock = take_identity(bridge, scope.tenant, keys).await?;
    let in_flight = crate::bridge::write_lock::InFlight::default();
    let result = update_locked(bridge, scope, old, resource, &in_flight).await;
    // Let go once committed (the wait for the workers needs no lock); after a failure a
    // partner write may still land: the lock lingers for it.
    let (row, marks) = crate::bridge::write_lock::end(lock, result, &in_flight).await?;
    settle_in_time(bridge, &row.id, &marks).await?;
    render(bridge, scope, &row).await
}

/// The rest of [`update`]: partner calls for what changed at every site, then the row and
/// its marks in one transaction (the committed row and marks are returned). Every site is marked (not only those whose call failed)
/// when the change is membership work (stripping or restoring groups, which the engine
/// does), when the user appears or disappears at the partner (a worker converging the user
/// now read the store before this commit and may undo the partner write: a mark after the
/// commit makes it look again, and the request waits for that, so a deactivation is
/// answered once the account is gone for good), and when a former email is retired (each
/// site's convergence removes that account wherever the change did not: a site that refused
/// it, a deactivation that changed the email too, an email removed).
async fn update_locked(
    bridge: &Bridge,
    scope: Scope<'_>,
    old: UserRow,
    resource: Value,
    in_flight: &crate::bridge::write_lock::InFlight,
) -> BridgeResult<(UserRow, Vec<crate::store::OutboxMark>)> {
    let tenant = scope.tenant;
    let store = &bridge.store;
    let new_view = UserView::from_resource(&resource)?;
    let old_view = UserView::from_resource(&old.resource)?;
    let new_email = partner_email(&new_view)?.unwrap_or_default();
    // An empty partner email: the user has none and does not exist at the partner.
    let had_email = !old.partner_email.is_empty();
    let has_email = !new_email.is_empty();
    let email_changed =
        had_email && has_email && !new_email.eq_ignore_ascii_case(&old.partner_email);
    refuse_conflicts(
        bridge,
        tenant,
        &old,
        &new_view.user_name,
        &new_email,
        email_changed,
    )
    .await?;

    let policy = tenant.config.deprovision;
    let old_present = had_email && (old.active || policy != DeprovisionPolicy::Remove);
    let new_present = has_email && (new_view.active || policy != DeprovisionPolicy::Remove);
    let (first, last) = partner_names(&new_view, &new_email);
    let (old_first, old_last) = partner_names(&old_view, &old.partner_email);
    let names_changed = first != old_first || last != old_last;
    let active_changed = old.active != new_view.active;
    let dry = tenant.dry_run();
    note_protected(
        tenant,
        &old.partner_email,
        names_changed || email_changed,
        old_present && !new_present,
    );

    let plan = SitePlan {
        tenant,
        old_email: &old.partner_email,
        new_email: &new_email,
        first: &first,
        last: &last,
        old_present,
        new_present,
        email_changed,
        names_changed,
        dry,
    };
    // The new email is claimed before any partner call: if the change does not commit, the
    // account it may have made (a partner that applied it and answered 5xx) is removed.
    let claimed = (email_changed || (!had_email && has_email)).then(|| new_email.clone());
    let (applied, held) = apply_at_sites(
        bridge,
        tenant,
        &old.id,
        &plan,
        claimed.as_deref(),
        in_flight,
    )
    .await?;
    // The former email becomes a `retired` tombstone with the commit.
    let retired = (had_email && !new_email.eq_ignore_ascii_case(&old.partner_email))
        .then(|| old.partner_email.clone());
    let mark = if (active_changed && policy == DeprovisionPolicy::Strip && has_email)
        || old_present != new_present
        || retired.is_some()
    {
        tenant.site_names()
    } else {
        applied
    };

    let row = next_version(&old, &new_view, new_email, resource);
    // The change and its marks commit together: a crash between them cannot leave a
    // deactivation unmarked (the IdP's retry would see no change and the account stay).
    let committed = store
        .update_user_marking(&row, old.version, &mark, retired.as_deref())
        .await;
    bridge.engine.release_claims(held).await;
    let marks = match committed {
        Ok(marks) => marks,
        Err(e) => {
            release_claim(bridge, tenant, &row.id, claimed.as_deref()).await;
            return Err(e.into());
        }
    };
    Ok((row, marks))
}

/// The row after an update of `old` to `resource` (whose view is `view`): one version up,
/// modified now (and after the version before, whatever the clock says).
fn next_version(old: &UserRow, view: &UserView, partner_email: String, resource: Value) -> UserRow {
    UserRow {
        tenant: old.tenant.clone(),
        id: old.id.clone(),
        user_name: view.user_name.clone(),
        external_id: view.external_id.clone(),
        active: view.active,
        partner_email,
        emails: emails_of(view),
        resource,
        created_ms: old.created_ms,
        last_modified_ms: now_ms().max(old.last_modified_ms + 1),
        version: old.version + 1,
    }
}

/// Applies `plan` at every site: under the user's outbox claims for an email change (one
/// writer per (site, user), as a convergence's writes are), `claimed` (a new email) recorded
/// first. Returns the sites to mark and the claims, given back by the caller after its
/// commit (the rows stay marked: a worker converges them with what was committed). When no
/// site applied the change, the claims and the claimed email are let go and the IdP hears why.
async fn apply_at_sites(
    bridge: &Bridge,
    tenant: &Tenant,
    id: &str,
    plan: &SitePlan<'_>,
    claimed: Option<&str>,
    in_flight: &crate::bridge::write_lock::InFlight,
) -> BridgeResult<(Vec<String>, Vec<HeldClaim>)> {
    if let Some(email) = claimed {
        bridge
            .store
            .claim_new_email(tenant.name(), id, email)
            .await?;
    }
    let held = if plan.email_changed {
        let wait = std::time::Duration::from_millis(bridge.options.request_partner_wait_ms);
        match bridge
            .engine
            .claim_user(tenant.name(), id, &tenant.site_names(), wait)
            .await?
        {
            Some(held) => held,
            None => {
                release_claim(bridge, tenant, id, claimed).await;
                return Err(BridgeError::contended(
                    "The user is being brought in line at the partner; retry the change.",
                ));
            }
        }
    } else {
        Vec::new()
    };
    let results = apply_under_claims(tenant, plan, &held).await;
    in_flight.note(&results);
    match fold_sites(results) {
        Ok(mark) => Ok((mark, held)),
        Err(e) => {
            bridge.engine.release_claims(held).await;
            release_claim(bridge, tenant, id, claimed).await;
            Err(e)
        }
    }
}

/// An outbox claim an email change holds, with its fence.
type HeldClaim = (
    crate::store::OutboxItem,
    std::sync::Arc<crate::bridge::engine::Fence>,
);

/// What an update may not do, checked before any partner call: change the email where the
/// tenant forbids it, take another user's userName or partner email, or take an email whose
/// account is still being deleted.
async fn refuse_conflicts(
    bridge: &Bridge,
    tenant: &Tenant,
    old: &UserRow,
    user_name: &str,
    new_email: &str,
    email_changed: bool,
) -> BridgeResult<()> {
    let store = &bridge.store;
    let has_email = !new_email.is_empty();
    if email_changed && tenant.config.email_change == EmailChangePolicy::Reject {
        return Err(ScimError::mutability(
            "this tenant does not allow a user's email (userName) to change",
        )
        .into());
    }
    if !user_name.eq_ignore_ascii_case(&old.user_name)
        && store
            .get_user_by_user_name(tenant.name(), user_name)
            .await?
            .is_some_and(|u| u.id != old.id)
    {
        return Err(ScimError::uniqueness(format!(
            "userName '{user_name}' is already taken in this tenant"
        ))
        .into());
    }
    if has_email
        && !new_email.eq_ignore_ascii_case(&old.partner_email)
        && store
            .users_by_partner_email(tenant.name(), new_email)
            .await?
            .iter()
            .any(|u| u.id != old.id)
    {
        return Err(ScimError::uniqueness(format!(
            "another user already maps to the partner email '{new_email}'"
        ))
        .into());
    }
    if has_email && !new_email.eq_ignore_ascii_case(&old.partner_email) {
        refuse_while_deleting(bridge, tenant, new_email, Some(&old.id)).await?;
    }
    Ok(())
}

/// Applies `plan` at every site, each under the user's outbox claim at that site when the
/// change holds them (`held`: an email change), as a convergence's writes are.
async fn apply_under_claims<'a>(
    tenant: &'a Tenant,
    plan: &SitePlan<'_>,
    held: &[HeldClaim],
) -> Vec<(&'a Site, Result<SiteOutcome, PartnerError>)> {
    for_each_site(tenant, |site| {
        let fence = held
            .iter()
            .find(|(i, _)| i.site == site.name)
            .map(|(_, f)| f.clone());
        async move {
            match fence {
                Some(fence) => match fence.guard(plan.apply(site)).await {
                    Ok(outcome) => Ok(outcome),
                    Err(crate::bridge::engine::ConvergeError::Partner(e)) => Err(e),
                    Err(other) => Err(PartnerError::local(
                        PartnerErrorKind::Unavailable,
                        crate::partner::CallKind::UpdateUser,
                        &site.name,
                        other.to_string(),
                    )),
                },
                None => plan.apply(site).await,
            }
        }
    })
    .await
}

/// Waits up to the deadline for the committed change's marks; what is left goes on in the
/// background (logged).
async fn settle_in_time(
    bridge: &Bridge,
    user: &str,
    marks: &[crate::store::OutboxMark],
) -> BridgeResult<()> {
    // Sites known unable to take the change now (key refused, circuit open): the change is
    // stored and carried out there when they can take it; waiting for them would only hold
    // the answer (the same 2xx as for a site that fails within the wait, see below).
    let (open, blocked): (Vec<_>, Vec<_>) = marks
        .iter()
        .cloned()
        .partition(|m| bridge.engine.blocked(m).is_none());
    for mark in &blocked {
        tracing::warn!(
            user = %user,
            site = %mark.site,
            "the user change is stored; the site cannot take it now (API key refused or circuit open) and it is carried out when the site can"
        );
    }
    if !blocked.is_empty() {
        bridge.engine.kick();
    }
    let marks = &open[..];
    if !marks.is_empty() {
        // A deactivation is acknowledged once access is gone, when possible in time: worked
        // at once, there is nothing to coalesce with. A site that fails does not hold the
        // answer to the deadline: the change is stored, the engine retries it (with capped
        // backoff, visible in `status`), and the IdP's retry of it would change nothing.
        let left = bridge
            .engine
            .settle_outcome(marks, bridge.wait_deadline())
            .await?;
        for (mark, error) in &left {
            tracing::warn!(
                user = %user,
                site = %mark.site,
                error = error.as_deref().unwrap_or("not done by the deadline"),
                "the user change is stored; bringing the site in line goes on in the background"
            );
        }
    }
    Ok(())
}

/// An email change that did not commit: the email it claimed is retired and marked, so the
/// convergence removes any account the change made. A failure here is logged: the claim then
/// ages into the same removal (`bridge.rename_settle_ms`) at the user's next convergence.
async fn release_claim(bridge: &Bridge, tenant: &Tenant, id: &str, email: Option<&str>) {
    let Some(email) = email else { return };
    match bridge
        .store
        .release_claimed_email(tenant.name(), id, email, &tenant.site_names())
        .await
    {
        Ok(_) => bridge.engine.kick(),
        Err(e) => tracing::warn!(user = %id, error = %e, "cannot release a claimed email"),
    }
}

/// Notes in the request's audit entry what SCIM does not do to a protected account
/// ([`Tenant::protects`]): a change of its names or email left undone at the partner (unless
/// `allow_protected_changes`), a deprovisioning that keeps the account and strips its managed
/// groups.
pub(super) fn note_protected(
    tenant: &Tenant,
    email: &str,
    profile_changed: bool,
    deprovisioned: bool,
) {
    if !tenant.protects(email) {
        return;
    }
    if profile_changed && tenant.keeps_profile(email) {
        tracing::info!(
            "a change of a protected account's names or email is not made at the partner"
        );
        note(
            "protected_account",
            json!({"email": email, "skipped": "names and email stay as they are at the partner (allow_protected_changes = false)"}),
        );
    }
    if deprovisioned {
        tracing::info!(
            "a protected account left SCIM: kept at the partner, its managed groups removed"
        );
        note(
            "protected_account",
            json!({"email": email, "kept": "the account stays at the partner; its managed groups are removed"}),
        );
    }
}

/// What one user update means at each site.
struct SitePlan<'a> {
    tenant: &'a Tenant,
    old_email: &'a str,
    new_email: &'a str,
    first: &'a str,
    last: &'a str,
    old_present: bool,
    new_present: bool,
    email_changed: bool,
    names_changed: bool,
    dry: bool,
}

impl SitePlan<'_> {
    async fn apply(&self, site: &Site) -> Result<SiteOutcome, PartnerError> {
        let client = &site.client;
        if self.old_present != self.new_present {
            // Deactivated or reactivated under `remove`: the convergence of the (site, user),
            // marked with the commit, deletes the partner user (strips it when protected) or
            // re-creates it with its groups as they are named at that moment. One writer per
            // (site, user): a request never races the engine on the user's existence.
            return Ok(SiteOutcome::Mark);
        }
        if !self.new_present {
            return Ok(SiteOutcome::Done);
        }
        if self.email_changed {
            // A protected account is not renamed at the partner: the new email gets an
            // account of its own, the protected one stays as it is.
            if self.tenant.keeps_profile(self.old_email) {
                return self.recreate(site).await;
            }
            return match self.tenant.config.email_change {
                EmailChangePolicy::Recreate => self.recreate(site).await,
                _ => {
                    let update = UserUpdate {
                        email: Some(self.new_email.to_owned()),
                        first_name: Some(self.first.to_owned()),
                        last_name: Some(self.last.to_owned()),
                        groups: None,
                    };
                    match client
                        .update_user(self.old_email, &update, self.dry)
                        .await
                        .or_gone()?
                    {
                        Some(_) => Ok(SiteOutcome::Done),
                        // Not at the partner (yet): the engine creates it under the new email.
                        None => Ok(SiteOutcome::Mark),
                    }
                }
            };
        }
        if self.names_changed {
            // The user's names are written by its convergence, marked with the commit: one
            // writer per (site, user), so a convergence that read the store before this change
            // cannot write the old names after it.
            return Ok(SiteOutcome::Mark);
        }
        Ok(SiteOutcome::Done)
    }

    /// `email_change = recreate`: the new user with the same names and groups, then the old
    /// one deleted.
    async fn recreate(&self, site: &Site) -> Result<SiteOutcome, PartnerError> {
        let client = &site.client;
        let groups = match client.get_user(self.old_email).await? {
            Some(old) => old.groups,
            None => Vec::new(),
        };
        let new = NewUser {
            email: self.new_email.to_owned(),
            first_name: self.first.to_owned(),
            last_name: self.last.to_owned(),
            groups,
            invited_by_email: self.tenant.config.invited_by_email.clone(),
        };
        let outcome = create_or_adopt(self.tenant, site, &new).await?;
        if self.tenant.protects(self.old_email) {
            // A protected account is never deleted by SCIM: it stays, the new one is created.
            return Ok(outcome);
        }
        client
            .delete_user(self.old_email, self.dry)
            .await
            .or_gone()?;
        Ok(outcome)
    }
}
