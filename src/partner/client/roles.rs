//! An RBAC site behind the calls every site answers. The bridge speaks of users by email and of
//! groups by name; on an RBAC site a user is an id holding role ids, and a SCIM group is a role
//! (`role_map` may give it another name). This module turns the one into the other.
//!
//! What it learns is kept as links ([`SiteLinks`]: the bridge's store, shared by every replica):
//! a partner email to its user id (found by email on create or by reading the user list, an id
//! checked against the user it names before it is used, never guessed), and a SCIM group's name
//! to its role id (the role the bridge created for it, or the one it adopted). A group's role
//! is its linked role while that role exists: a role renamed in the UI stays the group's, and a
//! replica whose role list is a few seconds old still resolves a group to its own role, not to
//! one that has since taken the group's former name. A group without a link (or whose linked
//! role is gone) is resolved by name from the role list, read again when a name or id is not in
//! it.
//!
//! Roles the bridge did not create (the five built-in ones, those `role_map` names, those found
//! under a SCIM group's name) are adopted: users are given and taken them, but the bridge never
//! renames or deletes them; renaming the group moves its link. A role the bridge creates
//! carries [`MANAGED_ROLE_MARK`] in its description, which is how every replica, and the bridge
//! after a restart, tells it apart.

use std::collections::HashMap;

use super::links::{Link, LinkKind, MemoryLinks, SiteLinks};
use super::rbac_calls::{NewRole, NewUserV2, UserUpdateV2};
use super::*;
use crate::partner::rbac::{
    is_builtin_role, PartnerRole, PartnerUserV2, RoleSettings, EVERYONE_ROLE, MANAGED_ROLE_MARK,
};

/// An RBAC site's mapping and what the client remembers of it.
#[derive(Debug)]
pub struct RoleSite {
    pub settings: RoleSettings,
    /// The partner user the bridge acts as (the tenant's `invited_by_email`), named on role
    /// writes.
    pub acting_email: Option<String>,
    directory: std::sync::Mutex<Directory>,
    /// Where links are kept: the bridge's store once [`RoleSite::keep_links_in`] names it,
    /// else `memory`.
    links: std::sync::OnceLock<Arc<dyn SiteLinks>>,
    memory: MemoryLinks,
}

#[derive(Debug, Default)]
struct Directory {
    /// Lowercased email -> user id, as last read.
    ids: HashMap<String, String>,
    /// The role list as last read.
    roles: Option<Vec<PartnerRole>>,
    /// When `roles` was read: a list older than [`ROLE_LIST_MAX_AGE`] is read again, so a
    /// role renamed, deleted or created in the site's UI is seen within that time.
    roles_read: Option<std::time::Instant>,
    /// When the whole user list was last read (`ids` then held every user, and has followed
    /// the bridge's own creates and deletes since). Within [`USER_LIST_MAX_AGE`] an email
    /// neither in `ids` nor linked is taken as absent without reading the list again, so
    /// creating n users reads the list every so often, not n times. A create refused because
    /// the email exists forgets it (the user was made elsewhere since).
    users_listed: Option<std::time::Instant>,
}

/// How long a complete reading of the user list answers "no such user" for an email it did
/// not hold (see [`Directory::users_listed`]). Where absence decides that a leaver is left
/// alone, the list is always read again ([`PartnerClient::find_missed_user`]).
const USER_LIST_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a role list read from the partner is used before it is read again.
const ROLE_LIST_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

impl RoleSite {
    pub fn new(settings: RoleSettings, acting_email: Option<String>) -> RoleSite {
        RoleSite {
            settings,
            acting_email,
            directory: std::sync::Mutex::new(Directory::default()),
            links: std::sync::OnceLock::new(),
            memory: MemoryLinks::default(),
        }
    }

    /// Keeps this site's links in `links` (the bridge's store) from now on; the first call
    /// wins.
    pub fn keep_links_in(&self, links: Arc<dyn SiteLinks>) {
        let _ = self.links.set(links);
    }

    fn links(&self) -> &dyn SiteLinks {
        match self.links.get() {
            Some(l) => l.as_ref(),
            None => &self.memory,
        }
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers `user`'s id (a hint: checked by reading the user before any write by it).
    fn remember(&self, user: &PartnerUserV2) {
        if !user.id.is_empty() {
            self.directory()
                .ids
                .insert(user.email.to_lowercase(), user.id.clone());
        }
    }

    fn forget(&self, email: &str) {
        self.directory().ids.remove(&email.to_lowercase());
    }

    /// Drops the remembered role list: after a role write whose outcome is unknown (an error
    /// may come after the partner carried it out), names must be read again before a user
    /// write uses them, or a role renamed by the failed call would still be found under its old
    /// name.
    fn forget_roles(&self) {
        self.directory().roles = None;
    }

    /// True when the bridge may rename or delete `role`: it created it.
    pub fn owns(&self, role: &PartnerRole) -> bool {
        !is_builtin_role(&role.name)
            && !self.settings.is_mapped_role(&role.name)
            && role.description.contains(MANAGED_ROLE_MARK)
    }

    fn description(&self) -> String {
        let d = self.settings.template.description.trim();
        if d.is_empty() {
            MANAGED_ROLE_MARK.to_owned()
        } else {
            format!("{d} {MANAGED_ROLE_MARK}")
        }
    }
}

/// A group's role at a site, as the client finds it.
enum Resolved {
    /// The group's role, through its link or by name. `drifted`: a role the bridge made,
    /// linked to the group, whose name is not the group's (a rename that half-happened, or a
    /// rename in the site's UI); the bridge puts the name back.
    Role {
        role: PartnerRole,
        linked: bool,
        drifted: bool,
    },
    /// A role has the group's name but another group (`by`) is linked to it.
    Taken { role: PartnerRole, by: String },
    /// No role.
    None,
}

fn same_name(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

fn find_role<'a>(roles: &'a [PartnerRole], name: &str) -> Option<&'a PartnerRole> {
    roles
        .iter()
        .find(|r| r.name.trim().eq_ignore_ascii_case(name.trim()))
}

impl PartnerClient {
    /// The site's role mapping when it is an RBAC site.
    pub fn role_site(&self) -> Option<&RoleSite> {
        self.roles.as_deref()
    }

    /// Which API the site speaks.
    pub fn api(&self) -> crate::partner::rbac::SiteApi {
        if self.roles.is_some() {
            crate::partner::rbac::SiteApi::Roles
        } else {
            crate::partner::rbac::SiteApi::Groups
        }
    }

    fn local(&self, kind: PartnerErrorKind, call: CallKind, message: String) -> PartnerError {
        PartnerError::local(kind, call, &self.inner.site, message)
    }

    async fn fresh_roles(&self, rs: &RoleSite) -> Result<Vec<PartnerRole>, PartnerError> {
        let roles = self.list_roles().await?;
        let mut dir = rs.directory();
        dir.roles = Some(roles.clone());
        dir.roles_read = Some(std::time::Instant::now());
        Ok(roles)
    }

    async fn known_roles(&self, rs: &RoleSite) -> Result<Vec<PartnerRole>, PartnerError> {
        let cached = {
            let dir = rs.directory();
            dir.roles.clone().filter(|_| {
                dir.roles_read
                    .is_some_and(|t| t.elapsed() < ROLE_LIST_MAX_AGE)
            })
        };
        match cached {
            Some(roles) => Ok(roles),
            None => self.fresh_roles(rs).await,
        }
    }

    fn store_error(&self, call: CallKind, e: String) -> PartnerError {
        // The call is tried again later, as when the partner is unreachable.
        self.local(
            PartnerErrorKind::Unavailable,
            call,
            format!("the bridge's store of partner ids: {e}"),
        )
    }

    async fn link(
        &self,
        rs: &RoleSite,
        call: CallKind,
        kind: LinkKind,
        name: &str,
    ) -> Result<Option<Link>, PartnerError> {
        rs.links()
            .get(kind, name)
            .await
            .map_err(|e| self.store_error(call, e))
    }

    async fn put_link(
        &self,
        rs: &RoleSite,
        call: CallKind,
        kind: LinkKind,
        link: Link,
        replacing: Option<&str>,
    ) -> Result<(), PartnerError> {
        rs.links()
            .put(kind, &link, replacing)
            .await
            .map_err(|e| self.store_error(call, e))
    }

    async fn unlink(
        &self,
        rs: &RoleSite,
        call: CallKind,
        kind: LinkKind,
        name: &str,
    ) -> Result<(), PartnerError> {
        rs.links()
            .remove(kind, name)
            .await
            .map_err(|e| self.store_error(call, e))
    }

    /// The group `name`'s role at this site: its linked role while that exists, else the role
    /// of its name (`role_map` applied; a mapped group is always its mapped role) unless
    /// another group is linked to that role (it is that group's, whatever its name now; `also`
    /// names a group that may hold it, the other side of a rename). `roles` is read again
    /// (once, `fresh` tells) when an id or name is not in it, or a linked role the bridge made
    /// has another name in it. A link is dropped only when its role is gone by a read of that
    /// role itself (a list read before the link was written does not have it yet).
    async fn group_role(
        &self,
        rs: &RoleSite,
        call: CallKind,
        name: &str,
        also: Option<&str>,
        roles: &mut Vec<PartnerRole>,
        fresh: &mut bool,
    ) -> Result<Resolved, PartnerError> {
        let expected = rs.settings.role_name(name);
        if !rs.settings.is_mapped_group(name) {
            if let Some(link) = self.link(rs, call, LinkKind::Role, name).await? {
                let by_id =
                    |roles: &[PartnerRole]| roles.iter().find(|r| r.id == link.partner_id).cloned();
                let mut found = by_id(roles);
                let doubtful = found
                    .as_ref()
                    .is_none_or(|r| rs.owns(r) && !same_name(&r.name, expected));
                if doubtful && !*fresh {
                    *roles = self.fresh_roles(rs).await?;
                    *fresh = true;
                    found = by_id(roles);
                }
                if found.is_none() {
                    found = self.get_role(&link.partner_id).await?;
                }
                match found {
                    Some(role) => {
                        let drifted = rs.owns(&role) && !same_name(&role.name, expected);
                        return Ok(Resolved::Role {
                            role,
                            linked: true,
                            drifted,
                        });
                    }
                    None => {
                        tracing::info!(
                            site = %self.inner.site,
                            "a group's linked role is gone from the site: the group is resolved by name"
                        );
                        self.unlink(rs, call, LinkKind::Role, name).await?;
                    }
                }
            }
        }
        if !*fresh && find_role(roles, expected).is_none() {
            *roles = self.fresh_roles(rs).await?;
            *fresh = true;
        }
        let Some(role) = find_role(roles, expected).cloned() else {
            return Ok(Resolved::None);
        };
        let owner = self
            .role_links(rs, call)
            .await?
            .remove(&role.id)
            .filter(|g| !same_name(g, name) && also.is_none_or(|a| !same_name(g, a)));
        Ok(match owner {
            Some(by) => Resolved::Taken { role, by },
            None => Resolved::Role {
                role,
                linked: false,
                drifted: false,
            },
        })
    }

    /// The group a role a user holds is to the bridge: the group linked to it, else the
    /// displayName `role_map` maps onto it, else the role's own name.
    fn group_of_role(rs: &RoleSite, links: &HashMap<String, String>, role: &PartnerRole) -> String {
        match links.get(&role.id) {
            Some(group) => group.clone(),
            None => rs.settings.group_name(&role.name).to_owned(),
        }
    }

    /// The group name a role is listed under: as [`Self::group_of_role`], except that a role
    /// the bridge made whose name is not its group's any more is listed under its own name, so
    /// the group shows as missing under its name and is repaired (the role renamed back, or a
    /// rename that half-happened finished from a former name).
    fn listed_group(rs: &RoleSite, links: &HashMap<String, String>, role: &PartnerRole) -> String {
        match links.get(&role.id) {
            Some(group)
                if !rs.owns(role) || same_name(&role.name, rs.settings.role_name(group)) =>
            {
                group.clone()
            }
            _ => rs.settings.group_name(&role.name).to_owned(),
        }
    }

    /// Role id -> linked group name.
    async fn role_links(
        &self,
        rs: &RoleSite,
        call: CallKind,
    ) -> Result<HashMap<String, String>, PartnerError> {
        let all = rs
            .links()
            .all(LinkKind::Role)
            .await
            .map_err(|e| self.store_error(call, e))?;
        Ok(all.into_iter().map(|l| (l.partner_id, l.name)).collect())
    }

    /// The names the bridge knows the roles `ids` by (a role unknown even after reading the
    /// list again is gone, and left out).
    async fn names_of(
        &self,
        rs: &RoleSite,
        call: CallKind,
        ids: &[String],
    ) -> Result<Vec<String>, PartnerError> {
        let mut roles = self.known_roles(rs).await?;
        if ids.iter().any(|id| !roles.iter().any(|r| &r.id == id)) {
            roles = self.fresh_roles(rs).await?;
        }
        let links = self.role_links(rs, call).await?;
        Ok(ids
            .iter()
            .filter_map(|id| roles.iter().find(|r| &r.id == id))
            .map(|r| Self::group_of_role(rs, &links, r))
            .collect())
    }

    /// The role ids of the groups `names`, `Everyone` always among them. A name without a
    /// role is refused (`Invalid`, as a v1 site refuses an unknown group, so the bridge makes
    /// the role and tries again), or left out where the site does not create roles.
    async fn ids_of(
        &self,
        rs: &RoleSite,
        call: CallKind,
        names: &[String],
    ) -> Result<Vec<String>, PartnerError> {
        let mut roles = self.known_roles(rs).await?;
        let mut fresh = false;
        let mut ids: Vec<String> = Vec::with_capacity(names.len() + 1);
        for name in names {
            let role = rs.settings.role_name(name);
            match self
                .group_role(rs, call, name, None, &mut roles, &mut fresh)
                .await?
            {
                Resolved::Role {
                    role: r,
                    drifted: false,
                    ..
                } => {
                    if !ids.contains(&r.id) {
                        ids.push(r.id);
                    }
                }
                Resolved::Role { role: r, .. }
                    if find_role(&roles, role).is_some_and(|other| other.id != r.id) =>
                {
                    // Named otherwise, and another role has the group's name: it cannot be
                    // named back, so the group's members are given its role as it is.
                    tracing::warn!(
                        site = %self.inner.site,
                        "a role the bridge made for a group has another name and another role has the group's: rename one of them in the site's UI"
                    );
                    if !ids.contains(&r.id) {
                        ids.push(r.id);
                    }
                }
                Resolved::Role { role: r, .. } => {
                    // Refused like a missing group: the bridge's repair (which waits for a
                    // rename holding the group's names) puts the name back, and tries again.
                    return Err(self.local(
                        PartnerErrorKind::Invalid,
                        call,
                        format!(
                            "the group's role is named '{}' at the site, not '{role}'",
                            r.name
                        ),
                    ));
                }
                Resolved::Taken { by, .. } => {
                    // Another group's role: no role for this group here, and the rest of
                    // the write (other groups' roles given and taken) still goes.
                    tracing::warn!(
                        site = %self.inner.site,
                        group = %by,
                        "a managed group's role name belongs to another group's role: the group has no role at this site"
                    );
                }
                Resolved::None if !rs.settings.create_roles => {
                    tracing::warn!(
                        site = %self.inner.site,
                        "a managed group has no role at the site and create_roles is off: \
                         the group is unmapped there"
                    );
                }
                Resolved::None => {
                    return Err(self.local(
                        PartnerErrorKind::Invalid,
                        call,
                        format!("the site has no role named '{role}'"),
                    ))
                }
            }
        }
        if let Some(everyone) = find_role(&roles, EVERYONE_ROLE) {
            if !ids.contains(&everyone.id) {
                ids.push(everyone.id.clone());
            }
        }
        Ok(ids)
    }

    async fn as_partner_user(
        &self,
        rs: &RoleSite,
        call: CallKind,
        user: PartnerUserV2,
    ) -> Result<PartnerUser, PartnerError> {
        let groups = self.names_of(rs, call, &user.roles).await?;
        Ok(PartnerUser {
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            groups,
        })
    }

    /// The RBAC user of `email`: by the id last read or linked for it (checked to still be
    /// that user), else by reading the user list (and linking what it finds).
    async fn user_by_email(
        &self,
        rs: &RoleSite,
        call: CallKind,
        email: &str,
        trust_listing: bool,
    ) -> Result<Option<PartnerUserV2>, PartnerError> {
        let remembered = rs.directory().ids.get(&email.to_lowercase()).cloned();
        let link = self.link(rs, call, LinkKind::User, email).await?;
        let known = remembered.or_else(|| link.as_ref().map(|l| l.partner_id.clone()));
        if let Some(id) = &known {
            match self.get_user_v2(id).await? {
                Some(u) if u.email.eq_ignore_ascii_case(email) => {
                    rs.remember(&u);
                    if link.as_ref().is_none_or(|l| l.partner_id != u.id) {
                        self.link_user(rs, call, &u, link.as_ref().is_none_or(|l| l.adopted))
                            .await?;
                    }
                    return Ok(Some(u));
                }
                _ => rs.forget(email),
            }
        }
        let listed_lately = rs
            .directory()
            .users_listed
            .is_some_and(|t| t.elapsed() < USER_LIST_MAX_AGE);
        if trust_listing && listed_lately && known.is_none() {
            return Ok(None);
        }
        let found = self.read_user_list(rs, email).await?;
        match &found {
            Some(u) if link.as_ref().is_none_or(|l| l.partner_id != u.id) => {
                // Found at the site rather than made by the bridge: adopted.
                self.link_user(rs, call, u, true).await?;
            }
            Some(_) => {}
            None if link.is_some() => self.unlink(rs, call, LinkKind::User, email).await?,
            None => {}
        }
        Ok(found)
    }

    /// Reads the whole user list, remembering every id in it; the user of `email` if listed.
    async fn read_user_list(
        &self,
        rs: &RoleSite,
        email: &str,
    ) -> Result<Option<PartnerUserV2>, PartnerError> {
        let started = std::time::Instant::now();
        let users = self.list_users_v2().await?;
        let mut found = None;
        for u in users {
            rs.remember(&u);
            if u.email.eq_ignore_ascii_case(email) {
                found = Some(u);
            }
        }
        rs.directory().users_listed = Some(started);
        Ok(found)
    }

    async fn link_user(
        &self,
        rs: &RoleSite,
        call: CallKind,
        user: &PartnerUserV2,
        adopted: bool,
    ) -> Result<(), PartnerError> {
        if user.id.is_empty() {
            return Ok(());
        }
        let link = Link {
            name: user.email.clone(),
            partner_id: user.id.clone(),
            adopted,
        };
        self.put_link(rs, call, LinkKind::User, link, None).await
    }

    /// [`Self::user_by_email`], a missing user being `NotFound` (as a v1 site answers a write
    /// for an email it does not have).
    async fn existing_user(
        &self,
        rs: &RoleSite,
        call: CallKind,
        email: &str,
    ) -> Result<PartnerUserV2, PartnerError> {
        self.user_by_email(rs, call, email, false)
            .await?
            .ok_or_else(|| {
                self.local(
                    PartnerErrorKind::NotFound,
                    call,
                    "no user of the site has this email".into(),
                )
            })
    }

    pub(super) async fn rbac_list_users(
        &self,
        rs: &RoleSite,
    ) -> Result<Vec<PartnerUser>, PartnerError> {
        let call = CallKind::ListUsersV2;
        let started = std::time::Instant::now();
        let users = self.list_users_v2().await?;
        let roles = self.fresh_roles(rs).await?;
        let links = self.role_links(rs, call).await?;
        for u in &users {
            rs.remember(u);
        }
        // Only now does the directory hold every user listed.
        rs.directory().users_listed = Some(started);
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            // Roles gone since the list was read are left out, as `names_of` leaves them.
            let groups = u
                .roles
                .iter()
                .filter_map(|id| roles.iter().find(|r| &r.id == id))
                .map(|r| Self::group_of_role(rs, &links, r))
                .collect();
            out.push(PartnerUser {
                email: u.email,
                first_name: u.first_name,
                last_name: u.last_name,
                groups,
            });
        }
        Ok(out)
    }

    pub(super) async fn rbac_get_user(
        &self,
        rs: &RoleSite,
        email: &str,
        trust_listing: bool,
    ) -> Result<Option<PartnerUser>, PartnerError> {
        let call = CallKind::GetUserV2;
        self.check_email(call, email)?;
        match self.user_by_email(rs, call, email, trust_listing).await? {
            Some(u) => Ok(Some(self.as_partner_user(rs, call, u).await?)),
            None => Ok(None),
        }
    }

    pub(super) async fn rbac_create_user(
        &self,
        rs: &RoleSite,
        user: &NewUser,
        test_mode: bool,
    ) -> Result<PartnerUser, PartnerError> {
        let call = CallKind::CreateUserV2;
        let new = NewUserV2 {
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            roles: self.ids_of(rs, call, &user.groups).await?,
            invited_by_email: user.invited_by_email.clone(),
        };
        let created = self
            .create_user_v2(&new, test_mode)
            .await
            .inspect_err(|e| {
                if e.kind == PartnerErrorKind::Conflict {
                    // Made elsewhere since the list was read: read it again next time.
                    rs.directory().users_listed = None;
                }
            })?;
        if !test_mode {
            rs.remember(&created);
            self.link_user(rs, call, &created, false).await?;
        }
        self.as_partner_user(rs, call, created).await
    }

    pub(super) async fn rbac_update_user(
        &self,
        rs: &RoleSite,
        email: &str,
        update: &UserUpdate,
        test_mode: bool,
    ) -> Result<PartnerUser, PartnerError> {
        let call = CallKind::UpdateUserV2;
        self.check_email(call, email)?;
        let roles = match &update.groups {
            Some(groups) => Some(self.ids_of(rs, call, groups).await?),
            None => None,
        };
        let change = UserUpdateV2 {
            email: update.email.clone(),
            first_name: update.first_name.clone(),
            last_name: update.last_name.clone(),
            roles,
        };
        let current = self.existing_user(rs, call, email).await?;
        let updated = self.update_user_v2(&current.id, &change, test_mode).await?;
        if !test_mode {
            rs.remember(&updated);
            if !updated.email.eq_ignore_ascii_case(email) {
                rs.forget(email);
                let adopted = self
                    .link(rs, call, LinkKind::User, email)
                    .await?
                    .is_none_or(|l| l.adopted);
                let link = Link {
                    name: updated.email.clone(),
                    partner_id: updated.id.clone(),
                    adopted,
                };
                self.put_link(rs, call, LinkKind::User, link, Some(email))
                    .await?;
            }
        }
        self.as_partner_user(rs, call, updated).await
    }

    pub(super) async fn rbac_delete_user(
        &self,
        rs: &RoleSite,
        email: &str,
        test_mode: bool,
    ) -> Result<(), PartnerError> {
        let call = CallKind::DeleteUserV2;
        self.check_email(call, email)?;
        // By the id of a user just read by its email: never by an id remembered earlier,
        // which may be another account now (its email changed) or gone (the email another
        // user's since).
        let current = self.existing_user(rs, call, email).await?;
        self.delete_user_v2(&current.id, test_mode).await?;
        if !test_mode {
            rs.forget(email);
            self.unlink(rs, call, LinkKind::User, email).await?;
        }
        Ok(())
    }

    pub(super) async fn rbac_list_groups(
        &self,
        rs: &RoleSite,
    ) -> Result<Vec<PartnerGroup>, PartnerError> {
        let roles = self.fresh_roles(rs).await?;
        let links = self.role_links(rs, CallKind::ListRoles).await?;
        Ok(roles
            .iter()
            .map(|r| PartnerGroup {
                name: Self::listed_group(rs, &links, r),
                access: Access::View,
            })
            .collect())
    }

    pub(super) async fn rbac_get_group(
        &self,
        rs: &RoleSite,
        name: &str,
    ) -> Result<Option<PartnerGroup>, PartnerError> {
        let mut roles = self.fresh_roles(rs).await?;
        let found = self
            .group_role(rs, CallKind::GetRole, name, None, &mut roles, &mut true)
            .await?;
        Ok(match found {
            Resolved::Role { drifted: false, .. } => Some(PartnerGroup {
                name: name.to_owned(),
                access: Access::View,
            }),
            _ => None,
        })
    }

    /// A group's role: created from the site's template and linked, or `Conflict` when the
    /// group has a role already (its link, or a role of its name, which the bridge adopts and
    /// links). Where the site does not create roles, nothing is made and the group is unmapped
    /// there.
    pub(super) async fn rbac_create_group(
        &self,
        rs: &RoleSite,
        group: &NewGroup,
        test_mode: bool,
    ) -> Result<PartnerGroup, PartnerError> {
        let call = CallKind::CreateRole;
        let role = rs.settings.role_name(&group.name);
        let as_group = PartnerGroup {
            name: group.name.clone(),
            access: group.access,
        };
        let mut roles = self.fresh_roles(rs).await?;
        match self
            .group_role(rs, call, &group.name, None, &mut roles, &mut true)
            .await?
        {
            Resolved::Role {
                role: found,
                linked,
                drifted: false,
            } => {
                if !linked && !test_mode && !rs.settings.is_mapped_group(&group.name) {
                    let link = Link {
                        name: group.name.clone(),
                        partner_id: found.id.clone(),
                        adopted: !rs.owns(&found),
                    };
                    self.put_link(rs, call, LinkKind::Role, link, None).await?;
                }
                return Err(self.local(
                    PartnerErrorKind::Conflict,
                    call,
                    format!("the site has a role named '{}'", found.name),
                ));
            }
            Resolved::Role { role: found, .. } => {
                // The group's own role under another name: its name is put back.
                if let Some(other) = find_role(&roles, role).filter(|r| r.id != found.id) {
                    return Err(self.local(
                        PartnerErrorKind::Invalid,
                        call,
                        format!(
                            "the group's role is named '{}' at the site and another role is \
                             named '{}': rename one of them in the site's UI",
                            found.name, other.name
                        ),
                    ));
                }
                tracing::info!(
                    site = %self.inner.site,
                    "a role the bridge made for a group has another name at the site: named back"
                );
                self.rename_role(&found.id, role, rs.acting_email.as_deref(), test_mode)
                    .await
                    .inspect_err(|_| rs.forget_roles())?;
                rs.forget_roles();
                return Ok(as_group);
            }
            Resolved::Taken { role: found, by } => {
                return Err(self.local(
                    PartnerErrorKind::Invalid,
                    call,
                    format!(
                        "the site's role '{}' is the role of the group '{by}': give this group \
                         another name, or rename that role in the site's UI",
                        found.name
                    ),
                ));
            }
            Resolved::None => {}
        }
        if !rs.settings.create_roles {
            tracing::warn!(
                site = %self.inner.site,
                "no role of the group's name and create_roles is off: the group is unmapped at this site"
            );
            return Ok(as_group);
        }
        let new = NewRole {
            name: role.to_owned(),
            description: rs.description(),
            created_by_email: group.created_by_email.clone(),
            privileges: rs.settings.template.privileges.clone(),
            permissions: Vec::new(),
        };
        let created = self
            .create_role(&new, test_mode)
            .await
            .inspect_err(|_| rs.forget_roles())?;
        if !test_mode {
            let link = Link {
                name: group.name.clone(),
                partner_id: created.id.clone(),
                adopted: false,
            };
            if let Some(cached) = rs.directory().roles.as_mut() {
                cached.push(created);
            }
            self.put_link(rs, call, LinkKind::Role, link, None).await?;
        }
        Ok(as_group)
    }

    /// A group rename. The group keeps its role: a role the bridge created is renamed with it;
    /// an adopted one keeps its name and the group's link moves to the new name. Refused
    /// (`Invalid`) before anything changes when `role_map` maps the new name onto another role
    /// than the group's (its members would hold the wrong one).
    pub(super) async fn rbac_update_group(
        &self,
        rs: &RoleSite,
        name: &str,
        update: &GroupUpdate,
        test_mode: bool,
    ) -> Result<PartnerGroup, PartnerError> {
        let call = CallKind::UpdateRole;
        let Some(new_name) = update.name.as_deref() else {
            // Roles have no access level: nothing to change.
            return Ok(PartnerGroup {
                name: name.to_owned(),
                access: update.access.unwrap_or(Access::View),
            });
        };
        let renamed = PartnerGroup {
            name: new_name.to_owned(),
            access: update.access.unwrap_or(Access::View),
        };
        let mut roles = self.fresh_roles(rs).await?;
        let role = match self
            .group_role(rs, call, name, Some(new_name), &mut roles, &mut true)
            .await?
        {
            Resolved::Role { role, .. } => role,
            Resolved::Taken { .. } | Resolved::None => {
                // Already renamed (a retry): the new name's link has the role, under that name.
                if let Resolved::Role {
                    linked: true,
                    drifted: false,
                    ..
                } = self
                    .group_role(rs, call, new_name, None, &mut roles, &mut true)
                    .await?
                {
                    return Ok(renamed);
                }
                return Err(self.local(
                    PartnerErrorKind::NotFound,
                    call,
                    format!(
                        "the site has no role for the group (none named '{}')",
                        rs.settings.role_name(name)
                    ),
                ));
            }
        };
        let to = rs.settings.role_name(new_name);
        let mapped_elsewhere = rs.settings.is_mapped_group(new_name) && !same_name(&role.name, to);
        let taken = find_role(&roles, to).filter(|r| r.id != role.id);
        if mapped_elsewhere || (rs.owns(&role) && taken.is_some()) {
            return Err(self.local(
                PartnerErrorKind::Invalid,
                call,
                format!(
                    "the group's role is '{}' and the new displayName maps to the role '{to}', \
                     another role: rename the group to a name of its own, or change role_map",
                    role.name
                ),
            ));
        }
        if rs.owns(&role) && role.name != to {
            self.rename_role(&role.id, to, rs.acting_email.as_deref(), test_mode)
                .await
                .inspect_err(|_| rs.forget_roles())?;
            if !test_mode {
                rs.forget_roles();
            }
        }
        if !test_mode {
            // A mapped group is found through role_map, not a link.
            if rs.settings.is_mapped_group(new_name) {
                self.unlink(rs, call, LinkKind::Role, name).await?;
            } else {
                let link = Link {
                    name: new_name.to_owned(),
                    partner_id: role.id.clone(),
                    adopted: !rs.owns(&role),
                };
                self.put_link(rs, call, LinkKind::Role, link, Some(name))
                    .await?;
            }
        }
        Ok(renamed)
    }

    /// [`PartnerClient::get_user`] for a user that should be at the site (its convergence
    /// creates it when this answers `None`): on an RBAC site an email the bridge holds no id
    /// for may be answered absent from a complete reading of the user list made in the last
    /// 30 s, without reading it again; a create refused because the email exists then makes
    /// the next lookup read it. Never for a user about to be taken as gone.
    pub async fn get_user_to_create(
        &self,
        email: &str,
    ) -> Result<Option<PartnerUser>, PartnerError> {
        match self.roles.as_deref() {
            Some(rs) => self.rbac_get_user(rs, email, true).await,
            None => self.get_user(email).await,
        }
    }

    /// Looks once more for the user of `email` that [`PartnerClient::get_user`] just missed,
    /// before a missing one is taken as gone (a leaver left alone). On an RBAC site a user the
    /// bridge holds no link for is found by reading the user list, and a cursor listing read
    /// while users are added or removed can skip one: a second reading must miss it too. `None`
    /// on a v1 site, whose read by email is the partner's own answer.
    pub async fn find_missed_user(&self, email: &str) -> Result<Option<PartnerUser>, PartnerError> {
        let Some(rs) = self.roles.as_deref() else {
            return Ok(None);
        };
        let call = CallKind::GetUserV2;
        match self.read_user_list(rs, email).await? {
            Some(u) => {
                self.link_user(rs, call, &u, true).await?;
                Ok(Some(self.as_partner_user(rs, call, u).await?))
            }
            None => Ok(None),
        }
    }

    /// `names` without the groups that have no role at this RBAC site and get none: those
    /// whose role name belongs to another group's role, and, where the site does not create
    /// roles, those with neither a link nor a role of their name (the role list as last read,
    /// read again once when one is missing). Wanting them would rewrite their members on every
    /// convergence for nothing. Every name on a v1 site.
    pub async fn groups_with_roles(&self, names: Vec<String>) -> Result<Vec<String>, PartnerError> {
        let Some(rs) = self.roles.as_deref() else {
            return Ok(names);
        };
        if names.is_empty() {
            return Ok(names);
        }
        let call = CallKind::ListRoles;
        // Role id -> linked group.
        let links = self.role_links(rs, call).await?;
        let linked: std::collections::HashSet<String> =
            links.values().map(|n| n.to_lowercase()).collect();
        let mut roles = self.known_roles(rs).await?;
        let mut fresh = false;
        let mut kept = Vec::with_capacity(names.len());
        for name in names {
            if linked.contains(&name.to_lowercase()) {
                kept.push(name);
                continue;
            }
            let wanted = rs.settings.role_name(&name);
            if find_role(&roles, wanted).is_none() && !rs.settings.create_roles && !fresh {
                // A role made in the UI since the list was read is seen.
                roles = self.fresh_roles(rs).await?;
                fresh = true;
            }
            match find_role(&roles, wanted) {
                Some(r) => match links.get(&r.id) {
                    Some(by) if !same_name(by, &name) => {}
                    _ => kept.push(name),
                },
                None if rs.settings.create_roles => kept.push(name),
                None => {}
            }
        }
        Ok(kept)
    }

    /// True when the group `name` maps to a role of this RBAC site that the bridge did not
    /// create (built-in, mapped or adopted): deleting the group empties the role, which stays.
    /// False on a v1 site and for a role the bridge created or that does not exist.
    pub async fn keeps_group_role(&self, name: &str) -> Result<bool, PartnerError> {
        let Some(rs) = self.roles.as_deref() else {
            return Ok(false);
        };
        let mut roles = self.fresh_roles(rs).await?;
        Ok(matches!(
            self.group_role(rs, CallKind::DeleteRole, name, None, &mut roles, &mut true)
                .await?,
            Resolved::Role { role, .. } if !rs.owns(&role)
        ))
    }

    /// A group delete: its role deleted when the bridge created it; an adopted role is kept
    /// (the group's members have lost it already). The group's link goes either way.
    pub(super) async fn rbac_delete_group(
        &self,
        rs: &RoleSite,
        name: &str,
        test_mode: bool,
    ) -> Result<(), PartnerError> {
        let call = CallKind::DeleteRole;
        let mut roles = self.fresh_roles(rs).await?;
        let Resolved::Role { role, .. } = self
            .group_role(rs, call, name, None, &mut roles, &mut true)
            .await?
        else {
            return Err(self.local(
                PartnerErrorKind::NotFound,
                call,
                format!(
                    "the site has no role named '{}'",
                    rs.settings.role_name(name)
                ),
            ));
        };
        if rs.owns(&role) {
            self.delete_role(&role.id, test_mode)
                .await
                .inspect_err(|_| rs.forget_roles())?;
        } else {
            tracing::info!(
                site = %self.inner.site,
                "the deleted group's role was adopted, not created by the bridge: it is kept"
            );
        }
        if !test_mode {
            rs.forget_roles();
            self.unlink(rs, call, LinkKind::Role, name).await?;
        }
        Ok(())
    }
}
