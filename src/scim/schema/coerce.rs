//! Value coercion: a client's value brought into the canonical shape for its attribute, its
//! type and text checked.

use serde_json::{Map, Value};

use super::{check_key, check_text, check_text_deep, AttrType, AttributeDef};
use crate::scim::error::ScimError;

/// Brings a value sent by a client into the canonical shape for `def`, checking it against the
/// attribute's type; see [`coerce_at`]. Errors name `def.name`.
pub fn coerce(def: &AttributeDef, value: Value) -> Result<Option<Value>, ScimError> {
    coerce_at(def, value, def.name)
}

/// Brings a value sent by a client into the canonical shape for `def`; `at` is the attribute's
/// path (`emails`, `name.givenName`, `urn:...:User:manager`), which errors name.
///
/// Shapes (what RFC 7643 leaves open and the IdPs use):
/// - `null`, `[]`, `{}` (after cleaning) mean unassigned: `Ok(None)`;
/// - a multi-valued attribute accepts one value for a one-element array;
/// - a single-valued complex attribute with a `value` sub-attribute accepts a bare string or a
///   one-element array (`manager` as Entra and Okta send it);
/// - sub-attribute names of complex values take their canonical spelling; unknown ones are kept
///   as sent (their text is checked, not their type).
///
/// Types are checked, not converted (RFC 7643 section 2.3), with one exception the IdPs need:
/// - a boolean accepts `true`/`false` in any case as a string (Entra sends `"False"`);
/// - a string, reference or binary takes only a JSON string: a number or boolean is 400
///   `invalidValue` (`"externalId": 1e40` would otherwise be stored as `"1e+40"`);
/// - an integer takes only a JSON integer, a decimal only a JSON number;
/// - a dateTime takes only an RFC 3339 string;
/// - a complex value takes only an object (apart from the bare `manager` id above): a string
///   or number inside `emails` or `members` is 400;
/// - no string anywhere may hold a [forbidden character](super::is_forbidden_char).
pub fn coerce_at(def: &AttributeDef, value: Value, at: &str) -> Result<Option<Value>, ScimError> {
    if def.multi_valued {
        let items = match value {
            Value::Null => return Ok(None),
            Value::Array(items) => items,
            other => vec![other],
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(v) = coerce_single_at(def, item, at)? {
                out.push(v);
            }
        }
        return Ok(if out.is_empty() {
            None
        } else {
            Some(Value::Array(out))
        });
    }
    let value = match value {
        Value::Array(mut items) if def.ty == AttrType::Complex || items.len() <= 1 => {
            match items.len() {
                0 => return Ok(None),
                1 => items.pop().unwrap_or(Value::Null),
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "'{at}' is single-valued but an array of {} values was given",
                        items.len()
                    )))
                }
            }
        }
        Value::Array(_) => {
            return Err(ScimError::invalid_value(format!(
                "'{at}' is single-valued but an array was given"
            )))
        }
        other => other,
    };
    coerce_single_at(def, value, at)
}

/// Coerces one value (an element, for multi-valued attributes); errors name `def.name`.
pub fn coerce_single(def: &AttributeDef, value: Value) -> Result<Option<Value>, ScimError> {
    coerce_single_at(def, value, def.name)
}

/// Coerces one value (an element, for multi-valued attributes) at path `at`; see [`coerce_at`].
pub fn coerce_single_at(
    def: &AttributeDef,
    value: Value,
    at: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    match def.ty {
        AttrType::Complex => coerce_complex(def, value, at),
        AttrType::Boolean => coerce_boolean(value, at),
        AttrType::Integer => match &value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(value)),
            other => Err(wrong_type(at, "an integer", other)),
        },
        AttrType::Decimal => match &value {
            Value::Number(_) => Ok(Some(value)),
            other => Err(wrong_type(at, "a decimal number", other)),
        },
        AttrType::DateTime => coerce_date_time(value, at),
        AttrType::String | AttrType::Reference | AttrType::Binary => match value {
            Value::String(s) => {
                check_text(at, &s)?;
                Ok(Some(Value::String(s)))
            }
            other => Err(wrong_type(at, "a string", &other)),
        },
    }
}

/// The `invalidValue` for a value of the wrong JSON type: names `at` and the kind given.
fn wrong_type(at: &str, what: &str, v: &Value) -> ScimError {
    ScimError::invalid_value(format!("'{at}' must be {what}, not {}", kind(v)))
}

/// One complex value: its sub-attributes coerced under their canonical names, unknown ones
/// kept as sent once their text is checked; empty means unassigned.
fn coerce_complex(def: &AttributeDef, value: Value, at: &str) -> Result<Option<Value>, ScimError> {
    let obj = complex_object(def, value, at)?;
    let mut out = Map::new();
    for (k, v) in obj {
        match def.sub(&k) {
            Some(sd) => {
                if let Some(cv) = coerce_at(sd, v, &format!("{at}.{}", sd.name))? {
                    out.insert(sd.name.to_owned(), cv);
                }
            }
            None => {
                check_key(at, &k)?;
                check_text_deep(&format!("{at}.{k}"), &v)?;
                if !v.is_null() {
                    out.insert(k, v);
                }
            }
        }
    }
    Ok(if out.is_empty() {
        None
    } else {
        Some(Value::Object(out))
    })
}

/// The object a complex value is: an object as sent, or a bare id as `{"value": id}` where one
/// value with a `value` sub-attribute is meant; anything else is the wrong type.
fn complex_object(
    def: &AttributeDef,
    value: Value,
    at: &str,
) -> Result<Map<String, Value>, ScimError> {
    match value {
        Value::Object(o) => Ok(o),
        // `manager` as a bare id (Entra, Okta): the only scalar a complex attribute
        // takes, and only where one value is meant.
        Value::String(s) if !def.multi_valued && def.sub("value").is_some() => {
            let mut o = Map::new();
            o.insert("value".into(), Value::String(s));
            Ok(o)
        }
        other => {
            let what = if def.multi_valued {
                "an array of objects (or one object)"
            } else {
                "an object"
            };
            Err(wrong_type(at, what, &other))
        }
    }
}

/// A boolean, or Entra's `"True"`/`"False"` in any case, trimmed.
fn coerce_boolean(value: Value, at: &str) -> Result<Option<Value>, ScimError> {
    match value {
        Value::Bool(b) => Ok(Some(Value::Bool(b))),
        // Entra's dialect: booleans as strings ("True", "False").
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
        Value::String(_) => Err(ScimError::invalid_value(format!(
            "'{at}' must be a boolean (true or false)"
        ))),
        other => Err(wrong_type(at, "a boolean", &other)),
    }
}

/// A dateTime: only a string that parses as RFC 3339, kept as sent.
fn coerce_date_time(value: Value, at: &str) -> Result<Option<Value>, ScimError> {
    match value {
        Value::String(s) => {
            if time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                .is_ok()
            {
                Ok(Some(Value::String(s)))
            } else {
                Err(ScimError::invalid_value(format!(
                    "'{at}' must be an RFC 3339 dateTime"
                )))
            }
        }
        other => Err(wrong_type(at, "a dateTime string", &other)),
    }
}

/// A word for a JSON value's kind, for error details.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
