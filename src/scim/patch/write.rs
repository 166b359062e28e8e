//! `add` and `replace`: writing whole attributes, sub-attributes, filtered elements and
//! objects of attributes, each value coerced and checked against its mutability.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{
    attr_path, canonicalize_key, check_sub_write, element_value_key, mutability_error, unassign,
    Obj, PatchOpKind,
};
use crate::scim::error::ScimError;
use crate::scim::filter::{as_bool, get_ci, matches_element, CompareOp, Filter};
use crate::scim::path::Path;
use crate::scim::schema::{
    coerce_at, coerce_single_at, AttrType, AttributeDef, Mutability, ResourceType,
};

/// `add`/`replace` without a path, or with a path that is an extension URN: each key of
/// `obj` is a path (plain, dotted or URN-qualified) or an extension URN whose value is an
/// object of that extension's attributes.
pub(super) fn write_object(
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

pub(super) fn write_path(
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
                crate::scim::schema::kind(&other)
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

/// A sub-attribute's path for error details: `emails.value`.
fn sub_path(at: &str, sd: &AttributeDef) -> String {
    format!("{at}.{}", sd.name)
}

/// The object holding an attribute: the resource, or its extension object (created empty;
/// [`tidy`](super::tidy) removes it again if it stays empty).
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

/// Writes to the elements of `list` that `filter` selects, or creates the one a `type eq`
/// filter names when none matches.
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
        return create_filtered(list, def, filter, sub, value, at);
    }
    match sub {
        Some(sd) => set_sub_of_matched(list, sd, &matched, kind, value, at)?,
        None => {
            let new = coerce_write_element(def, value, at)?;
            match (kind, new) {
                (_, Some(Value::Object(new_obj))) => {
                    write_matched_elements(list, def, &matched, kind, &new_obj)?;
                }
                (_, Some(_)) => {
                    return Err(ScimError::invalid_value(format!(
                        "a value of '{}' must be an object",
                        def.name
                    )))
                }
                (PatchOpKind::Add, None) => {}
                (_, None) => {
                    drop_matched(list, &matched);
                    return Ok(());
                }
            }
        }
    }
    fix_primary(list, &matched);
    Ok(())
}

/// A filter that matches nothing: a simple `type eq "t"` creates the element (Entra), any
/// other filter is `noTarget`.
fn create_filtered(
    list: &mut Vec<Value>,
    def: &'static AttributeDef,
    filter: &Filter,
    sub: Option<&AttributeDef>,
    value: Value,
    at: &str,
) -> Result<(), ScimError> {
    let (Some(t), Some(type_def)) = (simple_type_eq(filter), def.sub("type")) else {
        return Err(ScimError::no_target(format!(
            "no value of '{}' matches [{filter}]",
            def.name
        )));
    };
    let Some(el) = typed_element(def, type_def, t, sub, value, at)? else {
        return Ok(());
    };
    list.push(Value::Object(el));
    let last = list.len() - 1;
    fix_primary(list, &[last]);
    Ok(())
}

/// The element a `type eq "t"` filter creates: its `type` and the written value, or `None`
/// when the value is null and there is nothing to create.
fn typed_element(
    def: &'static AttributeDef,
    type_def: &'static AttributeDef,
    t: &str,
    sub: Option<&AttributeDef>,
    value: Value,
    at: &str,
) -> Result<Option<Obj>, ScimError> {
    // The filter's value becomes a stored value, so it is checked as one.
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
                None => return Ok(None),
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
            None => return Ok(None),
        },
    }
    Ok(Some(el))
}

/// `emails[type eq "work"].value`: sets (or, with null, removes) the sub-attribute on each
/// matched element, dropping elements left empty.
fn set_sub_of_matched(
    list: &mut Vec<Value>,
    sd: &AttributeDef,
    matched: &[usize],
    kind: PatchOpKind,
    value: Value,
    at: &str,
) -> Result<(), ScimError> {
    let new = coerce_at(sd, value, &sub_path(at, sd))?;
    for &i in matched {
        if let Some(el) = list.get_mut(i) {
            set_sub(el, sd, new.clone(), kind)?;
        }
    }
    list.retain(|el| el.as_object().is_none_or(|o| !o.is_empty()));
    Ok(())
}

/// Writes a whole element over each matched one: `replace` swaps it in (RFC 7644 3.5.2.3),
/// `add` merges it sub-attribute by sub-attribute.
fn write_matched_elements(
    list: &mut [Value],
    def: &'static AttributeDef,
    matched: &[usize],
    kind: PatchOpKind,
    new_obj: &Obj,
) -> Result<(), ScimError> {
    for &i in matched {
        let Some(el) = list.get_mut(i) else { continue };
        if kind == PatchOpKind::Replace {
            replace_element(el, def, new_obj)?;
        } else {
            merge_element(el, def, new_obj, kind)?;
        }
    }
    Ok(())
}

/// RFC 7644 3.5.2.3: a matching record is replaced, once no read-only or immutable
/// sub-attribute of it would change.
fn replace_element(
    el: &mut Value,
    def: &'static AttributeDef,
    new_obj: &Obj,
) -> Result<(), ScimError> {
    if let Some(old) = el.as_object() {
        for (k, v) in old {
            if let Some(sd) = def.sub(k) {
                check_sub_write(sd, Some(v), new_obj.get(sd.name))?;
            }
        }
    }
    *el = Value::Object(new_obj.clone());
    Ok(())
}

/// `add` over a matching record: each sub-attribute of the new value is set on it, with
/// unknown keys copied as they are.
fn merge_element(
    el: &mut Value,
    def: &'static AttributeDef,
    new_obj: &Obj,
    kind: PatchOpKind,
) -> Result<(), ScimError> {
    for (k, v) in new_obj {
        match def.sub(k) {
            Some(sd) => set_sub(el, sd, Some(v.clone()), kind)?,
            None => {
                if let Some(m) = el.as_object_mut() {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok(())
}

/// `replace` with null of filtered elements: removes every matched element.
fn drop_matched(list: &mut Vec<Value>, matched: &[usize]) {
    let drop: HashSet<usize> = matched.iter().copied().collect();
    let mut i = 0;
    list.retain(|_| {
        let keep = !drop.contains(&i);
        i += 1;
        keep
    });
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
