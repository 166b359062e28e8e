//! Attribute projection (RFC 7644 sections 3.4.2.5 and 3.9; RFC 7643 section 7 `returned`):
//! the `attributes` and `excludedAttributes` parameters applied to a canonical resource.
//!
//! Rules: `returned: always` attributes (`id`) and `schemas` are kept even when excluded or not
//! listed; `never` ones (`password`) are never returned; `request` ones only when listed in
//! `attributes`; `default` ones unless excluded, or unless `attributes` lists others. Names are
//! matched case-insensitively, may be URN-qualified, may name a sub-attribute (`name.givenName`,
//! `emails.value`) or a whole extension by its URN. `meta` is `default`, so `attributes=userName`
//! yields `schemas`, `id` and `userName` only. When both parameters are given (the RFC says they
//! should not be), `attributes` selects first and `excludedAttributes` then removes.
//!
//! Names that are well formed but unknown are kept and match nothing (so asking for an attribute
//! this server does not have is not an error); malformed names are 400 `invalidPath`, the error
//! RFC 7644 uses for malformed attribute paths.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::schema::{AttrRef, AttributeDef, ResourceType, Returned};

/// A parsed `attributes` / `excludedAttributes` pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    attributes: Vec<AttrRef>,
    excluded: Vec<AttrRef>,
}

/// What one reference points at, once resolved against a resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Attr {
        ext: Option<&'static str>,
        name: &'static str,
        sub: Option<&'static str>,
    },
    /// A whole extension object, named by its URN.
    Extension(&'static str),
    /// Not a schema attribute: matched against stored keys by its text, lowercased.
    Raw(String),
}

/// The resolved references of one parameter.
struct Targets(Vec<Target>);

impl Targets {
    fn resolve(rt: &ResourceType, refs: &[AttrRef]) -> Targets {
        Targets(
            refs.iter()
                .map(|r| {
                    if r.name.is_empty() {
                        if let Some(ext) = r.urn.as_deref().and_then(|u| rt.extension(u)) {
                            return Target::Extension(ext.id);
                        }
                    }
                    match rt.resolve(r) {
                        Ok(res) => Target::Attr {
                            ext: res.extension,
                            name: res.attr.name,
                            sub: res.sub.map(|s| s.name),
                        },
                        Err(_) => Target::Raw(r.to_string().to_ascii_lowercase()),
                    }
                })
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The whole attribute is named (directly or through its extension's URN).
    fn names_whole(&self, ext: Option<&str>, name: &str) -> bool {
        self.0.iter().any(|t| match t {
            Target::Attr {
                ext: e,
                name: n,
                sub: None,
            } => *e == ext && *n == name,
            Target::Extension(e) => Some(*e) == ext,
            _ => false,
        })
    }

    /// The sub-attributes of the attribute that are named.
    fn subs_of(&self, ext: Option<&str>, name: &str) -> Vec<&'static str> {
        self.0
            .iter()
            .filter_map(|t| match t {
                Target::Attr {
                    ext: e,
                    name: n,
                    sub: Some(s),
                } if *e == ext && *n == name => Some(*s),
                _ => None,
            })
            .collect()
    }

    fn names_raw(&self, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        self.0
            .iter()
            .any(|t| matches!(t, Target::Raw(r) if *r == key))
    }

    fn names_extension(&self, ext: &str) -> bool {
        self.0.iter().any(|t| match t {
            Target::Extension(e) => *e == ext,
            Target::Attr { ext: Some(e), .. } => *e == ext,
            Target::Raw(r) => r.starts_with(&ext.to_ascii_lowercase()),
            _ => false,
        })
    }
}

impl Projection {
    /// Parses the comma-separated parameters; whitespace around names and empty items are
    /// ignored.
    pub fn parse(
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Projection, ScimError> {
        Ok(Projection {
            attributes: parse_list(attributes)?,
            excluded: parse_list(excluded)?,
        })
    }

    /// True when neither parameter names anything: every `default` attribute is returned.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.excluded.is_empty()
    }

    pub fn attributes(&self) -> &[AttrRef] {
        &self.attributes
    }

    pub fn excluded(&self) -> &[AttrRef] {
        &self.excluded
    }

    /// True when no part of the top-level attribute `name` (plain or URN-qualified, or an
    /// extension URN) will be returned, so the caller need not load it (members of a group).
    pub fn excludes(&self, rt: &ResourceType, name: &str) -> bool {
        !self.wants(rt, name)
    }

    /// True when some part of the top-level attribute `name` will be returned.
    pub fn wants(&self, rt: &ResourceType, name: &str) -> bool {
        let Ok(r) = AttrRef::parse(name) else {
            return false;
        };
        let attrs = Targets::resolve(rt, &self.attributes);
        let excl = Targets::resolve(rt, &self.excluded);
        if r.name.is_empty() {
            if let Some(ext) = r.urn.as_deref().and_then(|u| rt.extension(u)) {
                let listed = attrs.is_empty() || attrs.names_extension(ext.id);
                return listed && !excl.0.contains(&Target::Extension(ext.id));
            }
        }
        match rt.resolve(&r) {
            Ok(res) => {
                let (ext, def) = (res.extension, res.attr);
                match def.returned {
                    Returned::Never => false,
                    Returned::Always => true,
                    _ => {
                        let listed = if attrs.is_empty() {
                            def.returned != Returned::Request
                        } else {
                            attrs.names_whole(ext, def.name)
                                || !attrs.subs_of(ext, def.name).is_empty()
                        };
                        listed && !excl.names_whole(ext, def.name)
                    }
                }
            }
            Err(_) => {
                let key = r.to_string();
                (attrs.is_empty() || attrs.names_raw(&key)) && !excl.names_raw(&key)
            }
        }
    }

    /// The resource as it should be returned.
    pub fn apply(&self, rt: &ResourceType, resource: &Value) -> Value {
        let Some(obj) = resource.as_object() else {
            return resource.clone();
        };
        let attrs = Targets::resolve(rt, &self.attributes);
        let excl = Targets::resolve(rt, &self.excluded);
        let mut out = Map::new();
        for (key, value) in obj {
            if key == "schemas" {
                out.insert(key.clone(), value.clone());
                continue;
            }
            if let Some(ext) = rt.extension(key) {
                let Some(ext_obj) = value.as_object() else {
                    continue;
                };
                let mut kept = Map::new();
                for (k, v) in ext_obj {
                    let projected = match ext.attribute(k) {
                        Some(def) => project(&attrs, &excl, Some(ext.id), def, v),
                        None => project_raw(&attrs, &excl, &format!("{}:{k}", ext.id), v),
                    };
                    if let Some(v) = projected {
                        kept.insert(k.clone(), v);
                    }
                }
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Object(kept));
                }
                continue;
            }
            let projected = match rt.core_attribute(key) {
                Some(def) => project(&attrs, &excl, None, def, value),
                None => project_raw(&attrs, &excl, key, value),
            };
            if let Some(v) = projected {
                out.insert(key.clone(), v);
            }
        }
        // `schemas` lists only what is still there.
        if let Some(Value::Array(schemas)) = out.get("schemas") {
            let kept: Vec<Value> = schemas
                .iter()
                .filter(|s| {
                    s.as_str().is_some_and(|s| {
                        rt.schema.id.eq_ignore_ascii_case(s)
                            || out.keys().any(|k| k.eq_ignore_ascii_case(s))
                    })
                })
                .cloned()
                .collect();
            out.insert("schemas".into(), Value::Array(kept));
        }
        Value::Object(out)
    }
}

fn parse_list(raw: Option<&str>) -> Result<Vec<AttrRef>, ScimError> {
    raw.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(AttrRef::parse)
        .collect()
}

/// One schema attribute's value after the `returned` rules and both parameters.
fn project(
    attrs: &Targets,
    excl: &Targets,
    ext: Option<&'static str>,
    def: &AttributeDef,
    value: &Value,
) -> Option<Value> {
    match def.returned {
        Returned::Never => return None,
        Returned::Always => return Some(value.clone()),
        Returned::Default | Returned::Request => {}
    }
    let mut value = if attrs.is_empty() {
        if def.returned == Returned::Request {
            return None;
        }
        value.clone()
    } else if attrs.names_whole(ext, def.name) {
        value.clone()
    } else {
        let subs = attrs.subs_of(ext, def.name);
        if subs.is_empty() {
            return None;
        }
        retain_subs(value, |k| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))?
    };
    if excl.names_whole(ext, def.name) {
        return None;
    }
    let never: Vec<&str> = def
        .sub_attributes
        .iter()
        .filter(|s| s.returned == Returned::Never)
        .map(|s| s.name)
        .collect();
    let dropped = excl.subs_of(ext, def.name);
    if !dropped.is_empty() || !never.is_empty() {
        value = retain_subs(&value, |k| {
            !dropped
                .iter()
                .chain(never.iter())
                .any(|s| s.eq_ignore_ascii_case(k))
        })?;
    }
    Some(value)
}

/// A stored key the schema does not define: treated as `returned: default`.
fn project_raw(attrs: &Targets, excl: &Targets, key: &str, value: &Value) -> Option<Value> {
    if !attrs.is_empty() && !attrs.names_raw(key) {
        return None;
    }
    if excl.names_raw(key) {
        return None;
    }
    Some(value.clone())
}

/// Keeps the sub-attributes of a complex value (or of each element of a multi-valued one) for
/// which `keep` holds; elements left empty are dropped, and an empty result is `None`.
fn retain_subs(value: &Value, keep: impl Fn(&str) -> bool) -> Option<Value> {
    let one = |v: &Value| -> Option<Value> {
        let obj = v.as_object()?;
        let kept: Map<String, Value> = obj
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match value {
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(one).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(_) => one(value),
        // A simple value has no sub-attributes to keep.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::resource::examples;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_RESOURCE, USER_RESOURCE, USER_SCHEMA};
    use crate::scim::ScimType;
    use proptest::prelude::*;
    use serde_json::json;

    fn stored_user() -> Value {
        // The stored form: the RFC example without its password, with the enterprise extension.
        let mut u = examples::enterprise_user();
        u.as_object_mut().unwrap().remove("password");
        u
    }

    fn project(attributes: Option<&str>, excluded: Option<&str>) -> Value {
        Projection::parse(attributes, excluded)
            .unwrap()
            .apply(&USER_RESOURCE, &stored_user())
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn empty_projection_returns_every_default_attribute() {
        let p = Projection::parse(None, Some(" , ")).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.apply(&USER_RESOURCE, &stored_user()), stored_user());
    }

    #[test]
    fn password_is_never_returned_even_when_asked_for() {
        let with_password = examples::full_user();
        let p = Projection::parse(Some("password,userName"), None).unwrap();
        let v = p.apply(&USER_RESOURCE, &with_password);
        assert_eq!(keys(&v), ["schemas", "id", "userName"]);
        let v = Projection::default().apply(&USER_RESOURCE, &with_password);
        assert!(v.get("password").is_none());
        assert!(Projection::default().excludes(&USER_RESOURCE, "password"));
    }

    #[test]
    fn attributes_returns_id_schemas_and_the_listed_attributes_only() {
        let v = project(Some("userName"), None);
        assert_eq!(keys(&v), ["schemas", "id", "userName"]);
        assert_eq!(v["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn id_and_schemas_survive_exclusion() {
        let v = project(None, Some("id,schemas,meta"));
        assert_eq!(v["id"], "2819c223-7f76-453a-919d-413861904646");
        assert!(v.get("schemas").is_some());
        assert!(v.get("meta").is_none());
    }

    #[test]
    fn sub_attributes_select_parts_of_complex_and_multi_valued_attributes() {
        let v = project(Some("name.givenName, emails.value"), None);
        assert_eq!(v["name"], json!({"givenName": "Barbara"}));
        assert_eq!(
            v["emails"],
            json!([{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}])
        );
        let v = project(None, Some("name.familyName,emails.type,EMAILS.PRIMARY"));
        assert!(v["name"].get("familyName").is_none());
        assert_eq!(v["name"]["givenName"], "Barbara");
        assert_eq!(v["emails"][0], json!({"value": "bjensen@example.com"}));
    }

    #[test]
    fn names_are_case_insensitive_and_may_be_urn_qualified() {
        let v = project(
            Some("USERNAME,urn:ietf:params:scim:schemas:core:2.0:User:displayName"),
            None,
        );
        assert_eq!(keys(&v), ["schemas", "id", "userName", "displayName"]);
    }

    #[test]
    fn extension_attributes_by_qualified_or_plain_name() {
        let v = project(
            Some(&format!("{ENTERPRISE_USER_SCHEMA}:manager.value")),
            None,
        );
        assert_eq!(
            v[ENTERPRISE_USER_SCHEMA],
            json!({"manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}})
        );
        assert_eq!(v["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
        let v = project(Some("department"), None);
        assert_eq!(
            v[ENTERPRISE_USER_SCHEMA],
            json!({"department": "Tour Operations"})
        );
        let v = project(Some(ENTERPRISE_USER_SCHEMA), None);
        assert_eq!(
            v[ENTERPRISE_USER_SCHEMA],
            stored_user()[ENTERPRISE_USER_SCHEMA]
        );
    }

    #[test]
    fn excluding_a_whole_extension_by_urn_drops_it_from_schemas_too() {
        let v = project(None, Some(ENTERPRISE_USER_SCHEMA));
        assert!(v.get(ENTERPRISE_USER_SCHEMA).is_none());
        assert_eq!(v["schemas"], json!([USER_SCHEMA]));
        assert_eq!(v["userName"], "bjensen@example.com");
        let v = project(None, Some(&format!("{ENTERPRISE_USER_SCHEMA}:manager")));
        assert!(v[ENTERPRISE_USER_SCHEMA].get("manager").is_none());
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["department"], "Tour Operations");
    }

    #[test]
    fn excluded_members_are_not_wanted_so_the_store_can_skip_them() {
        let p = Projection::parse(None, Some("members")).unwrap();
        assert!(p.excludes(&GROUP_RESOURCE, "members"));
        assert!(!p.excludes(&GROUP_RESOURCE, "displayName"));
        assert!(p.wants(&GROUP_RESOURCE, "id"));
        let p = Projection::parse(Some("displayName"), None).unwrap();
        assert!(p.excludes(&GROUP_RESOURCE, "members"));
        let p = Projection::parse(Some("members.value"), None).unwrap();
        assert!(p.wants(&GROUP_RESOURCE, "members"));
        assert!(Projection::default().wants(&GROUP_RESOURCE, "members"));
        let p = Projection::parse(None, Some(ENTERPRISE_USER_SCHEMA)).unwrap();
        assert!(p.excludes(&USER_RESOURCE, ENTERPRISE_USER_SCHEMA));
        assert!(p.excludes(&USER_RESOURCE, "manager"));
        let g = p.apply(&GROUP_RESOURCE, &examples::group());
        assert!(g.get("members").is_some());
        let g = Projection::parse(None, Some("members"))
            .unwrap()
            .apply(&GROUP_RESOURCE, &examples::group());
        assert_eq!(keys(&g), ["schemas", "id", "displayName", "meta"]);
    }

    #[test]
    fn unknown_names_match_nothing_and_malformed_names_are_invalid_path() {
        let v = project(Some("favouriteColour"), None);
        assert_eq!(keys(&v), ["schemas", "id"]);
        let e = Projection::parse(Some("userName,emails[type eq \"work\"]"), None).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        assert!(Projection::parse(None, Some("1abc")).is_err());
    }

    #[test]
    fn unknown_stored_keys_behave_as_default_attributes() {
        let r = json!({
            "schemas": [USER_SCHEMA, "urn:example:ext"],
            "id": "1",
            "userName": "a",
            "urn:example:ext": {"k": "v"},
        });
        let v = Projection::default().apply(&USER_RESOURCE, &r);
        assert_eq!(v, r);
        let v = Projection::parse(Some("userName"), None)
            .unwrap()
            .apply(&USER_RESOURCE, &r);
        assert_eq!(v["schemas"], json!([USER_SCHEMA]));
    }

    const NAMES: &[&str] = &[
        "id",
        "ID",
        "schemas",
        "userName",
        "name",
        "name.givenName",
        "emails",
        "emails.value",
        "meta",
        "meta.version",
        "groups",
        "password",
        "active",
        "externalId",
        "nickName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "urn:ietf:params:scim:schemas:core:2.0:User:id",
        "unknownThing",
    ];

    proptest! {
        #[test]
        fn projection_never_drops_id(
            attrs in proptest::sample::subsequence(NAMES, 0..=NAMES.len()),
            excl in proptest::sample::subsequence(NAMES, 0..=NAMES.len()),
        ) {
            let a = attrs.join(",");
            let e = excl.join(",");
            let p = Projection::parse(Some(&a), Some(&e)).unwrap();
            let v = p.apply(&USER_RESOURCE, &stored_user());
            prop_assert_eq!(&v["id"], &json!("2819c223-7f76-453a-919d-413861904646"));
            prop_assert!(v.get("schemas").is_some());
            prop_assert!(v.get("password").is_none());
            prop_assert!(p.wants(&USER_RESOURCE, "id"));
        }
    }
}
