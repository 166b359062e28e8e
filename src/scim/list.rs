//! Paging, list responses and search requests (RFC 7644 sections 3.4.2, 3.4.2.4 and 3.4.3).
//!
//! Paging is forgiving the way RFC 7644 3.4.2.4 asks: a `startIndex` below 1 means 1, a negative
//! `count` means 0, a `count` above the server maximum is cut to it, and numbers too large for
//! the machine saturate instead of failing. Only text that is not a number is an error.

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::error::ScimError;
use super::projection::Projection;
use super::schema::LIST_RESPONSE_SCHEMA;

/// A page request: 1-based `start_index` and a `count` already clamped to `[0, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub start_index: usize,
    pub count: usize,
}

impl Paging {
    /// Reads the `startIndex` and `count` query parameters. Absent or empty parameters take the
    /// defaults (`startIndex` 1, `count` `default_count`, itself capped at `max_count`);
    /// non-numeric ones are 400 `invalidValue`.
    pub fn from_params(
        start_index: Option<&str>,
        count: Option<&str>,
        default_count: usize,
        max_count: usize,
    ) -> Result<Paging, ScimError> {
        let start = parse_param("startIndex", start_index)?;
        let count = parse_param("count", count)?;
        Ok(Self::from_numbers(start, count, default_count, max_count))
    }

    /// The same clamping for numbers already parsed (a `.search` body).
    pub fn from_numbers(
        start_index: Option<i64>,
        count: Option<i64>,
        default_count: usize,
        max_count: usize,
    ) -> Paging {
        let start_index = match start_index {
            Some(n) if n > 1 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => 1,
        };
        let count = match count {
            None => default_count,
            Some(n) if n <= 0 => 0,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        }
        .min(max_count);
        Paging { start_index, count }
    }

    /// The number of results to skip (0-based offset).
    pub fn offset(&self) -> usize {
        self.start_index - 1
    }

    /// The slice of `0..total` this page covers (empty past the end or when `count` is 0).
    pub fn range(&self, total: usize) -> std::ops::Range<usize> {
        let start = self.offset().min(total);
        let end = start.saturating_add(self.count).min(total);
        start..end
    }
}

fn parse_param(name: &str, raw: Option<&str>) -> Result<Option<i64>, ScimError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    parse_saturating(raw).map(Some).ok_or_else(|| {
        ScimError::invalid_value(format!("'{name}' must be an integer, not '{raw}'"))
    })
}

/// An optionally signed run of digits, saturating at the `i64` bounds.
fn parse_saturating(s: &str) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<i64>() {
        Ok(n) if negative => -n,
        Ok(n) => n,
        Err(_) if negative => i64::MIN,
        Err(_) => i64::MAX,
    })
}

/// A ListResponse (RFC 7644 section 3.4.2): `totalResults`, `startIndex`, `itemsPerPage` as
/// integers and `Resources`, present even when empty.
pub fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": start_index.max(1),
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// The body of `POST .../.search` (RFC 7644 section 3.4.3). `attributes` and
/// `excludedAttributes` are accepted as arrays or as one comma-separated string, and
/// `startIndex`/`count` as numbers or numeric strings, because clients send both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default, deserialize_with = "de_string_list")]
    pub attributes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_string_list")]
    pub excluded_attributes: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub sort_by: Option<String>,
    #[serde(default)]
    pub sort_order: Option<String>,
    #[serde(default, deserialize_with = "de_lenient_int")]
    pub start_index: Option<i64>,
    #[serde(default, deserialize_with = "de_lenient_int")]
    pub count: Option<i64>,
}

impl SearchRequest {
    /// The page the request asks for, clamped like the query parameters.
    pub fn paging(&self, default_count: usize, max_count: usize) -> Paging {
        Paging::from_numbers(self.start_index, self.count, default_count, max_count)
    }

    /// The projection the request asks for.
    pub fn projection(&self) -> Result<Projection, ScimError> {
        let attributes = self.attributes.as_ref().map(|v| v.join(","));
        let excluded = self.excluded_attributes.as_ref().map(|v| v.join(","));
        Projection::parse(attributes.as_deref(), excluded.as_deref())
    }
}

fn de_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::Many(v)) => Some(v),
        Some(OneOrMany::One(s)) => Some(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
    })
}

fn de_lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Ok(Some(i)),
            (None, Some(_), _) => Ok(Some(i64::MAX)),
            // A whole number written as a float (`5.0`) is that number; `as` saturates
            // beyond the i64 range.
            (None, None, Some(f)) if f.fract() == 0.0 => Ok(Some(f as i64)),
            _ => Err(D::Error::custom("expected an integer")),
        },
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => parse_saturating(s.trim())
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected an integer, not '{s}'"))),
        Some(other) => Err(D::Error::custom(format!(
            "expected an integer, not {}",
            super::schema::kind(&other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::ScimType;

    fn page(s: Option<&str>, c: Option<&str>) -> Paging {
        Paging::from_params(s, c, 100, 200).unwrap()
    }

    #[test]
    fn absent_parameters_take_defaults() {
        assert_eq!(
            page(None, None),
            Paging {
                start_index: 1,
                count: 100
            }
        );
        assert_eq!(page(Some(""), Some(" ")).start_index, 1);
        assert_eq!(
            Paging::from_params(None, None, 500, 200).unwrap().count,
            200
        );
    }

    #[test]
    fn start_index_below_one_means_one() {
        assert_eq!(page(Some("0"), None).start_index, 1);
        assert_eq!(page(Some("-5"), None).start_index, 1);
        assert_eq!(page(Some("1"), None).start_index, 1);
        assert_eq!(page(Some("7"), None).start_index, 7);
    }

    #[test]
    fn huge_numbers_saturate_instead_of_failing() {
        let p = page(
            Some("99999999999999999999999999"),
            Some("99999999999999999999"),
        );
        assert!(p.start_index >= i64::MAX as usize);
        assert_eq!(p.count, 200);
        assert_eq!(p.range(10), 10..10);
        assert_eq!(page(Some("-99999999999999999999999"), None).start_index, 1);
    }

    #[test]
    fn negative_count_means_zero_and_zero_is_kept() {
        assert_eq!(page(None, Some("-1")).count, 0);
        assert_eq!(page(None, Some("0")).count, 0);
        assert_eq!(page(None, Some("-99999999999999999999")).count, 0);
    }

    #[test]
    fn count_above_maximum_is_capped() {
        assert_eq!(page(None, Some("1000")).count, 200);
        assert_eq!(page(None, Some("+150")).count, 150);
    }

    #[test]
    fn non_numeric_parameters_are_invalid_value() {
        for (s, c) in [
            (Some("abc"), None),
            (None, Some("1.5")),
            (None, Some("ten")),
            (Some("--1"), None),
        ] {
            let e = Paging::from_params(s, c, 10, 10).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        }
    }

    #[test]
    fn range_covers_the_requested_window() {
        let p = page(Some("3"), Some("2"));
        assert_eq!(p.offset(), 2);
        assert_eq!(p.range(10), 2..4);
        assert_eq!(p.range(3), 2..3);
        assert_eq!(p.range(1), 1..1);
    }

    #[test]
    fn list_response_has_integer_counts_and_resources_even_when_empty() {
        let v = list_response(0, 1, vec![]);
        assert_eq!(v["schemas"][0], LIST_RESPONSE_SCHEMA);
        assert_eq!(v["totalResults"], 0);
        assert_eq!(v["startIndex"], 1);
        assert_eq!(v["itemsPerPage"], 0);
        assert_eq!(v["Resources"], json!([]));
        let v = list_response(5, 2, vec![json!({"id": "a"}), json!({"id": "b"})]);
        assert!(v["totalResults"].is_u64());
        assert_eq!(v["itemsPerPage"], 2);
        assert_eq!(v["Resources"][1]["id"], "b");
    }

    #[test]
    fn search_request_parses_camel_case_and_lenient_shapes() {
        let r: SearchRequest = serde_json::from_value(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "attributes": ["displayName", "userName"],
            "excludedAttributes": "emails, phoneNumbers",
            "filter": "displayName sw \"smith\"",
            "sortBy": "userName",
            "sortOrder": "descending",
            "startIndex": 1,
            "count": "10"
        }))
        .unwrap();
        assert_eq!(
            r.attributes.as_deref().unwrap(),
            ["displayName", "userName"]
        );
        assert_eq!(
            r.excluded_attributes.as_deref().unwrap(),
            ["emails", "phoneNumbers"]
        );
        assert_eq!(r.sort_by.as_deref(), Some("userName"));
        assert_eq!(r.count, Some(10));
        assert_eq!(
            r.paging(100, 200),
            Paging {
                start_index: 1,
                count: 10
            }
        );
        assert!(!r.projection().unwrap().is_empty());
        let empty: SearchRequest = serde_json::from_value(json!({})).unwrap();
        assert_eq!(empty, SearchRequest::default());
        assert!(serde_json::from_value::<SearchRequest>(json!({"count": "x"})).is_err());
    }

    #[test]
    fn whole_numbers_written_as_floats_are_those_numbers() {
        let r: SearchRequest =
            serde_json::from_value(json!({"startIndex": 3.0, "count": 5.0})).unwrap();
        assert_eq!((r.start_index, r.count), (Some(3), Some(5)));
        let r: SearchRequest =
            serde_json::from_value(json!({"startIndex": -1e300, "count": 1e300})).unwrap();
        assert_eq!((r.start_index, r.count), (Some(i64::MIN), Some(i64::MAX)));
        assert!(serde_json::from_value::<SearchRequest>(json!({"count": 2.5})).is_err());
    }
}
