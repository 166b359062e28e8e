//! Bulk requests (RFC 7644 section 3.7): the request and response bodies, `bulkId` references
//! (`"bulkId:u1"` anywhere in an operation's `data`, or as the last segment of its `path`), and
//! an execution order in which every operation runs after the POST that defines the ids it uses.
//!
//! Circular references (RFC 7644 section 3.7.1) are not resolved by retrying: the RFC lets the
//! server stop and answer 409 Conflict, which is what [`bulk_dependency_order`] reports.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::error::ScimError;
use super::schema::BULK_RESPONSE_SCHEMA;

/// The prefix of a reference to the resource another operation creates.
pub const BULK_ID_PREFIX: &str = "bulkId:";

/// A `BulkRequest` body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default)]
    pub fail_on_errors: Option<u32>,
    #[serde(rename = "Operations", alias = "operations", default)]
    pub operations: Vec<BulkOperation>,
}

/// One operation of a bulk request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkOperation {
    pub method: String,
    #[serde(default)]
    pub bulk_id: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    pub path: String,
    #[serde(default)]
    pub data: Option<Value>,
}

/// The HTTP methods a bulk operation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMethod {
    Post,
    Put,
    Patch,
    Delete,
}

impl BulkMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkMethod::Post => "POST",
            BulkMethod::Put => "PUT",
            BulkMethod::Patch => "PATCH",
            BulkMethod::Delete => "DELETE",
        }
    }
}

impl BulkOperation {
    /// The method, case-insensitively; anything else is 400 `invalidValue`.
    pub fn method_kind(&self) -> Result<BulkMethod, ScimError> {
        let m = self.method.trim();
        [
            BulkMethod::Post,
            BulkMethod::Put,
            BulkMethod::Patch,
            BulkMethod::Delete,
        ]
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(m))
        .ok_or_else(|| {
            ScimError::invalid_value(format!("'{}' is not a bulk operation method", self.method))
        })
    }

    /// Per-operation checks of RFC 7644 3.7: a known method, a `bulkId` on POST, `data` on
    /// POST, PUT and PATCH.
    pub fn check(&self) -> Result<BulkMethod, ScimError> {
        let method = self.method_kind()?;
        if method == BulkMethod::Post && self.bulk_id.as_deref().is_none_or(str::is_empty) {
            return Err(ScimError::invalid_value(
                "a POST bulk operation needs a 'bulkId'",
            ));
        }
        if method != BulkMethod::Delete && self.data.as_ref().is_none_or(Value::is_null) {
            return Err(ScimError::invalid_value(format!(
                "a {} bulk operation needs 'data'",
                method.as_str()
            )));
        }
        Ok(method)
    }

    /// Every bulkId this operation refers to, in its path and its data.
    pub fn referenced_bulk_ids(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(id) = path_bulk_id(&self.path) {
            out.push(id.to_owned());
        }
        if let Some(d) = &self.data {
            collect_bulk_ids(d, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }
}

impl BulkRequest {
    /// Request-level checks: at most `max_operations` operations (413 otherwise, the limit
    /// advertised in `/ServiceProviderConfig`) and no `bulkId` used twice (400).
    pub fn validate(&self, max_operations: usize) -> Result<(), ScimError> {
        if self.operations.len() > max_operations {
            return Err(ScimError::payload_too_large(format!(
                "the bulk request has {} operations; the maximum is {max_operations}",
                self.operations.len()
            )));
        }
        defined_bulk_ids(&self.operations).map(|_| ())
    }

    /// True when `errors` failed operations mean the rest must not run (`failOnErrors`).
    pub fn should_stop(&self, errors: usize) -> bool {
        match self.fail_on_errors {
            Some(n) if n > 0 => errors >= n as usize,
            _ => false,
        }
    }
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkOperationResponse {
    pub method: String,
    pub bulk_id: Option<String>,
    pub version: Option<String>,
    pub location: Option<String>,
    /// The HTTP status code, as a string (RFC 7644 3.7.3 shows it so).
    pub status: String,
    pub response: Option<Value>,
}

impl BulkOperationResponse {
    /// A failed operation: its status and the SCIM error body as `response`.
    pub fn error(op: &BulkOperation, err: &ScimError) -> Self {
        Self {
            method: op.method.to_ascii_uppercase(),
            bulk_id: op.bulk_id.clone(),
            version: None,
            location: None,
            status: err.status.to_string(),
            response: Some(err.to_body()),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut o = Map::new();
        o.insert("method".into(), json!(self.method));
        if let Some(b) = &self.bulk_id {
            o.insert("bulkId".into(), json!(b));
        }
        if let Some(v) = &self.version {
            o.insert("version".into(), json!(v));
        }
        if let Some(l) = &self.location {
            o.insert("location".into(), json!(l));
        }
        o.insert("status".into(), json!(self.status));
        if let Some(r) = &self.response {
            o.insert("response".into(), r.clone());
        }
        Value::Object(o)
    }
}

/// A `BulkResponse` body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkResponse {
    pub operations: Vec<BulkOperationResponse>,
}

impl BulkResponse {
    pub fn to_value(&self) -> Value {
        json!({
            "schemas": [BULK_RESPONSE_SCHEMA],
            "Operations": self.operations.iter().map(BulkOperationResponse::to_value).collect::<Vec<_>>(),
        })
    }
}

/// The bulkId in the last segment of a path (`/Groups/bulkId:g1`).
pub fn path_bulk_id(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|seg| seg.strip_prefix(BULK_ID_PREFIX))
        .filter(|id| !id.is_empty())
}

/// Replaces a trailing `bulkId:x` path segment with the id created for `x`; `Err` names the
/// unresolved bulkId.
pub fn resolve_bulk_id_in_path(
    path: &str,
    ids: &HashMap<String, String>,
) -> Result<String, String> {
    let Some(b) = path_bulk_id(path) else {
        return Ok(path.to_owned());
    };
    let id = ids.get(b).ok_or_else(|| b.to_owned())?;
    let trimmed = path.trim_end_matches('/');
    let cut = trimmed.len() - BULK_ID_PREFIX.len() - b.len();
    Ok(format!("{}{id}", &trimmed[..cut]))
}

/// Replaces every string `"bulkId:x"` in `data` (at any depth) with the id created for `x`.
/// Known references are replaced even when others are not; `Err` lists the unresolved bulkIds.
pub fn resolve_bulk_ids(
    data: &mut Value,
    ids: &HashMap<String, String>,
) -> Result<(), Vec<String>> {
    let mut unresolved = Vec::new();
    replace_in(data, ids, &mut unresolved);
    if unresolved.is_empty() {
        Ok(())
    } else {
        unresolved.sort();
        unresolved.dedup();
        Err(unresolved)
    }
}

fn replace_in(v: &mut Value, ids: &HashMap<String, String>, unresolved: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(b) = s.strip_prefix(BULK_ID_PREFIX) {
                match ids.get(b) {
                    Some(id) => *s = id.clone(),
                    None => unresolved.push(b.to_owned()),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| replace_in(i, ids, unresolved)),
        Value::Object(o) => o.values_mut().for_each(|i| replace_in(i, ids, unresolved)),
        _ => {}
    }
}

fn collect_bulk_ids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(b) = s.strip_prefix(BULK_ID_PREFIX) {
                out.push(b.to_owned());
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_bulk_ids(i, out)),
        Value::Object(o) => o.values().for_each(|i| collect_bulk_ids(i, out)),
        _ => {}
    }
}

/// The bulkIds the POST operations define, each with its operation's index; a bulkId used by
/// two operations is 400 `invalidValue`.
fn defined_bulk_ids(ops: &[BulkOperation]) -> Result<HashMap<&str, usize>, ScimError> {
    let mut defs: HashMap<&str, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let Some(b) = op.bulk_id.as_deref().filter(|b| !b.is_empty()) else {
            continue;
        };
        if defs.insert(b, i).is_some() {
            return Err(ScimError::invalid_value(format!(
                "bulkId '{b}' is used by more than one operation"
            )));
        }
    }
    // Only a POST creates a resource whose id a reference can take.
    defs.retain(|_, i| ops[*i].method.trim().eq_ignore_ascii_case("POST"));
    Ok(defs)
}

/// An order to run the operations in: each after the POSTs whose bulkIds it references,
/// otherwise in request order. References to bulkIds no operation defines are left for
/// [`resolve_bulk_ids`] to report on that operation. A cycle (including an operation
/// referencing its own bulkId) is 409 naming the bulkIds involved.
pub fn bulk_dependency_order(ops: &[BulkOperation]) -> Result<Vec<usize>, ScimError> {
    let defs = defined_bulk_ids(ops)?;
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    let mut pending = vec![0usize; ops.len()];
    for (i, op) in ops.iter().enumerate() {
        for r in op.referenced_bulk_ids() {
            if let Some(&j) = defs.get(r.as_str()) {
                dependents[j].push(i);
                pending[i] += 1;
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..ops.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(ops.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() < ops.len() {
        let mut stuck: Vec<&str> = (0..ops.len())
            .filter(|&i| pending[i] > 0)
            .map(|i| ops[i].bulk_id.as_deref().unwrap_or(ops[i].path.as_str()))
            .collect();
        stuck.sort_unstable();
        return Err(ScimError::new(
            409,
            None,
            format!(
                "circular bulkId references between operations {}",
                stuck.join(", ")
            ),
        ));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::BULK_REQUEST_SCHEMA;
    use crate::scim::ScimType;

    fn request(v: Value) -> BulkRequest {
        serde_json::from_value(v).unwrap()
    }

    fn op(method: &str, bulk_id: Option<&str>, path: &str, data: Value) -> BulkOperation {
        BulkOperation {
            method: method.into(),
            bulk_id: bulk_id.map(str::to_owned),
            version: None,
            path: path.into(),
            data: (!data.is_null()).then_some(data),
        }
    }

    fn ids(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn bulk_request_parses_rfc_shape() {
        let r = request(json!({
            "schemas": [BULK_REQUEST_SCHEMA],
            "failOnErrors": 1,
            "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "qwerty",
                 "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "Alice"}},
                {"method": "PUT", "path": "/Users/b7c14771", "version": "W/\"3694e05e9dff591\"",
                 "data": {"userName": "Bob"}},
                {"method": "DELETE", "path": "/Users/e9025315", "version": "W/\"0ee8add0a938e1a\""}
            ]
        }));
        assert_eq!(r.fail_on_errors, Some(1));
        assert_eq!(r.operations.len(), 3);
        assert_eq!(r.operations[0].bulk_id.as_deref(), Some("qwerty"));
        assert_eq!(
            r.operations[1].version.as_deref(),
            Some("W/\"3694e05e9dff591\"")
        );
        assert_eq!(r.operations[2].check().unwrap(), BulkMethod::Delete);
        assert!(r.should_stop(1));
        assert!(!request(json!({"Operations": []})).should_stop(100));
    }

    #[test]
    fn operation_checks_method_bulk_id_and_data() {
        assert_eq!(
            op("post", Some("u1"), "/Users", json!({})).check().unwrap(),
            BulkMethod::Post
        );
        let e = op("POST", None, "/Users", json!({})).check().unwrap_err();
        assert!(e.detail.contains("bulkId"));
        assert!(op("PATCH", None, "/Users/1", Value::Null).check().is_err());
        assert_eq!(
            op("GET", None, "/Users", Value::Null)
                .check()
                .unwrap_err()
                .scim_type,
            Some(ScimType::InvalidValue)
        );
    }

    #[test]
    fn too_many_operations_is_413_and_duplicate_bulk_ids_400() {
        let ops = vec![op("POST", Some("a"), "/Users", json!({})); 3];
        let r = BulkRequest {
            schemas: vec![],
            fail_on_errors: None,
            operations: ops,
        };
        assert_eq!(r.validate(2).unwrap_err().status, 413);
        let e = r.validate(10).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.detail.contains("'a'"));
        assert_eq!(
            bulk_dependency_order(&r.operations).unwrap_err().status,
            400
        );
    }

    #[test]
    fn bulk_ids_are_resolved_anywhere_in_data() {
        let mut data = json!({
            "displayName": "Tour Guides",
            "members": [
                {"type": "User", "value": "bulkId:qwerty"},
                {"type": "User", "value": "bulkId:ytrewq"},
                {"value": "plain-id"}
            ],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "bulkId:qwerty"}}
        });
        resolve_bulk_ids(
            &mut data,
            &ids(&[("qwerty", "92b725cd"), ("ytrewq", "e9025315")]),
        )
        .unwrap();
        assert_eq!(data["members"][0]["value"], "92b725cd");
        assert_eq!(data["members"][1]["value"], "e9025315");
        assert_eq!(data["members"][2]["value"], "plain-id");
        assert_eq!(
            data["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"],
            "92b725cd"
        );
    }

    #[test]
    fn unresolved_bulk_ids_are_reported_and_known_ones_still_replaced() {
        let mut data = json!({"members": [{"value": "bulkId:a"}, {"value": "bulkId:zz"}, {"value": "bulkId:zz"}]});
        let err = resolve_bulk_ids(&mut data, &ids(&[("a", "1")])).unwrap_err();
        assert_eq!(err, ["zz"]);
        assert_eq!(data["members"][0]["value"], "1");
    }

    #[test]
    fn bulk_ids_in_paths_are_resolved() {
        let m = ids(&[("g1", "abc")]);
        assert_eq!(
            resolve_bulk_id_in_path("/Groups/bulkId:g1", &m).unwrap(),
            "/Groups/abc"
        );
        assert_eq!(
            resolve_bulk_id_in_path("/Groups/xyz", &m).unwrap(),
            "/Groups/xyz"
        );
        assert_eq!(
            resolve_bulk_id_in_path("/Groups/bulkId:nope", &m).unwrap_err(),
            "nope"
        );
        assert_eq!(path_bulk_id("/Users/bulkId:u1/"), Some("u1"));
    }

    #[test]
    fn operations_run_after_the_posts_they_reference_otherwise_in_order() {
        let ops = vec![
            op(
                "POST",
                Some("g1"),
                "/Groups",
                json!({"displayName": "G", "members": [{"value": "bulkId:u1"}, {"value": "bulkId:u2"}]}),
            ),
            op("DELETE", None, "/Users/old", Value::Null),
            op("POST", Some("u1"), "/Users", json!({"userName": "a"})),
            op(
                "PATCH",
                None,
                "/Groups/bulkId:g1",
                json!({"Operations": []}),
            ),
            op(
                "POST",
                Some("u2"),
                "/Users",
                json!({"userName": "b", "x": "bulkId:unknown"}),
            ),
        ];
        assert_eq!(bulk_dependency_order(&ops).unwrap(), [1, 2, 4, 0, 3]);
        let independent = vec![op("DELETE", None, "/Users/1", Value::Null); 3];
        assert_eq!(bulk_dependency_order(&independent).unwrap(), [0, 1, 2]);
    }

    #[test]
    fn circular_references_are_409() {
        let ops = vec![
            op(
                "POST",
                Some("a"),
                "/Groups",
                json!({"displayName": "A", "members": [{"value": "bulkId:b", "type": "Group"}]}),
            ),
            op(
                "POST",
                Some("b"),
                "/Groups",
                json!({"displayName": "B", "members": [{"value": "bulkId:a", "type": "Group"}]}),
            ),
            op("POST", Some("c"), "/Users", json!({"userName": "c"})),
        ];
        let e = bulk_dependency_order(&ops).unwrap_err();
        assert_eq!(e.status, 409);
        assert!(e.detail.contains("a, b"), "{}", e.detail);
        let selfref = vec![op(
            "POST",
            Some("s"),
            "/Groups",
            json!({"members": [{"value": "bulkId:s"}]}),
        )];
        assert_eq!(bulk_dependency_order(&selfref).unwrap_err().status, 409);
    }

    #[test]
    fn bulk_response_shape() {
        let ok = BulkOperationResponse {
            method: "POST".into(),
            bulk_id: Some("qwerty".into()),
            version: Some("W/\"1\"".into()),
            location: Some("https://h/v2/Users/92b725cd".into()),
            status: "201".into(),
            response: None,
        };
        let failed = BulkOperationResponse::error(
            &op("put", None, "/Users/x", json!({})),
            &ScimError::not_found("no such user"),
        );
        let v = BulkResponse {
            operations: vec![ok, failed],
        }
        .to_value();
        assert_eq!(v["schemas"], json!([BULK_RESPONSE_SCHEMA]));
        assert_eq!(
            v["Operations"][0],
            json!({"method": "POST", "bulkId": "qwerty", "version": "W/\"1\"",
                   "location": "https://h/v2/Users/92b725cd", "status": "201"})
        );
        assert_eq!(v["Operations"][1]["method"], "PUT");
        assert_eq!(v["Operations"][1]["status"], "404");
        assert_eq!(v["Operations"][1]["response"]["status"], "404");
        assert!(v["Operations"][1].get("location").is_none());
    }
}
