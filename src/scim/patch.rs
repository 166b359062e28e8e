//! The PATCH engine (RFC 7644 section 3.5.2: `add` 3.5.2.1, `remove` 3.5.2.2, `replace`
//! 3.5.2.3) with the Okta and Entra dialects of `scim-interop.md` ("PATCH").
//!
//! Operations apply in order to a copy of the resource; the first failure returns the error
//! and the caller's resource is untouched (atomicity). Every value written goes through
//! [`schema::coerce_at`](super::schema::coerce_at), in every form an operation takes (a path
//! value, a no-path object, a value-filtered element, the `type` a `type eq` filter creates):
//! its type is checked (a number for a string attribute is `invalidValue`), no string in it may
//! hold a control character, and booleans sent as strings, single values for multi-valued
//! attributes and bare `manager` ids take their canonical shape. Errors name the attribute.
//!
//! Choices where the RFC is silent or the IdPs depart from it:
//! - a `replace`/`add` whose value filter is a simple `type eq "..."` matching nothing creates
//!   that element (Entra); any other filter matching nothing is `noTarget`;
//! - a `remove` whose filter matches nothing succeeds without change (Okta and Entra retry
//!   membership removals; failing them would stall provisioning);
//! - removing, or replacing with null, a required attribute is `mutability` (RFC 7644 section
//!   3.5.2: an operation incompatible with an attribute's mutability or current state; table 9);
//! - read-only sub-attributes inside a written value (`members[].display`,
//!   `manager.displayName`) are ignored, as read-only input is on POST and PUT; a path that
//!   targets a read-only attribute with a different value is `mutability`;
//! - a single-valued complex attribute is merged sub-attribute by sub-attribute (RFC 7644
//!   3.5.2.3), except that a new `value` (a new manager) replaces the whole object, so no stale
//!   `displayName` or `$ref` survives.

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{as_bool, as_text, get_ci, matches_element, CompareOp, Filter};
use super::path::Path;
use super::schema::{
    coerce_at, coerce_single_at, AttrType, AttributeDef, Mutability, ResourceType, PATCH_OP_SCHEMA,
};

/// The `op` of a PATCH operation, case-insensitive on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchOpKind {
    Add,
    Replace,
    Remove,
}

impl PatchOpKind {
    pub fn parse(s: &str) -> Option<PatchOpKind> {
        let s = s.trim();
        [PatchOpKind::Add, PatchOpKind::Replace, PatchOpKind::Remove]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Replace => "replace",
            PatchOpKind::Remove => "remove",
        }
    }
}

/// One operation. `value` is `Some(Value::Null)` when the client sent `"value": null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchOperation {
    pub op: PatchOpKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// A PATCH request body (`urn:ietf:params:scim:api:messages:2.0:PatchOp`). Keys are matched
/// case-insensitively (`Operations`, `operations`, `op`, `Op`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatchRequest {
    pub schemas: Vec<String>,
    #[serde(rename = "Operations")]
    pub operations: Vec<PatchOperation>,
}

fn key_ci<'v>(obj: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

impl PatchOperation {
    /// Reads one operation; malformed ones are `invalidSyntax`.
    pub fn from_json(v: &Value) -> Result<PatchOperation, ScimError> {
        let Value::Object(obj) = v else {
            return Err(ScimError::invalid_syntax(
                "each PATCH operation must be an object with 'op', 'path' and 'value'",
            ));
        };
        let op = match key_ci(obj, "op") {
            Some(Value::String(s)) => PatchOpKind::parse(s).ok_or_else(|| {
                ScimError::invalid_syntax(format!(
                    "unknown PATCH op '{s}'; expected 'add', 'replace' or 'remove'"
                ))
            })?,
            _ => {
                return Err(ScimError::invalid_syntax(
                    "a PATCH operation needs an 'op' of 'add', 'replace' or 'remove'",
                ))
            }
        };
        let path = match key_ci(obj, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ScimError::invalid_path("'path' must be a string")),
        };
        Ok(PatchOperation {
            op,
            path,
            value: key_ci(obj, "value").cloned(),
        })
    }
}

impl PatchRequest {
    /// Reads a request body; malformed ones are `invalidSyntax`. A missing `schemas` is
    /// tolerated; [`apply_patch`] rejects one that does not list the PatchOp URN.
    pub fn from_json(v: &Value) -> Result<PatchRequest, ScimError> {
        let Value::Object(obj) = v else {
            return Err(ScimError::invalid_syntax(
                "a PATCH body must be a JSON object with 'schemas' and 'Operations'",
            ));
        };
        let schemas = match key_ci(obj, "schemas") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|s| {
                    s.as_str().map(str::to_owned).ok_or_else(|| {
                        ScimError::invalid_syntax("'schemas' must be an array of strings")
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ScimError::invalid_syntax(
                    "'schemas' must be an array of strings",
                ))
            }
        };
        let operations = match key_ci(obj, "Operations") {
            Some(Value::Array(ops)) => ops
                .iter()
                .map(PatchOperation::from_json)
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ScimError::invalid_syntax(
                    "'Operations' must be an array of operations",
                ))
            }
            None => {
                return Err(ScimError::invalid_syntax(
                    "a PATCH body needs an 'Operations' array",
                ))
            }
        };
        Ok(PatchRequest {
            schemas,
            operations,
        })
    }
}

impl<'de> Deserialize<'de> for PatchRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        PatchRequest::from_json(&v).map_err(|e| serde::de::Error::custom(e.detail))
    }
}

impl<'de> Deserialize<'de> for PatchOperation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        PatchOperation::from_json(&v).map_err(|e| serde::de::Error::custom(e.detail))
    }
}

/// The result of a PATCH: the new resource, whether it differs from the old one, and what
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOutcome {
    pub resource: Value,
    pub changed: bool,
    pub summary: ChangeSummary,
}

/// What a PATCH changed; empty when nothing did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSummary {
    /// Top-level attributes whose value changed, canonical names; extension attributes as
    /// `urn:...:User:manager`.
    pub attributes: BTreeSet<String>,
    /// Member ids present after and not before, in their order in the new list.
    pub members_added: Vec<String>,
    /// Member ids present before and not after, in their order in the old list.
    pub members_removed: Vec<String>,
}

impl ChangeSummary {
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
            && self.members_added.is_empty()
            && self.members_removed.is_empty()
    }
}

/// Applies `request` to `resource` (a canonical JSON object of resource type `rt`). Atomic:
/// on error nothing is applied. Errors name the failing operation (1-based).
pub fn apply_patch(
    rt: &ResourceType,
    resource: &Value,
    request: &PatchRequest,
) -> Result<PatchOutcome, ScimError> {
    if !request.schemas.is_empty()
        && !request
            .schemas
            .iter()
            .any(|s| s.trim().eq_ignore_ascii_case(PATCH_OP_SCHEMA))
    {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body's 'schemas' must be [\"{PATCH_OP_SCHEMA}\"]"
        )));
    }
    if request.operations.is_empty() {
        return Err(ScimError::invalid_syntax(
            "a PATCH body needs at least one operation in 'Operations'",
        ));
    }
    let Some(original) = resource.as_object() else {
        return Err(ScimError::internal(
            "the resource to patch is not a JSON object",
        ));
    };
    let mut work = original.clone();
    for (i, op) in request.operations.iter().enumerate() {
        apply_op(rt, &mut work, op).map_err(|e| in_operation(e, i, op))?;
    }
    tidy(rt, original, &mut work);
    let changed = &work != original;
    let summary = if changed {
        summarize(rt, original, &work)
    } else {
        ChangeSummary::default()
    };
    Ok(PatchOutcome {
        resource: Value::Object(work),
        changed,
        summary,
    })
}

fn in_operation(e: ScimError, i: usize, op: &PatchOperation) -> ScimError {
    // The path is echoed; a control character in it (a filter's string may hold one) is
    // written as an escape, so the detail never carries one into a log line.
    let path = op
        .path
        .as_deref()
        .map(|p| {
            let shown: String = p
                .chars()
                .map(|c| {
                    if super::schema::is_forbidden_char(c) {
                        format!("\\u{{{:04x}}}", u32::from(c))
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            format!(" '{shown}'")
        })
        .unwrap_or_default();
    ScimError {
        detail: format!(
            "operation {} ({}{path}): {}",
            i + 1,
            op.op.as_str(),
            e.detail
        ),
        ..e
    }
}

type Obj = Map<String, Value>;

fn apply_op(rt: &ResourceType, work: &mut Obj, op: &PatchOperation) -> Result<(), ScimError> {
    let path = op.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
    match (op.op, path) {
        (PatchOpKind::Remove, None) => Err(ScimError::no_target(
            "'remove' needs a 'path' naming what to remove",
        )),
        (PatchOpKind::Remove, Some(p)) => remove(rt, work, &Path::parse(p)?, op.value.as_ref()),
        (kind, None) => match &op.value {
            Some(Value::Object(obj)) => write_object(rt, work, kind, None, obj),
            Some(_) => Err(ScimError::invalid_value(format!(
                "'{}' without a 'path' needs a 'value' object of attributes",
                kind.as_str()
            ))),
            None => Err(ScimError::invalid_value(format!(
                "'{}' needs a 'value'",
                kind.as_str()
            ))),
        },
        (kind, Some(p)) => {
            let path = Path::parse(p)?;
            let Some(value) = op.value.clone() else {
                return Err(ScimError::invalid_value(format!(
                    "'{}' needs a 'value'",
                    kind.as_str()
                )));
            };
            write_path(rt, work, kind, &path, value)
        }
    }
}

/// `add`/`replace` without a path, or with a path that is an extension URN: each key of
/// `obj` is a path (plain, dotted or URN-qualified) or an extension URN whose value is an
/// object of that extension's attributes.
fn write_object(
    rt: &ResourceType,
    work: &mut Obj,
    kind: PatchOpKind,
    urn: Option<&str>,
    obj: &Obj,
) -> Result<(), ScimError> {
    for (k, v) in obj {
        // `schemas` is the server's to maintain, at the top level and inside an extension
        // object alike (clients serialize extension objects with their own `schemas`).
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let key = match urn {
            Some(u) => format!("{u}:{k}"),
            None => k.clone(),
        };
        let path = Path::parse(&key)?;
        write_path(rt, work, kind, &path, v.clone())?;
    }
    Ok(())
}

fn write_path(
    rt: &ResourceType,
    work: &mut Obj,
    kind: PatchOpKind,
    path: &Path,
    value: Value,
) -> Result<(), ScimError> {
    if path.attr.name.is_empty() {
        let urn = path.attr.urn.as_deref().unwrap_or_default();
        if !rt.knows_schema(urn) {
            return Err(ScimError::invalid_path(format!(
                "unknown schema '{urn}' for resource type {}",
                rt.name
            )));
        }
        return match value {
            Value::Object(inner) => write_object(rt, work, kind, Some(urn), &inner),
            Value::Null => Ok(()),
            other => Err(ScimError::invalid_value(format!(
                "the value of '{urn}' must be an object of its attributes, not {}",
                super::schema::kind(&other)
            ))),
        };
    }
    let r = path.resolve(rt)?;
    let at = attr_path(r.extension, r.attr);
    let container = container_mut(work, r.extension)?;
    canonicalize_key(container, r.attr.name);
    match (r.filter, r.sub) {
        (None, None) => write_attr(container, r.attr, kind, value, &at),
        (None, Some(sd)) => write_sub_everywhere(container, r.attr, sd, kind, value, &at),
        (Some(f), sub) => write_filtered(container, r.attr, f, sub, kind, value, &at),
    }
}

/// An attribute's path for error details: `emails`, `urn:...:enterprise:2.0:User:manager`.
fn attr_path(extension: Option<&str>, def: &AttributeDef) -> String {
    match extension {
        Some(urn) => format!("{urn}:{}", def.name),
        None => def.name.to_owned(),
    }
}

/// A sub-attribute's path for error details: `emails.value`.
fn sub_path(at: &str, sd: &AttributeDef) -> String {
    format!("{at}.{}", sd.name)
}

/// The object holding an attribute: the resource, or its extension object (created empty;
/// [`tidy`] removes it again if it stays empty).
fn container_mut<'w>(work: &'w mut Obj, ext: Option<&str>) -> Result<&'w mut Obj, ScimError> {
    let Some(urn) = ext else {
        return Ok(work);
    };
    canonicalize_key(work, urn);
    let slot = work
        .entry(urn.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| ScimError::internal("extension slot is not an object"))
}

/// Renames a key spelled in another case to its canonical spelling.
fn canonicalize_key(obj: &mut Obj, name: &str) {
    if obj.contains_key(name) {
        return;
    }
    let other = obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned();
    if let Some(k) = other {
        if let Some(v) = obj.shift_remove(&k) {
            obj.insert(name.to_owned(), v);
        }
    }
}

/// Coerces a value for writing (type and text checked; errors name `at`) and drops read-only
/// sub-attributes from complex values.
fn coerce_write(
    def: &'static AttributeDef,
    value: Value,
    at: &str,
) -> Result<Option<Value>, ScimError> {
    let v = coerce_at(def, value, at)?;
    Ok(v.and_then(|v| strip_read_only(def, v)))
}

fn coerce_write_element(
    def: &'static AttributeDef,
    value: Value,
    at: &str,
) -> Result<Option<Value>, ScimError> {
    let v = coerce_single_at(def, value, at)?;
    Ok(v.and_then(|v| strip_read_only_element(def, v)))
}

fn strip_read_only(def: &'static AttributeDef, v: Value) -> Option<Value> {
    if def.ty != AttrType::Complex {
        return Some(v);
    }
    match v {
        Value::Array(items) => {
            let out: Vec<Value> = items
                .into_iter()
                .filter_map(|el| strip_read_only_element(def, el))
                .collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => strip_read_only_element(def, other),
    }
}

fn strip_read_only_element(def: &'static AttributeDef, v: Value) -> Option<Value> {
    match v {
        Value::Object(mut o) => {
            o.retain(|k, _| {
                def.sub(k)
                    .is_none_or(|sd| sd.mutability != Mutability::ReadOnly)
            });
            (!o.is_empty()).then_some(Value::Object(o))
        }
        other => Some(other),
    }
}

fn mutability_error(def: &AttributeDef, what: &str) -> ScimError {
    ScimError::mutability(format!(
        "'{}' is {}; {what}",
        def.name,
        def.mutability.as_str()
    ))
}

/// Unassigns a top-level attribute (remove, or replace with null).
fn unassign(container: &mut Obj, def: &'static AttributeDef) -> Result<(), ScimError> {
    if def.required {
        return Err(ScimError::mutability(format!(
            "'{}' is required and cannot be removed",
            def.name
        )));
    }
    if container.get(def.name).is_none() {
        return Ok(());
    }
    if matches!(def.mutability, Mutability::ReadOnly | Mutability::Immutable) {
        return Err(mutability_error(def, "it cannot be removed"));
    }
    container.shift_remove(def.name);
    Ok(())
}

/// `add`/`replace` of a whole attribute (`"path": "emails"`, `"members"`, `"active"`, ...).
fn write_attr(
    container: &mut Obj,
    def: &'static AttributeDef,
    kind: PatchOpKind,
    value: Value,
    at: &str,
) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        // Okta echoes the group's own `id` in a rename: accept a value equal to the current.
        let new = coerce_at(def, value, at)?;
        if new.as_ref() == container.get(def.name) || (new.is_none() && kind == PatchOpKind::Add) {
            return Ok(());
        }
        return Err(mutability_error(def, "it cannot be changed"));
    }
    let new = coerce_write(def, value, at)?;
    if def.mutability == Mutability::Immutable {
        if let Some(cur) = container.get(def.name) {
            if new.as_ref() != Some(cur) {
                return Err(mutability_error(def, "it already has a value"));
            }
        }
    }
    let Some(new) = new else {
        return match kind {
            PatchOpKind::Add => Ok(()),
            _ => unassign(container, def),
        };
    };
    if def.multi_valued {
        let Value::Array(items) = new else {
            return Err(ScimError::internal(
                "coerced multi-valued value is not an array",
            ));
        };
        match kind {
            PatchOpKind::Add => append_unique(container, def, items),
            _ => {
                let all: Vec<usize> = (0..items.len()).collect();
                let mut items = items;
                fix_primary(&mut items, &all);
                container.insert(def.name.to_owned(), Value::Array(items));
            }
        }
        Ok(())
    } else if def.ty == AttrType::Complex {
        merge_complex(container, def, new)
    } else {
        container.insert(def.name.to_owned(), new);
        Ok(())
    }
}

/// Whether elements of `def` are identified by their `value` (group members, whose `value` is
/// immutable) rather than by equality of the whole element.
fn identified_by_value(def: &'static AttributeDef) -> bool {
    def.sub("value")
        .is_some_and(|v| v.mutability == Mutability::Immutable)
}

fn element_value_key(def: &'static AttributeDef, el: &Value) -> Option<String> {
    let vd = def.sub("value")?;
    let v = as_text(get_ci(el, "value")?)?;
    Some(if vd.case_exact { v } else { v.to_lowercase() })
}

/// `add` to a multi-valued attribute: appends the values not already present.
fn append_unique(container: &mut Obj, def: &'static AttributeDef, items: Vec<Value>) {
    let slot = container
        .entry(def.name.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        let old = slot.take();
        *slot = Value::Array(if old.is_null() { vec![] } else { vec![old] });
    }
    let Some(list) = slot.as_array_mut() else {
        return;
    };
    let mut added = Vec::new();
    if identified_by_value(def) {
        let mut seen: HashSet<String> = list
            .iter()
            .filter_map(|el| element_value_key(def, el))
            .collect();
        for it in items {
            let fresh = match element_value_key(def, &it) {
                Some(k) => seen.insert(k),
                None => !list.contains(&it),
            };
            if fresh {
                added.push(list.len());
                list.push(it);
            }
        }
    } else {
        for it in items {
            if !list.contains(&it) {
                added.push(list.len());
                list.push(it);
            }
        }
    }
    fix_primary(list, &added);
    if list.is_empty() {
        container.shift_remove(def.name);
    }
}

/// `add`/`replace` of a single-valued complex attribute: sub-attributes are merged; a new
/// `value` replaces the whole object.
fn merge_complex(
    container: &mut Obj,
    def: &'static AttributeDef,
    new: Value,
) -> Result<(), ScimError> {
    let Value::Object(new_obj) = new else {
        return Err(ScimError::invalid_value(format!(
            "'{}' must be an object",
            def.name
        )));
    };
    let cur = container
        .get(def.name)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let identity_changes = def.sub("value").is_some()
        && new_obj.get("value").is_some()
        && cur.get("value") != new_obj.get("value");
    let mut out = if identity_changes { Map::new() } else { cur };
    for (k, v) in new_obj {
        if let Some(sd) = def.sub(&k) {
            check_sub_write(sd, out.get(sd.name), Some(&v))?;
        }
        out.insert(k, v);
    }
    container.insert(def.name.to_owned(), Value::Object(out));
    Ok(())
}

/// Refuses to change a read-only sub-attribute, or an immutable one that has a value.
fn check_sub_write(
    sd: &AttributeDef,
    cur: Option<&Value>,
    new: Option<&Value>,
) -> Result<(), ScimError> {
    if cur == new {
        return Ok(());
    }
    match sd.mutability {
        Mutability::ReadOnly => Err(mutability_error(sd, "it cannot be changed")),
        Mutability::Immutable if cur.is_some() => {
            Err(mutability_error(sd, "it already has a value"))
        }
        _ => Ok(()),
    }
}

/// Sets (or, for `replace` with null, removes) sub-attribute `sd` of one complex value.
fn set_sub(
    el: &mut Value,
    sd: &AttributeDef,
    new: Option<Value>,
    kind: PatchOpKind,
) -> Result<(), ScimError> {
    let Some(m) = el.as_object_mut() else {
        return Err(ScimError::internal("complex value is not an object"));
    };
    canonicalize_key(m, sd.name);
    if new.is_none() && kind == PatchOpKind::Add {
        return Ok(());
    }
    check_sub_write(sd, m.get(sd.name), new.as_ref())?;
    match new {
        Some(v) => {
            m.insert(sd.name.to_owned(), v);
        }
        None => {
            m.shift_remove(sd.name);
        }
    }
    Ok(())
}

/// `name.givenName`, or `emails.value` without a filter (every element).
fn write_sub_everywhere(
    container: &mut Obj,
    def: &'static AttributeDef,
    sd: &AttributeDef,
    kind: PatchOpKind,
    value: Value,
    at: &str,
) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Err(mutability_error(def, "it cannot be changed"));
    }
    let new = coerce_at(sd, value, &sub_path(at, sd))?;
    if def.multi_valued {
        let list = match container.get_mut(def.name).and_then(Value::as_array_mut) {
            Some(l) if !l.is_empty() => l,
            _ => {
                return Err(ScimError::no_target(format!(
                    "'{}' has no values to set '{}' on; select one with a filter such as \
                     {}[type eq \"work\"].{}",
                    def.name, sd.name, def.name, sd.name
                )))
            }
        };
        for el in list.iter_mut() {
            set_sub(el, sd, new.clone(), kind)?;
        }
        list.retain(|el| el.as_object().is_none_or(|o| !o.is_empty()));
        fix_primary(list, &[]);
        if list.is_empty() {
            container.shift_remove(def.name);
        }
        return Ok(());
    }
    let slot = container
        .entry(def.name.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    set_sub(slot, sd, new, kind)?;
    if slot.as_object().is_some_and(Map::is_empty) {
        container.shift_remove(def.name);
    }
    Ok(())
}

/// The `t` of a filter that is exactly `type eq "t"`.
fn simple_type_eq(f: &Filter) -> Option<&str> {
    match f {
        Filter::Compare {
            attr,
            op: CompareOp::Eq,
            value: Value::String(t),
        } if attr.urn.is_none() && attr.sub.is_none() && attr.name.eq_ignore_ascii_case("type") => {
            Some(t)
        }
        _ => None,
    }
}

/// `emails[type eq "work"].value`, `members[value eq "x"]`, `addresses[type eq "work"]`.
fn write_filtered(
    container: &mut Obj,
    def: &'static AttributeDef,
    filter: &Filter,
    sub: Option<&AttributeDef>,
    kind: PatchOpKind,
    value: Value,
    at: &str,
) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Err(mutability_error(def, "it cannot be changed"));
    }
    let mut list = match container.shift_remove(def.name) {
        Some(Value::Array(l)) => l,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![other],
    };
    let result = write_filtered_list(&mut list, def, filter, sub, kind, value, at);
    if !list.is_empty() {
        container.insert(def.name.to_owned(), Value::Array(list));
    }
    result
}

fn write_filtered_list(
    list: &mut Vec<Value>,
    def: &'static AttributeDef,
    filter: &Filter,
    sub: Option<&AttributeDef>,
    kind: PatchOpKind,
    value: Value,
    at: &str,
) -> Result<(), ScimError> {
    let matched: Vec<usize> = list
        .iter()
        .enumerate()
        .filter(|(_, el)| matches_element(filter, def, el))
        .map(|(i, _)| i)
        .collect();
    if matched.is_empty() {
        let (Some(t), Some(type_def)) = (simple_type_eq(filter), def.sub("type")) else {
            return Err(ScimError::no_target(format!(
                "no value of '{}' matches [{filter}]",
                def.name
            )));
        };
        // Entra: a `type eq` filter that matches nothing creates the element. The filter's
        // value becomes a stored value, so it is checked as one.
        let mut el = Map::new();
        let type_value = coerce_at(
            type_def,
            Value::String(t.to_owned()),
            &sub_path(at, type_def),
        )?
        .unwrap_or_else(|| Value::String(t.to_owned()));
        el.insert(type_def.name.to_owned(), type_value);
        match sub {
            Some(sd) => {
                check_sub_write(sd, None, Some(&value))?;
                match coerce_at(sd, value, &sub_path(at, sd))? {
                    Some(v) => {
                        el.insert(sd.name.to_owned(), v);
                    }
                    None => return Ok(()),
                }
            }
            None => match coerce_write_element(def, value, at)? {
                Some(Value::Object(o)) => {
                    for (k, v) in o {
                        el.insert(k, v);
                    }
                }
                Some(_) => {
                    return Err(ScimError::invalid_value(format!(
                        "a value of '{}' must be an object",
                        def.name
                    )))
                }
                None => return Ok(()),
            },
        }
        list.push(Value::Object(el));
        let last = list.len() - 1;
        fix_primary(list, &[last]);
        return Ok(());
    }
    match sub {
        Some(sd) => {
            let new = coerce_at(sd, value, &sub_path(at, sd))?;
            for &i in &matched {
                if let Some(el) = list.get_mut(i) {
                    set_sub(el, sd, new.clone(), kind)?;
                }
            }
            list.retain(|el| el.as_object().is_none_or(|o| !o.is_empty()));
        }
        None => {
            let new = coerce_write_element(def, value, at)?;
            match (kind, new) {
                (_, Some(Value::Object(new_obj))) => {
                    for &i in &matched {
                        let Some(el) = list.get_mut(i) else { continue };
                        if kind == PatchOpKind::Replace {
                            // RFC 7644 3.5.2.3: matching records are replaced.
                            if let Some(old) = el.as_object() {
                                for (k, v) in old {
                                    if let Some(sd) = def.sub(k) {
                                        check_sub_write(sd, Some(v), new_obj.get(sd.name))?;
                                    }
                                }
                            }
                            *el = Value::Object(new_obj.clone());
                        } else {
                            for (k, v) in &new_obj {
                                match def.sub(k) {
                                    Some(sd) => set_sub(el, sd, Some(v.clone()), kind)?,
                                    None => {
                                        if let Some(m) = el.as_object_mut() {
                                            m.insert(k.clone(), v.clone());
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                (_, Some(_)) => {
                    return Err(ScimError::invalid_value(format!(
                        "a value of '{}' must be an object",
                        def.name
                    )))
                }
                (PatchOpKind::Add, None) => {}
                (_, None) => {
                    let drop: HashSet<usize> = matched.iter().copied().collect();
                    let mut i = 0;
                    list.retain(|_| {
                        let keep = !drop.contains(&i);
                        i += 1;
                        keep
                    });
                    return Ok(());
                }
            }
        }
    }
    fix_primary(list, &matched);
    Ok(())
}

fn remove(
    rt: &ResourceType,
    work: &mut Obj,
    path: &Path,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if path.attr.name.is_empty() {
        let urn = path.attr.urn.as_deref().unwrap_or_default();
        return match rt.extension(urn) {
            Some(ext) => {
                if let Some(req) = ext.attributes.iter().find(|a| a.required) {
                    return Err(ScimError::mutability(format!(
                        "'{}' is required and cannot be removed",
                        req.name
                    )));
                }
                canonicalize_key(work, ext.id);
                work.shift_remove(ext.id);
                Ok(())
            }
            None => Err(ScimError::invalid_path(format!(
                "'{urn}' is not an extension of resource type {} that can be removed",
                rt.name
            ))),
        };
    }
    let r = path.resolve(rt)?;
    let container = match r.extension {
        None => work,
        Some(urn) => {
            canonicalize_key(work, urn);
            match work.get_mut(urn).and_then(Value::as_object_mut) {
                Some(c) => c,
                None => return Ok(()),
            }
        }
    };
    canonicalize_key(container, r.attr.name);
    let def = r.attr;
    match (r.filter, r.sub) {
        (None, None) => {
            if let (true, Some(v)) = (def.multi_valued, value) {
                if !v.is_null() {
                    let at = attr_path(r.extension, def);
                    return remove_listed(container, def, v.clone(), &at);
                }
            }
            unassign(container, def)
        }
        (None, Some(sd)) => {
            if def.mutability == Mutability::ReadOnly && container.contains_key(def.name) {
                return Err(mutability_error(def, "it cannot be changed"));
            }
            let Some(slot) = container.get_mut(def.name) else {
                return Ok(());
            };
            match slot {
                Value::Array(list) => {
                    for el in list.iter_mut() {
                        remove_sub(el, sd)?;
                    }
                    list.retain(|el| el.as_object().is_none_or(|o| !o.is_empty()));
                }
                el => remove_sub(el, sd)?,
            }
            if !is_assigned(container.get(def.name)) {
                container.shift_remove(def.name);
            }
            Ok(())
        }
        (Some(f), sub) => {
            let Some(list) = container.get_mut(def.name).and_then(Value::as_array_mut) else {
                return Ok(());
            };
            if def.mutability == Mutability::ReadOnly
                && list.iter().any(|el| matches_element(f, def, el))
            {
                return Err(mutability_error(def, "it cannot be changed"));
            }
            match sub {
                None => list.retain(|el| !matches_element(f, def, el)),
                Some(sd) => {
                    for el in list.iter_mut() {
                        if matches_element(f, def, el) {
                            remove_sub(el, sd)?;
                        }
                    }
                    list.retain(|el| el.as_object().is_none_or(|o| !o.is_empty()));
                }
            }
            if list.is_empty() {
                container.shift_remove(def.name);
            }
            Ok(())
        }
    }
}

fn is_assigned(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

fn remove_sub(el: &mut Value, sd: &AttributeDef) -> Result<(), ScimError> {
    let Some(m) = el.as_object_mut() else {
        return Ok(());
    };
    canonicalize_key(m, sd.name);
    if m.contains_key(sd.name) {
        if sd.required {
            return Err(ScimError::mutability(format!(
                "'{}' is required and cannot be removed",
                sd.name
            )));
        }
        check_sub_write(sd, m.get(sd.name), None)?;
        m.shift_remove(sd.name);
    }
    Ok(())
}

/// Entra's `remove` of `members` with a `value` array: removes only the listed elements
/// (matched by `value`, or by whole-element equality for elements without one).
fn remove_listed(
    container: &mut Obj,
    def: &'static AttributeDef,
    v: Value,
    at: &str,
) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Err(mutability_error(def, "it cannot be changed"));
    }
    let Some(Value::Array(items)) = coerce_at(def, v, at)? else {
        return Ok(());
    };
    let mut keys = HashSet::new();
    let mut whole = Vec::new();
    for it in items {
        match element_value_key(def, &it) {
            Some(k) => {
                keys.insert(k);
            }
            None => whole.push(it),
        }
    }
    let Some(list) = container.get_mut(def.name).and_then(Value::as_array_mut) else {
        return Ok(());
    };
    list.retain(|el| match element_value_key(def, el) {
        Some(k) if keys.contains(&k) => false,
        _ => !whole.contains(el),
    });
    if list.is_empty() {
        container.shift_remove(def.name);
    }
    Ok(())
}

/// At most one `primary: true` per multi-valued attribute: the last newly written primary
/// element wins (setting one clears the others); otherwise the first existing one stays.
fn fix_primary(list: &mut [Value], new_idx: &[usize]) {
    fn is_primary(v: &Value) -> bool {
        get_ci(v, "primary").and_then(as_bool) == Some(true)
    }
    let winner = new_idx
        .iter()
        .rev()
        .copied()
        .find(|&i| list.get(i).is_some_and(is_primary))
        .or_else(|| list.iter().position(is_primary));
    let Some(w) = winner else {
        return;
    };
    for (i, el) in list.iter_mut().enumerate() {
        if i != w && is_primary(el) {
            if let Some(m) = el.as_object_mut() {
                canonicalize_key(m, "primary");
                m.insert("primary".to_owned(), Value::Bool(false));
            }
        }
    }
}

/// Removes empty extension objects and keeps `schemas` listing the extensions present.
fn tidy(rt: &ResourceType, original: &Obj, work: &mut Obj) {
    for ext in rt.extensions {
        if work
            .get(ext.id)
            .is_some_and(|v| v.as_object().is_some_and(Map::is_empty) || v.is_null())
        {
            work.shift_remove(ext.id);
        }
        let present = work.contains_key(ext.id);
        let was_present = original.contains_key(ext.id);
        if let Some(Value::Array(schemas)) = work.get_mut("schemas") {
            let listed = schemas
                .iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext.id)));
            if present && !listed {
                schemas.push(Value::String(ext.id.to_owned()));
            } else if !present && listed && was_present {
                schemas.retain(|s| !s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(ext.id)));
            }
        }
    }
}

fn member_ids(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|el| get_ci(el, "value").and_then(as_text))
                .collect()
        })
        .unwrap_or_default()
}

fn summarize(rt: &ResourceType, old: &Obj, new: &Obj) -> ChangeSummary {
    let mut attributes = BTreeSet::new();
    let keys: Vec<&String> = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)))
        .collect();
    let empty = Map::new();
    for k in keys {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = rt.extension(k) {
            let o = old.get(k).and_then(Value::as_object).unwrap_or(&empty);
            let n = new.get(k).and_then(Value::as_object).unwrap_or(&empty);
            for ik in o.keys().chain(n.keys().filter(|ik| !o.contains_key(*ik))) {
                if o.get(ik) != n.get(ik) {
                    let name = ext.attribute(ik).map_or(ik.as_str(), |a| a.name);
                    attributes.insert(format!("{}:{name}", ext.id));
                }
            }
        } else if old.get(k) != new.get(k) {
            let name = rt.core_attribute(k).map_or(k.as_str(), |a| a.name);
            attributes.insert(name.to_owned());
        }
    }
    let (mut members_added, mut members_removed) = (Vec::new(), Vec::new());
    if rt.core_attribute("members").is_some() {
        let before = member_ids(old.get("members"));
        let after = member_ids(new.get("members"));
        let before_set: HashSet<&String> = before.iter().collect();
        let after_set: HashSet<&String> = after.iter().collect();
        let mut seen = HashSet::new();
        for id in &after {
            if !before_set.contains(id) && seen.insert(id) {
                members_added.push(id.clone());
            }
        }
        for id in &before {
            if !after_set.contains(id) && seen.insert(id) {
                members_removed.push(id.clone());
            }
        }
    }
    ChangeSummary {
        attributes,
        members_added,
        members_removed,
    }
}

#[cfg(test)]
mod tests;
