//! Every wire detail of the partner API, and only here: paths, header names, the `test_mode`
//! query parameter, request bodies spelled as the vendor spells them, and the tolerant parsing of
//! answers (`partner-api.md` section 1 for the facts, section 3 "Tolerance" for what we accept).
//! A finding on a live site should be a one-place fix in this file.
//!
//! Nothing here does I/O; the client in [`crate::partner::client`] sends what this module builds.

use std::time::{Duration, SystemTime};

use http::header::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::partner::{Access, PartnerGroup, PartnerUser};

pub mod rbac;

/// The API's path prefix (v1, "User and Group Management API").
pub const API_PREFIX: &str = "/api/v1";
/// The users collection; a single user is addressed on it with [`EMAIL_HEADER`].
pub const USERS_PATH: &str = "/api/v1/users";
/// The groups collection; a single group is `GROUPS_PATH/<percent-encoded name>`.
pub const GROUPS_PATH: &str = "/api/v1/groups";
/// The default base URL (the vendor examples; the docs also name `https://app.periscopedata.com`).
pub const DEFAULT_BASE_URL: &str = "https://api.periscopedata.com";

/// `HTTP-X-PARTNER-AUTH: <site_name>:<api_key>` on every call. Header names are
/// case-insensitive; `http` stores them lowercase and the client sends them title-cased.
pub static PARTNER_AUTH_HEADER: HeaderName = HeaderName::from_static("http-x-partner-auth");
/// `HTTP-X-EMAIL: <email>` on the single-user calls.
pub static EMAIL_HEADER: HeaderName = HeaderName::from_static("http-x-email");
/// Every vendor example sends `Content-Type: application/json`, GETs included.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// The dry-run switch, sent explicitly (`true`/`false`) on every write.
pub const TEST_MODE_PARAM: &str = "test_mode";

/// Longest error text kept from a raw (non-JSON or unrecognised) error body.
pub const RAW_ERROR_MAX_CHARS: usize = 200;

/// Characters left as they are in a group-name path segment: RFC 3986 "unreserved" only, so
/// spaces, `/`, `%`, `?`, `#` and all non-ASCII bytes are percent-encoded.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

// ---------------------------------------------------------------------------------------------
// URLs

/// Percent-encodes one path segment (a group name).
pub fn encode_path_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

fn join(base: &Url, path: &str) -> Result<Url, String> {
    // The base may carry a prefix of its own (a proxy, the emulator mounted elsewhere): append,
    // never replace, its path.
    let joined = format!("{}{}", base.as_str().trim_end_matches('/'), path);
    Url::parse(&joined).map_err(|e| format!("cannot build a partner URL: {e}"))
}

/// `<base>/api/v1/users`.
pub fn users_url(base: &Url) -> Result<Url, String> {
    join(base, USERS_PATH)
}

/// `<base>/api/v1/groups`.
pub fn groups_url(base: &Url) -> Result<Url, String> {
    join(base, GROUPS_PATH)
}

/// `<base>/api/v1/groups/<name>`, the name validated and percent-encoded.
pub fn group_url(base: &Url, name: &str) -> Result<Url, String> {
    validate_group_name(name)?;
    join(
        base,
        &format!("{GROUPS_PATH}/{}", encode_path_segment(name)),
    )
}

/// Adds `test_mode=true|false`.
pub fn with_test_mode(mut url: Url, test_mode: bool) -> Url {
    url.query_pairs_mut()
        .append_pair(TEST_MODE_PARAM, if test_mode { "true" } else { "false" });
    url
}

/// A group name must be non-empty and must not be `.` or `..`: URL parsers treat those (even
/// percent-encoded) as dot segments and would address the parent collection instead.
pub fn validate_group_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("group name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!(
            "group name {name:?} cannot be addressed in a URL path"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("group name contains control characters".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Headers

/// Checks an email that will travel in a header (or later be addressed through one): non-empty,
/// visible ASCII only (no CR, LF, NUL, spaces, tabs or other control or non-ASCII characters).
pub fn validate_email(email: &str) -> Result<(), String> {
    if email.is_empty() {
        return Err("email is empty".into());
    }
    if let Some(c) = email.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "email contains a character that cannot be sent in a header ({:?})",
            c.escape_default().to_string()
        ));
    }
    Ok(())
}

/// The `HTTP-X-EMAIL` value, validated before any call is made.
pub fn email_header_value(email: &str) -> Result<HeaderValue, String> {
    validate_email(email)?;
    HeaderValue::from_str(email).map_err(|_| "email cannot be sent in a header".to_owned())
}

/// The `HTTP-X-PARTNER-AUTH` value `<site>:<key>`, marked sensitive so that `http`/`hyper`
/// never print it. Errors never echo the value.
pub fn partner_auth_header_value(site_name: &str, api_key: &str) -> Result<HeaderValue, String> {
    if site_name.is_empty() || !site_name.chars().all(|c| c.is_ascii_graphic() && c != ':') {
        return Err("site name must be non-empty visible ASCII without ':'".into());
    }
    if api_key.is_empty() || !api_key.chars().all(|c| c.is_ascii_graphic()) {
        return Err("API key must be non-empty visible ASCII".into());
    }
    let mut value = HeaderValue::from_str(&format!("{site_name}:{api_key}"))
        .map_err(|_| "API key cannot be sent in a header".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

// ---------------------------------------------------------------------------------------------
// Request bodies, spelled as the vendor spells them

/// `POST /api/v1/users`.
#[derive(Debug, Serialize)]
pub struct CreateUserBody<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub email: &'a str,
    pub groups: &'a [String],
    pub invited_by_email: &'a str,
}

/// `PUT /api/v1/users` (+ `HTTP-X-EMAIL`): only the present fields are sent.
#[derive(Debug, Serialize)]
pub struct UpdateUserBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<&'a [String]>,
}

/// `POST /api/v1/groups`.
#[derive(Debug, Serialize)]
pub struct CreateGroupBody<'a> {
    pub name: &'a str,
    pub access: Access,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by_email: Option<&'a str>,
}

/// `PUT /api/v1/groups/<name>`: `name` renames.
#[derive(Debug, Serialize)]
pub struct UpdateGroupBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
}

// ---------------------------------------------------------------------------------------------
// Response bodies, parsed tolerantly

/// Why a 2xx body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    /// The body ended in the middle of a JSON value: most likely cut short in transit, so the
    /// client treats it as transient rather than as a bad answer.
    pub truncated: bool,
}

impl ParseError {
    fn shape(message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            truncated: false,
        }
    }
}

const USER_LIST_KEYS: &[&str] = &["users", "data"];
const GROUP_LIST_KEYS: &[&str] = &["groups", "data"];
const USER_OBJECT_KEYS: &[&str] = &["user", "data"];
const GROUP_OBJECT_KEYS: &[&str] = &["group", "data"];

#[derive(Deserialize)]
struct UserDto {
    email: String,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    groups: Option<Vec<GroupRef>>,
}

/// An entry of a user's `groups`: a name, or an object with a `name`.
#[derive(Deserialize)]
#[serde(untagged)]
enum GroupRef {
    Name(String),
    Object { name: String },
}

#[derive(Deserialize)]
struct GroupDto {
    name: String,
    access: String,
}

impl From<UserDto> for PartnerUser {
    fn from(dto: UserDto) -> PartnerUser {
        PartnerUser {
            email: dto.email,
            first_name: dto.first_name.unwrap_or_default(),
            last_name: dto.last_name.unwrap_or_default(),
            groups: dto
                .groups
                .unwrap_or_default()
                .into_iter()
                .map(|g| match g {
                    GroupRef::Name(name) | GroupRef::Object { name } => name,
                })
                .collect(),
        }
    }
}

impl TryFrom<GroupDto> for PartnerGroup {
    type Error = ParseError;
    fn try_from(dto: GroupDto) -> Result<PartnerGroup, ParseError> {
        let access = Access::parse(&dto.access).ok_or_else(|| {
            ParseError::shape(format!(
                "group {:?} has an unknown access level {:?}",
                dto.name, dto.access
            ))
        })?;
        Ok(PartnerGroup {
            name: dto.name,
            access,
        })
    }
}

/// True when a 2xx body carries nothing: empty, whitespace, `null` or `{}`.
pub fn is_blank(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let t = text.trim();
    t.is_empty()
        || t == "null"
        || serde_json::from_str::<Value>(t).is_ok_and(|v| v == Value::Object(Default::default()))
}

fn parse_value(body: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError {
        message: format!("the partner answered with a body that is not JSON: {e}"),
        truncated: e.is_eof(),
    })
}

fn unwrap_list(value: Value, keys: &[&str], what: &str) -> Result<Vec<Value>, ParseError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(mut map) => {
            for key in keys {
                if let Some(Value::Array(items)) = map.remove(*key) {
                    return Ok(items);
                }
            }
            Err(ParseError::shape(format!(
                "expected a list of {what}, bare or under {keys:?}, got an object with keys {:?}",
                map.keys().collect::<Vec<_>>()
            )))
        }
        other => Err(ParseError::shape(format!(
            "expected a list of {what}, got {}",
            json_kind(&other)
        ))),
    }
}

fn unwrap_object(value: Value, keys: &[&str], what: &str) -> Result<Value, ParseError> {
    match value {
        Value::Object(mut map) => {
            for key in keys {
                if matches!(map.get(*key), Some(Value::Object(_))) {
                    if let Some(inner) = map.remove(*key) {
                        return Ok(inner);
                    }
                }
            }
            Ok(Value::Object(map))
        }
        other => Err(ParseError::shape(format!(
            "expected a {what} object, got {}",
            json_kind(&other)
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn user_from_value(v: Value) -> Result<PartnerUser, ParseError> {
    serde_json::from_value::<UserDto>(v)
        .map(PartnerUser::from)
        .map_err(|e| ParseError::shape(format!("cannot read a partner user: {e}")))
}

fn group_from_value(v: Value) -> Result<PartnerGroup, ParseError> {
    serde_json::from_value::<GroupDto>(v)
        .map_err(|e| ParseError::shape(format!("cannot read a partner group: {e}")))
        .and_then(PartnerGroup::try_from)
}

/// A user list: bare `[...]` or under `users` / `data`.
pub fn parse_users(body: &[u8]) -> Result<Vec<PartnerUser>, ParseError> {
    unwrap_list(parse_value(body)?, USER_LIST_KEYS, "users")?
        .into_iter()
        .map(user_from_value)
        .collect()
}

/// The answer to `GET /api/v1/users` + `HTTP-X-EMAIL`: one user, bare or wrapped. A server that
/// ignores the header and answers a list is tolerated: the entry with that email (compared
/// case-insensitively) is picked, `None` when there is none.
pub fn parse_user_matching(body: &[u8], email: &str) -> Result<Option<PartnerUser>, ParseError> {
    let value = parse_value(body)?;
    let is_list = value.is_array()
        || USER_LIST_KEYS
            .iter()
            .any(|k| value.get(k).is_some_and(Value::is_array));
    if !is_list {
        return user_from_value(unwrap_object(value, USER_OBJECT_KEYS, "user")?).map(Some);
    }
    let users = unwrap_list(value, USER_LIST_KEYS, "users")?
        .into_iter()
        .map(user_from_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(users
        .into_iter()
        .find(|u| u.email.eq_ignore_ascii_case(email)))
}

/// One user: bare or under `user` / `data`.
pub fn parse_user(body: &[u8]) -> Result<PartnerUser, ParseError> {
    user_from_value(unwrap_object(parse_value(body)?, USER_OBJECT_KEYS, "user")?)
}

/// A group list: bare `[...]` or under `groups` / `data`.
pub fn parse_groups(body: &[u8]) -> Result<Vec<PartnerGroup>, ParseError> {
    unwrap_list(parse_value(body)?, GROUP_LIST_KEYS, "groups")?
        .into_iter()
        .map(group_from_value)
        .collect()
}

/// One group: bare or under `group` / `data`.
pub fn parse_group(body: &[u8]) -> Result<PartnerGroup, ParseError> {
    group_from_value(unwrap_object(
        parse_value(body)?,
        GROUP_OBJECT_KEYS,
        "group",
    )?)
}

// ---------------------------------------------------------------------------------------------
// Error bodies

/// The error text of a non-2xx answer: `error`, `message` or `errors` (a string, an array or an
/// object) when the body is JSON with one of them, else the raw body, trimmed and truncated to
/// [`RAW_ERROR_MAX_CHARS`] characters. Empty when the body is.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
        for key in ["error", "message", "errors", "error_message", "detail"] {
            if let Some(v) = map.get(key) {
                let text = flatten_message(v);
                if !text.is_empty() {
                    return truncate(&text, RAW_ERROR_MAX_CHARS * 2);
                }
            }
        }
    }
    truncate(String::from_utf8_lossy(body).trim(), RAW_ERROR_MAX_CHARS)
}

fn flatten_message(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.trim().to_owned(),
        Value::Array(items) => items
            .iter()
            .map(flatten_message)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        Value::Object(map) => {
            if let Some(inner) = map.get("message").or_else(|| map.get("error")) {
                return flatten_message(inner);
            }
            map.iter()
                .map(|(k, v)| format!("{k}: {}", flatten_message(v)))
                .collect::<Vec<_>>()
                .join("; ")
        }
        other => other.to_string(),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// True when an error message says the thing already exists or is taken (a 400 the partner
/// may use instead of 409).
pub fn message_says_exists(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "already exist",
        "already taken",
        "been taken",
        "is taken",
        "already in use",
        "already registered",
        "already a member",
        "duplicate",
    ]
    .iter()
    .any(|p| m.contains(p))
        || (m.contains("exists") && !m.contains("not exist"))
}

/// True when a refusal's message says the thing is built in (a built-in group the partner will
/// not change or delete), as opposed to a refusal of the bridge's credentials.
pub fn message_says_builtin(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "built-in",
        "builtin",
        "built in",
        "system group",
        "default group",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The `Retry-After` header.
pub static RETRY_AFTER_HEADER: HeaderName = http::header::RETRY_AFTER;

/// `Retry-After` as delay-seconds or an HTTP date (relative to `now`; a past date is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Duration::try_from_secs_f64(secs).ok();
        }
        return None;
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(email: &str, groups: &[&str]) -> PartnerUser {
        PartnerUser {
            email: email.into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    const ADA: &str =
        r#"{"email":"ada@x.com","first_name":"Ada","last_name":"Lovelace","groups":["All Users"]}"#;

    #[test]
    fn user_list_is_read_bare_or_under_users_or_data() {
        let want = vec![user("ada@x.com", &["All Users"])];
        assert_eq!(parse_users(format!("[{ADA}]").as_bytes()).unwrap(), want);
        assert_eq!(
            parse_users(format!(r#"{{"users":[{ADA}]}}"#).as_bytes()).unwrap(),
            want
        );
        assert_eq!(
            parse_users(format!(r#"{{"data":[{ADA}],"page":1}}"#).as_bytes()).unwrap(),
            want
        );
        assert_eq!(parse_users(b"[]").unwrap(), vec![]);
        assert!(parse_users(br#"{"items":[]}"#).is_err());
        assert!(parse_users(b"\"nope\"").is_err());
    }

    #[test]
    fn group_list_is_read_bare_or_under_groups_or_data() {
        let want = vec![
            PartnerGroup {
                name: "Administrators".into(),
                access: Access::Sql,
            },
            PartnerGroup {
                name: "Readers".into(),
                access: Access::View,
            },
        ];
        let items = r#"[{"name":"Administrators","access":"SQL"},{"name":"Readers","access":"view","id":7}]"#;
        assert_eq!(parse_groups(items.as_bytes()).unwrap(), want);
        assert_eq!(
            parse_groups(format!(r#"{{"groups":{items}}}"#).as_bytes()).unwrap(),
            want
        );
        assert_eq!(
            parse_groups(format!(r#"{{"data":{items}}}"#).as_bytes()).unwrap(),
            want
        );
    }

    #[test]
    fn single_objects_are_read_bare_or_wrapped() {
        let want = user("ada@x.com", &["All Users"]);
        assert_eq!(parse_user(ADA.as_bytes()).unwrap(), want);
        assert_eq!(
            parse_user(format!(r#"{{"user":{ADA}}}"#).as_bytes()).unwrap(),
            want
        );
        assert_eq!(
            parse_user(format!(r#"{{"data":{ADA}}}"#).as_bytes()).unwrap(),
            want
        );
        let g = PartnerGroup {
            name: "Readers".into(),
            access: Access::Discovery,
        };
        assert_eq!(
            parse_group(br#"{"name":"Readers","access":"discovery"}"#).unwrap(),
            g
        );
        assert_eq!(
            parse_group(br#"{"group":{"name":"Readers","access":"Discovery"}}"#).unwrap(),
            g
        );
    }

    #[test]
    fn a_single_user_answer_may_be_a_list_to_pick_from() {
        let want = user("ada@x.com", &["All Users"]);
        assert_eq!(
            parse_user_matching(ADA.as_bytes(), "ada@x.com").unwrap(),
            Some(want.clone())
        );
        let list = format!(r#"{{"users":[{{"email":"b@x.com"}},{ADA}]}}"#);
        assert_eq!(
            parse_user_matching(list.as_bytes(), "ADA@x.com").unwrap(),
            Some(want)
        );
        assert_eq!(
            parse_user_matching(list.as_bytes(), "c@x.com").unwrap(),
            None
        );
    }

    #[test]
    fn group_entries_may_be_strings_or_objects() {
        let body = r#"{"email":"a@x.com","groups":["All Users",{"name":"Readers","id":3}]}"#;
        let u = parse_user(body.as_bytes()).unwrap();
        assert_eq!(u.groups, vec!["All Users", "Readers"]);
        // Missing or null names are empty, missing groups an empty list.
        assert_eq!(u.first_name, "");
        let u = parse_user(br#"{"email":"a@x.com","first_name":null}"#).unwrap();
        assert!(u.groups.is_empty());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body = r#"{"user":{"email":"a@x.com","first_name":"A","last_name":"B","groups":[],
            "id":12,"created_at":"2020-01-01","nested":{"x":[1,2]}},"request_id":"r1"}"#;
        assert_eq!(parse_user(body.as_bytes()).unwrap().email, "a@x.com");
    }

    #[test]
    fn bad_bodies_are_errors_and_cut_bodies_are_marked_truncated() {
        let e = parse_user(br#"{"email":"a@x.com","first_na"#).unwrap_err();
        assert!(e.truncated, "{e:?}");
        let e = parse_user(b"<html>oops</html>").unwrap_err();
        assert!(!e.truncated);
        let e = parse_user(br#"{"first_name":"A"}"#).unwrap_err();
        assert!(e.message.contains("email"), "{e:?}");
        let e = parse_group(br#"{"name":"G","access":"Admin"}"#).unwrap_err();
        assert!(e.message.contains("unknown access"), "{e:?}");
    }

    #[test]
    fn blank_bodies_are_recognised() {
        for b in [&b""[..], b"  \n", b"null", b"{}", b" { } "] {
            assert!(is_blank(b), "{:?}", String::from_utf8_lossy(b));
        }
        assert!(!is_blank(ADA.as_bytes()));
        assert!(!is_blank(b"[]"));
    }

    #[test]
    fn error_text_comes_from_error_message_or_errors() {
        assert_eq!(
            error_message(br#"{"error":"email exists"}"#),
            "email exists"
        );
        assert_eq!(error_message(br#"{"message":"bad access"}"#), "bad access");
        assert_eq!(error_message(br#"{"errors":"just one"}"#), "just one");
        assert_eq!(
            error_message(br#"{"errors":["a is missing","b is bad"]}"#),
            "a is missing; b is bad"
        );
        assert_eq!(
            error_message(br#"{"errors":[{"message":"first"},{"field":"x","message":"second"}]}"#),
            "first; second"
        );
        assert_eq!(
            error_message(br#"{"errors":{"email":["is taken"],"name":"blank"}}"#),
            "email: is taken; name: blank"
        );
        assert_eq!(
            error_message(br#"{"error":{"message":"nested"}}"#),
            "nested"
        );
    }

    #[test]
    fn error_text_falls_back_to_the_raw_body_truncated() {
        assert_eq!(error_message(b"  Bad Gateway \n"), "Bad Gateway");
        assert_eq!(error_message(br#"{"other":1}"#), r#"{"other":1}"#);
        assert_eq!(error_message(b""), "");
        let long = "é".repeat(500);
        let msg = error_message(long.as_bytes());
        assert_eq!(msg.chars().count(), RAW_ERROR_MAX_CHARS + 1);
        assert!(msg.ends_with('…'));
    }

    #[test]
    fn exists_messages_are_recognised() {
        assert!(message_says_exists("User already exists"));
        assert!(message_says_exists("email has already been taken"));
        assert!(message_says_exists("Group name exists"));
        assert!(message_says_exists("Duplicate entry"));
        assert!(!message_says_exists("group does not exist"));
        assert!(!message_says_exists("unknown group Readers"));
    }

    #[test]
    fn builtin_refusals_are_told_from_auth_refusals() {
        assert!(message_says_builtin(
            "built-in group `All Users` cannot be deleted"
        ));
        assert!(message_says_builtin("Cannot delete a Builtin group"));
        assert!(message_says_builtin("Administrators is a system group"));
        assert!(!message_says_builtin("injected fault: 403 Forbidden"));
        assert!(!message_says_builtin("invalid API key"));
        assert!(!message_says_builtin(
            "the User and Group Management API is not enabled"
        ));
    }

    #[test]
    fn group_names_are_percent_encoded_in_paths() {
        let base = Url::parse("http://127.0.0.1:9/").unwrap();
        let cases = [
            ("Administrators", "/api/v1/groups/Administrators"),
            ("All Users", "/api/v1/groups/All%20Users"),
            ("a/b", "/api/v1/groups/a%2Fb"),
            ("100%", "/api/v1/groups/100%25"),
            ("q?x#y", "/api/v1/groups/q%3Fx%23y"),
            (
                "Ünïcødé 数据",
                "/api/v1/groups/%C3%9Cn%C3%AFc%C3%B8d%C3%A9%20%E6%95%B0%E6%8D%AE",
            ),
            ("my-new_group.v2~", "/api/v1/groups/my-new_group.v2~"),
        ];
        for (name, path) in cases {
            assert_eq!(group_url(&base, name).unwrap().path(), path, "{name}");
        }
        assert!(group_url(&base, "..").is_err());
        assert!(group_url(&base, ".").is_err());
        assert!(group_url(&base, "").is_err());
        assert!(group_url(&base, "a\nb").is_err());
    }

    #[test]
    fn urls_keep_a_base_prefix_and_carry_test_mode() {
        let base = Url::parse("http://h:1/partner/").unwrap();
        assert_eq!(
            users_url(&base).unwrap().as_str(),
            "http://h:1/partner/api/v1/users"
        );
        let u = with_test_mode(groups_url(&base).unwrap(), true);
        assert_eq!(
            u.as_str(),
            "http://h:1/partner/api/v1/groups?test_mode=true"
        );
        let u = with_test_mode(
            users_url(&Url::parse("http://h:1").unwrap()).unwrap(),
            false,
        );
        assert_eq!(u.as_str(), "http://h:1/api/v1/users?test_mode=false");
    }

    #[test]
    fn header_values_are_validated() {
        assert!(email_header_value("ada@x.com").is_ok());
        assert!(email_header_value("o'brien+tag@x.co.uk").is_ok());
        for bad in [
            "",
            "a@x.com\r\nX-Evil: 1",
            "a@x.com\n",
            "a\0@x.com",
            "a b@x.com",
            "a\t@x.com",
            "ünï@x.com",
            "a\u{7f}@x.com",
        ] {
            assert!(email_header_value(bad).is_err(), "{bad:?}");
        }
        let v = partner_auth_header_value("acme", "k3y-s3cret").unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("k3y-s3cret"));
        let e = partner_auth_header_value("acme", "bad\nkey").unwrap_err();
        assert!(!e.contains("bad"));
        assert!(partner_auth_header_value("ac:me", "k").is_err());
        assert!(partner_auth_header_value("acme", "").is_err());
    }

    #[test]
    fn request_bodies_use_vendor_names_and_skip_absent_fields() {
        let groups = vec!["Administrators".to_owned()];
        let body = CreateUserBody {
            first_name: "A",
            last_name: "B",
            email: "a@x.com",
            groups: &groups,
            invited_by_email: "owner@x.com",
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"first_name":"A","last_name":"B","email":"a@x.com","groups":["Administrators"],"invited_by_email":"owner@x.com"}"#
        );
        let body = UpdateUserBody {
            email: None,
            first_name: Some("N"),
            last_name: None,
            groups: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"first_name":"N"}"#
        );
        let body = CreateGroupBody {
            name: "G",
            access: Access::Discovery,
            created_by_email: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"name":"G","access":"Discovery"}"#
        );
        let body = UpdateGroupBody {
            name: Some("H"),
            access: Some(Access::View),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"name":"H","access":"View"}"#
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_http_date() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
