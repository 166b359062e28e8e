//! `remove`: whole attributes, extensions, sub-attributes, filtered elements and Entra's
//! listed `members`.

use std::collections::HashSet;

use serde_json::Value;

use super::{
    attr_path, canonicalize_key, check_sub_write, element_value_key, mutability_error, unassign,
    Obj,
};
use crate::scim::error::ScimError;
use crate::scim::filter::{matches_element, Filter};
use crate::scim::path::Path;
use crate::scim::schema::{coerce_at, AttributeDef, Mutability, ResourceType};

/// `remove` with a path: an extension, an attribute, a sub-attribute or filtered elements.
pub(super) fn remove(
    rt: &ResourceType,
    work: &mut Obj,
    path: &Path,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if path.attr.name.is_empty() {
        let urn = path.attr.urn.as_deref().unwrap_or_default();
        return remove_extension(rt, work, urn);
    }
    let r = path.resolve(rt)?;
    let Some(container) = existing_container(work, r.extension) else {
        return Ok(());
    };
    canonicalize_key(container, r.attr.name);
    let def = r.attr;
    match (r.filter, r.sub) {
        (None, None) => remove_attr(container, def, r.extension, value),
        (None, Some(sd)) => remove_sub_everywhere(container, def, sd),
        (Some(f), sub) => remove_filtered(container, def, f, sub),
    }
}

/// A path that is only an extension URN removes the whole extension object, unless one of
/// its attributes is required.
fn remove_extension(rt: &ResourceType, work: &mut Obj, urn: &str) -> Result<(), ScimError> {
    match rt.extension(urn) {
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
    }
}

/// The object holding an attribute to remove: the resource, or its extension object if the
/// resource has one (without one there is nothing to remove).
fn existing_container<'w>(work: &'w mut Obj, ext: Option<&str>) -> Option<&'w mut Obj> {
    match ext {
        None => Some(work),
        Some(urn) => {
            canonicalize_key(work, urn);
            work.get_mut(urn).and_then(Value::as_object_mut)
        }
    }
}

/// `"path": "emails"`: unassigns the attribute, or with a `value` array for a multi-valued
/// one removes only the listed elements (Entra).
fn remove_attr(
    container: &mut Obj,
    def: &'static AttributeDef,
    extension: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if let (true, Some(v)) = (def.multi_valued, value) {
        if !v.is_null() {
            let at = attr_path(extension, def);
            return remove_listed(container, def, v.clone(), &at);
        }
    }
    unassign(container, def)
}

/// `name.givenName`, or `emails.value` without a filter: removes the sub-attribute from the
/// value or every element, dropping what is left empty.
fn remove_sub_everywhere(
    container: &mut Obj,
    def: &'static AttributeDef,
    sd: &AttributeDef,
) -> Result<(), ScimError> {
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

/// `members[value eq "x"]` or `emails[type eq "work"].value`: removes the matched elements,
/// or the sub-attribute from each; a filter matching nothing changes nothing.
fn remove_filtered(
    container: &mut Obj,
    def: &'static AttributeDef,
    f: &Filter,
    sub: Option<&AttributeDef>,
) -> Result<(), ScimError> {
    let Some(list) = container.get_mut(def.name).and_then(Value::as_array_mut) else {
        return Ok(());
    };
    if def.mutability == Mutability::ReadOnly && list.iter().any(|el| matches_element(f, def, el)) {
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
