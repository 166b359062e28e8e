//! PATCH tests: one per rule of `scim-interop.md` "PATCH", the RFC 7644 section 3.5.2
//! examples, and property tests.

use super::*;
use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_RESOURCE, USER_RESOURCE, USER_SCHEMA};
use crate::scim::ScimType;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeSet;

fn req(ops: Value) -> PatchRequest {
    PatchRequest::from_json(&json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})).unwrap()
}

fn user() -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "id": "u1",
        "externalId": "alexw",
        "userName": "alex.wu@contoso.com",
        "name": {"givenName": "Alex", "familyName": "Wu"},
        "displayName": "Alex Wu",
        "active": true,
        "emails": [
            {"value": "alex.wu@contoso.com", "type": "work", "primary": true},
            {"value": "alex@home.example", "type": "home"}
        ],
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z",
                 "lastModified": "2024-01-01T00:00:00Z", "version": "W/\"1\""}
    })
}

fn group(members: &[&str]) -> Value {
    let mut g = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "g1",
        "displayName": "Finance Analysts",
        "meta": {"resourceType": "Group"}
    });
    if !members.is_empty() {
        g["members"] = Value::Array(members.iter().map(|m| json!({"value": m})).collect());
    }
    g
}

fn patch_user(ops: Value) -> Result<PatchOutcome, ScimError> {
    apply_patch(&USER_RESOURCE, &user(), &req(ops))
}

fn ok_user(ops: Value) -> PatchOutcome {
    patch_user(ops).unwrap_or_else(|e| panic!("{e}"))
}

fn err_user(ops: Value) -> ScimError {
    patch_user(ops).unwrap_err()
}

fn member_values(g: &Value) -> Vec<String> {
    g["members"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// --- request parsing -------------------------------------------------------------------

#[test]
fn patch_request_keys_and_op_are_case_insensitive() {
    let r: PatchRequest = serde_json::from_value(json!({
        "schemas": [PATCH_OP_SCHEMA],
        "operations": [{"OP": "REPLACE", "Path": "active", "Value": false}, {"op": "Add", "path": "x", "value": 1}, {"op": "Remove", "path": "y"}]
    }))
    .unwrap();
    assert_eq!(r.operations[0].op, PatchOpKind::Replace);
    assert_eq!(r.operations[1].op, PatchOpKind::Add);
    assert_eq!(r.operations[2].op, PatchOpKind::Remove);
    assert_eq!(r.operations[0].path.as_deref(), Some("active"));
}

#[test]
fn patch_request_with_unknown_op_is_invalid_syntax() {
    let e = PatchRequest::from_json(&json!({"Operations": [{"op": "merge", "path": "a"}]}))
        .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    assert!(e.detail.contains("merge"));
}

#[test]
fn patch_request_missing_schemas_is_accepted_wrong_one_rejected() {
    let r = PatchRequest::from_json(
        &json!({"Operations": [{"op": "replace", "path": "active", "value": false}]}),
    )
    .unwrap();
    assert!(apply_patch(&USER_RESOURCE, &user(), &r).is_ok());
    let r = PatchRequest::from_json(&json!({"schemas": [USER_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": false}]})).unwrap();
    let e = apply_patch(&USER_RESOURCE, &user(), &r).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
}

#[test]
fn patch_without_operations_is_invalid_syntax() {
    let e = apply_patch(&USER_RESOURCE, &user(), &req(json!([]))).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
    let e = PatchRequest::from_json(&json!({"schemas": [PATCH_OP_SCHEMA]})).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax));
}

// --- add / replace ---------------------------------------------------------------------

#[test]
fn patch_replace_active_false_string_gives_boolean_false() {
    let o = ok_user(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    assert_eq!(o.resource["active"], json!(false));
    assert!(o.changed);
    assert_eq!(o.summary.attributes, BTreeSet::from(["active".to_owned()]));
}

#[test]
fn patch_no_path_value_keys_may_be_plain_dotted_or_urn_qualified() {
    let o = ok_user(json!([{"op": "replace", "value": {
        "displayName": "Alex Q. Wu",
        "name.givenName": "Alexander",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "20482",
        "urn:ietf:params:scim:schemas:core:2.0:User:nickName": "Al"
    }}]));
    let r = &o.resource;
    assert_eq!(r["displayName"], "Alex Q. Wu");
    assert_eq!(
        r["name"],
        json!({"givenName": "Alexander", "familyName": "Wu"})
    );
    assert_eq!(r[ENTERPRISE_USER_SCHEMA]["employeeNumber"], "20482");
    assert_eq!(r["nickName"], "Al");
    assert!(r["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(ENTERPRISE_USER_SCHEMA)));
    assert!(o
        .summary
        .attributes
        .contains(&format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber")));
    assert!(o.summary.attributes.contains("name"));
}

#[test]
fn patch_no_path_extension_urn_key_with_object_value() {
    let o = ok_user(json!([{"op": "add", "value": {
        ENTERPRISE_USER_SCHEMA: {"department": "Finance", "manager": "m1"}
    }}]));
    assert_eq!(
        o.resource[ENTERPRISE_USER_SCHEMA],
        json!({"department": "Finance", "manager": {"value": "m1"}})
    );
}

#[test]
fn patch_no_path_names_are_case_insensitive_and_stored_canonically() {
    let o =
        ok_user(json!([{"op": "replace", "value": {"DISPLAYNAME": "X", "Name.GivenName": "Y"}}]));
    assert_eq!(o.resource["displayName"], "X");
    assert_eq!(o.resource["name"]["givenName"], "Y");
    assert!(o.resource.get("DISPLAYNAME").is_none());
}

#[test]
fn patch_no_path_schemas_key_is_ignored() {
    let o =
        ok_user(json!([{"op": "replace", "value": {"schemas": ["whatever"], "title": "Analyst"}}]));
    assert_eq!(o.resource["schemas"], json!([USER_SCHEMA]));
    assert_eq!(o.resource["title"], "Analyst");
}

#[test]
fn patch_value_path_sub_attribute_replaces_matching_element() {
    let o = ok_user(
        json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "alex.q.wu@contoso.com"}]),
    );
    assert_eq!(
        o.resource["emails"][0],
        json!({"value": "alex.q.wu@contoso.com", "type": "work", "primary": true})
    );
    assert_eq!(o.resource["emails"][1]["value"], "alex@home.example");
}

#[test]
fn patch_replace_with_type_filter_matching_nothing_creates_element() {
    let o = ok_user(
        json!([{"op": "replace", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 425 555 0100"}]),
    );
    assert_eq!(
        o.resource["phoneNumbers"],
        json!([{"type": "work", "value": "+1 425 555 0100"}])
    );
    let o = ok_user(
        json!([{"op": "add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"}]),
    );
    assert_eq!(
        o.resource["addresses"],
        json!([{"type": "work", "streetAddress": "1 Main St"}])
    );
    let o = ok_user(
        json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": {"locality": "Oslo"}}]),
    );
    assert_eq!(
        o.resource["addresses"],
        json!([{"type": "work", "locality": "Oslo"}])
    );
}

#[test]
fn patch_replace_with_other_filter_matching_nothing_is_no_target() {
    let e = err_user(
        json!([{"op": "replace", "path": "emails[value eq \"nobody@x\"].type", "value": "home"}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
    let e = err_user(
        json!([{"op": "replace", "path": "emails[type eq \"other\" and primary eq true].value", "value": "a@b"}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
}

#[test]
fn patch_add_to_multi_valued_appends_values_not_present() {
    let o = ok_user(json!([{"op": "add", "path": "emails", "value": [
        {"value": "alex@home.example", "type": "home"},
        {"value": "alex@other.example", "type": "other"}
    ]}]));
    let emails = o.resource["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 3);
    assert_eq!(emails[2]["value"], "alex@other.example");
}

#[test]
fn patch_add_of_value_already_present_changes_nothing() {
    let o = ok_user(
        json!([{"op": "add", "path": "emails", "value": [{"value": "alex@home.example", "type": "home"}]}]),
    );
    assert!(!o.changed);
    assert!(o.summary.is_empty());
    let g = group(&["u1"]);
    let o = apply_patch(&GROUP_RESOURCE, &g, &req(json!([{"op": "add", "path": "members", "value": [{"value": "u1", "display": "Jane"}]}]))).unwrap();
    assert!(!o.changed);
    assert_eq!(o.resource, g);
}

#[test]
fn patch_replace_multi_valued_replaces_the_whole_list() {
    let o = ok_user(
        json!([{"op": "replace", "path": "emails", "value": [{"value": "new@x.io", "type": "work"}]}]),
    );
    assert_eq!(
        o.resource["emails"],
        json!([{"value": "new@x.io", "type": "work"}])
    );
}

#[test]
fn patch_replace_members_with_path_is_a_full_push() {
    let g = group(&["u1", "u2"]);
    let o = apply_patch(&GROUP_RESOURCE, &g, &req(json!([{"op": "replace", "path": "members", "value": [{"value": "u2"}, {"value": "u3"}]}]))).unwrap();
    assert_eq!(member_values(&o.resource), ["u2", "u3"]);
    assert_eq!(o.summary.members_added, ["u3"]);
    assert_eq!(o.summary.members_removed, ["u1"]);
    assert_eq!(o.summary.attributes, BTreeSet::from(["members".to_owned()]));
}

#[test]
fn patch_okta_rename_with_own_id_is_accepted() {
    let g = group(&[]);
    let o = apply_patch(
        &GROUP_RESOURCE,
        &g,
        &req(json!([{"op": "replace", "value": {"id": "g1", "displayName": "BI Analysts EMEA"}}])),
    )
    .unwrap();
    assert_eq!(o.resource["displayName"], "BI Analysts EMEA");
    assert_eq!(o.resource["id"], "g1");
    assert_eq!(
        o.summary.attributes,
        BTreeSet::from(["displayName".to_owned()])
    );
}

#[test]
fn patch_change_of_read_only_attribute_is_mutability() {
    for ops in [
        json!([{"op": "replace", "value": {"id": "other"}}]),
        json!([{"op": "replace", "path": "id", "value": "other"}]),
        json!([{"op": "replace", "path": "meta.version", "value": "W/\"9\""}]),
        json!([{"op": "add", "path": "groups", "value": [{"value": "g1"}]}]),
        json!([{"op": "replace", "path": "manager.displayName", "value": "Boss"}]),
        json!([{"op": "remove", "path": "meta"}]),
        json!([{"op": "remove", "path": "id"}]),
    ] {
        let e = err_user(ops.clone());
        assert_eq!(e.scim_type, Some(ScimType::Mutability), "{ops}: {e}");
    }
}

#[test]
fn patch_read_only_sub_attributes_inside_values_are_ignored() {
    let o = ok_user(
        json!([{"op": "add", "path": "manager", "value": {"value": "m1", "displayName": "Boss"}}]),
    );
    assert_eq!(
        o.resource[ENTERPRISE_USER_SCHEMA]["manager"],
        json!({"value": "m1"})
    );
}

#[test]
fn patch_immutable_member_value_can_be_set_when_absent_but_not_changed() {
    let g = json!({"id": "g1", "displayName": "G", "members": [{"value": "u1"}]});
    let o = apply_patch(
        &GROUP_RESOURCE,
        &g,
        &req(json!([{"op": "add", "path": "members[value eq \"u1\"].type", "value": "User"}])),
    )
    .unwrap();
    assert_eq!(
        o.resource["members"],
        json!([{"value": "u1", "type": "User"}])
    );
    let e = apply_patch(
        &GROUP_RESOURCE,
        &o.resource,
        &req(json!([{"op": "replace", "path": "members[value eq \"u1\"].type", "value": "Group"}])),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
    let e = apply_patch(
        &GROUP_RESOURCE,
        &g,
        &req(json!([{"op": "replace", "path": "members[value eq \"u1\"].value", "value": "u2"}])),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
}

#[test]
fn patch_setting_primary_clears_the_others() {
    let o = ok_user(
        json!([{"op": "add", "path": "emails", "value": [{"value": "n@x.io", "type": "other", "primary": "True"}]}]),
    );
    let emails = o.resource["emails"].as_array().unwrap();
    assert_eq!(emails[0]["primary"], json!(false));
    assert_eq!(emails[2]["primary"], json!(true));
    let o = ok_user(
        json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": true}]),
    );
    let primaries: Vec<_> = o.resource["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["primary"] == json!(true))
        .collect();
    assert_eq!(primaries.len(), 1);
    assert_eq!(primaries[0]["type"], "home");
}

#[test]
fn patch_canonical_values_are_not_enforced() {
    let o = ok_user(
        json!([{"op": "add", "path": "emails[type eq \"msExchange\"].value", "value": "x@y.z"}]),
    );
    assert_eq!(
        o.resource["emails"][2],
        json!({"type": "msExchange", "value": "x@y.z"})
    );
}

#[test]
fn patch_unknown_attribute_in_path_is_invalid_path() {
    for ops in [
        json!([{"op": "replace", "path": "nope", "value": "x"}]),
        json!([{"op": "replace", "value": {"nope": "x"}}]),
        json!([{"op": "replace", "path": "name.nope", "value": "x"}]),
        json!([{"op": "replace", "path": "urn:example:unknown:2.0:User:thing", "value": "x"}]),
        json!([{"op": "add", "value": {"urn:example:unknown:2.0:User": {"thing": "x"}}}]),
        json!([{"op": "remove", "path": "nope"}]),
    ] {
        let e = err_user(ops.clone());
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{ops}: {e}");
    }
}

#[test]
fn patch_value_of_wrong_type_is_invalid_value() {
    for ops in [
        json!([{"op": "replace", "path": "active", "value": "maybe"}]),
        json!([{"op": "replace", "path": "name", "value": "Alex"}]),
        json!([{"op": "replace", "path": "displayName", "value": {"a": 1}}]),
        json!([{"op": "replace", "path": "meta.created", "value": 3}]),
        json!([{"op": "replace", "value": "not an object"}]),
    ] {
        let e = err_user(ops.clone());
        assert!(
            matches!(
                e.scim_type,
                Some(ScimType::InvalidValue) | Some(ScimType::Mutability)
            ),
            "{ops}: {e}"
        );
    }
    let e = err_user(json!([{"op": "replace", "path": "active", "value": 7}]));
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn patch_manager_shapes_become_object() {
    for v in [
        json!("m1"),
        json!(["m1"]),
        json!([{"value": "m1", "$ref": null}]),
        json!({"value": "m1"}),
    ] {
        let o = ok_user(
            json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": v}]),
        );
        assert_eq!(
            o.resource[ENTERPRISE_USER_SCHEMA]["manager"],
            json!({"value": "m1"})
        );
        assert!(o
            .summary
            .attributes
            .contains(&format!("{ENTERPRISE_USER_SCHEMA}:manager")));
    }
}

#[test]
fn patch_new_manager_value_replaces_the_whole_manager() {
    let mut u = user();
    u[ENTERPRISE_USER_SCHEMA] =
        json!({"manager": {"value": "m1", "$ref": "../Users/m1", "displayName": "Old"}});
    let o = apply_patch(
        &USER_RESOURCE,
        &u,
        &req(json!([{"op": "replace", "path": "manager", "value": "m2"}])),
    )
    .unwrap();
    assert_eq!(
        o.resource[ENTERPRISE_USER_SCHEMA]["manager"],
        json!({"value": "m2"})
    );
}

#[test]
fn patch_single_valued_complex_is_merged() {
    let o = ok_user(json!([{"op": "replace", "path": "name", "value": {"middleName": "Q"}}]));
    assert_eq!(
        o.resource["name"],
        json!({"givenName": "Alex", "familyName": "Wu", "middleName": "Q"})
    );
}

// --- remove ----------------------------------------------------------------------------

#[test]
fn patch_remove_without_path_is_no_target() {
    let e = err_user(json!([{"op": "remove"}]));
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
}

#[test]
fn patch_remove_members_with_value_array_removes_only_listed() {
    let g = group(&["u1", "u2", "u3"]);
    let o = apply_patch(&GROUP_RESOURCE, &g, &req(json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "u1"}, {"value": "u3"}]}]))).unwrap();
    assert_eq!(member_values(&o.resource), ["u2"]);
    assert_eq!(o.summary.members_removed, ["u1", "u3"]);
    assert!(o.summary.members_added.is_empty());
}

#[test]
fn patch_remove_members_without_value_removes_all() {
    let g = group(&["u1", "u2"]);
    let o = apply_patch(
        &GROUP_RESOURCE,
        &g,
        &req(json!([{"op": "remove", "path": "members"}])),
    )
    .unwrap();
    assert!(o.resource.get("members").is_none());
    assert_eq!(o.summary.members_removed, ["u1", "u2"]);
}

#[test]
fn patch_remove_members_by_filter_removes_that_member() {
    let g = group(&["u1", "u2"]);
    let o = apply_patch(
        &GROUP_RESOURCE,
        &g,
        &req(json!([{"op": "remove", "path": "members[value eq \"u2\"]"}])),
    )
    .unwrap();
    assert_eq!(member_values(&o.resource), ["u1"]);
    assert_eq!(o.summary.members_removed, ["u2"]);
}

#[test]
fn patch_remove_with_filter_matching_nothing_changes_nothing() {
    let g = group(&["u1"]);
    let o = apply_patch(
        &GROUP_RESOURCE,
        &g,
        &req(json!([{"op": "remove", "path": "members[value eq \"gone\"]"}])),
    )
    .unwrap();
    assert!(!o.changed);
}

#[test]
fn patch_remove_required_attribute_is_mutability() {
    let e = err_user(json!([{"op": "remove", "path": "userName"}]));
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
    let e = err_user(json!([{"op": "replace", "path": "userName", "value": null}]));
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
    let e = apply_patch(
        &GROUP_RESOURCE,
        &group(&[]),
        &req(json!([{"op": "remove", "path": "displayName"}])),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::Mutability));
}

#[test]
fn patch_remove_sub_attribute_and_empty_parent() {
    let o = ok_user(
        json!([{"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "name.familyName"}]),
    );
    assert!(o.resource.get("name").is_none());
    let o = ok_user(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]));
    assert_eq!(o.resource["emails"].as_array().unwrap().len(), 1);
}

#[test]
fn patch_remove_extension_attribute_drops_empty_extension_and_schema() {
    let mut u = user();
    u["schemas"] = json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]);
    u[ENTERPRISE_USER_SCHEMA] = json!({"manager": {"value": "m1"}});
    let o = apply_patch(
        &USER_RESOURCE,
        &u,
        &req(json!([{"op": "remove", "path": "manager"}])),
    )
    .unwrap();
    assert!(o.resource.get(ENTERPRISE_USER_SCHEMA).is_none());
    assert_eq!(o.resource["schemas"], json!([USER_SCHEMA]));
    assert_eq!(
        o.summary.attributes,
        BTreeSet::from([format!("{ENTERPRISE_USER_SCHEMA}:manager")])
    );
}

#[test]
fn patch_remove_of_five_thousand_member_group_is_linear() {
    let ids: Vec<String> = (0..5000).map(|i| format!("user-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let g = group(&refs);
    let listed: Vec<Value> = ids
        .iter()
        .step_by(2)
        .map(|id| json!({"value": id}))
        .collect();
    let start = std::time::Instant::now();
    let o = apply_patch(
        &GROUP_RESOURCE,
        &g,
        &req(json!([
            {"op": "remove", "path": "members[value eq \"user-4999\"]"},
            {"op": "remove", "path": "members", "value": listed},
            {"op": "add", "path": "members", "value": [{"value": "user-1"}, {"value": "new"}]}
        ])),
    )
    .unwrap();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(o.resource["members"].as_array().unwrap().len(), 2500);
    assert_eq!(o.summary.members_added, ["new"]);
    assert_eq!(o.summary.members_removed.len(), 2501);
}

// --- atomicity and no-op ---------------------------------------------------------------

#[test]
fn patch_is_atomic_a_failing_operation_changes_nothing() {
    let before = user();
    let e = apply_patch(
        &USER_RESOURCE,
        &before,
        &req(json!([
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "nope", "value": "x"}
        ])),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    assert!(
        e.detail.starts_with("operation 2 (replace 'nope')"),
        "{}",
        e.detail
    );
    assert_eq!(before, user());
}

#[test]
fn patch_resulting_in_same_resource_is_not_changed() {
    let o = ok_user(json!([
        {"op": "replace", "path": "displayName", "value": "Other"},
        {"op": "replace", "path": "displayName", "value": "Alex Wu"},
        {"op": "replace", "path": "active", "value": "true"}
    ]));
    assert!(!o.changed);
    assert!(o.summary.is_empty());
    assert_eq!(o.resource, user());
}

// --- RFC 7644 section 3.5.2 examples ---------------------------------------------------

#[test]
fn patch_rfc_3_5_2_1_add_member_and_add_without_path() {
    let g = json!({"id": "acbf3ae7", "displayName": "Tour Guides", "members": [{"value": "2819c223", "display": "Babs"}]});
    let o = apply_patch(&GROUP_RESOURCE, &g, &req(json!([{"op": "add", "path": "members", "value": [
        {"display": "Babs Jensen", "$ref": "https://example.com/v2/Users/2819c223...", "value": "2819c223-7f76-453a-919d-413861904646"}
    ]}]))).unwrap();
    assert_eq!(o.resource["members"].as_array().unwrap().len(), 2);
    assert_eq!(
        o.summary.members_added,
        ["2819c223-7f76-453a-919d-413861904646"]
    );
    let o = ok_user(
        json!([{"op": "add", "value": {"emails": [{"value": "babs@jensen.org", "type": "home"}], "nickname": "Babs"}}]),
    );
    assert_eq!(o.resource["nickName"], "Babs");
    assert_eq!(o.resource["emails"].as_array().unwrap().len(), 3);
}

#[test]
fn patch_rfc_3_5_2_2_remove_examples() {
    let g = group(&["2819c223-7f76-453a-919d-413861904646", "other"]);
    let o = apply_patch(&GROUP_RESOURCE, &g, &req(json!([{"op": "remove", "path": "members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"}]))).unwrap();
    assert_eq!(member_values(&o.resource), ["other"]);
    let o = apply_patch(
        &GROUP_RESOURCE,
        &g,
        &req(json!([{"op": "remove", "path": "members"}])),
    )
    .unwrap();
    assert!(o.resource.get("members").is_none());
    // Remove all members, then add one: the RFC's replace-by-remove-and-add example.
    let o = apply_patch(&GROUP_RESOURCE, &g, &req(json!([
        {"op": "remove", "path": "members"},
        {"op": "add", "path": "members", "value": [{"display": "James Smith", "$ref": "https://example.com/v2/Users/08e1d05d", "value": "08e1d05d"}]}
    ]))).unwrap();
    assert_eq!(member_values(&o.resource), ["08e1d05d"]);
    let mut u = user();
    u[ENTERPRISE_USER_SCHEMA] = json!({"employeeNumber": "1"});
    let o = apply_patch(&USER_RESOURCE, &u, &req(json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"contoso.com\"]"}]))).unwrap();
    assert_eq!(o.resource["emails"].as_array().unwrap().len(), 1);
    let o = apply_patch(
        &USER_RESOURCE,
        &u,
        &req(json!([{"op": "remove", "path": ENTERPRISE_USER_SCHEMA}])),
    )
    .unwrap();
    assert!(o.resource.get(ENTERPRISE_USER_SCHEMA).is_none());
}

#[test]
fn patch_rfc_3_5_2_3_replace_examples() {
    let g = group(&["a", "b"]);
    let o = apply_patch(&GROUP_RESOURCE, &g, &req(json!([{"op": "replace", "path": "members", "value": [{"display": "Babs Jensen", "value": "2819c223"}, {"display": "James Smith", "value": "08e1d05d"}]}]))).unwrap();
    assert_eq!(member_values(&o.resource), ["2819c223", "08e1d05d"]);
    let mut u = user();
    u["addresses"] = json!([{"type": "work", "streetAddress": "old", "locality": "Hollywood"}]);
    // The RFC's `formatted` has a newline, which the bridge refuses in every value; one line here.
    let o = apply_patch(&USER_RESOURCE, &u, &req(json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": {"type": "work", "streetAddress": "911 Universal City Plaza", "locality": "Hollywood", "region": "CA", "postalCode": "91608", "country": "US", "formatted": "911 Universal City Plaza, Hollywood, CA 91608 US", "primary": true}}]))).unwrap();
    assert_eq!(
        o.resource["addresses"][0]["streetAddress"],
        "911 Universal City Plaza"
    );
    assert_eq!(o.resource["addresses"][0]["primary"], true);
    let o = apply_patch(&USER_RESOURCE, &u, &req(json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]))).unwrap();
    assert_eq!(
        o.resource["addresses"][0],
        json!({"type": "work", "streetAddress": "1010 Broadway Ave", "locality": "Hollywood"})
    );
    let o = ok_user(
        json!([{"op": "replace", "value": {"emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}, {"value": "babs@jensen.org", "type": "home"}], "nickName": "Babs"}}]),
    );
    assert_eq!(o.resource["emails"][0]["value"], "bjensen@example.com");
    assert_eq!(o.resource["nickName"], "Babs");
}

// --- properties ------------------------------------------------------------------------

fn good_op() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"op": "replace", "path": "displayName", "value": "P"})),
        Just(json!({"op": "add", "path": "emails", "value": [{"value": "p@x.io"}]})),
        Just(json!({"op": "replace", "value": {"title": "T", "active": "False"}})),
        Just(json!({"op": "remove", "path": "name.givenName"})),
        Just(json!({"op": "add", "path": "manager", "value": "m9"})),
        Just(json!({"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x.io"})),
    ]
}

fn bad_op() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"op": "replace", "path": "nope", "value": "x"})),
        Just(json!({"op": "remove"})),
        Just(json!({"op": "replace", "path": "id", "value": "other"})),
        Just(json!({"op": "replace", "path": "active", "value": "maybe"})),
        Just(json!({"op": "remove", "path": "userName"})),
        Just(json!({"op": "replace", "path": "emails[value eq \"none\"].type", "value": "x"})),
        Just(json!({"op": "add", "path": "emails[", "value": "x"})),
    ]
}

proptest! {
    #[test]
    fn patch_with_a_failing_operation_at_any_position_leaves_resource_unchanged(
        before in proptest::collection::vec(good_op(), 0..5),
        bad in bad_op(),
        after in proptest::collection::vec(good_op(), 0..5),
    ) {
        let resource = user();
        let mut ops = before.clone();
        ops.push(bad);
        ops.extend(after);
        let r = req(Value::Array(ops));
        let result = apply_patch(&USER_RESOURCE, &resource, &r);
        prop_assert!(result.is_err());
        let e = result.unwrap_err();
        let expected_prefix = format!("operation {} ", before.len() + 1);
        prop_assert!(e.detail.starts_with(&expected_prefix), "{}", e.detail);
        prop_assert_eq!(resource, user());
    }

    #[test]
    fn patch_path_parser_never_panics(s in "\\PC{0,120}") {
        let _ = Path::parse(&s);
        let _ = patch_user(json!([{"op": "replace", "path": s, "value": "x"}]));
    }
}

#[test]
fn patch_extension_object_value_may_carry_its_own_schemas() {
    let r = req(json!([{
        "op": "add",
        "path": ENTERPRISE_USER_SCHEMA,
        "value": {"schemas": [ENTERPRISE_USER_SCHEMA], "employeeNumber": "42"}
    }]));
    let out = apply_patch(&USER_RESOURCE, &user(), &r).unwrap();
    assert_eq!(out.resource[ENTERPRISE_USER_SCHEMA]["employeeNumber"], "42");
    assert!(out.resource[ENTERPRISE_USER_SCHEMA]
        .get("schemas")
        .is_none());
}

// ---- Values are checked, in every form an operation takes ---------------------------------

/// Every form a PATCH can write a text value in, for `bad`, with the attribute path the
/// refusal must name.
fn text_write_forms(bad: &Value) -> Vec<(&'static str, Value)> {
    let ext = ENTERPRISE_USER_SCHEMA;
    vec![
        (
            "displayName",
            json!([{"op": "replace", "path": "displayName", "value": bad}]),
        ),
        (
            "displayName",
            json!([{"op": "add", "path": "displayName", "value": bad}]),
        ),
        (
            "externalId",
            json!([{"op": "replace", "path": "externalId", "value": bad}]),
        ),
        (
            "userName",
            json!([{"op": "replace", "path": "userName", "value": bad}]),
        ),
        (
            "name.givenName",
            json!([{"op": "replace", "path": "name.givenName", "value": bad}]),
        ),
        (
            "name.familyName",
            json!([{"op": "add", "path": "name", "value": {"familyName": bad}}]),
        ),
        (
            "emails.value",
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": bad}]),
        ),
        (
            "emails.value",
            json!([{"op": "replace", "path": "emails.value", "value": bad}]),
        ),
        (
            "emails.value",
            json!([{"op": "add", "path": "emails", "value": [{"value": bad, "type": "other"}]}]),
        ),
        (
            "emails.value",
            json!([{"op": "replace", "path": "emails", "value": [{"value": bad}]}]),
        ),
        (
            "emails.value",
            json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": bad, "type": "work"}}]),
        ),
        (
            "emails.value",
            json!([{"op": "add", "path": "emails[type eq \"work\"]", "value": {"value": bad}}]),
        ),
        // A `type eq` filter that matches nothing creates the element (Entra).
        (
            "phoneNumbers.value",
            json!([{"op": "replace", "path": "phoneNumbers[type eq \"work\"].value", "value": bad}]),
        ),
        (
            "addresses.streetAddress",
            json!([{"op": "add", "path": "addresses[type eq \"work\"].streetAddress", "value": bad}]),
        ),
        (
            "displayName",
            json!([{"op": "replace", "value": {"displayName": bad}}]),
        ),
        (
            "name.givenName",
            json!([{"op": "replace", "value": {"name.givenName": bad}}]),
        ),
        (
            "name.givenName",
            json!([{"op": "add", "value": {"name": {"givenName": bad}}}]),
        ),
        (
            "emails.value",
            json!([{"op": "add", "value": {"emails": [{"value": bad}]}}]),
        ),
        (
            "title",
            json!([{"op": "replace", "value": {"urn:ietf:params:scim:schemas:core:2.0:User:title": bad}}]),
        ),
        (
            "department",
            json!([{"op": "replace", "path": format!("{ext}:department"), "value": bad}]),
        ),
        (
            "department",
            json!([{"op": "replace", "value": {format!("{ext}:department"): bad}}]),
        ),
        (
            "department",
            json!([{"op": "add", "path": ext, "value": {"department": bad}}]),
        ),
        (
            "department",
            json!([{"op": "replace", "value": {ext: {"department": bad}}}]),
        ),
        (
            "manager.value",
            json!([{"op": "add", "path": "manager", "value": bad}]),
        ),
        (
            "manager.value",
            json!([{"op": "add", "path": "manager", "value": [{"value": bad}]}]),
        ),
        (
            "manager.value",
            json!([{"op": "replace", "path": "manager.value", "value": bad}]),
        ),
        // The second operation fails: the first is not applied either.
        (
            "nickName",
            json!([
                {"op": "replace", "path": "title", "value": "ok"},
                {"op": "replace", "path": "nickName", "value": bad}
            ]),
        ),
    ]
}

#[test]
fn a_control_character_is_refused_in_every_form_of_write() {
    for (what, bad) in crate::scim::schema::tests::FORBIDDEN {
        for (at, ops) in text_write_forms(&json!(bad)) {
            if crate::scim::schema::multi_line(at.trim_matches('\''))
                && crate::scim::schema::only_line_breaks(bad)
            {
                ok_user(ops.clone());
                continue;
            }
            let e = err_user(ops.clone());
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{what}: {ops}");
            assert!(e.detail.contains(at), "{what}: {ops}: {}", e.detail);
            assert!(
                e.detail.contains("control character"),
                "{what}: {ops}: {}",
                e.detail
            );
        }
    }
    // Groups: members and the group's name, with and without a path.
    let g = group(&["a"]);
    for ops in [
        json!([{"op": "add", "path": "members", "value": [{"value": "b\r\n"}]}]),
        json!([{"op": "replace", "path": "members", "value": [{"value": "b", "display": "B\nB"}]}]),
        json!([{"op": "replace", "path": "displayName", "value": "G\u{0}"}]),
        json!([{"op": "replace", "value": {"displayName": "G\r\nX-Injected: 1"}}]),
    ] {
        let e = apply_patch(&GROUP_RESOURCE, &g, &req(ops.clone())).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{ops}");
    }
}

#[test]
fn the_type_a_value_filter_creates_is_checked_like_a_value() {
    // Filters tolerate raw control characters in their strings; the element Entra's `type eq`
    // form creates would store the filter's value as `type`.
    let e = err_user(
        json!([{"op": "replace", "path": "phoneNumbers[type eq \"wo\r\nrk\"].value", "value": "+1 555"}]),
    );
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    assert!(e.detail.contains("'phoneNumbers.type'"), "{}", e.detail);
    // The detail echoes the path with its control characters escaped.
    assert!(!e.detail.chars().any(char::is_control), "{:?}", e.detail);
    assert!(e.detail.contains("wo\\u{000d}\\u{000a}rk"), "{}", e.detail);
    // A clean one still creates the element.
    let o = ok_user(
        json!([{"op": "replace", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555"}]),
    );
    assert_eq!(
        o.resource["phoneNumbers"],
        json!([{"type": "work", "value": "+1 555"}])
    );
}

#[test]
fn a_wrong_type_is_refused_in_every_form_of_write() {
    for wrong in [json!(1e40), json!(42), json!(true), json!({"k": "v"})] {
        for (at, ops) in text_write_forms(&wrong) {
            // `"path": "manager"` with an object is the manager's object form, not a wrong type.
            if at.starts_with("manager") && wrong.is_object() {
                continue;
            }
            let e = err_user(ops.clone());
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong}: {ops}");
            // A bare number for `manager` is refused as the attribute (an id must be a string).
            let named = at.split('.').next().unwrap_or(at);
            assert!(e.detail.contains(named), "{wrong}: {ops}: {}", e.detail);
        }
    }
    // Booleans: Entra's strings are accepted, numbers are not.
    assert_eq!(
        ok_user(json!([{"op": "Replace", "path": "active", "value": "False"}])).resource["active"],
        false
    );
    for wrong in [json!(0), json!(1), json!("no")] {
        let e = err_user(json!([{"op": "replace", "value": {"active": wrong}}]));
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong}");
        assert!(e.detail.contains("'active'"), "{}", e.detail);
    }
    // Multi-valued complex attributes take objects, not scalars.
    for ops in [
        json!([{"op": "add", "path": "emails", "value": "b@x.io"}]),
        json!([{"op": "add", "path": "emails", "value": ["b@x.io"]}]),
        json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": "b@x.io"}]),
    ] {
        let e = err_user(ops.clone());
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{ops}");
        assert!(e.detail.contains("'emails'"), "{ops}: {}", e.detail);
    }
    let e = apply_patch(
        &GROUP_RESOURCE,
        &group(&["a"]),
        &req(json!([{"op": "add", "path": "members", "value": ["b"]}])),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn a_stored_value_with_a_control_character_does_not_block_other_writes() {
    // A user stored before values were checked may hold one; deactivating it (Entra, Okta)
    // and other writes must still work: only the values an operation writes are checked.
    let mut u = user();
    u["displayName"] = json!("Alex\r\nWu");
    u["emails"][1]["value"] = json!("alex\n@home.example");
    let o = apply_patch(
        &USER_RESOURCE,
        &u,
        &req(
            json!([{"op": "Replace", "path": "active", "value": "False"},
                     {"op": "replace", "path": "name.givenName", "value": "Al"}]),
        ),
    )
    .unwrap();
    assert_eq!(o.resource["active"], false);
    assert_eq!(o.resource["name"]["givenName"], "Al");
    // Replacing the bad value with a clean one is how it gets fixed.
    let o = apply_patch(
        &USER_RESOURCE,
        &u,
        &req(json!([{"op": "replace", "path": "displayName", "value": "Alex Wu"}])),
    )
    .unwrap();
    assert_eq!(o.resource["displayName"], "Alex Wu");
}
