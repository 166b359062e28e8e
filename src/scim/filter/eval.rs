//! Filter evaluation over canonical JSON resources and the elements of complex attributes.

use serde_json::Value;

use super::compare::compare_one;
use super::{resolve_in, CompareOp, Filter, Scope};
use crate::scim::schema::{AttrRef, AttrType, AttributeDef, ResourceType};

impl Filter {
    /// True when `resource` (a canonical JSON object) satisfies the filter.
    pub fn matches(&self, rt: &ResourceType, resource: &Value) -> bool {
        eval(self, Scope::Resource(rt), resource)
    }
}

/// True when the element `el` of the complex attribute `parent` satisfies a value filter.
pub(crate) fn matches_element(filter: &Filter, parent: &'static AttributeDef, el: &Value) -> bool {
    eval(filter, Scope::Element(parent), el)
}

/// A key of a JSON object: the canonical name, or any case of it.
pub(crate) fn get_ci<'v>(obj: &'v Value, name: &str) -> Option<&'v Value> {
    let map = obj.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The values an attribute holds in `scope` (elements for multi-valued ones), with the
/// attribute's definition; complex attributes without a sub-attribute are not flattened.
fn attr_values<'v>(
    scope: Scope<'_>,
    attr: &AttrRef,
    node: &'v Value,
) -> Option<(
    &'static AttributeDef,
    Option<&'static AttributeDef>,
    Vec<&'v Value>,
)> {
    let (ext, def, sub) = resolve_in(scope, attr).ok()?;
    let container = match ext {
        Some(urn) => get_ci(node, urn)?,
        None => node,
    };
    let raw = get_ci(container, def.name)?;
    let mut out = Vec::new();
    push_flat(raw, &mut out);
    if let Some(sd) = sub {
        let mut subs = Vec::new();
        for el in out {
            if let Some(v) = get_ci(el, sd.name) {
                push_flat(v, &mut subs);
            }
        }
        out = subs;
    }
    Some((def, sub, out))
}

fn push_flat<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => out.extend(items.iter()),
        other => out.push(other),
    }
}

/// RFC 7644: `pr` is false for null, empty strings, empty arrays and empty objects.
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        _ => true,
    }
}

fn eval(f: &Filter, scope: Scope<'_>, node: &Value) -> bool {
    match f {
        Filter::And(l, r) => eval(l, scope, node) && eval(r, scope, node),
        Filter::Or(l, r) => eval(l, scope, node) || eval(r, scope, node),
        Filter::Not(x) => !eval(x, scope, node),
        Filter::Present(a) => {
            attr_values(scope, a, node).is_some_and(|(_, _, vs)| vs.into_iter().any(is_present))
        }
        Filter::ValuePath { attr, filter } => match attr_values(scope, attr, node) {
            Some((def, None, elems)) => elems
                .into_iter()
                .any(|el| eval(filter, Scope::Element(def), el)),
            _ => false,
        },
        Filter::Compare { attr, op, value } => {
            let (leaf, values): (&AttributeDef, Vec<&Value>) = match attr_values(scope, attr, node)
            {
                None => {
                    // Absent: only `ne` and `eq null` hold.
                    return match op {
                        CompareOp::Ne => !value.is_null(),
                        CompareOp::Eq => value.is_null(),
                        _ => false,
                    };
                }
                Some((def, sub, vs)) => {
                    let leaf = sub.unwrap_or(def);
                    if leaf.ty == AttrType::Complex {
                        // `emails eq "x"`, `manager eq "id"` compare the `value`.
                        match leaf.sub("value") {
                            Some(vd) => (
                                vd,
                                vs.into_iter()
                                    .filter_map(|el| get_ci(el, "value"))
                                    .collect(),
                            ),
                            None => return false,
                        }
                    } else {
                        (leaf, vs)
                    }
                }
            };
            let present: Vec<&Value> = values.into_iter().filter(|v| is_present(v)).collect();
            if value.is_null() {
                return match op {
                    CompareOp::Eq => present.is_empty(),
                    CompareOp::Ne => !present.is_empty(),
                    _ => false,
                };
            }
            match op {
                CompareOp::Ne => !present
                    .iter()
                    .any(|v| compare_one(leaf, v, CompareOp::Eq, value)),
                _ => present.iter().any(|v| compare_one(leaf, v, *op, value)),
            }
        }
    }
}
