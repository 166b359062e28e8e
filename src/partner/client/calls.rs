//! The partner calls of a v1 site (`partner-api.md`): users by email, groups by name. Each
//! builds and validates its request (before any traffic) and hands it to the transport. On an
//! RBAC site each is answered through the v2 user and role calls instead (`roles.rs`).

use super::*;

impl PartnerClient {
    /// `GET /api/v1/users`.
    pub async fn list_users(&self) -> Result<Vec<PartnerUser>, PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_list_users(rs).await;
        }
        let call = CallKind::ListUsers;
        let req = self.prepare(
            call,
            Method::GET,
            wire::users_url(&self.inner.base_url),
            None,
        )?;
        let users = self
            .execute(req, |b| parse_nonblank(b, wire::parse_users))
            .await?;
        users.ok_or_else(|| self.blank_body(call))
    }

    /// `GET /api/v1/users` + `HTTP-X-EMAIL`; `Ok(None)` on 404.
    pub async fn get_user(&self, email: &str) -> Result<Option<PartnerUser>, PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_get_user(rs, email, false).await;
        }
        let call = CallKind::GetUser;
        let mut req = self.prepare(
            call,
            Method::GET,
            wire::users_url(&self.inner.base_url),
            None,
        )?;
        req.email = Some(self.email_header(call, email)?);
        let wanted = email.to_owned();
        let found = self
            .execute(req, move |b| {
                parse_nonblank(b, |b| wire::parse_user_matching(b, &wanted))
            })
            .await;
        match found {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(self.blank_body(call)),
            Err(e) if e.kind == PartnerErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/users?test_mode=...`.
    pub async fn create_user(
        &self,
        user: &NewUser,
        test_mode: bool,
    ) -> Result<PartnerUser, PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_create_user(rs, user, test_mode).await;
        }
        let call = CallKind::CreateUser;
        self.check_email(call, &user.email)?;
        self.check_email(call, &user.invited_by_email)?;
        // The body borrows the input; build the request in a block so no borrow is held
        // across an await (keeps the future Send for any lifetime, e.g. in spawned tasks).
        let req = {
            let body = wire::CreateUserBody {
                first_name: &user.first_name,
                last_name: &user.last_name,
                email: &user.email,
                groups: &user.groups,
                invited_by_email: &user.invited_by_email,
            };
            self.prepare_write(
                call,
                Method::POST,
                wire::users_url(&self.inner.base_url),
                test_mode,
                Some(&body),
            )?
        };
        let created = self
            .execute(req, |b| parse_nonblank(b, wire::parse_user))
            .await?;
        // A blank answer is success: the user is what we asked for.
        Ok(created.unwrap_or_else(|| PartnerUser {
            email: user.email.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            groups: user.groups.clone(),
        }))
    }

    /// `PUT /api/v1/users?test_mode=...` + `HTTP-X-EMAIL`.
    pub async fn update_user(
        &self,
        email: &str,
        update: &UserUpdate,
        test_mode: bool,
    ) -> Result<PartnerUser, PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_update_user(rs, email, update, test_mode).await;
        }
        let call = CallKind::UpdateUser;
        let header = self.email_header(call, email)?;
        if let Some(new_email) = &update.email {
            self.check_email(call, new_email)?;
        }
        // The body borrows the input; build the request in a block so no borrow is held
        // across an await (keeps the future Send for any lifetime, e.g. in spawned tasks).
        let mut req = {
            let body = wire::UpdateUserBody {
                email: update.email.as_deref(),
                first_name: update.first_name.as_deref(),
                last_name: update.last_name.as_deref(),
                groups: update.groups.as_deref(),
            };
            self.prepare_write(
                call,
                Method::PUT,
                wire::users_url(&self.inner.base_url),
                test_mode,
                Some(&body),
            )?
        };
        req.email = Some(header);
        if let Some(user) = self
            .execute(req, |b| parse_nonblank(b, wire::parse_user))
            .await?
        {
            return Ok(user);
        }
        // A blank answer is success; read the user back (a dry run changed nothing: overlay).
        let key = match (&update.email, test_mode) {
            (Some(new_email), false) => new_email.as_str(),
            _ => email,
        };
        let mut user = self
            .get_user(key)
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
            if let Some(v) = &update.groups {
                user.groups.clone_from(v);
            }
        }
        Ok(user)
    }

    /// `DELETE /api/v1/users?test_mode=...` + `HTTP-X-EMAIL`. Any 2xx is success, body or not.
    pub async fn delete_user(&self, email: &str, test_mode: bool) -> Result<(), PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_delete_user(rs, email, test_mode).await;
        }
        let call = CallKind::DeleteUser;
        let header = self.email_header(call, email)?;
        let mut req = self.prepare_write::<()>(
            call,
            Method::DELETE,
            wire::users_url(&self.inner.base_url),
            test_mode,
            None,
        )?;
        req.email = Some(header);
        self.execute(req, |_| Ok(Some(()))).await.map(|_| ())
    }

    /// `GET /api/v1/groups`.
    pub async fn list_groups(&self) -> Result<Vec<PartnerGroup>, PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_list_groups(rs).await;
        }
        let call = CallKind::ListGroups;
        let req = self.prepare(
            call,
            Method::GET,
            wire::groups_url(&self.inner.base_url),
            None,
        )?;
        let groups = self
            .execute(req, |b| parse_nonblank(b, wire::parse_groups))
            .await?;
        groups.ok_or_else(|| self.blank_body(call))
    }

    /// `GET /api/v1/groups/<name>`; `Ok(None)` on 404.
    pub async fn get_group(&self, name: &str) -> Result<Option<PartnerGroup>, PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_get_group(rs, name).await;
        }
        let call = CallKind::GetGroup;
        let req = self.prepare(
            call,
            Method::GET,
            wire::group_url(&self.inner.base_url, name),
            None,
        )?;
        match self
            .execute(req, |b| parse_nonblank(b, wire::parse_group))
            .await
        {
            Ok(Some(group)) => Ok(Some(group)),
            Ok(None) => Err(self.blank_body(call)),
            Err(e) if e.kind == PartnerErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/groups?test_mode=...`.
    pub async fn create_group(
        &self,
        group: &NewGroup,
        test_mode: bool,
    ) -> Result<PartnerGroup, PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_create_group(rs, group, test_mode).await;
        }
        let call = CallKind::CreateGroup;
        wire::validate_group_name(&group.name).map_err(|m| self.invalid(call, m))?;
        if let Some(by) = &group.created_by_email {
            self.check_email(call, by)?;
        }
        // The body borrows the input; build the request in a block so no borrow is held
        // across an await (keeps the future Send for any lifetime, e.g. in spawned tasks).
        let req = {
            let body = wire::CreateGroupBody {
                name: &group.name,
                access: group.access,
                created_by_email: group.created_by_email.as_deref(),
            };
            self.prepare_write(
                call,
                Method::POST,
                wire::groups_url(&self.inner.base_url),
                test_mode,
                Some(&body),
            )?
        };
        let created = self
            .execute(req, |b| parse_nonblank(b, wire::parse_group))
            .await?;
        Ok(created.unwrap_or_else(|| PartnerGroup {
            name: group.name.clone(),
            access: group.access,
        }))
    }

    /// `PUT /api/v1/groups/<name>?test_mode=...`.
    pub async fn update_group(
        &self,
        name: &str,
        update: &GroupUpdate,
        test_mode: bool,
    ) -> Result<PartnerGroup, PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_update_group(rs, name, update, test_mode).await;
        }
        let call = CallKind::UpdateGroup;
        if let Some(new_name) = &update.name {
            wire::validate_group_name(new_name).map_err(|m| self.invalid(call, m))?;
        }
        // The body borrows the input; build the request in a block so no borrow is held
        // across an await (keeps the future Send for any lifetime, e.g. in spawned tasks).
        let req = {
            let body = wire::UpdateGroupBody {
                name: update.name.as_deref(),
                access: update.access,
            };
            self.prepare_write(
                call,
                Method::PUT,
                wire::group_url(&self.inner.base_url, name),
                test_mode,
                Some(&body),
            )?
        };
        if let Some(group) = self
            .execute(req, |b| parse_nonblank(b, wire::parse_group))
            .await?
        {
            return Ok(group);
        }
        let key = match (&update.name, test_mode) {
            (Some(new_name), false) => new_name.as_str(),
            _ => name,
        };
        let mut group = self
            .get_group(key)
            .await?
            .ok_or_else(|| self.blank_body(call))?;
        if test_mode {
            if let Some(v) = &update.name {
                group.name.clone_from(v);
            }
            if let Some(v) = update.access {
                group.access = v;
            }
        }
        Ok(group)
    }

    /// `DELETE /api/v1/groups/<name>?test_mode=...`. Any 2xx is success, body or not.
    pub async fn delete_group(&self, name: &str, test_mode: bool) -> Result<(), PartnerError> {
        if let Some(rs) = self.roles.as_deref() {
            return self.rbac_delete_group(rs, name, test_mode).await;
        }
        let call = CallKind::DeleteGroup;
        let req = self.prepare_write::<()>(
            call,
            Method::DELETE,
            wire::group_url(&self.inner.base_url, name),
            test_mode,
            None,
        )?;
        self.execute(req, |_| Ok(Some(()))).await.map(|_| ())
    }
}

pub(super) fn parse_nonblank<T>(
    body: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, ParseError>,
) -> Result<Parsed<T>, ParseError> {
    if wire::is_blank(body) {
        Ok(None)
    } else {
        parse(body).map(Some)
    }
}
