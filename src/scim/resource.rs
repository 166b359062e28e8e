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
pub(crate) mod examples {
    //! The RFC 7643 section 8 examples (the certificate value is shortened).
    use serde_json::{json, Value};

    /// RFC 7643 section 8.2, the full User representation.
    pub fn full_user() -> Value {
        json!({
          "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
          "id": "2819c223-7f76-453a-919d-413861904646",
          "externalId": "701984",
          "userName": "bjensen@example.com",
          "name": {
            "formatted": "Ms. Barbara J Jensen, III",
            "familyName": "Jensen",
            "givenName": "Barbara",
            "middleName": "Jane",
            "honorificPrefix": "Ms.",
            "honorificSuffix": "III"
          },
          "displayName": "Babs Jensen",
          "nickName": "Babs",
          "profileUrl": "https://login.example.com/bjensen",
          "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
          ],
          "addresses": [
            {
              "type": "work",
              "streetAddress": "100 Universal City Plaza",
              "locality": "Hollywood",
              "region": "CA",
              "postalCode": "91608",
              "country": "USA",
              "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
              "primary": true
            },
            {
              "type": "home",
              "streetAddress": "456 Hollywood Blvd",
              "locality": "Hollywood",
              "region": "CA",
              "postalCode": "91608",
              "country": "USA",
              "formatted": "456 Hollywood Blvd\nHollywood, CA 91608 USA"
            }
          ],
          "phoneNumbers": [
            {"value": "555-555-5555", "type": "work"},
            {"value": "555-555-4444", "type": "mobile"}
          ],
          "ims": [{"value": "someaimhandle", "type": "aim"}],
          "photos": [
            {"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"},
            {"value": "https://photos.example.com/profilephoto/72930000000Ccne/T", "type": "thumbnail"}
          ],
          "userType": "Employee",
          "title": "Tour Guide",
          "preferredLanguage": "en-US",
          "locale": "en-US",
          "timezone": "America/Los_Angeles",
          "active": true,
          "password": "t1meMa$heen",
          "groups": [
            {
              "value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
              "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
              "display": "Tour Guides"
            },
            {
              "value": "fc348aa8-3835-40eb-a20b-c726e15c55b5",
              "$ref": "https://example.com/v2/Groups/fc348aa8-3835-40eb-a20b-c726e15c55b5",
              "display": "Employees"
            },
            {
              "value": "71ddacd2-a8e7-49b8-a5db-ae50d0a5bfd7",
              "$ref": "https://example.com/v2/Groups/71ddacd2-a8e7-49b8-a5db-ae50d0a5bfd7",
              "display": "US Employees"
            }
          ],
          "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"}],
          "meta": {
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
            "version": "W/\"a330bc54f0671c9\"",
            "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
          }
        })
    }

    /// RFC 7643 section 8.3: the full User plus the enterprise extension.
    pub fn enterprise_user() -> Value {
        let mut u = full_user();
        u["schemas"] = json!([
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ]);
        if let Some(o) = u.as_object_mut() {
            let meta = o.remove("meta");
            o.insert(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
                json!({
                  "employeeNumber": "701984",
                  "costCenter": "4130",
                  "organization": "Universal Studios",
                  "division": "Theme Park",
                  "department": "Tour Operations",
                  "manager": {
                    "value": "26118915-6090-4610-87e4-49d8ca9f808d",
                    "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
                    "displayName": "John Smith"
                  }
                }),
            );
            if let Some(m) = meta {
                o.insert("meta".into(), m);
            }
        }
        u
    }

    /// RFC 7643 section 8.4, a Group.
    pub fn group() -> Value {
        json!({
          "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
          "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
          "displayName": "Tour Guides",
          "members": [
            {
              "value": "2819c223-7f76-453a-919d-413861904646",
              "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
              "display": "Babs Jensen"
            },
            {
              "value": "902c246b-6245-4190-8e05-00816be7344a",
              "$ref": "https://example.com/v2/Users/902c246b-6245-4190-8e05-00816be7344a",
              "display": "Mandy Pepperidge"
            }
          ],
          "meta": {
            "resourceType": "Group",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
            "version": "W/\"3694e05e9dff592\"",
            "location": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a"
          }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{GROUP_RESOURCE, GROUP_SCHEMA, USER_RESOURCE, USER_SCHEMA};
    use crate::scim::ScimType;
    use time::macros::datetime;

    fn user(body: Value) -> Value {
        canonicalize(&USER_RESOURCE, body, InputMode::Create).unwrap()
    }

    fn user_err(body: Value) -> ScimError {
        canonicalize(&USER_RESOURCE, body, InputMode::Create).unwrap_err()
    }

    #[test]
    fn read_only_input_is_ignored() {
        let v = user(json!({
            "schemas": [USER_SCHEMA],
            "id": "client-chosen",
            "userName": "a@x.io",
            "meta": {"resourceType": "User", "created": "not a date"},
            "groups": [{"value": "g1", "display": "Admins"}],
        }));
        assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "a@x.io"}));
        let v = canonicalize(
            &USER_RESOURCE,
            json!({"ID": "x", "Meta": {}, "GROUPS": [], "userName": "a"}),
            InputMode::Replace,
        )
        .unwrap();
        assert!(v.get("ID").is_none() && v.get("id").is_none() && v.get("groups").is_none());
    }

    #[test]
    fn password_is_accepted_reported_and_never_kept() {
        let c = canonicalize_input(
            &USER_RESOURCE,
            json!({"userName": "a", "password": "1mz050nq"}),
            InputMode::Create,
        )
        .unwrap();
        assert!(c.password_given);
        assert!(c.resource.get("password").is_none());
        assert!(!c.resource.to_string().contains("1mz050nq"));
        let c = canonicalize_input(
            &USER_RESOURCE,
            json!({"userName": "a", "password": null}),
            InputMode::Create,
        )
        .unwrap();
        assert!(!c.password_given);
    }

    #[test]
    fn null_empty_array_and_absence_all_mean_unassigned() {
        let v = user(json!({
            "userName": "a",
            "addresses": null,
            "phoneNumbers": null,
            "preferredLanguage": null,
            "roles": [],
            "name": {"givenName": null},
            "emails": [null],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": null},
        }));
        assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "a"}));
    }

    #[test]
    fn unknown_schema_uris_are_tolerated() {
        let v = canonicalize(
            &GROUP_RESOURCE,
            json!({
                "schemas": [GROUP_SCHEMA, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "displayName": "Finance",
            }),
            InputMode::Create,
        )
        .unwrap();
        assert_eq!(v["schemas"], json!([GROUP_SCHEMA]));
        // A body with no `schemas` at all is accepted too.
        assert_eq!(
            user(json!({"userName": "a"}))["schemas"],
            json!([USER_SCHEMA])
        );
    }

    #[test]
    fn booleans_sent_as_strings_are_returned_as_json_booleans() {
        let v = user(json!({
            "userName": "a",
            "active": "False",
            "emails": [{"value": "a@x.io", "primary": "True"}],
        }));
        assert_eq!(v["active"], json!(false));
        assert_eq!(v["emails"][0]["primary"], json!(true));
        assert_eq!(
            user_err(json!({"userName": "a", "active": "yes"})).status,
            400
        );
    }

    #[test]
    fn attribute_names_take_canonical_case_including_urn_qualified_keys() {
        let v = user(json!({
            "USERNAME": "a",
            "Name": {"GIVENNAME": "Al"},
            "emails": {"Value": "a@x.io", "TYPE": "work"},
            "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "Al A",
            "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:Department": "Ops",
        }));
        assert_eq!(
            v,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "userName": "a",
                "name": {"givenName": "Al"},
                "emails": [{"value": "a@x.io", "type": "work"}],
                "displayName": "Al A",
                ENTERPRISE_USER_SCHEMA: {"department": "Ops"},
            })
        );
    }

    #[test]
    fn more_than_one_primary_is_invalid_value() {
        let e = user_err(json!({
            "userName": "a",
            "emails": [
                {"value": "a@x.io", "primary": true},
                {"value": "b@x.io", "primary": "true"}
            ],
        }));
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("emails"));
        // One primary (and any number of `primary: false`) is fine.
        user(json!({
            "userName": "a",
            "emails": [{"value": "a@x.io", "primary": true}, {"value": "b", "primary": false}],
        }));
    }

    #[test]
    fn missing_or_empty_user_name_is_invalid_value_naming_it() {
        for body in [
            json!({"displayName": "x"}),
            json!({"userName": ""}),
            json!({"userName": "  "}),
            json!({"userName": null}),
        ] {
            let e = user_err(body);
            assert_eq!(e.status, 400);
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
            assert!(e.detail.contains("userName"), "{}", e.detail);
        }
        let e =
            canonicalize(&GROUP_RESOURCE, json!({"members": []}), InputMode::Replace).unwrap_err();
        assert!(e.detail.contains("displayName"));
    }

    #[test]
    fn manager_in_every_shape_is_stored_as_an_object() {
        let want = json!({"value": "m1"});
        for manager in [
            json!("m1"),
            json!(["m1"]),
            json!({"value": "m1"}),
            json!([{"value": "m1", "$ref": null}]),
        ] {
            let v = user(json!({
                "userName": "a",
                ENTERPRISE_USER_SCHEMA: {"manager": manager.clone()},
            }));
            assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], want, "{manager}");
            let v = user(
                json!({"userName": "a", format!("{ENTERPRISE_USER_SCHEMA}:manager"): manager.clone()}),
            );
            assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], want, "{manager}");
            let v = user(json!({"userName": "a", "manager": manager.clone()}));
            assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], want, "{manager}");
        }
    }

    #[test]
    fn entra_null_ref_in_members_is_dropped() {
        let v = canonicalize(
            &GROUP_RESOURCE,
            json!({
                "displayName": "G",
                "members": [{"$ref": null, "value": "u1"}, {"$ref": null, "value": "u2", "display": "Two"}],
            }),
            InputMode::Create,
        )
        .unwrap();
        assert_eq!(
            v["members"],
            json!([{"value": "u1"}, {"value": "u2", "display": "Two"}])
        );
    }

    #[test]
    fn unknown_extension_attributes_and_unknown_urn_objects_are_kept() {
        let v = user(json!({
            "userName": "a",
            ENTERPRISE_USER_SCHEMA: {"department": "Ops", "badgeColour": "green"},
            "urn:example:params:scim:schemas:extension:acme:2.0:User": {"tier": "gold"},
            "favouriteColour": "blue",
        }));
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["badgeColour"], "green");
        assert_eq!(
            v["urn:example:params:scim:schemas:extension:acme:2.0:User"],
            json!({"tier": "gold"})
        );
        assert!(v["schemas"].as_array().unwrap().contains(&json!(
            "urn:example:params:scim:schemas:extension:acme:2.0:User"
        )));
        // Unknown plain attributes, and qualified attributes of unknown schemas, are dropped.
        assert!(v.get("favouriteColour").is_none());
        let v = user(json!({
            "userName": "a",
            "urn:example:params:scim:schemas:extension:acme:2.0:User:tier": "gold",
            "urn:example:empty": {},
            "urn:ietf:params:scim:schemas:core:2.0:Group:displayName": "G",
        }));
        assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "a"}));
    }

    /// Found by the `request_body` fuzz target: a key with a multi-byte character across its
    /// fourth byte panicked the `urn:` prefix check (a byte slice inside a character).
    #[test]
    fn keys_with_multi_byte_characters_near_the_start_do_not_panic() {
        let v = user(json!({
            "userName": "a",
            "}rn\u{18b}prise22.0:UfDser": {"manager": null},
            "urn\u{e9}:x": "y",
            "a\u{e9}\u{e9}": 1,
        }));
        assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "a"}));
        let e = user_err(json!({
            "title": "Data Analyst",
            "roles": [],
            "}rn\u{18b}prise22.0:UfDser": {"manager": null}
        }));
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn non_object_bodies_and_extensions_are_rejected() {
        assert_eq!(
            user_err(json!(["userName"])).scim_type,
            Some(ScimType::InvalidSyntax)
        );
        assert_eq!(
            user_err(json!({"userName": "a", ENTERPRISE_USER_SCHEMA: "x"})).scim_type,
            Some(ScimType::InvalidValue)
        );
    }

    /// The RFC example with its two `addresses.formatted` on one line: the bridge refuses the
    /// example's newlines (see `rfc_full_user_with_newlines_in_formatted_addresses_is_refused`).
    fn one_line_addresses(mut u: Value) -> Value {
        for a in u["addresses"].as_array_mut().unwrap() {
            let f = a["formatted"].as_str().unwrap().replace('\n', ", ");
            a["formatted"] = json!(f);
        }
        u
    }

    #[test]
    fn rfc_full_user_with_newlines_in_formatted_addresses_is_accepted() {
        // RFC 7643 writes `addresses.formatted` over several lines (its example user, section
        // 8.2): line breaks are kept in the postal address's free text, and only there.
        let v = user(examples::full_user());
        assert_eq!(
            v["addresses"][0]["formatted"],
            "100 Universal City Plaza\nHollywood, CA 91608 USA"
        );
        let mut u = examples::full_user();
        u["addresses"][0]["streetAddress"] = json!("100 Universal City Plaza\r\nBuilding 2");
        assert!(canonicalize(&USER_RESOURCE, u, InputMode::Create).is_ok());
        // Other control characters stay refused there, and line breaks everywhere else.
        let mut u = examples::full_user();
        u["addresses"][0]["formatted"] = json!("100 Universal\u{0}City Plaza");
        let e = user_err(u);
        assert!(e.detail.contains("U+0000"), "{}", e.detail);
        let mut u = examples::full_user();
        u["addresses"][0]["locality"] = json!("Holly\nwood");
        let e = user_err(u);
        assert!(e.detail.contains("'addresses.locality'"), "{}", e.detail);
    }

    #[test]
    fn rfc_full_user_canonicalizes_without_read_only_or_password() {
        let v = user(one_line_addresses(examples::full_user()));
        let mut want = one_line_addresses(examples::full_user());
        let o = want.as_object_mut().unwrap();
        for k in ["id", "meta", "groups", "password"] {
            o.remove(k);
        }
        assert_eq!(v, want);
        // Canonical form is a fixed point.
        assert_eq!(user(v.clone()), v);
    }

    #[test]
    fn rfc_full_user_round_trips_through_the_typed_model() {
        let typed: User = serde_json::from_value(examples::full_user()).unwrap();
        assert_eq!(typed.password.as_deref(), Some("t1meMa$heen"));
        assert_eq!(typed.emails[0].primary, Some(true));
        let mut want = examples::full_user();
        want.as_object_mut().unwrap().remove("password");
        assert_eq!(serde_json::to_value(&typed).unwrap(), want);
    }

    #[test]
    fn rfc_enterprise_user_round_trips_with_manager_object() {
        let typed: User = serde_json::from_value(examples::enterprise_user()).unwrap();
        let ent = typed.enterprise.as_ref().unwrap();
        assert_eq!(
            ent.manager.as_ref().unwrap().display_name.as_deref(),
            Some("John Smith")
        );
        let mut want = examples::enterprise_user();
        want.as_object_mut().unwrap().remove("password");
        assert_eq!(serde_json::to_value(&typed).unwrap(), want);
        let v = user(one_line_addresses(examples::enterprise_user()));
        let view = UserView::from_resource(&v).unwrap();
        assert_eq!(
            view.manager_id.as_deref(),
            Some("26118915-6090-4610-87e4-49d8ca9f808d")
        );
    }

    #[test]
    fn rfc_group_round_trips_and_canonicalizes() {
        let typed: Group = serde_json::from_value(examples::group()).unwrap();
        assert_eq!(typed.members.len(), 2);
        assert_eq!(serde_json::to_value(&typed).unwrap(), examples::group());
        let v = canonicalize(&GROUP_RESOURCE, examples::group(), InputMode::Replace).unwrap();
        assert!(v.get("id").is_none() && v.get("meta").is_none());
        let view = GroupView::from_resource(&v).unwrap();
        assert_eq!(view.display_name, "Tour Guides");
        assert_eq!(
            view.member_ids,
            [
                "2819c223-7f76-453a-919d-413861904646",
                "902c246b-6245-4190-8e05-00816be7344a"
            ]
        );
    }

    #[test]
    fn typed_user_accepts_idp_quirks() {
        let u: User = serde_json::from_value(json!({
            "userName": "a",
            "active": "False",
            "addresses": null,
            "emails": {"value": "a@x.io", "primary": "true"},
            ENTERPRISE_USER_SCHEMA: {"manager": ["m1"], "badge": 7},
            "urn:example:ext": {"k": "v"},
        }))
        .unwrap();
        assert_eq!(u.active, Some(false));
        assert_eq!(u.emails[0].primary, Some(true));
        let ent = u.enterprise.as_ref().unwrap();
        assert_eq!(ent.manager.as_ref().unwrap().value.as_deref(), Some("m1"));
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], json!({"value": "m1"}));
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["badge"], 7);
        assert_eq!(v["urn:example:ext"], json!({"k": "v"}));
        let bare: User = serde_json::from_value(
            json!({"userName": "a", ENTERPRISE_USER_SCHEMA: {"manager": "m2"}}),
        )
        .unwrap();
        assert_eq!(
            bare.enterprise.unwrap().manager.unwrap().value.as_deref(),
            Some("m2")
        );
    }

    #[test]
    fn server_attributes_are_set_in_order() {
        let meta = Meta {
            resource_type: "User".into(),
            created: datetime!(2024-01-02 03:04:05 UTC),
            last_modified: datetime!(2024-01-02 05:04:05 +02:00),
            location: Meta::location_for("https://h/scim/v2/", &USER_RESOURCE, "u1"),
            version: 3,
        };
        let v = with_server_attributes(
            json!({"schemas": [USER_SCHEMA], "userName": "a", "id": "old", "meta": {}}),
            "u1",
            &meta,
        );
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["schemas", "id", "userName", "meta"]);
        assert_eq!(v["id"], "u1");
        assert_eq!(
            v["meta"],
            json!({
                "resourceType": "User",
                "created": "2024-01-02T03:04:05Z",
                "lastModified": "2024-01-02T03:04:05Z",
                "location": "https://h/scim/v2/Users/u1",
                "version": "W/\"3\"",
            })
        );
    }

    /// For every attribute and sub-attribute of `rt` whose type is text (string, reference,
    /// binary) and that a client may write: its path and a valid body holding `bad` there.
    fn text_leaves(rt: &ResourceType, bad: &Value) -> Vec<(String, Value)> {
        use crate::scim::schema::COMMON_ATTRIBUTES;
        let base = if rt.name == "User" {
            json!({"userName": "base@x.io"})
        } else {
            json!({"displayName": "G"})
        };
        let is_text =
            |t: AttrType| matches!(t, AttrType::String | AttrType::Reference | AttrType::Binary);
        let mut groups: Vec<(Option<&SchemaDef>, &[AttributeDef])> =
            vec![(None, rt.schema.attributes), (None, COMMON_ATTRIBUTES)];
        groups.extend(rt.extensions.iter().map(|e| (Some(*e), e.attributes)));
        let mut out = Vec::new();
        for (ext, attrs) in groups {
            for def in attrs
                .iter()
                .filter(|d| d.mutability != Mutability::ReadOnly)
            {
                let at = ext.map_or(def.name.to_owned(), |e| format!("{}:{}", e.id, def.name));
                let place = |v: Value| {
                    let mut b = base.clone();
                    match ext {
                        None => b[def.name] = v,
                        Some(e) => b[e.id] = json!({def.name: v}),
                    }
                    b
                };
                if def.ty == AttrType::Complex {
                    for sd in def.sub_attributes.iter().filter(|sd| is_text(sd.ty)) {
                        let el = json!({sd.name: bad});
                        let v = if def.multi_valued { json!([el]) } else { el };
                        out.push((format!("{at}.{}", sd.name), place(v)));
                    }
                } else if is_text(def.ty) {
                    out.push((at, place(bad.clone())));
                }
            }
        }
        out
    }

    #[test]
    fn a_control_character_in_any_text_attribute_is_refused_naming_it() {
        for (rt, least) in [(&USER_RESOURCE, 40), (&GROUP_RESOURCE, 5)] {
            for (what, bad) in crate::scim::schema::tests::FORBIDDEN {
                let cases = text_leaves(rt, &json!(bad));
                assert!(
                    cases.len() >= least,
                    "{} cases for {}",
                    cases.len(),
                    rt.name
                );
                for (at, body) in cases {
                    for mode in [InputMode::Create, InputMode::Replace] {
                        if crate::scim::schema::multi_line(&at)
                            && crate::scim::schema::only_line_breaks(bad)
                        {
                            // The postal address's free text keeps its line breaks.
                            assert!(
                                canonicalize(rt, body.clone(), mode).is_ok(),
                                "{what} at {at}"
                            );
                            continue;
                        }
                        let e = canonicalize(rt, body.clone(), mode).unwrap_err();
                        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{what} at {at}");
                        assert!(
                            e.detail.contains(&format!("'{at}'")),
                            "{what} at {at}: {}",
                            e.detail
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_number_boolean_or_object_for_any_text_attribute_is_refused_naming_it() {
        for rt in [&USER_RESOURCE, &GROUP_RESOURCE] {
            for wrong in [json!(1e40), json!(7), json!(false), json!({"k": "v"})] {
                for (at, body) in text_leaves(rt, &wrong) {
                    let e = canonicalize(rt, body, InputMode::Create).unwrap_err();
                    assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong} at {at}");
                    assert!(
                        e.detail.contains(&format!("'{at}' must be a string")),
                        "{wrong} at {at}: {}",
                        e.detail
                    );
                }
            }
        }
        // The two cases of the issue.
        let e = user_err(json!({"userName": "a", "externalId": 1e40}));
        assert!(e.detail.contains("'externalId'"), "{}", e.detail);
        let e = user_err(json!({"userName": "a", "emails": [{"value": 42}]}));
        assert!(e.detail.contains("'emails.value'"), "{}", e.detail);
    }

    #[test]
    fn the_idp_dialects_still_canonicalize() {
        // Entra: string booleans, nulls, an empty array, the Microsoft schema URI, `$ref: null`.
        let v = user(json!({
            "userName": "a@x.io",
            "active": "False",
            "emails": [{"value": "a@x.io", "primary": "True", "type": "work"}],
            "addresses": null,
            "roles": [],
            ENTERPRISE_USER_SCHEMA: {"manager": "m1", "employeeNumber": "20481"},
        }));
        assert_eq!(v["active"], json!(false));
        assert_eq!(v["emails"][0]["primary"], json!(true));
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], json!({"value": "m1"}));
        let g = canonicalize(
            &GROUP_RESOURCE,
            json!({"displayName": "G", "members": [{"$ref": null, "value": "u1"}]}),
            InputMode::Create,
        )
        .unwrap();
        assert_eq!(g["members"], json!([{"value": "u1"}]));
    }

    #[test]
    fn unknown_attributes_keep_their_types_but_not_control_characters() {
        // Types: unknown attributes are not checked (the schema says nothing of them), as before.
        let v = user(json!({
            "userName": "a",
            "favouriteNumber": 7,
            ENTERPRISE_USER_SCHEMA: {"badge": 7, "tags": ["a", 1]},
            "urn:example:ext:2.0:User": {"tier": 3},
            "emails": [{"value": "a@x.io", "verified": 1}],
        }));
        assert!(v.get("favouriteNumber").is_none());
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["badge"], 7);
        assert_eq!(v["urn:example:ext:2.0:User"]["tier"], 3);
        assert_eq!(v["emails"][0]["verified"], 1);
        // Text: what is kept must hold no control character, in values or names.
        for (body, at) in [
            (
                json!({ENTERPRISE_USER_SCHEMA: {"badge": "a\r\nb"}}),
                format!("'{ENTERPRISE_USER_SCHEMA}:badge'"),
            ),
            (
                json!({ENTERPRISE_USER_SCHEMA: {"tags": ["ok", "a\u{0}"]}}),
                format!("'{ENTERPRISE_USER_SCHEMA}:tags'"),
            ),
            (
                json!({"urn:example:ext:2.0:User": {"tier": {"name": "x\ny"}}}),
                "'urn:example:ext:2.0:User.tier.name'".to_owned(),
            ),
            (
                json!({"urn:example:ext:2.0:User": {"ti\ner": "gold"}}),
                "'urn:example:ext:2.0:User'".to_owned(),
            ),
            (
                json!({"urn:example:ext\n:2.0:User": {"tier": "gold"}}),
                "'the resource'".to_owned(),
            ),
            (
                json!({"emails": [{"value": "a@x.io", "note": "x\ty"}]}),
                "'emails.note'".to_owned(),
            ),
        ] {
            let mut body = body;
            body["userName"] = json!("a");
            let e = user_err(body.clone());
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{body}");
            assert!(e.detail.contains(&at), "{body}: {}", e.detail);
        }
        // An unknown plain attribute is dropped, as before, whatever it holds.
        let v = user(json!({"userName": "a", "favouriteColour": "blue\r\n"}));
        assert!(v.get("favouriteColour").is_none());
    }

    /// Every string and object key in `v`.
    fn texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| texts(i, out)),
            Value::Object(o) => {
                for (k, child) in o {
                    out.push(k.clone());
                    texts(child, out);
                }
            }
            _ => {}
        }
    }

    /// A JSON value built from known and unknown names and strings that may hold controls.
    fn body_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = "[a-z@.\r\n\t\u{0}\u{1b}\u{7f}\u{85}\u{2028} éש]{0,8}";
        let key = prop_oneof![
            Just("value".to_owned()),
            Just("type".to_owned()),
            Just("givenName".to_owned()),
            Just("primary".to_owned()),
            Just("department".to_owned()),
            Just("manager".to_owned()),
            text.prop_map(|s| s),
        ];
        let leaf = prop_oneof![
            text.prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::vec((key.clone(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever is accepted holds no control character, in any value or name.
        #[test]
        fn an_accepted_body_holds_no_control_character(
            fields in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::strategy::Just("userName"),
                        proptest::strategy::Just("displayName"),
                        proptest::strategy::Just("externalId"),
                        proptest::strategy::Just("name"),
                        proptest::strategy::Just("emails"),
                        proptest::strategy::Just("addresses"),
                        proptest::strategy::Just("members"),
                        proptest::strategy::Just("active"),
                        proptest::strategy::Just(ENTERPRISE_USER_SCHEMA),
                        proptest::strategy::Just("urn:example:ext:2.0:User"),
                        proptest::strategy::Just("nick"),
                    ],
                    body_value(),
                ),
                0..6,
            )
        ) {
            let mut body = Map::new();
            body.insert("userName".into(), json!("a@x.io"));
            body.insert("displayName".into(), json!("G"));
            for (k, v) in fields {
                body.insert(k.to_owned(), v);
            }
            for rt in [&USER_RESOURCE, &GROUP_RESOURCE] {
                if let Ok(v) = canonicalize(rt, Value::Object(body.clone()), InputMode::Create) {
                    let mut all = Vec::new();
                    texts(&v, &mut all);
                    for t in all {
                        proptest::prop_assert!(
                            !t.chars().any(crate::scim::schema::is_forbidden_char),
                            "{:?} kept in {}", t, v
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn user_view_defaults_and_primary_email_choice() {
        let v = UserView::from_resource(&json!({"userName": "a"})).unwrap();
        assert!(v.active);
        assert_eq!(v.primary_email(), None);
        let v = UserView::from_resource(&json!({
            "userName": "a",
            "active": false,
            "emails": [{"value": "h@x", "type": "home"}, {"value": "w@x", "type": "Work"}],
        }))
        .unwrap();
        assert!(!v.active);
        assert_eq!(v.primary_email(), Some("w@x"));
        let v = UserView::from_resource(&json!({
            "userName": "a",
            "emails": [{"value": "h@x", "type": "home"}, {"value": "w@x", "type": "work"}, {"value": "p@x", "primary": true}],
        }))
        .unwrap();
        assert_eq!(v.primary_email(), Some("p@x"));
        let v = UserView::from_resource(&json!({"userName": "a", "emails": [{"value": "o@x"}]}))
            .unwrap();
        assert_eq!(v.primary_email(), Some("o@x"));
        assert!(UserView::from_resource(&json!({"displayName": "a"})).is_err());
    }
}
