//! Resources (RFC 7643 sections 3, 4 and 8; RFC 7644 sections 3.3 and 3.5.1): canonicalization
//! of POST and PUT bodies into the stored form, the server-maintained `id` and `meta`, typed
//! read-only views for the bridge, and the typed serde model of User and Group.
//!
//! The canonical form is a JSON object: core and common attributes at the top level under their
//! schema spelling, extension attributes in an object under the extension URN, `schemas` listing
//! the core schema and each extension present. Unassigned attributes are absent: never `null`,
//! never `[]`. Read-only input is dropped, `password` is never kept.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::error::ScimError;
use super::schema::{
    check_key, check_text_deep, coerce_at, kind, AttrRef, AttrType, AttributeDef, Mutability,
    ResourceType, SchemaDef, ENTERPRISE_USER_SCHEMA,
};
use super::version::etag;

/// Which request a body came with. Both follow the same rules today (RFC 7644 3.5.1 treats a
/// PUT body like a POST body apart from immutable attributes, which need the stored resource
/// and are checked by the caller); the mode is here so PUT-only rules need no signature change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    Create,
    Replace,
}

/// A canonicalized body and what was taken out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanonicalInput {
    pub resource: Value,
    /// True when the body carried a non-empty `password` (accepted, never stored).
    pub password_given: bool,
}

/// Canonicalizes a POST or PUT body; see [`canonicalize_input`].
pub fn canonicalize(rt: &ResourceType, body: Value, mode: InputMode) -> Result<Value, ScimError> {
    canonicalize_input(rt, body, mode).map(|c| c.resource)
}

/// Canonicalizes a POST or PUT body:
/// - attribute names take their schema spelling (matched case-insensitively), including
///   URN-qualified top-level keys (`urn:...:core:2.0:User:userName`, `urn:...:enterprise:2.0:User:manager`);
/// - every value goes through [`coerce_at`](super::schema::coerce_at): checked against its
///   attribute's type (a number for a string attribute is 400 `invalidValue`), with the IdPs'
///   shapes (boolean strings, `null`/`[]` unassigned, single values for multi-valued
///   attributes, bare `manager` ids);
/// - no string anywhere in what is kept, and no attribute name, may hold a control character
///   ([`is_forbidden_char`](super::schema::is_forbidden_char)): 400 `invalidValue` naming the
///   attribute;
/// - read-only input (`id`, `meta`, `groups`) is dropped silently; `password` is dropped and
///   reported in `password_given`;
/// - unknown URIs in `schemas` are tolerated; objects under unknown URN keys are kept as sent
///   (and listed in `schemas`); unknown plain top-level attributes, and non-object values under
///   URN-qualified names of unknown schemas, are dropped (RFC 7644 3.3 lets the server ignore
///   them, and nothing downstream could use them);
/// - an extension attribute sent unqualified at the top level (`"manager": "42"`) is placed
///   under its extension, the same leniency `ResourceType::resolve` gives paths;
/// - a missing or blank required attribute (`userName`, `displayName`) is 400 `invalidValue`;
/// - more than one `primary: true` in a multi-valued attribute is 400 `invalidValue`.
pub fn canonicalize_input(
    rt: &ResourceType,
    body: Value,
    _mode: InputMode,
) -> Result<CanonicalInput, ScimError> {
    let body = match body {
        Value::Object(o) => o,
        other => {
            return Err(ScimError::invalid_syntax(format!(
                "the request body must be a JSON object, not {}",
                kind(&other)
            )))
        }
    };
    let mut out = Canonicalizer {
        rt,
        core: Map::new(),
        extensions: Vec::new(),
        unknown: Map::new(),
        password_given: false,
    };
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            // Unknown URIs (Entra's Microsoft group schema) are tolerated; `schemas` is rebuilt
            // from what is present.
            continue;
        }
        if !has_urn_prefix(&key) {
            out.put_unqualified(&key, value)?;
            continue;
        }
        if let Some(ext) = rt.extension(&key) {
            for (k, v) in urn_object(ext.id, value)? {
                out.put_in(Some(ext), &k, v)?;
            }
            continue;
        }
        if rt.schema.id.eq_ignore_ascii_case(&key) {
            for (k, v) in urn_object(rt.schema.id, value)? {
                out.put_in(None, &k, v)?;
            }
            continue;
        }
        match AttrRef::parse(&key) {
            Ok(AttrRef {
                urn: Some(urn),
                name,
                sub: None,
            }) if !name.is_empty() && rt.knows_schema(&urn) => {
                out.put_in(rt.extension(&urn), &name, value)?;
            }
            _ => {
                // An object under a URN this resource type does not know is another
                // extension: kept as sent. Anything else there (a qualified attribute of an
                // unknown schema) is an unknown attribute: ignored.
                if matches!(&value, Value::Object(m) if !m.is_empty()) {
                    check_key("the resource", &key)?;
                    check_text_deep(&key, &value)?;
                    out.unknown.insert(key, value);
                }
            }
        }
    }
    out.finish()
}

struct Canonicalizer<'a> {
    rt: &'a ResourceType,
    core: Map<String, Value>,
    extensions: Vec<(&'static SchemaDef, Map<String, Value>)>,
    unknown: Map<String, Value>,
    password_given: bool,
}

impl Canonicalizer<'_> {
    fn put_unqualified(&mut self, name: &str, value: Value) -> Result<(), ScimError> {
        if self.rt.core_attribute(name).is_some() {
            return self.put_in(None, name, value);
        }
        let ext = self
            .rt
            .extensions
            .iter()
            .copied()
            .find(|s| s.attribute(name).is_some());
        match ext {
            Some(ext) => self.put_in(Some(ext), name, value),
            None => Ok(()), // unknown attribute: ignored
        }
    }

    /// Puts one attribute of the core schema (`schema == None`) or of an extension.
    fn put_in(
        &mut self,
        schema: Option<&'static SchemaDef>,
        name: &str,
        value: Value,
    ) -> Result<(), ScimError> {
        let def = match schema {
            None => self.rt.core_attribute(name),
            Some(s) => s.attribute(name),
        };
        let Some(def) = def else {
            return match schema {
                // Unknown attributes inside a known extension object are kept as sent (their
                // text is checked; the schema says nothing of their type).
                Some(s) if !is_unassigned(&value) => {
                    check_key(s.id, name)?;
                    check_text_deep(&format!("{}:{name}", s.id), &value)?;
                    self.extension_map(s).insert(name.to_owned(), value);
                    Ok(())
                }
                _ => Ok(()),
            };
        };
        if def.mutability == Mutability::ReadOnly {
            return Ok(());
        }
        let at = match schema {
            None => def.name.to_owned(),
            Some(s) => format!("{}:{}", s.id, def.name),
        };
        let Some(value) = coerce_at(def, value, &at)? else {
            return Ok(());
        };
        if def.mutability == Mutability::WriteOnly {
            self.password_given = true;
            return Ok(());
        }
        let target = match schema {
            None => &mut self.core,
            Some(s) => self.extension_map(s),
        };
        target.insert(def.name.to_owned(), value);
        Ok(())
    }

    fn extension_map(&mut self, s: &'static SchemaDef) -> &mut Map<String, Value> {
        let i = match self.extensions.iter().position(|(e, _)| e.id == s.id) {
            Some(i) => i,
            None => {
                self.extensions.push((s, Map::new()));
                self.extensions.len() - 1
            }
        };
        &mut self.extensions[i].1
    }

    fn finish(self) -> Result<CanonicalInput, ScimError> {
        let rt = self.rt;
        for def in rt.schema.attributes.iter().filter(|a| a.required) {
            let present = match self.core.get(def.name) {
                Some(Value::String(s)) => !s.trim().is_empty(),
                Some(_) => true,
                None => false,
            };
            if !present {
                return Err(ScimError::invalid_value(format!(
                    "'{}' is required and was missing or empty",
                    def.name
                )));
            }
        }
        check_primaries(rt.schema, &self.core)?;
        let mut schemas = vec![Value::String(rt.schema.id.to_owned())];
        let mut resource = Map::new();
        resource.insert("schemas".into(), Value::Null); // placeholder keeps it first
        resource.extend(self.core);
        for ext in rt.extensions {
            let Some((_, map)) = self.extensions.iter().find(|(e, _)| e.id == ext.id) else {
                continue;
            };
            if map.is_empty() {
                continue;
            }
            check_primaries(ext, map)?;
            schemas.push(Value::String(ext.id.to_owned()));
            resource.insert(ext.id.to_owned(), Value::Object(map.clone()));
        }
        for (k, v) in self.unknown {
            schemas.push(Value::String(k.clone()));
            resource.insert(k, v);
        }
        resource.insert("schemas".into(), Value::Array(schemas));
        Ok(CanonicalInput {
            resource: Value::Object(resource),
            password_given: self.password_given,
        })
    }
}

fn has_urn_prefix(key: &str) -> bool {
    key.len() > 4 && key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
}

fn is_unassigned(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn urn_object(urn: &str, value: Value) -> Result<Map<String, Value>, ScimError> {
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m),
        other => Err(ScimError::invalid_value(format!(
            "'{urn}' must be an object, not {}",
            kind(&other)
        ))),
    }
}

/// At most one `primary: true` per multi-valued attribute (RFC 7643 section 2.4).
fn check_primaries(schema: &SchemaDef, attrs: &Map<String, Value>) -> Result<(), ScimError> {
    for def in schema.attributes.iter().filter(|a| has_primary(a)) {
        let Some(Value::Array(items)) = attrs.get(def.name) else {
            continue;
        };
        let primaries = items
            .iter()
            .filter(|i| i.get("primary") == Some(&Value::Bool(true)))
            .count();
        if primaries > 1 {
            return Err(ScimError::invalid_value(format!(
                "'{}' has {primaries} values marked primary; at most one may be",
                def.name
            )));
        }
    }
    Ok(())
}

fn has_primary(def: &AttributeDef) -> bool {
    def.multi_valued && def.ty == AttrType::Complex && def.sub("primary").is_some()
}

// ---------------------------------------------------------------------------------------------
// Server-maintained attributes

/// The `meta` attribute (RFC 7643 section 3.1), kept by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub resource_type: String,
    pub created: OffsetDateTime,
    pub last_modified: OffsetDateTime,
    pub location: String,
    pub version: u64,
}

impl Meta {
    /// The location of a resource: `{base_url}{endpoint}/{id}`.
    pub fn location_for(base_url: &str, rt: &ResourceType, id: &str) -> String {
        format!("{}{}/{id}", base_url.trim_end_matches('/'), rt.endpoint)
    }

    /// The JSON form: times in RFC 3339 UTC, `version` as the weak ETag `W/"<n>"`.
    pub fn to_value(&self) -> Value {
        json!({
            "resourceType": self.resource_type,
            "created": rfc3339(self.created),
            "lastModified": rfc3339(self.last_modified),
            "location": self.location,
            "version": etag(self.version),
        })
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Sets the server-maintained `id` and `meta` on a canonical resource (a new one, or a PUT
/// replacement of a stored one), ordered `schemas`, `id`, the rest, `meta`.
pub fn with_server_attributes(resource: Value, id: &str, meta: &Meta) -> Value {
    let Value::Object(obj) = resource else {
        return resource;
    };
    let mut out = Map::new();
    if let Some(s) = obj.get("schemas") {
        out.insert("schemas".into(), s.clone());
    }
    out.insert("id".into(), Value::String(id.to_owned()));
    for (k, v) in obj {
        if !matches!(k.as_str(), "schemas" | "id" | "meta") {
            out.insert(k, v);
        }
    }
    out.insert("meta".into(), meta.to_value());
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Typed views

/// One email address of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub value: String,
    pub type_: Option<String>,
    pub primary: bool,
}

/// The fields of a canonical User resource the bridge needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub user_name: String,
    pub external_id: Option<String>,
    /// Absent `active` means active.
    pub active: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub formatted_name: Option<String>,
    pub emails: Vec<Email>,
    pub manager_id: Option<String>,
}

impl UserView {
    /// Reads a canonical User resource (as [`canonicalize`] or the store produce it).
    pub fn from_resource(v: &Value) -> Result<UserView, ScimError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ScimError::internal("a User resource must be a JSON object"))?;
        let user_name = str_at(obj.get("userName"))
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("'userName' is required"))?;
        let name = obj.get("name");
        let emails = obj
            .get("emails")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| {
                        Some(Email {
                            value: str_at(e.get("value"))?,
                            type_: str_at(e.get("type")),
                            primary: bool_at(e.get("primary")).unwrap_or(false),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let manager_id = obj
            .get(ENTERPRISE_USER_SCHEMA)
            .and_then(|e| e.get("manager"))
            .and_then(|m| str_at(m.get("value")))
            .filter(|s| !s.is_empty());
        Ok(UserView {
            user_name,
            external_id: str_at(obj.get("externalId")),
            active: bool_at(obj.get("active")).unwrap_or(true),
            given_name: str_at(name.and_then(|n| n.get("givenName"))),
            family_name: str_at(name.and_then(|n| n.get("familyName"))),
            display_name: str_at(obj.get("displayName")),
            formatted_name: str_at(name.and_then(|n| n.get("formatted"))),
            emails,
            manager_id,
        })
    }

    /// The email to use: the primary one, else the first of type `work`, else the first.
    pub fn primary_email(&self) -> Option<&str> {
        self.emails
            .iter()
            .find(|e| e.primary)
            .or_else(|| {
                self.emails.iter().find(|e| {
                    e.type_
                        .as_deref()
                        .is_some_and(|t| t.eq_ignore_ascii_case("work"))
                })
            })
            .or_else(|| self.emails.first())
            .map(|e| e.value.as_str())
    }
}

/// The fields of a canonical Group resource the bridge needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub display_name: String,
    pub external_id: Option<String>,
    /// Member ids in the order listed.
    pub member_ids: Vec<String>,
}

impl GroupView {
    pub fn from_resource(v: &Value) -> Result<GroupView, ScimError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ScimError::internal("a Group resource must be a JSON object"))?;
        let display_name = str_at(obj.get("displayName"))
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("'displayName' is required"))?;
        let member_ids = obj
            .get("members")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|m| str_at(m.get("value")))
                    .collect()
            })
            .unwrap_or_default();
        Ok(GroupView {
            display_name,
            external_id: str_at(obj.get("externalId")),
            member_ids,
        })
    }
}

fn str_at(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

fn bool_at(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Typed model (RFC 7643 sections 4.1, 4.2, 4.3)

/// A User as RFC 7643 defines it. Unknown top-level keys (other extensions) are kept in
/// `extra`; `password` is read but never written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default)]
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_url: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub emails: Vec<MultiValue>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub addresses: Vec<Address>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub phone_numbers: Vec<MultiValue>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub ims: Vec<MultiValue>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub photos: Vec<MultiValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub active: Option<bool>,
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub groups: Vec<MultiValue>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub entitlements: Vec<MultiValue>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub roles: Vec<MultiValue>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub x509_certificates: Vec<MultiValue>,
    #[serde(
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub enterprise: Option<EnterpriseUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<ResourceMeta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `name` complex attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honorific_suffix: Option<String>,
}

/// An element of a multi-valued attribute (`emails`, `phoneNumbers`, `groups`, `members`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MultiValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub primary: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An element of `addresses`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_opt_bool"
    )]
    pub primary: Option<bool>,
}

/// The enterprise User extension (RFC 7643 section 4.3). Unknown attributes are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnterpriseUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_center: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub division: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_manager"
    )]
    pub manager: Option<Manager>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `manager`, always written as an object; read from an object, a bare id or a one-element array.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manager {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// A Group (RFC 7643 section 4.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default)]
    pub display_name: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_vec"
    )]
    pub members: Vec<MultiValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<ResourceMeta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `meta` as found in a resource representation (strings as sent; see [`Meta`] for the
/// server's own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

fn de_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => bool_at(Some(&v))
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a boolean, not {}", kind(&v)))),
    }
}

/// `null` and absence as empty, a single value as a one-element list, `null` elements skipped.
fn de_vec<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    let items = match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(single) => vec![single],
    };
    items
        .into_iter()
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v).map_err(D::Error::custom))
        .collect()
}

fn de_manager<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Manager>, D::Error> {
    let v = match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(mut items)) => match items.len() {
            0 => return Ok(None),
            1 => items.pop().unwrap_or(Value::Null),
            n => {
                return Err(D::Error::custom(format!(
                    "manager is single-valued but {n} values were given"
                )))
            }
        },
        Some(v) => v,
    };
    match v {
        Value::Null => Ok(None),
        Value::String(id) => Ok(Some(Manager {
            value: Some(id),
            ..Manager::default()
        })),
        Value::Object(_) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        other => Err(D::Error::custom(format!(
            "manager must be an object or an id, not {}",
            kind(&other)
        ))),
    }
}

#[cfg(test)]
pub(crate) mod examples;

#[cfg(test)]
mod tests;
