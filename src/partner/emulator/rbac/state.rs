//! The data of one emulated RBAC site and its ten calls (users v2 and roles) as pure,
//! synchronous operations on it (section 4.2 "Contract" of `partner-api.md`).
//!
//! As in the v1 [`state`](super::super::state), every write validates everything first and only
//! then applies, so a `test_mode` call returns exactly what the real call would return (a created
//! user or role included, with the id it would have had) while leaving the state untouched.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::super::state::{checked_email, object, opt_nonblank, opt_str, required, ApiError};
use super::super::Switches;
use crate::partner::rbac::{ADMIN_ROLE, DEFAULT_ROLES, EVERYONE_ROLE};
use crate::partner::{ObjectPermission, PartnerRole, PartnerUserV2, Privilege};

/// Users in one page of `GET /api/v2/users`.
pub(crate) const PAGE_SIZE: usize = 100;

/// The successful result of an RBAC call, before it is shaped for the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RbacReply {
    /// One page of users, and the cursor of the next page (`None` on the last).
    UserPage {
        users: Vec<PartnerUserV2>,
        next_page_start: Option<String>,
    },
    User(PartnerUserV2),
    Roles(Vec<PartnerRole>),
    Role(PartnerRole),
    /// `{}` (the DELETE answer).
    Empty,
}

/// Users and roles of one RBAC site.
#[derive(Debug, Clone)]
pub(crate) struct RbacState {
    /// Key: the id.
    users: BTreeMap<String, PartnerUserV2>,
    /// The email in lower case -> the user's id; also the order of the user list.
    emails: BTreeMap<String, String>,
    /// Key: the id.
    roles: BTreeMap<String, PartnerRole>,
    /// The name in lower case -> the role's id; also the order of the role list.
    names: BTreeMap<String, String>,
    /// Ids of the default roles, which cannot be renamed or deleted.
    builtins: BTreeSet<String>,
    /// Id of `Everyone`, which every user holds.
    everyone: String,
    /// Email in lower case -> how many more complete readings of the user list leave it out
    /// (test seeding: a cursor listing that skips a user while others are added or removed).
    skipped: BTreeMap<String, u32>,
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn email_key(email: &str) -> String {
    email.to_lowercase()
}

fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// The cursor of the page that starts at the user with this email key: opaque to clients (hex
/// of the key), and stable when users are added or removed between pages.
fn encode_cursor(key: &str) -> String {
    hex::encode(key.as_bytes())
}

/// The email key a cursor starts at; 400 for anything [`encode_cursor`] cannot have made.
fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid next_page_start `{cursor}`"));
    if cursor.is_empty() {
        return Err(bad());
    }
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// A list of non-blank strings, or 400 naming `what`.
fn strings(value: &Value, what: &str) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::bad_request(format!("`{what}` must be a list of non-blank strings"));
    let items = value.as_array().ok_or_else(bad)?;
    items
        .iter()
        .map(|item| match item {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(bad()),
        })
        .collect()
}

/// An optional list field: absent or `null` is `None`.
fn opt_list<'a>(body: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    body.get(field).filter(|v| !v.is_null())
}

/// A required non-blank string inside a privilege entry.
fn entry_str(entry: &Map<String, Value>, field: &str, list: &str) -> Result<String, ApiError> {
    match entry.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(ApiError::bad_request(format!(
            "bad privilege: every entry of `{list}` needs a non-blank string `{field}`"
        ))),
    }
}

/// The entries of a `privileges` or `permissions` list as objects, or 400.
fn entries<'a>(value: &'a Value, list: &str) -> Result<Vec<&'a Map<String, Value>>, ApiError> {
    let bad =
        || ApiError::bad_request(format!("bad privilege: `{list}` must be a list of objects"));
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|entry| entry.as_object().ok_or_else(bad))
        .collect()
}

fn entry_permissions(entry: &Map<String, Value>, list: &str) -> Result<Vec<String>, ApiError> {
    let value = entry.get("permissions").unwrap_or(&Value::Null);
    strings(value, "permissions").map_err(|_| {
        ApiError::bad_request(format!(
            "bad privilege: `permissions` of every entry of `{list}` must be a list of non-blank strings"
        ))
    })
}

/// `privileges`: `[{"object_type", "permissions": [...]}]`; absent is `None`.
fn opt_privileges(body: &Map<String, Value>) -> Result<Option<Vec<Privilege>>, ApiError> {
    let Some(value) = opt_list(body, "privileges") else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for entry in entries(value, "privileges")? {
        out.push(Privilege {
            object_type: entry_str(entry, "object_type", "privileges")?,
            permissions: entry_permissions(entry, "privileges")?,
        });
    }
    Ok(Some(out))
}

/// `permissions`: `[{"object_type", "object_id", "permissions": [...]}]`; absent is `None`.
fn opt_object_permissions(
    body: &Map<String, Value>,
) -> Result<Option<Vec<ObjectPermission>>, ApiError> {
    let Some(value) = opt_list(body, "permissions") else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for entry in entries(value, "permissions")? {
        out.push(ObjectPermission {
            object_type: entry_str(entry, "object_type", "permissions")?,
            object_id: entry_str(entry, "object_id", "permissions")?,
            permissions: entry_permissions(entry, "permissions")?,
        });
    }
    Ok(Some(out))
}

/// Appends `extra` ids not already in `roles`.
fn merge_ids(mut roles: Vec<String>, extra: Vec<String>) -> Vec<String> {
    for id in extra {
        if !roles.contains(&id) {
            roles.push(id);
        }
    }
    roles
}

/// The default roles: a description and type-wide grants on dashboards. The grants are the
/// emulator's choice (the vendor's defaults are not documented), from permission names seen in
/// real use.
fn default_role(name: &str) -> PartnerRole {
    let (description, permissions): (&str, &[&str]) = match name {
        ADMIN_ROLE => (
            "Administers the site",
            &[
                "read_dashboards",
                "create_dashboards",
                "create_discovery_charts",
                "create_sql_charts",
                "edit_chart_as_copy",
                "edit_dashboard_settings",
                "clone_dashboards",
                "archive_dashboards",
                "download_pdf",
                "shared_dashboards",
                "email_reports",
            ],
        ),
        EVERYONE_ROLE => ("Every user of the site", &[]),
        "Analyst" => (
            "Builds SQL and discovery charts",
            &[
                "read_dashboards",
                "create_dashboards",
                "create_discovery_charts",
                "create_sql_charts",
                "edit_chart_as_copy",
                "clone_dashboards",
                "download_pdf",
                "email_reports",
            ],
        ),
        "Business User" => (
            "Explores dashboards with discovery charts",
            &[
                "read_dashboards",
                "create_discovery_charts",
                "edit_chart_as_copy",
                "download_pdf",
            ],
        ),
        _ => ("Reads dashboards", &["read_dashboards"]),
    };
    let privileges = if permissions.is_empty() {
        Vec::new()
    } else {
        vec![Privilege {
            object_type: "Dashboard".to_owned(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }]
    };
    PartnerRole {
        id: fresh_id(),
        name: name.to_owned(),
        description: description.to_owned(),
        privileges,
        permissions: Vec::new(),
    }
}

impl RbacState {
    /// A new RBAC site: the five default roles and the owner, with `Admin` and `Everyone`.
    pub fn new(owner_email: &str) -> Self {
        let mut state = RbacState {
            users: BTreeMap::new(),
            emails: BTreeMap::new(),
            roles: BTreeMap::new(),
            names: BTreeMap::new(),
            builtins: BTreeSet::new(),
            everyone: String::new(),
            skipped: BTreeMap::new(),
        };
        let mut owner_roles = Vec::new();
        for name in DEFAULT_ROLES {
            let role = default_role(name);
            if name == ADMIN_ROLE || name == EVERYONE_ROLE {
                owner_roles.push(role.id.clone());
            }
            if name == EVERYONE_ROLE {
                state.everyone.clone_from(&role.id);
            }
            state.builtins.insert(role.id.clone());
            state.store_role(role);
        }
        state.store_user(PartnerUserV2 {
            id: fresh_id(),
            email: owner_email.to_owned(),
            first_name: "Site".to_owned(),
            last_name: "Owner".to_owned(),
            roles: owner_roles,
        });
        state
    }

    fn store_user(&mut self, user: PartnerUserV2) {
        self.emails.insert(email_key(&user.email), user.id.clone());
        self.users.insert(user.id.clone(), user);
    }

    fn store_role(&mut self, role: PartnerRole) {
        self.names.insert(name_key(&role.name), role.id.clone());
        self.roles.insert(role.id.clone(), role);
    }

    /// Appends `Everyone` unless it is there.
    fn with_everyone(&self, mut roles: Vec<String>) -> Vec<String> {
        if !roles.contains(&self.everyone) {
            roles.push(self.everyone.clone());
        }
        roles
    }

    /// Inserts or replaces a user by id (test seeding); `Everyone` is added when missing; role
    /// ids are not checked. False, changing nothing, when another user has the email.
    pub fn put_user(&mut self, mut user: PartnerUserV2) -> bool {
        if self
            .user_by_email(&user.email)
            .is_some_and(|other| other.id != user.id)
        {
            return false;
        }
        if let Some(old) = self.users.remove(&user.id) {
            self.emails.remove(&email_key(&old.email));
        }
        user.roles = self.with_everyone(std::mem::take(&mut user.roles));
        self.store_user(user);
        true
    }

    /// Inserts or replaces a role by id (test seeding). False, changing nothing, when another
    /// role has the name (in any case).
    pub fn put_role(&mut self, role: PartnerRole) -> bool {
        if self
            .role_by_name(&role.name)
            .is_some_and(|other| other.id != role.id)
        {
            return false;
        }
        if let Some(old) = self.roles.remove(&role.id) {
            self.names.remove(&name_key(&old.name));
        }
        self.store_role(role);
        true
    }

    /// Leaves the user of `email` out of the next `readings` complete readings of the user
    /// list (test seeding).
    pub fn skip_in_listings(&mut self, email: &str, readings: u32) {
        if readings > 0 {
            self.skipped.insert(email_key(email), readings);
        }
    }

    /// Every user, ordered by email (case-insensitively).
    pub fn users(&self) -> Vec<PartnerUserV2> {
        self.emails
            .values()
            .filter_map(|id| self.users.get(id))
            .cloned()
            .collect()
    }

    pub fn user(&self, id: &str) -> Option<&PartnerUserV2> {
        self.users.get(id)
    }

    pub fn user_by_email(&self, email: &str) -> Option<&PartnerUserV2> {
        self.emails
            .get(&email_key(email))
            .and_then(|id| self.users.get(id))
    }

    /// Every role, ordered by name (case-insensitively).
    pub fn roles(&self) -> Vec<PartnerRole> {
        self.names
            .values()
            .filter_map(|id| self.roles.get(id))
            .cloned()
            .collect()
    }

    pub fn role(&self, id: &str) -> Option<&PartnerRole> {
        self.roles.get(id)
    }

    pub fn role_by_name(&self, name: &str) -> Option<&PartnerRole> {
        self.names
            .get(&name_key(name))
            .and_then(|id| self.roles.get(id))
    }

    fn existing_user(&self, id: &str) -> Result<&PartnerUserV2, ApiError> {
        self.user(id)
            .ok_or_else(|| ApiError::not_found(format!("user `{id}` not found")))
    }

    fn existing_role(&self, id: &str) -> Result<&PartnerRole, ApiError> {
        self.role(id)
            .ok_or_else(|| ApiError::not_found(format!("role `{id}` not found")))
    }

    /// `roles` of a user body: a list of known role ids, without duplicates; absent is `None`.
    fn opt_role_ids(&self, body: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
        let Some(value) = opt_list(body, "roles") else {
            return Ok(None);
        };
        let mut out: Vec<String> = Vec::new();
        for id in strings(value, "roles")? {
            if !self.roles.contains_key(&id) {
                return Err(ApiError::bad_request(format!("unknown role id `{id}`")));
            }
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(Some(out))
    }

    /// 400 unless `field`, when present, names a user of the site.
    fn check_actor(&self, body: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
        match opt_nonblank(body, field)? {
            Some(email) if self.user_by_email(email).is_none() => Err(ApiError::bad_request(
                format!("{field} `{email}` is not a user of this site"),
            )),
            _ => Ok(()),
        }
    }

    /// `GET /api/v2/users[?next_page_start=C]`: [`PAGE_SIZE`] users a page when `paged`, else
    /// every user from the cursor on.
    pub fn list_users(&mut self, cursor: Option<&str>, paged: bool) -> Result<RbacReply, ApiError> {
        let start = match cursor {
            Some(cursor) => decode_cursor(cursor)?,
            None => String::new(),
        };
        let limit = if paged { PAGE_SIZE } else { usize::MAX };
        let mut keys = self.emails.range(start..);
        let users = keys
            .by_ref()
            .take(limit)
            .filter(|(key, _)| !self.skipped.contains_key(*key))
            .filter_map(|(_, id)| self.users.get(id))
            .cloned()
            .collect();
        let next_page_start = keys.next().map(|(key, _)| encode_cursor(key));
        if next_page_start.is_none() {
            // A reading of the list is over: one fewer left out.
            self.skipped.retain(|_, left| {
                *left -= 1;
                *left > 0
            });
        }
        Ok(RbacReply::UserPage {
            users,
            next_page_start,
        })
    }

    /// `GET /api/v2/users/<id>`.
    pub fn get_user(&self, id: &str) -> Result<RbacReply, ApiError> {
        self.existing_user(id).cloned().map(RbacReply::User)
    }

    /// `POST /api/v2/users`: a new id; `Everyone` always among the roles.
    pub fn create_user(&mut self, body: &Value, test_mode: bool) -> Result<RbacReply, ApiError> {
        let body = object(body)?;
        let email = checked_email(required(body, "email")?)?;
        let first_name = required(body, "first_name")?;
        let last_name = required(body, "last_name")?;
        let inviter = required(body, "invited_by_email")?;
        let roles = self.opt_role_ids(body)?.unwrap_or_default();
        if self.user_by_email(inviter).is_none() {
            return Err(ApiError::bad_request(format!(
                "invited_by_email `{inviter}` is not a user of this site"
            )));
        }
        if self.user_by_email(email).is_some() {
            return Err(ApiError::conflict(format!("user `{email}` already exists")));
        }
        let user = PartnerUserV2 {
            id: fresh_id(),
            email: email.to_owned(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            roles: self.with_everyone(roles),
        };
        if !test_mode {
            self.store_user(user.clone());
        }
        Ok(RbacReply::User(user))
    }

    /// `PUT /api/v2/users/<id>`: absent fields unchanged; `roles` replaces the set (merges, by
    /// switch), `Everyone` kept; `email` changes it (409 when taken, 400 when refused by switch).
    pub fn update_user(
        &mut self,
        id: &str,
        body: &Value,
        switches: &Switches,
        test_mode: bool,
    ) -> Result<RbacReply, ApiError> {
        let body = object(body)?;
        let current = self.existing_user(id)?.clone();
        let mut user = current.clone();
        if let Some(first_name) = opt_nonblank(body, "first_name")? {
            user.first_name = first_name.to_owned();
        }
        if let Some(last_name) = opt_nonblank(body, "last_name")? {
            user.last_name = last_name.to_owned();
        }
        if let Some(wanted) = self.opt_role_ids(body)? {
            let roles = if switches.groups_merge {
                merge_ids(user.roles.clone(), wanted)
            } else {
                wanted
            };
            user.roles = self.with_everyone(roles);
        }
        if let Some(new_email) = opt_nonblank(body, "email")? {
            let new_email = checked_email(new_email)?;
            if email_key(new_email) != email_key(&current.email) {
                if switches.refuse_email_change {
                    return Err(ApiError::bad_request("email cannot be changed"));
                }
                if self.user_by_email(new_email).is_some() {
                    return Err(ApiError::conflict(format!(
                        "user `{new_email}` already exists"
                    )));
                }
            }
            user.email = new_email.to_owned();
        }
        if !test_mode {
            self.emails.remove(&email_key(&current.email));
            self.store_user(user.clone());
        }
        Ok(RbacReply::User(user))
    }

    /// `DELETE /api/v2/users/<id>`.
    pub fn delete_user(&mut self, id: &str, test_mode: bool) -> Result<RbacReply, ApiError> {
        let email = email_key(&self.existing_user(id)?.email);
        if !test_mode {
            self.users.remove(id);
            self.emails.remove(&email);
        }
        Ok(RbacReply::Empty)
    }

    /// `GET /api/v1/roles`.
    pub fn list_roles(&self) -> Result<RbacReply, ApiError> {
        Ok(RbacReply::Roles(self.roles()))
    }

    /// `GET /api/v1/roles/<id>`.
    pub fn get_role(&self, id: &str) -> Result<RbacReply, ApiError> {
        self.existing_role(id).cloned().map(RbacReply::Role)
    }

    /// `POST /api/v1/roles`: a new id; names are unique in any case.
    pub fn create_role(&mut self, body: &Value, test_mode: bool) -> Result<RbacReply, ApiError> {
        let body = object(body)?;
        let name = required(body, "name")?;
        let description = opt_str(body, "description")?.unwrap_or_default();
        let privileges = opt_privileges(body)?.unwrap_or_default();
        let permissions = opt_object_permissions(body)?.unwrap_or_default();
        self.check_actor(body, "created_by_email")?;
        if self.role_by_name(name).is_some() {
            return Err(ApiError::conflict(format!("role `{name}` already exists")));
        }
        let role = PartnerRole {
            id: fresh_id(),
            name: name.to_owned(),
            description: description.to_owned(),
            privileges,
            permissions,
        };
        if !test_mode {
            self.store_role(role.clone());
        }
        Ok(RbacReply::Role(role))
    }

    /// `PUT /api/v1/roles/<id>`: absent fields unchanged, a present list replaces the old one;
    /// a default role's description and grants may change, its name may not (403).
    pub fn update_role(
        &mut self,
        id: &str,
        body: &Value,
        test_mode: bool,
    ) -> Result<RbacReply, ApiError> {
        let body = object(body)?;
        let current = self.existing_role(id)?.clone();
        let mut role = current.clone();
        if let Some(description) = opt_str(body, "description")? {
            role.description = description.to_owned();
        }
        if let Some(privileges) = opt_privileges(body)? {
            role.privileges = privileges;
        }
        if let Some(permissions) = opt_object_permissions(body)? {
            role.permissions = permissions;
        }
        self.check_actor(body, "updated_by_email")?;
        if let Some(new_name) = opt_nonblank(body, "name")? {
            if new_name != current.name && self.builtins.contains(&current.id) {
                return Err(ApiError::forbidden(format!(
                    "built-in role `{}` cannot be renamed",
                    current.name
                )));
            }
            if self
                .role_by_name(new_name)
                .is_some_and(|other| other.id != current.id)
            {
                return Err(ApiError::conflict(format!(
                    "role `{new_name}` already exists"
                )));
            }
            role.name = new_name.to_owned();
        }
        if !test_mode {
            self.names.remove(&name_key(&current.name));
            self.store_role(role.clone());
        }
        Ok(RbacReply::Role(role))
    }

    /// `DELETE /api/v1/roles/<id>`: also removes the role from every user.
    pub fn delete_role(&mut self, id: &str, test_mode: bool) -> Result<RbacReply, ApiError> {
        let current = self.existing_role(id)?;
        if self.builtins.contains(&current.id) {
            return Err(ApiError::forbidden(format!(
                "built-in role `{}` cannot be deleted",
                current.name
            )));
        }
        let name = name_key(&current.name);
        if !test_mode {
            self.roles.remove(id);
            self.names.remove(&name);
            for user in self.users.values_mut() {
                user.roles.retain(|r| r != id);
            }
        }
        Ok(RbacReply::Empty)
    }
}

#[cfg(test)]
mod tests;
