//! The PATCH request body: `PatchOp` and its operations, read case-insensitively from JSON.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::scim::error::ScimError;

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
    /// tolerated; [`apply_patch`](super::apply_patch) rejects one that does not list the
    /// PatchOp URN.
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
