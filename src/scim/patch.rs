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

mod remove;
mod request;
mod summary;
mod write;

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{as_text, get_ci};
use super::path::Path;
use super::schema::{AttributeDef, Mutability, ResourceType, PATCH_OP_SCHEMA};

pub use request::{PatchOpKind, PatchOperation, PatchRequest};
pub use summary::ChangeSummary;

use remove::remove;
use summary::summarize;
use write::{write_object, write_path};

/// The result of a PATCH: the new resource, whether it differs from the old one, and what
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchOutcome {
    pub resource: Value,
    pub changed: bool,
    pub summary: ChangeSummary,
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

/// An attribute's path for error details: `emails`, `urn:...:enterprise:2.0:User:manager`.
fn attr_path(extension: Option<&str>, def: &AttributeDef) -> String {
    match extension {
        Some(urn) => format!("{urn}:{}", def.name),
        None => def.name.to_owned(),
    }
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

fn element_value_key(def: &'static AttributeDef, el: &Value) -> Option<String> {
    let vd = def.sub("value")?;
    let v = as_text(get_ci(el, "value")?)?;
    Some(if vd.case_exact { v } else { v.to_lowercase() })
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

#[cfg(test)]
mod tests;
