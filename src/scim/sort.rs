//! Sorting of query results (RFC 7644 section 3.4.2.3): `sortBy` and `sortOrder`.
//!
//! A multi-valued attribute sorts by its primary value, else its first value; a complex one by
//! its `value` sub-attribute. Strings compare by `caseExact` (case-folded otherwise), numbers
//! numerically, dateTimes chronologically, booleans `false < true`. Resources without a value
//! sort as if greater than every value: last when ascending, first when descending (the order
//! SQL's default `NULLS LAST`/`NULLS FIRST` gives, so a store can sort the same way). The sort
//! is stable: ties keep their input order in both directions.

use std::cmp::Ordering;

use serde_json::Value;
use time::OffsetDateTime;

use super::error::ScimError;
use super::filter::{as_bool, as_datetime, as_f64, as_text, get_ci};
use super::schema::{AttrRef, AttrType, AttributeDef, ResourceType};

/// `sortOrder`: `ascending` (the default) or `descending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    #[default]
    Ascending,
    Descending,
}

impl SortOrder {
    /// Parses `sortOrder` case-insensitively; anything else is `invalidValue`.
    pub fn parse(s: &str) -> Result<SortOrder, ScimError> {
        match s.trim() {
            x if x.eq_ignore_ascii_case("ascending") => Ok(SortOrder::Ascending),
            x if x.eq_ignore_ascii_case("descending") => Ok(SortOrder::Descending),
            other => Err(ScimError::invalid_value(format!(
                "sortOrder must be 'ascending' or 'descending', not '{other}'"
            ))),
        }
    }
}

/// Checks that `sort_by` names an attribute of `rt` that can be sorted on (`invalidPath` for
/// unknown attributes, `invalidValue` for complex ones without a `value`).
pub fn validate_sort_by(rt: &ResourceType, sort_by: &AttrRef) -> Result<(), ScimError> {
    let r = rt.resolve(sort_by)?;
    let leaf = r.leaf();
    if leaf.ty == AttrType::Complex && leaf.sub("value").is_none() {
        return Err(ScimError::invalid_value(format!(
            "cannot sort by the complex attribute '{sort_by}'; name one of its sub-attributes"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Bool(bool),
    Num(f64),
    Time(OffsetDateTime),
    Text(String),
    Missing,
}

impl Key {
    fn rank(&self) -> u8 {
        match self {
            Key::Bool(_) => 0,
            Key::Num(_) => 1,
            Key::Time(_) => 2,
            Key::Text(_) => 3,
            Key::Missing => 4,
        }
    }
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Bool(a), Key::Bool(b)) => a.cmp(b),
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            (Key::Time(a), Key::Time(b)) => a.cmp(b),
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

fn key_of(def: &AttributeDef, v: Option<&Value>) -> Key {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Key::Missing;
    };
    let key = match def.ty {
        AttrType::Boolean => as_bool(v).map(Key::Bool),
        AttrType::Integer | AttrType::Decimal => as_f64(v).map(Key::Num),
        AttrType::DateTime => as_datetime(v)
            .map(Key::Time)
            .or_else(|| as_text(v).map(Key::Text)),
        AttrType::Complex => None,
        _ => as_text(v).map(|s| Key::Text(if def.case_exact { s } else { s.to_lowercase() })),
    };
    key.unwrap_or(Key::Missing)
}

/// The value `resource` sorts by.
fn sort_key(rt: &ResourceType, resource: &Value, sort_by: &AttrRef) -> Option<Key> {
    let r = rt.resolve(sort_by).ok()?;
    let container = match r.extension {
        Some(urn) => get_ci(resource, urn),
        None => Some(resource),
    };
    let raw = container.and_then(|c| get_ci(c, r.attr.name));
    let one = match raw {
        Some(Value::Array(items)) => items
            .iter()
            .find(|el| get_ci(el, "primary").and_then(as_bool) == Some(true))
            .or_else(|| items.first()),
        other => other,
    };
    let (def, v) = match (r.sub, r.attr.ty) {
        (Some(sd), _) => (sd, one.and_then(|el| get_ci(el, sd.name))),
        (None, AttrType::Complex) => {
            let vd = r.attr.sub("value")?;
            (vd, one.and_then(|el| get_ci(el, "value")))
        }
        (None, _) => (r.attr, one),
    };
    Some(key_of(def, v))
}

/// Sorts `resources` by `sort_by` in `order`, stably. An attribute `rt` does not know leaves
/// the order unchanged (call [`validate_sort_by`] first to report it).
pub fn sort_resources(
    rt: &ResourceType,
    resources: &mut [Value],
    sort_by: &AttrRef,
    order: SortOrder,
) {
    if rt.resolve(sort_by).is_err() {
        return;
    }
    let mut keyed: Vec<(Key, usize)> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (sort_key(rt, r, sort_by).unwrap_or(Key::Missing), i))
        .collect();
    keyed.sort_by(|(a, _), (b, _)| match order {
        SortOrder::Ascending => a.cmp(b),
        SortOrder::Descending => b.cmp(a),
    });
    let mut taken: Vec<Option<Value>> = resources.iter_mut().map(|r| Some(r.take())).collect();
    for (slot, (_, i)) in resources.iter_mut().zip(keyed) {
        if let Some(v) = taken.get_mut(i).and_then(Option::take) {
            *slot = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_RESOURCE, USER_RESOURCE};
    use crate::scim::ScimType;
    use serde_json::json;

    fn ids(v: &[Value]) -> Vec<&str> {
        v.iter().map(|r| r["id"].as_str().unwrap()).collect()
    }

    fn sorted(mut v: Vec<Value>, by: &str, order: SortOrder) -> Vec<String> {
        sort_resources(&USER_RESOURCE, &mut v, &AttrRef::parse(by).unwrap(), order);
        ids(&v).into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn sort_ascending_by_user_name_ignores_case() {
        let v = vec![
            json!({"id": "1", "userName": "bob"}),
            json!({"id": "2", "userName": "Alice"}),
            json!({"id": "3", "userName": "carol"}),
        ];
        assert_eq!(
            sorted(v.clone(), "userName", SortOrder::Ascending),
            ["2", "1", "3"]
        );
        assert_eq!(
            sorted(v, "USERNAME", SortOrder::Descending),
            ["3", "1", "2"]
        );
    }

    #[test]
    fn sort_case_exact_attribute_respects_case() {
        let v = vec![
            json!({"id": "1", "externalId": "a"}),
            json!({"id": "2", "externalId": "B"}),
        ];
        assert_eq!(sorted(v, "externalId", SortOrder::Ascending), ["2", "1"]);
    }

    #[test]
    fn sort_missing_values_last_ascending_first_descending() {
        let v = vec![
            json!({"id": "1"}),
            json!({"id": "2", "title": "b"}),
            json!({"id": "3", "title": null}),
            json!({"id": "4", "title": "a"}),
        ];
        assert_eq!(
            sorted(v.clone(), "title", SortOrder::Ascending),
            ["4", "2", "1", "3"]
        );
        assert_eq!(
            sorted(v, "title", SortOrder::Descending),
            ["1", "3", "2", "4"]
        );
    }

    #[test]
    fn sort_multi_valued_uses_primary_value_else_first() {
        let v = vec![
            json!({"id": "1", "emails": [{"value": "a@x"}, {"value": "z@x", "primary": true}]}),
            json!({"id": "2", "emails": [{"value": "m@x"}, {"value": "b@x"}]}),
        ];
        assert_eq!(
            sorted(v.clone(), "emails", SortOrder::Ascending),
            ["2", "1"]
        );
        assert_eq!(sorted(v, "emails.value", SortOrder::Ascending), ["2", "1"]);
    }

    #[test]
    fn sort_is_stable_ties_keep_input_order() {
        let v = vec![
            json!({"id": "1", "title": "same"}),
            json!({"id": "2", "title": "SAME"}),
            json!({"id": "3", "title": "same"}),
        ];
        assert_eq!(
            sorted(v.clone(), "title", SortOrder::Ascending),
            ["1", "2", "3"]
        );
        assert_eq!(sorted(v, "title", SortOrder::Descending), ["1", "2", "3"]);
    }

    #[test]
    fn sort_datetime_compares_chronologically() {
        let v = vec![
            json!({"id": "1", "meta": {"created": "2024-01-01T10:00:00+02:00"}}),
            json!({"id": "2", "meta": {"created": "2024-01-01T09:00:00Z"}}),
        ];
        // 10:00+02:00 is 08:00Z: earlier, although it is greater as text.
        assert_eq!(sorted(v, "meta.created", SortOrder::Ascending), ["1", "2"]);
    }

    #[test]
    fn sort_booleans_false_before_true() {
        let v = vec![
            json!({"id": "1", "active": true}),
            json!({"id": "2", "active": false}),
        ];
        assert_eq!(sorted(v, "active", SortOrder::Ascending), ["2", "1"]);
    }

    #[test]
    fn sort_by_extension_attribute_and_manager_value() {
        let v = vec![
            json!({"id": "1", ENTERPRISE_USER_SCHEMA: {"employeeNumber": "9", "manager": {"value": "b"}}}),
            json!({"id": "2", ENTERPRISE_USER_SCHEMA: {"employeeNumber": "10", "manager": {"value": "a"}}}),
        ];
        // employeeNumber is a string: "10" < "9".
        assert_eq!(
            sorted(v.clone(), "employeeNumber", SortOrder::Ascending),
            ["2", "1"]
        );
        assert_eq!(
            sorted(
                v,
                &format!("{ENTERPRISE_USER_SCHEMA}:manager"),
                SortOrder::Ascending
            ),
            ["2", "1"]
        );
    }

    #[test]
    fn sort_group_by_display_name() {
        let mut v = vec![
            json!({"id": "1", "displayName": "zeta"}),
            json!({"id": "2", "displayName": "Alpha"}),
        ];
        sort_resources(
            &GROUP_RESOURCE,
            &mut v,
            &AttrRef::parse("displayName").unwrap(),
            SortOrder::Ascending,
        );
        assert_eq!(ids(&v), ["2", "1"]);
    }

    #[test]
    fn sort_by_unknown_attribute_keeps_order_and_validation_reports_it() {
        let v = vec![json!({"id": "2"}), json!({"id": "1"})];
        assert_eq!(sorted(v, "nope", SortOrder::Ascending), ["2", "1"]);
        let e = validate_sort_by(&USER_RESOURCE, &AttrRef::parse("nope").unwrap()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        let e = validate_sort_by(&USER_RESOURCE, &AttrRef::parse("name").unwrap()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(validate_sort_by(&USER_RESOURCE, &AttrRef::parse("emails").unwrap()).is_ok());
    }

    #[test]
    fn sort_order_parses_case_insensitively() {
        assert_eq!(
            SortOrder::parse("DESCENDING").unwrap(),
            SortOrder::Descending
        );
        assert_eq!(SortOrder::parse("ascending").unwrap(), SortOrder::Ascending);
        assert!(SortOrder::parse("up").is_err());
    }
}
