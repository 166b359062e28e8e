//! Okta and Entra POST/PUT bodies from `tests/fixtures/` through `scim::resource`:
//! canonicalization, the typed views the bridge reads, and the typed serde model.

use scim_bridge::scim::resource::Group;
use scim_bridge::scim::resource::{
    canonicalize, canonicalize_input, GroupView, InputMode, User, UserView,
};
use scim_bridge::scim::schema::{
    ResourceType, ENTERPRISE_USER_SCHEMA, GROUP_RESOURCE, GROUP_SCHEMA, USER_RESOURCE, USER_SCHEMA,
};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = text
        .replace("$USER_ID", "u-1")
        .replace("$USER2_ID", "u-2")
        .replace("$GROUP_ID", "g-1")
        .replace("$MANAGER_ID", "m-1");
    serde_json::from_str(&text).unwrap()
}

fn canonical(rt: &ResourceType, name: &str, mode: InputMode) -> Value {
    let v = canonicalize(rt, fixture(name), mode).unwrap();
    // The canonical form is a fixed point, and never holds null, [] or read-only input.
    assert_eq!(canonicalize(rt, v.clone(), mode).unwrap(), v, "{name}");
    assert!(!v.to_string().contains("null"), "{name}: {v}");
    assert!(!v.to_string().contains("[]"), "{name}: {v}");
    for k in ["id", "meta", "groups", "password"] {
        assert!(v.get(k).is_none(), "{name} kept {k}");
    }
    v
}

#[test]
fn okta_create_user_canonicalizes_and_yields_the_user_view() {
    let c = canonicalize_input(
        &USER_RESOURCE,
        fixture("okta/create-user.json"),
        InputMode::Create,
    )
    .unwrap();
    assert!(c.password_given);
    let v = canonical(&USER_RESOURCE, "okta/create-user.json", InputMode::Create);
    assert_eq!(v, c.resource);
    assert_eq!(v["schemas"], json!([USER_SCHEMA]));
    assert_eq!(v["locale"], "en-US");
    let u = UserView::from_resource(&v).unwrap();
    assert_eq!(u.user_name, "jane.doe@example.com");
    assert_eq!(u.external_id.as_deref(), Some("00ujl29u0le5T6Aj10h7"));
    assert_eq!(u.given_name.as_deref(), Some("Jane"));
    assert_eq!(u.family_name.as_deref(), Some("Doe"));
    assert_eq!(u.display_name.as_deref(), Some("Jane Doe"));
    assert_eq!(u.primary_email(), Some("jane.doe@example.com"));
    assert!(u.active);
    assert_eq!(u.manager_id, None);
}

#[test]
fn okta_replace_user_drops_id_and_meta_and_keeps_the_new_names() {
    let c = canonicalize_input(
        &USER_RESOURCE,
        fixture("okta/replace-user.json"),
        InputMode::Replace,
    )
    .unwrap();
    assert!(!c.password_given);
    let v = canonical(&USER_RESOURCE, "okta/replace-user.json", InputMode::Replace);
    assert_eq!(
        v["name"],
        json!({"givenName": "Janet", "middleName": "Q", "familyName": "Doe"})
    );
    let u = UserView::from_resource(&v).unwrap();
    assert_eq!(u.user_name, "jane.doe@example.com");
    assert_eq!(u.given_name.as_deref(), Some("Janet"));
    assert_eq!(u.display_name.as_deref(), Some("Janet Doe"));
    assert_eq!(u.primary_email(), Some("jane.doe@example.com"));
    assert!(u.active);
}

#[test]
fn okta_create_group_with_empty_members_has_no_members() {
    let v = canonical(&GROUP_RESOURCE, "okta/create-group.json", InputMode::Create);
    assert_eq!(
        v,
        json!({"schemas": [GROUP_SCHEMA], "displayName": "BI Analysts"})
    );
    let g = GroupView::from_resource(&v).unwrap();
    assert_eq!(g.display_name, "BI Analysts");
    assert!(g.member_ids.is_empty());
    assert_eq!(g.external_id, None);
}

#[test]
fn okta_put_group_keeps_the_full_member_list() {
    let v = canonical(&GROUP_RESOURCE, "okta/put-group.json", InputMode::Replace);
    assert_eq!(
        v["members"],
        json!([
            {"value": "u-1", "display": "jane.doe@example.com"},
            {"value": "u-2", "display": "john.roe@example.com"}
        ])
    );
    let g = GroupView::from_resource(&v).unwrap();
    assert_eq!(g.display_name, "BI Analysts");
    assert_eq!(g.member_ids, ["u-1", "u-2"]);
}

#[test]
fn entra_create_user_drops_nulls_and_keeps_the_enterprise_extension() {
    let v = canonical(&USER_RESOURCE, "entra/create-user.json", InputMode::Create);
    assert_eq!(v["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
    for k in ["addresses", "phoneNumbers", "preferredLanguage", "roles"] {
        assert!(v.get(k).is_none(), "{k}");
    }
    assert_eq!(
        v[ENTERPRISE_USER_SCHEMA],
        json!({"employeeNumber": "20481", "department": "Finance"})
    );
    assert_eq!(v["title"], "Data Analyst");
    let u = UserView::from_resource(&v).unwrap();
    assert_eq!(u.user_name, "alex.wu@contoso.com");
    assert_eq!(u.external_id.as_deref(), Some("alexw"));
    assert_eq!(u.given_name.as_deref(), Some("Alex"));
    assert_eq!(u.family_name.as_deref(), Some("Wu"));
    assert_eq!(u.formatted_name.as_deref(), Some("Alex Wu"));
    assert_eq!(u.primary_email(), Some("alex.wu@contoso.com"));
    assert!(u.active);
    assert_eq!(u.manager_id, None);
}

#[test]
fn entra_create_group_tolerates_the_microsoft_schema_uri() {
    let v = canonical(
        &GROUP_RESOURCE,
        "entra/create-group.json",
        InputMode::Create,
    );
    assert_eq!(
        v,
        json!({
            "schemas": [GROUP_SCHEMA],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Finance Analysts",
        })
    );
    let g = GroupView::from_resource(&v).unwrap();
    assert_eq!(g.display_name, "Finance Analysts");
    assert_eq!(
        g.external_id.as_deref(),
        Some("8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159")
    );
    assert!(g.member_ids.is_empty());
}

#[test]
fn user_fixtures_round_trip_through_the_typed_model_without_password() {
    for name in [
        "okta/create-user.json",
        "okta/replace-user.json",
        "entra/create-user.json",
    ] {
        let typed: User = serde_json::from_value(fixture(name)).unwrap();
        let out = serde_json::to_value(&typed).unwrap();
        assert!(out.get("password").is_none(), "{name}");
        assert!(!out.to_string().contains("null"), "{name}: {out}");
        let again: User = serde_json::from_value(out).unwrap();
        assert_eq!(
            User {
                password: None,
                ..typed
            },
            again,
            "{name}"
        );
    }
    let entra: User = serde_json::from_value(fixture("entra/create-user.json")).unwrap();
    let ent = entra.enterprise.unwrap();
    assert_eq!(ent.department.as_deref(), Some("Finance"));
    assert_eq!(ent.manager, None);
}

#[test]
fn group_fixtures_round_trip_through_the_typed_model() {
    for name in [
        "okta/create-group.json",
        "okta/put-group.json",
        "entra/create-group.json",
    ] {
        let typed: Group = serde_json::from_value(fixture(name)).unwrap();
        let again: Group = serde_json::from_value(serde_json::to_value(&typed).unwrap()).unwrap();
        assert_eq!(typed, again, "{name}");
    }
    let put: Group = serde_json::from_value(fixture("okta/put-group.json")).unwrap();
    assert_eq!(put.members[1].value.as_deref(), Some("u-2"));
    assert_eq!(
        put.members[1].display.as_deref(),
        Some("john.roe@example.com")
    );
}
