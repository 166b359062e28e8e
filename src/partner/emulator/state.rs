//! The data of one emulated site and the ten partner calls as pure, synchronous operations on it
//! (section 2 "Contract" of `partner-api.md`).
//!
//! Every write validates everything first and only then applies, so a `test_mode` call returns
//! exactly what the real call would return while leaving the state untouched.

use std::collections::BTreeMap;

use http::StatusCode;
use serde_json::{Map, Value};

use super::Switches;
use crate::partner::{Access, PartnerGroup, PartnerUser, ADMINISTRATORS_GROUP, ALL_USERS_GROUP};

/// A partner error: a status and the message of `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
}

/// The successful result of a call, before it is shaped for the wire.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Users(Vec<PartnerUser>),
    User(PartnerUser),
    Groups(Vec<PartnerGroup>),
    Group(PartnerGroup),
    /// `{}` (the DELETE answer).
    Empty,
}

/// Users and groups of one site, plus its behaviour switches.
#[derive(Debug, Clone)]
pub(crate) struct SiteState {
    /// Key: the email in lower case; the value keeps the email as given.
    users: BTreeMap<String, PartnerUser>,
    /// Key: the name in lower case; the value keeps the name as given.
    groups: BTreeMap<String, PartnerGroup>,
    pub switches: Switches,
}

/// The key under which a user is stored.
fn email_key(email: &str) -> String {
    email.to_lowercase()
}

/// The key under which a group is stored.
fn group_key(name: &str) -> String {
    name.to_lowercase()
}

/// The fallback form a group name is matched by when no case-insensitive match exists: lower
/// case, spaces and underscores as `-`, a `-` at every camelCase boundary, runs of `-` collapsed.
/// The vendor's examples address `myNewGroup` as `my-new-group`.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower_or_digit = false;
    for c in name.trim().chars() {
        if c == ' ' || c == '_' || c == '-' {
            if !out.ends_with('-') {
                out.push('-');
            }
            prev_lower_or_digit = false;
            continue;
        }
        if c.is_uppercase() && prev_lower_or_digit && !out.ends_with('-') {
            out.push('-');
        }
        prev_lower_or_digit = c.is_lowercase() || c.is_ascii_digit();
        out.extend(c.to_lowercase());
    }
    out
}

/// A plausible email: something before and after one `@`, no whitespace or control characters.
fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

fn is_builtin(name: &str) -> bool {
    let key = group_key(name);
    key == group_key(ADMINISTRATORS_GROUP) || key == group_key(ALL_USERS_GROUP)
}

/// The body as a JSON object, or 400.
pub(super) fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| ApiError::bad_request("request body must be a JSON object"))
}

/// An optional string field: absent or `null` is `None`, another type is 400.
pub(super) fn opt_str<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::bad_request(format!("`{field}` must be a string"))),
    }
}

/// An optional string field that, when present, must not be blank.
pub(super) fn opt_nonblank<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match opt_str(body, field)? {
        Some(s) if s.trim().is_empty() => Err(ApiError::bad_request(format!(
            "`{field}` must not be blank"
        ))),
        other => Ok(other),
    }
}

/// A required, non-blank string field.
pub(super) fn required<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    opt_nonblank(body, field)?
        .ok_or_else(|| ApiError::bad_request(format!("missing required field `{field}`")))
}

/// An optional list of group names: strings, or objects with a `name` string.
fn opt_group_names(body: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    let items = match body.get("groups") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`groups` must be a list of group names",
            ))
        }
    };
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        let name = match item {
            Value::String(s) => s.as_str(),
            Value::Object(o) => match o.get("name") {
                Some(Value::String(s)) => s.as_str(),
                _ => {
                    return Err(ApiError::bad_request(
                        "`groups` must be a list of group names",
                    ))
                }
            },
            _ => {
                return Err(ApiError::bad_request(
                    "`groups` must be a list of group names",
                ))
            }
        };
        names.push(name.to_owned());
    }
    Ok(Some(names))
}

pub(super) fn checked_email(email: &str) -> Result<&str, ApiError> {
    if valid_email(email) {
        Ok(email)
    } else {
        Err(ApiError::bad_request(format!("invalid email `{email}`")))
    }
}

fn parse_access(value: &str) -> Result<Access, ApiError> {
    Access::parse(value).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid access `{value}`: expected SQL, Discovery or View"
        ))
    })
}

/// Appends `All Users` unless it is there (every user is always a member).
fn with_all_users(mut groups: Vec<String>) -> Vec<String> {
    if !groups
        .iter()
        .any(|g| group_key(g) == group_key(ALL_USERS_GROUP))
    {
        groups.push(ALL_USERS_GROUP.to_owned());
    }
    groups
}

/// Appends the names of `extra` that are not in `groups` (case-insensitively).
fn merge_names(mut groups: Vec<String>, extra: Vec<String>) -> Vec<String> {
    for name in extra {
        if !groups.iter().any(|g| group_key(g) == group_key(&name)) {
            groups.push(name);
        }
    }
    groups
}

impl SiteState {
    /// A new site: the built-in groups and the owner, an administrator.
    pub fn new(owner_email: &str) -> Self {
        let mut state = SiteState {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            switches: Switches::default(),
        };
        for name in [ADMINISTRATORS_GROUP, ALL_USERS_GROUP] {
            state.put_group(PartnerGroup {
                name: name.to_owned(),
                access: Access::Sql,
            });
        }
        state.put_user(PartnerUser {
            email: owner_email.to_owned(),
            first_name: "Site".to_owned(),
            last_name: "Owner".to_owned(),
            groups: vec![ADMINISTRATORS_GROUP.to_owned(), ALL_USERS_GROUP.to_owned()],
        });
        state
    }

    /// A site without users or groups: what an RBAC site keeps of this state (its switches).
    pub fn empty() -> Self {
        SiteState {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            switches: Switches::default(),
        }
    }

    /// Inserts or replaces a user (test seeding); `All Users` is added if missing.
    pub fn put_user(&mut self, mut user: PartnerUser) {
        user.groups = with_all_users(std::mem::take(&mut user.groups));
        self.users.insert(email_key(&user.email), user);
    }

    /// Inserts or replaces a group (test seeding), matched case-insensitively.
    pub fn put_group(&mut self, group: PartnerGroup) {
        self.groups.insert(group_key(&group.name), group);
    }

    pub fn users(&self) -> Vec<PartnerUser> {
        self.users.values().cloned().collect()
    }

    pub fn user(&self, email: &str) -> Option<&PartnerUser> {
        self.users.get(&email_key(email))
    }

    pub fn groups(&self) -> Vec<PartnerGroup> {
        self.groups.values().cloned().collect()
    }

    /// A group by name: case-insensitive first, then by [`slug`] when exactly one group matches.
    pub fn group(&self, name: &str) -> Option<&PartnerGroup> {
        if let Some(group) = self.groups.get(&group_key(name)) {
            return Some(group);
        }
        let wanted = slug(name);
        if wanted.is_empty() {
            return None;
        }
        let mut matches = self.groups.values().filter(|g| slug(&g.name) == wanted);
        match (matches.next(), matches.next()) {
            (Some(group), None) => Some(group),
            _ => None,
        }
    }

    /// The stored names of the given groups, without duplicates; 400 for an unknown one.
    fn resolve_groups(&self, names: &[String]) -> Result<Vec<String>, ApiError> {
        let mut out: Vec<String> = Vec::with_capacity(names.len() + 1);
        for name in names {
            let group = self
                .group(name)
                .ok_or_else(|| ApiError::bad_request(format!("unknown group `{name}`")))?;
            if !out.iter().any(|g| group_key(g) == group_key(&group.name)) {
                out.push(group.name.clone());
            }
        }
        Ok(out)
    }

    fn existing_user(&self, email: &str) -> Result<&PartnerUser, ApiError> {
        self.user(email)
            .ok_or_else(|| ApiError::not_found(format!("user `{email}` not found")))
    }

    fn existing_group(&self, name: &str) -> Result<&PartnerGroup, ApiError> {
        self.group(name)
            .ok_or_else(|| ApiError::not_found(format!("group `{name}` not found")))
    }

    /// `GET /api/v1/users`.
    pub fn list_users(&self) -> Result<Reply, ApiError> {
        Ok(Reply::Users(self.users()))
    }

    /// `GET /api/v1/users` + `HTTP-X-EMAIL`.
    pub fn get_user(&self, email: &str) -> Result<Reply, ApiError> {
        self.existing_user(email).cloned().map(Reply::User)
    }

    /// `POST /api/v1/users`.
    pub fn create_user(&mut self, body: &Value, test_mode: bool) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let email = checked_email(required(body, "email")?)?;
        let first_name = required(body, "first_name")?;
        let last_name = required(body, "last_name")?;
        let inviter = required(body, "invited_by_email")?;
        let names = opt_group_names(body)?.unwrap_or_default();
        if self.user(inviter).is_none() {
            return Err(ApiError::bad_request(format!(
                "invited_by_email `{inviter}` is not a user of this site"
            )));
        }
        let groups = with_all_users(self.resolve_groups(&names)?);
        if self.user(email).is_some() {
            return Err(ApiError::conflict(format!("user `{email}` already exists")));
        }
        let user = PartnerUser {
            email: email.to_owned(),
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            groups,
        };
        if !test_mode {
            self.users.insert(email_key(email), user.clone());
        }
        Ok(Reply::User(user))
    }

    /// `PUT /api/v1/users` + `HTTP-X-EMAIL`: absent fields unchanged; `groups` replaces (or
    /// merges, by switch); `email` renames the user (409 when taken, 400 when refused by switch).
    pub fn update_user(
        &mut self,
        email: &str,
        body: &Value,
        test_mode: bool,
    ) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let current = self.existing_user(email)?.clone();
        let mut user = current.clone();
        if let Some(first_name) = opt_nonblank(body, "first_name")? {
            user.first_name = first_name.to_owned();
        }
        if let Some(last_name) = opt_nonblank(body, "last_name")? {
            user.last_name = last_name.to_owned();
        }
        if let Some(names) = opt_group_names(body)? {
            let wanted = self.resolve_groups(&names)?;
            let groups = if self.switches.groups_merge {
                merge_names(user.groups.clone(), wanted)
            } else {
                wanted
            };
            user.groups = with_all_users(groups);
        }
        if let Some(new_email) = opt_nonblank(body, "email")? {
            let new_email = checked_email(new_email)?;
            if email_key(new_email) != email_key(&current.email) {
                if self.switches.refuse_email_change {
                    return Err(ApiError::bad_request("email cannot be changed"));
                }
                if self.user(new_email).is_some() {
                    return Err(ApiError::conflict(format!(
                        "user `{new_email}` already exists"
                    )));
                }
            }
            user.email = new_email.to_owned();
        }
        if !test_mode {
            let old_key = email_key(&current.email);
            self.users.remove(&old_key);
            self.users.insert(email_key(&user.email), user.clone());
        }
        Ok(Reply::User(user))
    }

    /// `DELETE /api/v1/users` + `HTTP-X-EMAIL`.
    pub fn delete_user(&mut self, email: &str, test_mode: bool) -> Result<Reply, ApiError> {
        let key = email_key(&self.existing_user(email)?.email);
        if !test_mode {
            self.users.remove(&key);
        }
        Ok(Reply::Empty)
    }

    /// `GET /api/v1/groups`.
    pub fn list_groups(&self) -> Result<Reply, ApiError> {
        Ok(Reply::Groups(self.groups()))
    }

    /// `GET /api/v1/groups/<name>`.
    pub fn get_group(&self, name: &str) -> Result<Reply, ApiError> {
        self.existing_group(name).cloned().map(Reply::Group)
    }

    /// `POST /api/v1/groups`: `access` defaults to SQL (the access of `All Users`) when absent.
    pub fn create_group(&mut self, body: &Value, test_mode: bool) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let name = required(body, "name")?;
        let access = match opt_str(body, "access")? {
            Some(value) => parse_access(value)?,
            None => Access::Sql,
        };
        if let Some(creator) = opt_nonblank(body, "created_by_email")? {
            if self.user(creator).is_none() {
                return Err(ApiError::bad_request(format!(
                    "created_by_email `{creator}` is not a user of this site"
                )));
            }
        }
        if self.groups.contains_key(&group_key(name)) {
            return Err(ApiError::conflict(format!("group `{name}` already exists")));
        }
        let group = PartnerGroup {
            name: name.to_owned(),
            access,
        };
        if !test_mode {
            self.put_group(group.clone());
        }
        Ok(Reply::Group(group))
    }

    /// `PUT /api/v1/groups/<name>`: rename (propagated to every member) and/or access.
    pub fn update_group(
        &mut self,
        name: &str,
        body: &Value,
        test_mode: bool,
    ) -> Result<Reply, ApiError> {
        let body = object(body)?;
        let current = self.existing_group(name)?.clone();
        if is_builtin(&current.name) {
            return Err(ApiError::forbidden(format!(
                "built-in group `{}` cannot be changed",
                current.name
            )));
        }
        let mut group = current.clone();
        if let Some(value) = opt_str(body, "access")? {
            group.access = parse_access(value)?;
        }
        if let Some(new_name) = opt_nonblank(body, "name")? {
            if group_key(new_name) != group_key(&current.name)
                && self.groups.contains_key(&group_key(new_name))
            {
                return Err(ApiError::conflict(format!(
                    "group `{new_name}` already exists"
                )));
            }
            group.name = new_name.to_owned();
        }
        if !test_mode {
            let old_key = group_key(&current.name);
            self.groups.remove(&old_key);
            self.put_group(group.clone());
            if group.name != current.name {
                for user in self.users.values_mut() {
                    for g in user.groups.iter_mut() {
                        if group_key(g) == old_key {
                            g.clone_from(&group.name);
                        }
                    }
                }
            }
        }
        Ok(Reply::Group(group))
    }

    /// `DELETE /api/v1/groups/<name>`: also removes the group from every user.
    pub fn delete_group(&mut self, name: &str, test_mode: bool) -> Result<Reply, ApiError> {
        let current = self.existing_group(name)?;
        if is_builtin(&current.name) {
            return Err(ApiError::forbidden(format!(
                "built-in group `{}` cannot be deleted",
                current.name
            )));
        }
        let key = group_key(&current.name);
        if !test_mode {
            self.groups.remove(&key);
            for user in self.users.values_mut() {
                user.groups.retain(|g| group_key(g) != key);
            }
        }
        Ok(Reply::Empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OWNER: &str = "owner@acme.example.com";

    fn user_of(reply: Reply) -> PartnerUser {
        match reply {
            Reply::User(u) => u,
            other => panic!("expected a user, got {other:?}"),
        }
    }

    fn group_of(reply: Reply) -> PartnerGroup {
        match reply {
            Reply::Group(g) => g,
            other => panic!("expected a group, got {other:?}"),
        }
    }

    fn state_with_group(name: &str) -> SiteState {
        let mut s = SiteState::new(OWNER);
        s.create_group(&json!({"name": name, "access": "view"}), false)
            .unwrap();
        s
    }

    #[test]
    fn slug_splits_camel_case_spaces_and_underscores() {
        assert_eq!(slug("myNewGroup"), "my-new-group");
        assert_eq!(slug("my-new-group"), "my-new-group");
        assert_eq!(slug("My New_Group"), "my-new-group");
        assert_eq!(slug("myExistingGroup"), "my-existing-group");
        assert_eq!(slug("SQL2Users"), "sql2-users");
        assert_eq!(slug("a  - b"), "a-b");
    }

    #[test]
    fn new_site_has_owner_and_builtins() {
        let s = SiteState::new(OWNER);
        let owner = s.user("OWNER@acme.example.com").unwrap();
        assert_eq!(owner.groups, vec!["Administrators", "All Users"]);
        assert_eq!(s.groups().len(), 2);
        assert!(s.groups().iter().all(|g| g.access == Access::Sql));
    }

    #[test]
    fn group_lookup_is_case_insensitive_then_slug() {
        let s = state_with_group("myNewGroup");
        assert_eq!(s.group("MYNEWGROUP").unwrap().name, "myNewGroup");
        assert_eq!(s.group("my-new-group").unwrap().name, "myNewGroup");
        assert_eq!(s.group("my new group").unwrap().name, "myNewGroup");
        assert!(s.group("my-old-group").is_none());
    }

    #[test]
    fn ambiguous_slug_matches_nothing() {
        let mut s = state_with_group("My Group");
        s.create_group(&json!({"name": "my_group"}), false).unwrap();
        assert!(s.group("my-group").is_none());
        assert_eq!(s.group("my group").unwrap().name, "My Group");
    }

    #[test]
    fn create_user_keeps_all_users_and_canonical_names() {
        let mut s = state_with_group("Sales Team");
        let u = user_of(
            s.create_user(
                &json!({"email": "A@x.io", "first_name": "A", "last_name": "B",
                        "groups": ["sales team", "SALES TEAM"], "invited_by_email": OWNER}),
                false,
            )
            .unwrap(),
        );
        assert_eq!(u.groups, vec!["Sales Team", "All Users"]);
        assert_eq!(s.user("a@X.IO").unwrap().email, "A@x.io");
    }

    #[test]
    fn update_user_replace_versus_merge() {
        let mut s = state_with_group("G1");
        s.create_group(&json!({"name": "G2"}), false).unwrap();
        s.put_user(PartnerUser {
            email: "u@x.io".into(),
            first_name: "U".into(),
            last_name: "V".into(),
            groups: vec!["G1".into()],
        });
        let replaced = user_of(
            s.update_user("u@x.io", &json!({"groups": ["g2"]}), true)
                .unwrap(),
        );
        assert_eq!(replaced.groups, vec!["G2", "All Users"]);
        s.switches.groups_merge = true;
        let merged = user_of(
            s.update_user("u@x.io", &json!({"groups": ["g2"]}), false)
                .unwrap(),
        );
        assert_eq!(merged.groups, vec!["G1", "All Users", "G2"]);
    }

    #[test]
    fn rename_and_delete_propagate_to_members() {
        let mut s = state_with_group("Old");
        s.put_user(PartnerUser {
            email: "u@x.io".into(),
            first_name: "U".into(),
            last_name: "V".into(),
            groups: vec!["Old".into()],
        });
        let g = group_of(
            s.update_group("old", &json!({"name": "New"}), false)
                .unwrap(),
        );
        assert_eq!(g.name, "New");
        assert_eq!(s.user("u@x.io").unwrap().groups, vec!["New", "All Users"]);
        s.delete_group("NEW", false).unwrap();
        assert_eq!(s.user("u@x.io").unwrap().groups, vec!["All Users"]);
    }

    #[test]
    fn test_mode_changes_nothing() {
        let mut s = state_with_group("G");
        let before = (s.users(), s.groups());
        s.create_group(&json!({"name": "H"}), true).unwrap();
        s.update_group("G", &json!({"name": "K", "access": "SQL"}), true)
            .unwrap();
        s.delete_group("G", true).unwrap();
        s.delete_user(OWNER, true).unwrap();
        s.update_user(OWNER, &json!({"first_name": "X"}), true)
            .unwrap();
        assert_eq!(before, (s.users(), s.groups()));
    }

    #[test]
    fn errors_have_the_contract_statuses() {
        let mut s = state_with_group("G");
        let status = |r: Result<Reply, ApiError>| r.unwrap_err().status.as_u16();
        assert_eq!(status(s.get_user("nobody@x.io")), 404);
        assert_eq!(
            status(s.create_user(&json!({"email": "a@x.io"}), true)),
            400
        );
        assert_eq!(
            status(s.create_user(
                &json!({"email": OWNER, "first_name": "a", "last_name": "b", "invited_by_email": OWNER}),
                true
            )),
            409
        );
        assert_eq!(status(s.create_group(&json!({"name": "g"}), true)), 409);
        assert_eq!(
            status(s.create_group(&json!({"name": "h", "access": "admin"}), true)),
            400
        );
        assert_eq!(
            status(s.update_group("all users", &json!({"access": "View"}), true)),
            403
        );
        assert_eq!(status(s.delete_group("Administrators", true)), 403);
        assert_eq!(
            status(s.update_group("G", &json!({"name": "administrators"}), true)),
            409
        );
        assert_eq!(status(s.delete_group("nope", true)), 404);
        assert_eq!(status(s.update_user(OWNER, &json!([1]), true)), 400);
    }
}
