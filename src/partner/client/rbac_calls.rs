//! The partner calls of an RBAC site (`partner-api.md` section 4): users under `/api/v2/users`
//! and roles under `/api/v1/roles`, both addressed by opaque ids (percent-encoded in paths).
//! Same transport as the v1 calls: validation before traffic, the circuit, retries and limits.

use std::collections::HashSet;

use super::calls::parse_nonblank;
use super::*;
use crate::partner::rbac::{ObjectPermission, PartnerRole, PartnerUserV2, Privilege};
use crate::partner::wire::rbac as wire_rbac;

/// At most this many pages of users are followed: a partner whose cursors never end (without
/// repeating) is refused rather than followed forever.
const MAX_USER_PAGES: usize = 100_000;

/// A user to create at an RBAC site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUserV2 {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    /// Role ids.
    pub roles: Vec<String>,
    pub invited_by_email: String,
}

/// What changes of an RBAC user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdateV2 {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Role ids: the whole set (the partner keeps `Everyone`).
    pub roles: Option<Vec<String>>,
}

/// A role to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRole {
    pub name: String,
    pub description: String,
    pub created_by_email: Option<String>,
    pub privileges: Vec<Privilege>,
    pub permissions: Vec<ObjectPermission>,
}

impl PartnerClient {
    /// `GET /api/v2/users`, following `next_page_start` until it is null or absent; a cursor
    /// that comes back a second time is an error (the partner would loop), not followed.
    pub async fn list_users_v2(&self) -> Result<Vec<PartnerUserV2>, PartnerError> {
        let call = CallKind::ListUsersV2;
        let mut users = Vec::new();
        let mut cursor: Option<String> = None;
        let mut seen = HashSet::new();
        for _ in 0..MAX_USER_PAGES {
            let req = self.prepare(
                call,
                Method::GET,
                wire_rbac::users_url(&self.inner.base_url, cursor.as_deref()),
                None,
            )?;
            let (page, next) = self
                .execute(req, |b| parse_nonblank(b, wire_rbac::parse_user_page))
                .await?
                .ok_or_else(|| self.blank_body(call))?;
            users.extend(page);
            match next {
                None => return Ok(users),
                Some(next) if !seen.insert(next.clone()) => {
                    return Err(self.invalid(
                        call,
                        "the partner's user list gave a page cursor it had given before; \
                         following it would never end",
                    ));
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(self.invalid(call, "the partner's user list has too many pages"))
    }

    /// `GET /api/v2/users/<id>`; `Ok(None)` on 404.
    pub async fn get_user_v2(&self, id: &str) -> Result<Option<PartnerUserV2>, PartnerError> {
        let call = CallKind::GetUserV2;
        let req = self.prepare(
            call,
            Method::GET,
            wire_rbac::user_url(&self.inner.base_url, id),
            None,
        )?;
        match self
            .execute(req, |b| parse_nonblank(b, wire_rbac::parse_user))
            .await
        {
            Ok(Some(user)) => Ok(Some(user)),
            Ok(None) => Err(self.blank_body(call)),
            Err(e) if e.kind == PartnerErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v2/users?test_mode=...`. A blank answer is success; the new user is then
    /// found by its email (its id is never guessed).
    pub async fn create_user_v2(
        &self,
        user: &NewUserV2,
        test_mode: bool,
    ) -> Result<PartnerUserV2, PartnerError> {
        let call = CallKind::CreateUserV2;
        self.check_email(call, &user.email)?;
        self.check_email(call, &user.invited_by_email)?;
        let req = {
            let body = wire_rbac::CreateUserBody {
                first_name: &user.first_name,
                last_name: &user.last_name,
                email: &user.email,
                roles: &user.roles,
                invited_by_email: &user.invited_by_email,
            };
            self.prepare_write(
                call,
                Method::POST,
                wire_rbac::users_url(&self.inner.base_url, None),
                test_mode,
                Some(&body),
            )?
        };
        if let Some(created) = self
            .execute(req, |b| parse_nonblank(b, wire_rbac::parse_user))
            .await?
        {
            return Ok(created);
        }
        let found = self
            .list_users_v2()
            .await?
            .into_iter()
            .find(|u| u.email.eq_ignore_ascii_case(&user.email));
        match found {
            Some(u) => Ok(u),
            None if test_mode => Ok(PartnerUserV2 {
                id: String::new(),
                email: user.email.clone(),
                first_name: user.first_name.clone(),
                last_name: user.last_name.clone(),
                roles: user.roles.clone(),
            }),
            None => Err(self.blank_body(call)),
        }
    }

    /// `PUT /api/v2/users/<id>?test_mode=...` with only what changes.
    pub async fn update_user_v2(
        &self,
        id: &str,
        update: &UserUpdateV2,
        test_mode: bool,
    ) -> Result<PartnerUserV2, PartnerError> {
        let call = CallKind::UpdateUserV2;
        if let Some(e) = &update.email {
            self.check_email(call, e)?;
        }
        let req = {
            let body = wire_rbac::UpdateUserBody {
                email: update.email.as_deref(),
                first_name: update.first_name.as_deref(),
                last_name: update.last_name.as_deref(),
                roles: update.roles.as_deref(),
            };
            self.prepare_write(
                call,
                Method::PUT,
                wire_rbac::user_url(&self.inner.base_url, id),
                test_mode,
                Some(&body),
            )?
        };
        if let Some(user) = self
            .execute(req, |b| parse_nonblank(b, wire_rbac::parse_user))
            .await?
        {
            return Ok(user);
        }
        let mut user = self
            .get_user_v2(id)
            .await?
            .ok_or_else(|| self.blank_body(call))?;
        if test_mode {
            if let Some(v) = &update.email {
                user.email.clone_from(v);
            }
            if let Some(v) = &update.first_name {
                user.first_name.clone_from(v);
            }
            if let Some(v) = &update.last_name {
                user.last_name.clone_from(v);
            }
            if let Some(v) = &update.roles {
                user.roles.clone_from(v);
            }
        }
        Ok(user)
    }

    /// `DELETE /api/v2/users/<id>?test_mode=...`. Any 2xx is success, body or not.
    pub async fn delete_user_v2(&self, id: &str, test_mode: bool) -> Result<(), PartnerError> {
        let req = self.prepare_write::<()>(
            CallKind::DeleteUserV2,
            Method::DELETE,
            wire_rbac::user_url(&self.inner.base_url, id),
            test_mode,
            None,
        )?;
        self.execute(req, |_| Ok(Some(()))).await.map(|_| ())
    }

    /// `GET /api/v1/roles`.
    pub async fn list_roles(&self) -> Result<Vec<PartnerRole>, PartnerError> {
        let call = CallKind::ListRoles;
        let req = self.prepare(
            call,
            Method::GET,
            wire_rbac::roles_url(&self.inner.base_url),
            None,
        )?;
        self.execute(req, |b| parse_nonblank(b, wire_rbac::parse_roles))
            .await?
            .ok_or_else(|| self.blank_body(call))
    }

    /// `GET /api/v1/roles/<id>`; `Ok(None)` on 404.
    pub async fn get_role(&self, id: &str) -> Result<Option<PartnerRole>, PartnerError> {
        let call = CallKind::GetRole;
        let req = self.prepare(
            call,
            Method::GET,
            wire_rbac::role_url(&self.inner.base_url, id),
            None,
        )?;
        match self
            .execute(req, |b| parse_nonblank(b, wire_rbac::parse_role))
            .await
        {
            Ok(Some(role)) => Ok(Some(role)),
            Ok(None) => Err(self.blank_body(call)),
            Err(e) if e.kind == PartnerErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/roles?test_mode=...`. A blank answer is success; the role is then found
    /// by its name.
    pub async fn create_role(
        &self,
        role: &NewRole,
        test_mode: bool,
    ) -> Result<PartnerRole, PartnerError> {
        let call = CallKind::CreateRole;
        wire::validate_group_name(&role.name).map_err(|m| self.invalid(call, m))?;
        if let Some(by) = &role.created_by_email {
            self.check_email(call, by)?;
        }
        let req = {
            let body = wire_rbac::CreateRoleBody {
                name: &role.name,
                description: &role.description,
                created_by_email: role.created_by_email.as_deref(),
                privileges: &role.privileges,
                permissions: &role.permissions,
            };
            self.prepare_write(
                call,
                Method::POST,
                wire_rbac::roles_url(&self.inner.base_url),
                test_mode,
                Some(&body),
            )?
        };
        if let Some(created) = self
            .execute(req, |b| parse_nonblank(b, wire_rbac::parse_role))
            .await?
        {
            return Ok(created);
        }
        let found = self
            .list_roles()
            .await?
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(&role.name));
        match found {
            Some(r) => Ok(r),
            None if test_mode => Ok(PartnerRole {
                id: String::new(),
                name: role.name.clone(),
                description: role.description.clone(),
                privileges: role.privileges.clone(),
                permissions: role.permissions.clone(),
            }),
            None => Err(self.blank_body(call)),
        }
    }

    /// `PUT /api/v1/roles/<id>?test_mode=...` renaming the role (its grants untouched).
    pub async fn rename_role(
        &self,
        id: &str,
        name: &str,
        updated_by_email: Option<&str>,
        test_mode: bool,
    ) -> Result<PartnerRole, PartnerError> {
        let call = CallKind::UpdateRole;
        wire::validate_group_name(name).map_err(|m| self.invalid(call, m))?;
        if let Some(by) = updated_by_email {
            self.check_email(call, by)?;
        }
        let req = {
            let body = wire_rbac::UpdateRoleBody {
                name,
                updated_by_email,
            };
            self.prepare_write(
                call,
                Method::PUT,
                wire_rbac::role_url(&self.inner.base_url, id),
                test_mode,
                Some(&body),
            )?
        };
        if let Some(role) = self
            .execute(req, |b| parse_nonblank(b, wire_rbac::parse_role))
            .await?
        {
            return Ok(role);
        }
        let mut role = self
            .get_role(id)
            .await?
            .ok_or_else(|| self.blank_body(call))?;
        if test_mode {
            role.name = name.to_owned();
        }
        Ok(role)
    }

    /// `DELETE /api/v1/roles/<id>?test_mode=...`. Any 2xx is success, body or not.
    pub async fn delete_role(&self, id: &str, test_mode: bool) -> Result<(), PartnerError> {
        let req = self.prepare_write::<()>(
            CallKind::DeleteRole,
            Method::DELETE,
            wire_rbac::role_url(&self.inner.base_url, id),
            test_mode,
            None,
        )?;
        self.execute(req, |_| Ok(Some(()))).await.map(|_| ())
    }
}
