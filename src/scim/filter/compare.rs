//! Comparing one stored value with a filter value by the attribute's type, and the lenient
//! readers of booleans, numbers, dateTimes and text that validation and PATCH use too.

use std::cmp::Ordering;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::CompareOp;
use crate::scim::schema::{AttrType, AttributeDef};

pub(crate) fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

pub(crate) fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

pub(crate) fn as_datetime(v: &Value) -> Option<OffsetDateTime> {
    v.as_str()
        .and_then(|s| OffsetDateTime::parse(s.trim(), &Rfc3339).ok())
}

/// A scalar as text: strings as they are, numbers and booleans as JSON spells them.
pub(crate) fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn apply_order(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare_text(case_exact: bool, actual: &Value, op: CompareOp, expected: &Value) -> bool {
    let (Some(mut a), Some(mut e)) = (as_text(actual), as_text(expected)) else {
        return false;
    };
    if !case_exact {
        a = a.to_lowercase();
        e = e.to_lowercase();
    }
    match op {
        CompareOp::Co => a.contains(&e),
        CompareOp::Sw => a.starts_with(&e),
        CompareOp::Ew => a.ends_with(&e),
        _ => apply_order(op, a.cmp(&e)),
    }
}

/// Compares one stored value of an attribute defined by `def` with a filter value.
pub(super) fn compare_one(
    def: &AttributeDef,
    actual: &Value,
    op: CompareOp,
    expected: &Value,
) -> bool {
    match def.ty {
        AttrType::Boolean => match (as_bool(actual), as_bool(expected)) {
            (Some(a), Some(e)) if matches!(op, CompareOp::Eq | CompareOp::Ne) => {
                apply_order(op, a.cmp(&e))
            }
            _ => false,
        },
        AttrType::Integer | AttrType::Decimal if !op.is_substring() => {
            match (as_f64(actual), as_f64(expected)) {
                (Some(a), Some(e)) => a.partial_cmp(&e).is_some_and(|o| apply_order(op, o)),
                _ => false,
            }
        }
        AttrType::DateTime if !op.is_substring() => {
            match (as_datetime(actual), as_datetime(expected)) {
                (Some(a), Some(e)) => apply_order(op, a.cmp(&e)),
                _ => compare_text(def.case_exact, actual, op, expected),
            }
        }
        AttrType::Complex => false,
        _ => compare_text(def.case_exact, actual, op, expected),
    }
}
