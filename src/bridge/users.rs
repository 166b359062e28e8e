//! User flows (DESIGN.md section 4): partner first. Validate, call the partner at every site,
//! then commit to the store and answer. A site that fails transiently while others succeed is
//! marked in the outbox and healed by the engine; when every site fails the client gets 503
//! and nothing is stored, and its retry is safe: a create whose email already exists at the
//! partner adopts that user.

use serde_json::{json, Value};

use super::mapping::{partner_email, partner_names};
use super::write_lock::{tenant_lease_ms, InFlight, WriteLock};
use super::{for_each_site, now_ms, Bridge, BridgeError, BridgeResult, Site, Tenant};
use crate::config::{DeprovisionPolicy, EmailChangePolicy};
use crate::partner::client::{NewUser, UserUpdate};
use crate::partner::error::{OrGone, PartnerError, PartnerErrorKind};
use crate::partner::record::note;
use crate::scim::patch::{apply_patch, PatchRequest};
use crate::scim::resource::{canonicalize, InputMode, Meta, UserView};
use crate::scim::schema::USER_RESOURCE;
use crate::scim::version::if_match_satisfied;
use crate::scim::ScimError;
use crate::store::{IndexTerm, UserRow};

mod update;

use update::note_protected;
pub use update::{patch, replace};

/// Where a request lands: the tenant and the public URL of its SCIM endpoint.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub tenant: &'a Tenant,
    pub base_url: &'a str,
}

/// What a site did during a partner-first write.
enum SiteOutcome {
    Done,
    /// The site must be converged by the engine (failed transiently, or adopted a user).
    Mark,
}

/// Renders a stored user as SCIM: `id`, the resource, `groups` from the memberships index,
/// `meta`.
pub async fn render(bridge: &Bridge, scope: Scope<'_>, row: &UserRow) -> BridgeResult<Value> {
    let groups = bridge
        .store
        .groups_of_user(scope.tenant.name(), &row.id)
        .await?;
    Ok(with_groups(scope, row, &groups))
}

/// [`render`] for a page of users: their groups in one query, not one per user.
pub async fn render_many(
    bridge: &Bridge,
    scope: Scope<'_>,
    rows: Vec<UserRow>,
) -> BridgeResult<Vec<Value>> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let groups = bridge
        .store
        .groups_of_users(scope.tenant.name(), &ids)
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            with_groups(
                scope,
                row,
                groups.get(&row.id).map_or(&[][..], Vec::as_slice),
            )
        })
        .collect())
}

/// The stored resource with `id`, `meta` and `groups`.
fn with_groups(scope: Scope<'_>, row: &UserRow, groups: &[crate::store::GroupRow]) -> Value {
    let mut v = with_meta(scope, row);
    if !groups.is_empty() {
        let list: Vec<Value> = groups
            .iter()
            .map(|g| {
                serde_json::json!({
                    "value": g.id,
                    "$ref": format!("{}/Groups/{}", scope.base_url, g.id),
                    "display": g.display_name,
                    "type": "direct",
                })
            })
            .collect();
        if let Some(obj) = v.as_object_mut() {
            // Before `meta`, after the rest.
            let meta = obj.remove("meta");
            obj.insert("groups".into(), Value::Array(list));
            if let Some(m) = meta {
                obj.insert("meta".into(), m);
            }
        }
    }
    v
}

/// The stored resource with `id` and `meta`, without `groups`.
pub fn with_meta(scope: Scope<'_>, row: &UserRow) -> Value {
    let meta = Meta {
        resource_type: "User".into(),
        created: from_ms(row.created_ms),
        last_modified: from_ms(row.last_modified_ms),
        location: Meta::location_for(scope.base_url, &USER_RESOURCE, &row.id),
        version: row.version.max(0) as u64,
    };
    crate::scim::resource::with_server_attributes(row.resource.clone(), &row.id, &meta)
}

pub(crate) fn from_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Strips what the store does not keep in `resource`: server attributes and `groups`.
fn storable(mut resource: Value) -> Value {
    if let Some(obj) = resource.as_object_mut() {
        obj.remove("id");
        obj.remove("meta");
        obj.remove("groups");
        obj.remove("password");
    }
    resource
}

fn emails_of(view: &UserView) -> Vec<String> {
    view.emails.iter().map(|e| e.value.clone()).collect()
}

/// Checks `If-Match` against the stored version.
pub fn check_if_match(if_match: Option<&str>, version: i64) -> Result<(), ScimError> {
    match if_match {
        Some(h) if !if_match_satisfied(h, version.max(0) as u64) => {
            Err(ScimError::precondition_failed(
                "The resource has changed since the version given in If-Match.",
            ))
        }
        _ => Ok(()),
    }
}

/// Folds per-site results (DESIGN.md section 4, point 3). No site applied the change: the
/// first refusal (the IdP's 4xx), else the first transient failure (503); nothing is
/// committed. Some sites applied it: the change is committed and every site that failed,
/// transiently or not, is marked, so the engine converges it (retried with capped backoff,
/// failing rows visible in `status` and metrics) instead of leaving it behind the others.
fn fold_sites(
    results: Vec<(&Site, Result<SiteOutcome, PartnerError>)>,
) -> BridgeResult<Vec<String>> {
    let mut mark = Vec::new();
    let mut applied = 0;
    let mut refused: Option<PartnerError> = None;
    let mut transient: Option<PartnerError> = None;
    for (site, r) in results {
        match r {
            Ok(SiteOutcome::Done) => applied += 1,
            Ok(SiteOutcome::Mark) => {
                applied += 1;
                mark.push(site.name.clone());
            }
            Err(e) => {
                if e.kind.retry_later() {
                    tracing::warn!(site = %site.name, error = %e, "site failed; the engine will retry it");
                    transient.get_or_insert(e);
                } else {
                    tracing::warn!(site = %site.name, error = %e, "site refused the change; recorded, the engine converges it");
                    refused.get_or_insert(e);
                }
                mark.push(site.name.clone());
            }
        }
    }
    if applied == 0 {
        // Nothing changed anywhere: the IdP hears the refusal (4xx), or else the trouble (503).
        if let Some(e) = refused.or(transient) {
            return Err(BridgeError::from(&e));
        }
    }
    Ok(mark)
}

/// A user of a partner email whose deletion is still being carried out (a tombstone holds it)
/// waits for it: 503 with `Retry-After`, the IdP retries. Created now, its convergence would
/// race the deletion's at the partner.
async fn refuse_while_deleting(
    bridge: &Bridge,
    tenant: &Tenant,
    email: &str,
    except_id: Option<&str>,
) -> BridgeResult<()> {
    if bridge
        .store
        .email_tombstoned(tenant.name(), email, except_id, &tenant.site_names())
        .await?
    {
        return Err(BridgeError::in_progress(format!(
            "the deletion of the partner account '{email}' is still being carried out (`scim-bridge \
             explain {email}` shows where it waits: a failing site, or one whose API key is \
             refused); retry later"
        )));
    }
    Ok(())
}

/// Creates the partner user, or adopts it when its email already exists there.
async fn create_or_adopt(
    tenant: &Tenant,
    site: &Site,
    user: &NewUser,
) -> Result<SiteOutcome, PartnerError> {
    match site.client.create_user(user, tenant.dry_run()).await {
        Ok(_) => Ok(SiteOutcome::Done),
        Err(e) if e.kind == PartnerErrorKind::Conflict => {
            tracing::info!(site = %site.name, "partner user exists; adopting it");
            // Its names and managed groups are brought in line by the engine.
            Ok(SiteOutcome::Mark)
        }
        Err(e) => Err(e),
    }
}

/// `POST /Users`.
pub async fn create(bridge: &Bridge, scope: Scope<'_>, body: Value) -> BridgeResult<Value> {
    let tenant = scope.tenant;
    let resource = canonicalize(&USER_RESOURCE, body, InputMode::Create)?;
    let view = UserView::from_resource(&resource)?;
    let email = partner_email(&view)?;
    let mut keys = vec![crate::store::user_name_key(&view.user_name)];
    keys.extend(email.as_deref().map(crate::store::user_email_key));
    let lock = take_identity(bridge, tenant, keys).await?;
    // Refused before any partner call (the user exists, its email is being deleted): let go.
    if let Err(e) = check_new(bridge, tenant, &view, email.as_deref()).await {
        if let Some(lock) = lock {
            lock.release().await;
        }
        return Err(e);
    }
    let in_flight = InFlight::default();
    let result = create_checked(bridge, scope, resource, &view, email, &in_flight).await;
    super::write_lock::end(lock, result, &in_flight).await
}

/// What a new user may not be, checked under its locks before any partner call: a userName
/// or partner email another user has, or an email whose account is still being deleted.
async fn check_new(
    bridge: &Bridge,
    tenant: &Tenant,
    view: &UserView,
    email: Option<&str>,
) -> BridgeResult<()> {
    let store = &bridge.store;
    if store
        .get_user_by_user_name(tenant.name(), &view.user_name)
        .await?
        .is_some()
    {
        return Err(ScimError::uniqueness(format!(
            "userName '{}' is already taken in this tenant",
            view.user_name
        ))
        .into());
    }
    let Some(email) = email else {
        tracing::info!(
            "the user has no email address: kept in SCIM, not provisioned to the partner"
        );
        return Ok(());
    };
    if !store
        .users_by_partner_email(tenant.name(), email)
        .await?
        .is_empty()
    {
        return Err(ScimError::uniqueness(format!(
            "another user already maps to the partner email '{email}'"
        ))
        .into());
    }
    refuse_while_deleting(bridge, tenant, email, None).await
}

/// The locks on the userName and partner email a user takes (a create, a change of either),
/// held from before the checks and partner calls until its row commits, then let go (all its
/// partner calls have ended; see [`super::write_lock::end`]). Another writer taking one of them meanwhile (the IdP's retry of
/// a POST it gave up on, which goes on; a second IdP) is answered 503 and sees the committed
/// user on its retry: one person is never committed twice, and a deletion of the user the
/// IdP got is never followed by a create still in flight.
async fn take_identity(
    bridge: &Bridge,
    tenant: &Tenant,
    keys: Vec<String>,
) -> BridgeResult<Option<WriteLock>> {
    if keys.is_empty() {
        return Ok(None);
    }
    let lease = tenant_lease_ms(0, tenant);
    match WriteLock::take(&bridge.store, tenant.name(), keys, lease).await? {
        Some(lock) => Ok(Some(lock)),
        None => Err(BridgeError::contended(
            "Another request is creating or changing a user with this userName or email; retry shortly.",
        )),
    }
}

/// The rest of [`create`], holding the user's userName and email, its checks passed: the
/// account at every site, then the row and its marks.
async fn create_checked(
    bridge: &Bridge,
    scope: Scope<'_>,
    resource: Value,
    view: &UserView,
    email: Option<String>,
    in_flight: &InFlight,
) -> BridgeResult<Value> {
    let tenant = scope.tenant;
    let store = &bridge.store;
    let present = view.active || tenant.config.deprovision != DeprovisionPolicy::Remove;
    if let Some(email) = &email {
        note_protected(tenant, email, true, !present);
    }
    let mut mark = Vec::new();
    if let (true, Some(email)) = (present, &email) {
        let (first_name, last_name) = partner_names(view, email);
        let new = NewUser {
            email: email.clone(),
            first_name,
            last_name,
            groups: Vec::new(),
            invited_by_email: tenant.config.invited_by_email.clone(),
        };
        let results = for_each_site(tenant, |site| create_or_adopt(tenant, site, &new)).await;
        in_flight.note(&results);
        mark = fold_sites(results)?;
    }
    let now = now_ms();
    let row = UserRow {
        tenant: tenant.name().to_owned(),
        id: uuid::Uuid::new_v4().to_string(),
        user_name: view.user_name.clone(),
        external_id: view.external_id.clone(),
        active: view.active,
        partner_email: email.unwrap_or_default(),
        emails: emails_of(view),
        resource: storable(resource),
        created_ms: now,
        last_modified_ms: now,
        version: 1,
    };
    store.insert_user(&row).await?;
    if !mark.is_empty() {
        store
            .mark_outbox(tenant.name(), &mark, std::slice::from_ref(&row.id))
            .await?;
        bridge.engine.kick();
    }
    render(bridge, scope, &row).await
}

/// `GET /Users/{id}` (the stored row).
pub async fn get_row(bridge: &Bridge, scope: Scope<'_>, id: &str) -> BridgeResult<UserRow> {
    bridge
        .store
        .get_user(scope.tenant.name(), id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("User {id} not found")).into())
}

/// `DELETE /Users/{id}`: one transaction deletes the user from SCIM and records the deletion
/// as intent (a tombstone and an outbox mark per site); the convergence of each (site, user)
/// removes the partner account (strips it when protected) and the request waits for it up to
/// the deadline. When a site keeps failing the answer is 503 with `Retry-After`: the deletion
/// goes on in the background, and the IdP's retry follows it (204 once done); a DELETE after
/// one answered 204 is 404.
pub async fn delete(
    bridge: &Bridge,
    scope: Scope<'_>,
    id: &str,
    if_match: Option<&str>,
) -> BridgeResult<()> {
    let _guard = bridge.lock(scope.tenant.name(), id).await;
    let tenant = scope.tenant;
    let store = &bridge.store;
    let expected = match if_match {
        Some(_) => {
            let old = get_row(bridge, scope, id).await?;
            check_if_match(if_match, old.version)?;
            Some(old.version)
        }
        None => None,
    };
    let sites = tenant.site_names();
    let marks = match store.delete_user(tenant.name(), id, expected, &sites).await {
        Ok((_, marks)) => {
            if let Some(email) = store.user_tombstone(tenant.name(), id).await? {
                note_protected(tenant, &email, false, true);
            }
            marks
        }
        Err(crate::store::StoreError::VersionMismatch) => {
            return Err(ScimError::precondition_failed(
                "The resource has changed since the version given in If-Match.",
            )
            .into())
        }
        Err(crate::store::StoreError::NotFound) => {
            // Deleted before: a retry of a DELETE answered 503 follows the deletion it asked
            // for (204 once done); after a 204 the resource is gone for good (RFC 7644 3.6).
            match store.user_deletion(tenant.name(), id).await? {
                Some(false) => {
                    store
                        .mark_outbox(tenant.name(), &sites, &[id.to_owned()])
                        .await?
                }
                _ => return Err(ScimError::not_found(format!("User {id} not found")).into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(e) = bridge.blocked_error(&marks) {
        // The sites that answer take the removal now (claimed and worked in the background),
        // not after the engine's quiet window: a leaver loses access there at once.
        let open: Vec<crate::store::OutboxMark> = marks
            .iter()
            .filter(|m| bridge.engine.blocked(m).is_none())
            .cloned()
            .collect();
        if let Err(store) = bridge.engine.settle(&open, std::time::Duration::ZERO).await {
            // The marks are committed: the workers take them; the answer stays the 503.
            tracing::warn!(user = %id, error = %store, "cannot claim the removal at the sites that answer; the workers take it");
        }
        return Err(e);
    }
    let left = bridge
        .engine
        .settle_outcome(&marks, bridge.wait_deadline())
        .await?;
    let unfinished: Vec<crate::store::OutboxMark> = left.iter().map(|(m, _)| m.clone()).collect();
    if let Some(e) = bridge.blocked_error(&unfinished) {
        return Err(e);
    }
    // Failed, or still pending at the deadline: the IdP hears so and retries; a 204 means the
    // account is gone at every site.
    if let Some((mark, error)) = left.iter().find(|(_, e)| e.is_some()).or(left.first()) {
        tracing::warn!(
            user = %id,
            site = %mark.site,
            error = error.as_deref().unwrap_or("not done by the deadline"),
            "the user is deleted in SCIM; removing the partner account is not done yet and goes on"
        );
        return Err(BridgeError::in_progress(format!(
            "The user is deleted; removing it at the partner site '{}' is not done yet and goes on. Retry the request to follow it.",
            mark.site
        )));
    }
    store.answer_user_deletion(tenant.name(), id).await?;
    Ok(())
}

/// A `userName eq` lookup that missed: when the email exists at the tenant's first site,
/// import that partner user as an active SCIM user so the IdP's matching links it.
pub async fn import_on_lookup(
    bridge: &Bridge,
    scope: Scope<'_>,
    user_name: &str,
) -> BridgeResult<Option<UserRow>> {
    let tenant = scope.tenant;
    if !bridge.options.import_on_lookup || super::mapping::validate_email(user_name).is_err() {
        return Ok(None);
    }
    if !importable(bridge, tenant, user_name).await? {
        return Ok(None);
    }
    let Some(p) = partner_user(bridge, tenant, user_name).await else {
        return Ok(None);
    };
    // A create or change taking this userName or email is under way (maybe the IdP's own
    // POST it gave up on): importing now would commit a second user for one person. The
    // lookup answers from the store; the IdP finds the user once that write commits.
    let keys = vec![
        crate::store::user_name_key(user_name),
        crate::store::user_email_key(user_name),
    ];
    let lease = tenant_lease_ms(0, tenant);
    let Some(lock) = WriteLock::take(&bridge.store, tenant.name(), keys, lease).await? else {
        return Ok(None);
    };
    // Looked at again under the locks: a create or a deletion may have committed since.
    let result = match importable(bridge, tenant, user_name).await {
        Ok(true) => insert_imported(bridge, tenant, user_name, &p).await,
        other => other.map(|_| None),
    };
    super::write_lock::end(Some(lock), result, &InFlight::default()).await
}

/// Whether the partner account of `email` may be imported as a new SCIM user: no SCIM user
/// maps to it, and no removal of it is under way.
async fn importable(bridge: &Bridge, tenant: &Tenant, email: &str) -> BridgeResult<bool> {
    // The partner account already belongs to another SCIM user (its userName is no email, or
    // another one): importing it again would map one partner account to two SCIM users.
    if !bridge
        .store
        .users_by_partner_email(tenant.name(), email)
        .await?
        .is_empty()
    {
        return Ok(false);
    }
    // A removal of that account is under way (a user the IdP deleted, a former email): the
    // account is a leaver's, not one to import (that would make it live again and stop its
    // removal).
    Ok(!bridge
        .store
        .email_tombstoned(tenant.name(), email, None, &tenant.site_names())
        .await?)
}

/// The partner user of `email` at the tenant's first site, read opportunistically: `None`
/// when there is none, or the partner is slow, busy or failing (the lookup answers from the
/// store then).
async fn partner_user(
    bridge: &Bridge,
    tenant: &Tenant,
    email: &str,
) -> Option<crate::partner::PartnerUser> {
    let site = tenant.sites.first()?;
    let limit = std::time::Duration::from_millis(bridge.options.import_timeout_ms);
    // Opportunistic: no waiting for the partner's rate limits or retry pauses (a saturated
    // partner's capacity belongs to writes; a later POST adopts the partner user anyway).
    let read =
        crate::partner::patience::impatient(std::time::Duration::ZERO, site.client.get_user(email));
    match tokio::time::timeout(limit, read).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            // A lookup must not fail because the partner is slow or busy: answer from the store.
            tracing::info!(error = %e, "import on lookup: partner lookup failed");
            None
        }
        Err(_) => {
            tracing::info!(
                timeout_ms = limit.as_millis() as u64,
                "import on lookup: the partner did not answer in time; answering from the store"
            );
            None
        }
    }
}

/// Commits partner user `p` as an active SCIM user of userName `user_name`.
async fn insert_imported(
    bridge: &Bridge,
    tenant: &Tenant,
    user_name: &str,
    p: &crate::partner::PartnerUser,
) -> BridgeResult<Option<UserRow>> {
    let resource = serde_json::json!({
        "schemas": [crate::scim::schema::USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": p.first_name, "familyName": p.last_name},
        "emails": [{"value": p.email, "type": "work", "primary": true}],
        "active": true,
    });
    let now = now_ms();
    let row = UserRow {
        tenant: tenant.name().to_owned(),
        id: uuid::Uuid::new_v4().to_string(),
        user_name: user_name.to_owned(),
        external_id: None,
        active: true,
        partner_email: p.email.clone(),
        emails: vec![p.email.clone()],
        resource,
        created_ms: now,
        last_modified_ms: now,
        version: 1,
    };
    match bridge.store.insert_user(&row).await {
        Ok(()) => {
            tracing::info!(user = %row.id, "imported an existing partner user on lookup");
            Ok(Some(row))
        }
        // Another request imported or created it meanwhile.
        Err(crate::store::StoreError::Conflict { .. }) => Ok(bridge
            .store
            .find_users(tenant.name(), &[IndexTerm::UserName(user_name.to_owned())])
            .await?
            .into_iter()
            .next()),
        Err(e) => Err(e.into()),
    }
}
