//! Every PATCH body in `tests/fixtures/{okta,entra}` applied to a realistic resource with
//! `scim::patch::apply_patch`: the result each IdP expects, and a second application changes
//! nothing (IdPs retry).

use std::collections::BTreeSet;

use scim_bridge::scim::patch::{apply_patch, PatchOutcome, PatchRequest};
use scim_bridge::scim::schema::{
    ResourceType, ENTERPRISE_USER_SCHEMA, GROUP_RESOURCE, PATCH_OP_SCHEMA, USER_RESOURCE,
};
use serde_json::{json, Value};

const USER_ID: &str = "2819c223-7f76-453a-919d-413861904646";
const USER2_ID: &str = "08e1d05d-121c-4561-8b96-473d93df9210";
const GROUP_ID: &str = "e9e30dba-f08f-4109-8486-d5c6a331660a";
const MANAGER_ID: &str = "26118915-6090-4610-87e4-49d8ca9f808d";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text
        .replace("$USER_ID", USER_ID)
        .replace("$USER2_ID", USER2_ID)
        .replace("$GROUP_ID", GROUP_ID)
        .replace("$MANAGER_ID", MANAGER_ID);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn is_patch(body: &Value) -> bool {
    body["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|u| u == PATCH_OP_SCHEMA))
}

/// The PATCH fixtures on disk, as `idp/file.json`.
fn patch_fixtures_on_disk() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for idp in ["okta", "entra"] {
        let dir = format!("{}/tests/fixtures/{idp}", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") && is_patch(&fixture(&format!("{idp}/{name}"))) {
                out.insert(format!("{idp}/{name}"));
            }
        }
    }
    out
}

fn okta_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": USER_ID,
        "externalId": "00ujl29u0le5T6Aj10h7",
        "userName": "jane.doe@example.com",
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"primary": true, "value": "jane.doe@example.com", "type": "work"}],
        "displayName": "Jane Doe",
        "locale": "en-US",
        "active": true,
        "meta": {"resourceType": "User", "created": "2024-05-01T10:00:00Z",
                 "lastModified": "2024-05-01T10:00:00Z", "version": "W/\"1\""}
    })
}

fn entra_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER_SCHEMA],
        "id": USER_ID,
        "externalId": "alexw",
        "userName": "alex.wu@contoso.com",
        "active": true,
        "displayName": "Alex Wu",
        "emails": [{"primary": true, "type": "work", "value": "alex.wu@contoso.com"}],
        "name": {"formatted": "Alex Wu", "familyName": "Wu", "givenName": "Alex"},
        "title": "Data Analyst",
        ENTERPRISE_USER_SCHEMA: {"employeeNumber": "20481", "department": "Finance"},
        "meta": {"resourceType": "User", "created": "2024-05-01T10:00:00Z",
                 "lastModified": "2024-05-01T10:00:00Z", "version": "W/\"1\""}
    })
}

fn group(display_name: &str, members: &[&str]) -> Value {
    let mut g = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": GROUP_ID,
        "displayName": display_name,
        "meta": {"resourceType": "Group", "version": "W/\"3\""}
    });
    if !members.is_empty() {
        g["members"] = members.iter().map(|m| json!({"value": m})).collect();
    }
    g
}

fn members(v: &Value) -> Vec<&str> {
    v["members"]
        .as_array()
        .map(|l| l.iter().map(|m| m["value"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// Applies the fixture, checks a second application changes nothing, returns the outcome.
fn run(name: &str, rt: &ResourceType, start: &Value) -> PatchOutcome {
    let body = fixture(name);
    let req: PatchRequest = serde_json::from_value(body).unwrap();
    let before = start.clone();
    let out = apply_patch(rt, start, &req).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(start, &before, "{name}: the input resource was modified");
    assert!(out.changed, "{name}: expected a change");
    let again = apply_patch(rt, &out.resource, &req).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(!again.changed, "{name}: a retry changed the resource again");
    assert!(again.summary.attributes.is_empty());
    out
}

fn attrs(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

const COVERED: &[&str] = &[
    "okta/deactivate-user.json",
    "okta/reactivate-user.json",
    "okta/membership-update.json",
    "okta/rename-group.json",
    "okta/replace-members.json",
    "entra/add-manager.json",
    "entra/add-members.json",
    "entra/disable-user.json",
    "entra/remove-members-default.json",
    "entra/remove-members-flag.json",
    "entra/rename-group.json",
    "entra/update-user-default.json",
    "entra/update-user-flag.json",
];

#[test]
fn scim_fixtures_patch_every_patch_fixture_is_covered() {
    let covered: BTreeSet<String> = COVERED.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(patch_fixtures_on_disk(), covered);
}

#[test]
fn scim_fixtures_patch_okta_deactivate_and_reactivate() {
    let out = run("okta/deactivate-user.json", &USER_RESOURCE, &okta_user());
    assert_eq!(out.resource["active"], json!(false));
    assert_eq!(out.summary.attributes, attrs(&["active"]));
    let out = run("okta/reactivate-user.json", &USER_RESOURCE, &out.resource);
    assert_eq!(out.resource["active"], json!(true));
}

#[test]
fn scim_fixtures_patch_okta_membership_update_removes_one_adds_one() {
    let start = group("BI Analysts", &[USER_ID]);
    let out = run("okta/membership-update.json", &GROUP_RESOURCE, &start);
    assert_eq!(members(&out.resource), [USER2_ID]);
    assert_eq!(out.summary.members_added, [USER2_ID]);
    assert_eq!(out.summary.members_removed, [USER_ID]);
    assert_eq!(out.summary.attributes, attrs(&["members"]));
}

#[test]
fn scim_fixtures_patch_okta_rename_group_carrying_its_own_id() {
    let start = group("BI Analysts", &[USER_ID]);
    let out = run("okta/rename-group.json", &GROUP_RESOURCE, &start);
    assert_eq!(out.resource["displayName"], "BI Analysts EMEA");
    assert_eq!(out.resource["id"], GROUP_ID);
    assert_eq!(members(&out.resource), [USER_ID]);
    assert_eq!(out.summary.attributes, attrs(&["displayName"]));
    assert!(out.summary.members_added.is_empty() && out.summary.members_removed.is_empty());
}

#[test]
fn scim_fixtures_patch_okta_replace_members_is_a_full_push() {
    let start = group("BI Analysts", &[USER_ID, "stale-member"]);
    let out = run("okta/replace-members.json", &GROUP_RESOURCE, &start);
    assert_eq!(members(&out.resource), [USER_ID, USER2_ID]);
    assert_eq!(out.summary.members_added, [USER2_ID]);
    assert_eq!(out.summary.members_removed, ["stale-member"]);
}

#[test]
fn scim_fixtures_patch_entra_add_manager_gives_manager_object() {
    let out = run("entra/add-manager.json", &USER_RESOURCE, &entra_user());
    assert_eq!(
        out.resource[ENTERPRISE_USER_SCHEMA]["manager"],
        json!({"value": MANAGER_ID, "$ref": format!("../Users/{MANAGER_ID}")})
    );
    assert_eq!(
        out.summary.attributes,
        attrs(&[&format!("{ENTERPRISE_USER_SCHEMA}:manager")])
    );
    // Entra then checks it with `id eq ... and manager eq ...`.
    let f = scim_bridge::scim::filter::parse_filter(
        &format!("id eq \"{USER_ID}\" and manager eq \"{MANAGER_ID}\""),
        &Default::default(),
    )
    .unwrap();
    assert!(f.matches(&USER_RESOURCE, &out.resource));
}

#[test]
fn scim_fixtures_patch_entra_add_members_to_empty_group() {
    let out = run(
        "entra/add-members.json",
        &GROUP_RESOURCE,
        &group("Finance Analysts", &[]),
    );
    assert_eq!(members(&out.resource), [USER_ID, USER2_ID]);
    assert_eq!(
        out.resource["members"][0],
        json!({"value": USER_ID}),
        "$ref null dropped"
    );
    assert_eq!(out.summary.members_added, [USER_ID, USER2_ID]);
}

#[test]
fn scim_fixtures_patch_entra_disable_user_gives_active_false() {
    let out = run("entra/disable-user.json", &USER_RESOURCE, &entra_user());
    assert_eq!(out.resource["active"], json!(false));
    assert_eq!(out.summary.attributes, attrs(&["active"]));
}

#[test]
fn scim_fixtures_patch_entra_remove_members_remove_only_the_listed_member() {
    for name in [
        "entra/remove-members-default.json",
        "entra/remove-members-flag.json",
    ] {
        let start = group("Finance Analysts", &[USER_ID, USER2_ID]);
        let out = run(name, &GROUP_RESOURCE, &start);
        assert_eq!(members(&out.resource), [USER2_ID], "{name}");
        assert_eq!(out.summary.members_removed, [USER_ID], "{name}");
        assert!(out.summary.members_added.is_empty(), "{name}");
    }
}

#[test]
fn scim_fixtures_patch_entra_rename_group() {
    let start = group("Finance Analysts", &[USER_ID]);
    let out = run("entra/rename-group.json", &GROUP_RESOURCE, &start);
    assert_eq!(out.resource["displayName"], "Finance Analysts (EMEA)");
}

fn assert_entra_user_updated(out: &PatchOutcome) {
    let r = &out.resource;
    assert_eq!(r["displayName"], "Alex Q. Wu");
    assert_eq!(
        r["emails"],
        json!([{"primary": true, "type": "work", "value": "alex.q.wu@contoso.com"}])
    );
    assert_eq!(r["name"]["givenName"], "Alexander");
    assert_eq!(r["name"]["familyName"], "Wu");
    assert_eq!(r[ENTERPRISE_USER_SCHEMA]["employeeNumber"], "20482");
    assert_eq!(r[ENTERPRISE_USER_SCHEMA]["department"], "Finance");
    assert_eq!(r["userName"], "alex.wu@contoso.com");
}

#[test]
fn scim_fixtures_patch_entra_update_user_default() {
    let out = run(
        "entra/update-user-default.json",
        &USER_RESOURCE,
        &entra_user(),
    );
    assert_entra_user_updated(&out);
    assert_eq!(out.resource["nickName"], "Al");
    assert_eq!(
        out.summary.attributes,
        attrs(&[
            "displayName",
            "emails",
            "name",
            "nickName",
            &format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber"),
        ])
    );
}

#[test]
fn scim_fixtures_patch_entra_update_user_flag_creates_work_phone() {
    let out = run("entra/update-user-flag.json", &USER_RESOURCE, &entra_user());
    assert_entra_user_updated(&out);
    assert_eq!(
        out.resource["phoneNumbers"],
        json!([{"type": "work", "value": "+1 425 555 0100"}])
    );
}
