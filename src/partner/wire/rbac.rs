//! Wire details of RBAC sites (`partner-api.md` section 4): the v2 user and role paths, with
//! every id percent-encoded, the request bodies, and tolerant parsing of the answers (bare or
//! wrapped, a user list paged by `next_page_start` or not, unknown fields ignored).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::{encode_path_segment, join, parse_value, unwrap_list, unwrap_object, ParseError};
use crate::partner::rbac::{ObjectPermission, PartnerRole, PartnerUserV2, Privilege};

const USERS_V2_PATH: &str = "/api/v2/users";
const ROLES_PATH: &str = "/api/v1/roles";
const USER_LIST_KEYS: &[&str] = &["users", "data"];
const ROLE_LIST_KEYS: &[&str] = &["roles", "data"];
const USER_OBJECT_KEYS: &[&str] = &["user", "data"];
const ROLE_OBJECT_KEYS: &[&str] = &["role", "data"];

/// `<base>/api/v2/users`, with `?next_page_start=<cursor>` when one is given.
pub fn users_url(base: &Url, cursor: Option<&str>) -> Result<Url, String> {
    let mut url = join(base, USERS_V2_PATH)?;
    if let Some(c) = cursor {
        url.query_pairs_mut().append_pair("next_page_start", c);
    }
    Ok(url)
}

/// `<base>/api/v2/users/<id>`, the id percent-encoded (never assumed to be path-safe).
pub fn user_url(base: &Url, id: &str) -> Result<Url, String> {
    checked_id(id)?;
    join(
        base,
        &format!("{USERS_V2_PATH}/{}", encode_path_segment(id)),
    )
}

/// `<base>/api/v1/roles`.
pub fn roles_url(base: &Url) -> Result<Url, String> {
    join(base, ROLES_PATH)
}

/// `<base>/api/v1/roles/<id>`, the id percent-encoded.
pub fn role_url(base: &Url, id: &str) -> Result<Url, String> {
    checked_id(id)?;
    join(base, &format!("{ROLES_PATH}/{}", encode_path_segment(id)))
}

fn checked_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 1024 {
        return Err("a partner id must be 1 to 1024 bytes".into());
    }
    // Percent-encoding leaves dots alone, and a URL resolves `.` and `..` segments: the call
    // would go to another path (`/api/v2/users/..` is `/api/v2/`).
    if id == "." || id == ".." {
        return Err("a partner id cannot be `.` or `..`".into());
    }
    Ok(())
}

/// `POST /api/v2/users`.
#[derive(Serialize)]
pub struct CreateUserBody<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    pub roles: &'a [String],
    pub invited_by_email: &'a str,
}

/// `PUT /api/v2/users/<id>`: only what changes.
#[derive(Serialize, Default)]
pub struct UpdateUserBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<&'a [String]>,
}

/// `POST /api/v1/roles`.
#[derive(Serialize)]
pub struct CreateRoleBody<'a> {
    pub name: &'a str,
    pub description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by_email: Option<&'a str>,
    pub privileges: &'a [Privilege],
    pub permissions: &'a [ObjectPermission],
}

/// `PUT /api/v1/roles/<id>`: a rename (the lists are left out, so they stay as they are).
#[derive(Serialize)]
pub struct UpdateRoleBody<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_by_email: Option<&'a str>,
}

#[derive(Deserialize)]
struct UserDto {
    id: IdValue,
    email: String,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    roles: Option<Vec<RoleRef>>,
}

/// An id as a string or a number (never assumed to be either).
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Text(String),
    Number(serde_json::Number),
}

impl IdValue {
    fn into_string(self) -> String {
        match self {
            IdValue::Text(s) => s,
            IdValue::Number(n) => n.to_string(),
        }
    }
}

/// An entry of a user's `roles`: an id, or an object with an `id`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RoleRef {
    Id(IdValue),
    Object { id: IdValue },
}

#[derive(Deserialize)]
struct RoleDto {
    id: IdValue,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    privileges: Option<Vec<Privilege>>,
    #[serde(default)]
    permissions: Option<Vec<ObjectPermission>>,
}

fn user_from_value(v: Value) -> Result<PartnerUserV2, ParseError> {
    let dto: UserDto = serde_json::from_value(v)
        .map_err(|e| ParseError::shape(format!("cannot read an RBAC user: {e}")))?;
    Ok(PartnerUserV2 {
        id: dto.id.into_string(),
        email: dto.email,
        first_name: dto.first_name.unwrap_or_default(),
        last_name: dto.last_name.unwrap_or_default(),
        roles: dto
            .roles
            .unwrap_or_default()
            .into_iter()
            .map(|r| match r {
                RoleRef::Id(id) | RoleRef::Object { id } => id.into_string(),
            })
            .collect(),
    })
}

fn role_from_value(v: Value) -> Result<PartnerRole, ParseError> {
    let dto: RoleDto = serde_json::from_value(v)
        .map_err(|e| ParseError::shape(format!("cannot read a role: {e}")))?;
    Ok(PartnerRole {
        id: dto.id.into_string(),
        name: dto.name,
        description: dto.description.unwrap_or_default(),
        privileges: dto.privileges.unwrap_or_default(),
        permissions: dto.permissions.unwrap_or_default(),
    })
}

/// One page of `GET /api/v2/users`: its users and the cursor of the next page (`None` on the
/// last page, or when the answer is not paged at all).
pub fn parse_user_page(body: &[u8]) -> Result<(Vec<PartnerUserV2>, Option<String>), ParseError> {
    let value = parse_value(body)?;
    let cursor = match value.get("next_page_start") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let users = unwrap_list(value, USER_LIST_KEYS, "users")?
        .into_iter()
        .map(user_from_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((users, cursor))
}

/// One RBAC user: bare or under `user` / `data`.
pub fn parse_user(body: &[u8]) -> Result<PartnerUserV2, ParseError> {
    user_from_value(unwrap_object(parse_value(body)?, USER_OBJECT_KEYS, "user")?)
}

/// The role list: under `roles` / `data`, or bare.
pub fn parse_roles(body: &[u8]) -> Result<Vec<PartnerRole>, ParseError> {
    unwrap_list(parse_value(body)?, ROLE_LIST_KEYS, "roles")?
        .into_iter()
        .map(role_from_value)
        .collect()
}

/// One role: bare or under `role` / `data`.
pub fn parse_role(body: &[u8]) -> Result<PartnerRole, ParseError> {
    role_from_value(unwrap_object(parse_value(body)?, ROLE_OBJECT_KEYS, "role")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        let base: Url = "http://h/x".parse().unwrap();
        assert_eq!(
            user_url(&base, "a/b c?d").unwrap().as_str(),
            "http://h/x/api/v2/users/a%2Fb%20c%3Fd"
        );
        assert_eq!(
            role_url(&base, "../admin").unwrap().as_str(),
            "http://h/x/api/v1/roles/..%2Fadmin"
        );
        assert!(user_url(&base, "").is_err());
        for dots in [".", ".."] {
            assert!(user_url(&base, dots).is_err(), "{dots}");
            assert!(role_url(&base, dots).is_err(), "{dots}");
        }
        assert!(user_url(&base, "...").is_ok());
        assert_eq!(
            users_url(&base, Some("a&b=c")).unwrap().as_str(),
            "http://h/x/api/v2/users?next_page_start=a%26b%3Dc"
        );
    }

    #[test]
    fn pages_bare_wrapped_and_numeric_ids_are_read() {
        let (users, next) = parse_user_page(
            br#"{"users":[{"id":7,"email":"a@x.io","roles":["r1",{"id":"r2"}],"extra":1}],"next_page_start":"c2","items_this_page":1}"#,
        )
        .unwrap();
        assert_eq!(next.as_deref(), Some("c2"));
        assert_eq!(users[0].id, "7");
        assert_eq!(users[0].roles, vec!["r1", "r2"]);
        let (users, next) = parse_user_page(br#"[{"id":"u","email":"b@x.io"}]"#).unwrap();
        assert_eq!((users.len(), next), (1, None));
        let (_, next) = parse_user_page(br#"{"data":[],"next_page_start":null}"#).unwrap();
        assert_eq!(next, None);
        let role = parse_role(br#"{"role":{"id":"r","name":"Analyst"}}"#).unwrap();
        assert_eq!((role.id.as_str(), role.name.as_str()), ("r", "Analyst"));
        assert!(parse_roles(br#"{"nope":1}"#).is_err());
    }
}
