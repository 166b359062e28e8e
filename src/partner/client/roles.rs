//! An RBAC site behind the calls every site answers. The bridge speaks of users by email and of
//! groups by name; on an RBAC site a user is an id holding role ids, and a SCIM group is a role
//! (`role_map` may give it another name). This module turns the one into the other: emails are
//! resolved to ids by reading the partner (an id remembered from an earlier read is checked
//! against the user it names before it is used, never guessed), role names to ids from the
//! site's role list (read again when a name or id is not known).
//!
//! Roles the bridge did not create (the five built-in ones, those `role_map` names, those found
//! under a SCIM group's name) are adopted: users are given and taken them, but the bridge never
//! renames or deletes them. A role the bridge creates carries [`MANAGED_ROLE_MARK`] in its
//! description, which is how every replica, and the bridge after a restart, tells it apart.

use std::collections::HashMap;

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
}

/// How long a role list read from the partner is used before it is read again.
const ROLE_LIST_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

impl RoleSite {
    pub fn new(settings: RoleSettings, acting_email: Option<String>) -> RoleSite {
        RoleSite {
            settings,
            acting_email,
            directory: std::sync::Mutex::new(Directory::default()),
        }
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

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

    /// The names the bridge knows the roles `ids` by (a role unknown even after reading the
    /// list again is gone, and left out).
    async fn names_of(&self, rs: &RoleSite, ids: &[String]) -> Result<Vec<String>, PartnerError> {
        let mut roles = self.known_roles(rs).await?;
        if ids.iter().any(|id| !roles.iter().any(|r| &r.id == id)) {
            roles = self.fresh_roles(rs).await?;
        }
        Ok(ids
            .iter()
            .filter_map(|id| roles.iter().find(|r| &r.id == id))
            .map(|r| rs.settings.group_name(&r.name).to_owned())
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
        let wanted: Vec<&str> = names.iter().map(|n| rs.settings.role_name(n)).collect();
        let mut roles = self.known_roles(rs).await?;
        if wanted.iter().any(|w| find_role(&roles, w).is_none()) {
            roles = self.fresh_roles(rs).await?;
        }
        let mut ids: Vec<String> = Vec::with_capacity(wanted.len() + 1);
        for role in wanted.iter().copied().chain(std::iter::once(EVERYONE_ROLE)) {
            match find_role(&roles, role) {
                Some(r) => {
                    if !ids.contains(&r.id) {
                        ids.push(r.id.clone());
                    }
                }
                None if role == EVERYONE_ROLE => {}
                None if !rs.settings.create_roles => {
                    tracing::warn!(
                        site = %self.inner.site,
                        "a managed group has no role at the site and create_roles is off: \
                         the group is unmapped there"
                    );
                }
                None => {
                    return Err(self.local(
                        PartnerErrorKind::Invalid,
                        call,
                        format!("the site has no role named '{role}'"),
                    ))
                }
            }
        }
        Ok(ids)
    }

    async fn as_partner_user(
        &self,
        rs: &RoleSite,
        user: PartnerUserV2,
    ) -> Result<PartnerUser, PartnerError> {
        let groups = self.names_of(rs, &user.roles).await?;
        Ok(PartnerUser {
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            groups,
        })
    }

    /// The RBAC user of `email`: by the id last read for it (checked to still be that
    /// user), else by reading the user list.
    async fn user_by_email(
        &self,
        rs: &RoleSite,
        email: &str,
    ) -> Result<Option<PartnerUserV2>, PartnerError> {
        let known = rs.directory().ids.get(&email.to_lowercase()).cloned();
        if let Some(id) = known {
            match self.get_user_v2(&id).await? {
                Some(u) if u.email.eq_ignore_ascii_case(email) => return Ok(Some(u)),
                _ => rs.forget(email),
            }
        }
        let users = self.list_users_v2().await?;
        let mut found = None;
        for u in users {
            rs.remember(&u);
            if u.email.eq_ignore_ascii_case(email) {
                found = Some(u);
            }
        }
        Ok(found)
    }

    /// [`Self::user_by_email`], a missing user being `NotFound` (as a v1 site answers a write
    /// for an email it does not have).
    async fn existing_user(
        &self,
        rs: &RoleSite,
        call: CallKind,
        email: &str,
    ) -> Result<PartnerUserV2, PartnerError> {
        self.user_by_email(rs, email).await?.ok_or_else(|| {
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
        let users = self.list_users_v2().await?;
        self.fresh_roles(rs).await?;
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            rs.remember(&u);
            out.push(self.as_partner_user(rs, u).await?);
        }
        Ok(out)
    }

    pub(super) async fn rbac_get_user(
        &self,
        rs: &RoleSite,
        email: &str,
    ) -> Result<Option<PartnerUser>, PartnerError> {
        self.check_email(CallKind::GetUserV2, email)?;
        match self.user_by_email(rs, email).await? {
            Some(u) => Ok(Some(self.as_partner_user(rs, u).await?)),
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
        let created = self.create_user_v2(&new, test_mode).await?;
        rs.remember(&created);
        self.as_partner_user(rs, created).await
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
        let current = self.existing_user(rs, call, email).await?;
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
        let updated = self.update_user_v2(&current.id, &change, test_mode).await?;
        if !test_mode && !updated.email.eq_ignore_ascii_case(email) {
            rs.forget(email);
        }
        rs.remember(&updated);
        self.as_partner_user(rs, updated).await
    }

    pub(super) async fn rbac_delete_user(
        &self,
        rs: &RoleSite,
        email: &str,
        test_mode: bool,
    ) -> Result<(), PartnerError> {
        let call = CallKind::DeleteUserV2;
        self.check_email(call, email)?;
        let current = self.existing_user(rs, call, email).await?;
        self.delete_user_v2(&current.id, test_mode).await?;
        if !test_mode {
            rs.forget(email);
        }
        Ok(())
    }

    pub(super) async fn rbac_list_groups(
        &self,
        rs: &RoleSite,
    ) -> Result<Vec<PartnerGroup>, PartnerError> {
        Ok(self
            .fresh_roles(rs)
            .await?
            .iter()
            .map(|r| PartnerGroup {
                name: rs.settings.group_name(&r.name).to_owned(),
                access: Access::View,
            })
            .collect())
    }

    pub(super) async fn rbac_get_group(
        &self,
        rs: &RoleSite,
        name: &str,
    ) -> Result<Option<PartnerGroup>, PartnerError> {
        let roles = self.fresh_roles(rs).await?;
        Ok(
            find_role(&roles, rs.settings.role_name(name)).map(|_| PartnerGroup {
                name: name.to_owned(),
                access: Access::View,
            }),
        )
    }

    /// A group's role: created from the site's template, or `Conflict` when a role of that
    /// name exists (the bridge adopts it). Where the site does not create roles, nothing is
    /// made and the group is unmapped there.
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
        let roles = self.fresh_roles(rs).await?;
        if find_role(&roles, role).is_some() {
            return Err(self.local(
                PartnerErrorKind::Conflict,
                call,
                format!("the site has a role named '{role}'"),
            ));
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
            if let Some(cached) = rs.directory().roles.as_mut() {
                cached.push(created);
            }
        }
        Ok(as_group)
    }

    /// A group rename: its role renamed when the bridge created it. An adopted role is never
    /// renamed: the rename is refused (`Invalid`) before anything changes, since the group
    /// would otherwise lose the role its members hold.
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
        let (from, to) = (rs.settings.role_name(name), rs.settings.role_name(new_name));
        let renamed = PartnerGroup {
            name: new_name.to_owned(),
            access: update.access.unwrap_or(Access::View),
        };
        let roles = self.fresh_roles(rs).await?;
        let Some(role) = find_role(&roles, from) else {
            return Err(self.local(
                PartnerErrorKind::NotFound,
                call,
                format!("the site has no role named '{from}'"),
            ));
        };
        if role.name == to {
            return Ok(renamed);
        }
        if !rs.owns(role) {
            return Err(self.local(
                PartnerErrorKind::Invalid,
                call,
                format!(
                    "the group maps to the role '{}', which the bridge did not create (a \
                     built-in, mapped or adopted role): the bridge never renames it. Rename the \
                     role in the site's UI first, or map the new displayName to it with role_map",
                    role.name
                ),
            ));
        }
        let id = role.id.clone();
        self.rename_role(&id, to, rs.acting_email.as_deref(), test_mode)
            .await
            .inspect_err(|_| rs.forget_roles())?;
        if !test_mode {
            self.fresh_roles(rs).await?;
        }
        Ok(renamed)
    }

    /// True when the group `name` maps to a role of this RBAC site that the bridge did not
    /// create (built-in, mapped or adopted): deleting the group empties the role, which stays.
    /// False on a v1 site and for a role the bridge created or that does not exist.
    pub async fn keeps_group_role(&self, name: &str) -> Result<bool, PartnerError> {
        let Some(rs) = self.roles.as_deref() else {
            return Ok(false);
        };
        let roles = self.fresh_roles(rs).await?;
        Ok(find_role(&roles, rs.settings.role_name(name)).is_some_and(|r| !rs.owns(r)))
    }

    /// A group delete: its role deleted when the bridge created it; an adopted role is kept
    /// (the group's members have lost it already).
    pub(super) async fn rbac_delete_group(
        &self,
        rs: &RoleSite,
        name: &str,
        test_mode: bool,
    ) -> Result<(), PartnerError> {
        let call = CallKind::DeleteRole;
        let role_name = rs.settings.role_name(name);
        let roles = self.fresh_roles(rs).await?;
        let Some(role) = find_role(&roles, role_name) else {
            return Err(self.local(
                PartnerErrorKind::NotFound,
                call,
                format!("the site has no role named '{role_name}'"),
            ));
        };
        if !rs.owns(role) {
            tracing::info!(
                site = %self.inner.site,
                "the deleted group's role was adopted, not created by the bridge: it is kept"
            );
            return Ok(());
        }
        let id = role.id.clone();
        self.delete_role(&id, test_mode)
            .await
            .inspect_err(|_| rs.forget_roles())?;
        if !test_mode {
            self.fresh_roles(rs).await?;
        }
        Ok(())
    }
}
