//! Filter validation against a resource type: known attributes, and operators and values that
//! fit each attribute's type.

use serde_json::Value;

use super::compare::{as_bool, as_datetime, as_f64};
use super::{resolve_in, CompareOp, Filter, Scope};
use crate::scim::error::ScimError;
use crate::scim::schema::{AttrRef, AttrType, AttributeDef, ResourceType};

impl Filter {
    /// Checks every attribute against `rt` and every operator against the attribute's type:
    /// unknown attributes, ordering on booleans/binaries/complex values, values of the wrong
    /// type are `invalidFilter` with a detail naming the attribute.
    pub fn validate(&self, rt: &ResourceType) -> Result<(), ScimError> {
        validate_in(self, Scope::Resource(rt))
    }
}

/// Validates the filter of a value path against the complex attribute `parent`.
pub(crate) fn validate_value_filter(
    filter: &Filter,
    parent: &'static AttributeDef,
) -> Result<(), ScimError> {
    validate_in(filter, Scope::Element(parent))
}

fn validate_in(f: &Filter, scope: Scope<'_>) -> Result<(), ScimError> {
    match f {
        Filter::And(l, r) | Filter::Or(l, r) => {
            validate_in(l, scope)?;
            validate_in(r, scope)
        }
        Filter::Not(x) => validate_in(x, scope),
        Filter::Present(a) => resolve_in(scope, a).map(|_| ()),
        Filter::ValuePath { attr, filter } => {
            let (_, def, sub) = resolve_in(scope, attr)?;
            if def.ty != AttrType::Complex || sub.is_some() {
                return Err(ScimError::invalid_filter(format!(
                    "'{attr}' is not a complex attribute; a value filter needs one"
                )));
            }
            validate_in(filter, Scope::Element(def))
        }
        Filter::Compare { attr, op, value } => {
            let (_, def, sub) = resolve_in(scope, attr)?;
            let leaf = match sub {
                Some(s) => s,
                None => def,
            };
            let leaf = if leaf.ty == AttrType::Complex {
                match leaf.sub("value") {
                    Some(v) => v,
                    None => {
                        return Err(ScimError::invalid_filter(format!(
                            "'{attr}' is complex; compare one of its sub-attributes \
                             (such as '{attr}.{}')",
                            leaf.sub_attributes.first().map_or("value", |s| s.name)
                        )))
                    }
                }
            } else {
                leaf
            };
            validate_compare(attr, leaf, *op, value)
        }
    }
}

fn validate_compare(
    attr: &AttrRef,
    leaf: &AttributeDef,
    op: CompareOp,
    value: &Value,
) -> Result<(), ScimError> {
    if matches!(value, Value::Array(_) | Value::Object(_)) {
        return Err(ScimError::invalid_filter(format!(
            "the value compared with '{attr}' must be a string, number, boolean or null"
        )));
    }
    if value.is_null() {
        if matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Ok(());
        }
        return Err(ScimError::invalid_filter(format!(
            "'{op}' cannot compare '{attr}' with null; only 'eq' and 'ne' can"
        )));
    }
    match leaf.ty {
        AttrType::Boolean => {
            if op.is_ordering() || op.is_substring() {
                return Err(ScimError::invalid_filter(format!(
                    "'{op}' is not defined for the boolean attribute '{attr}'; use 'eq' or 'ne'"
                )));
            }
            if as_bool(value).is_none() {
                return Err(ScimError::invalid_filter(format!(
                    "'{attr}' is boolean; expected true or false, not {value}"
                )));
            }
        }
        AttrType::Binary if op.is_ordering() => {
            return Err(ScimError::invalid_filter(format!(
                "'{op}' is not defined for the binary attribute '{attr}'"
            )));
        }
        AttrType::DateTime if op.is_ordering() && as_datetime(value).is_none() => {
            return Err(ScimError::invalid_filter(format!(
                "'{attr}' is a dateTime; '{op}' needs an RFC 3339 timestamp, not {value}"
            )));
        }
        AttrType::Integer | AttrType::Decimal if !op.is_substring() && as_f64(value).is_none() => {
            return Err(ScimError::invalid_filter(format!(
                "'{attr}' is numeric; expected a number, not {value}"
            )));
        }
        _ => {}
    }
    Ok(())
}
