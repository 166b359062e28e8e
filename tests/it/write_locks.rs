//! Write locks on names (migration 0004): a user's userName and email, and a group's
//! displayName, are held from before a create's checks and partner calls until it commits,
//! so the IdP's retry of a create it gave up on (which goes on) never commits a second
//! resource for one person or group; a lookup does not import what a create is taking; a
//! create whose partner calls went unanswered keeps the names for the time a late write takes
//! to land.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::{CallKind, PartnerUser};
use serde_json::json;

use crate::support::{create_user, kind_at, seed_user, Harness, Options};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn options() -> Options {
    let mut o = Options::default();
    o.bridge.partner.rate_per_second = 0.0;
    o.bridge.partner.call_deadline_ms = 4_000;
    o.bridge.partner.request_timeout_ms = 1_000;
    o.bridge.partner.circuit_open_ms = 200;
    o.bridge.retry_base_ms = 50;
    o.bridge.retry_max_ms = 500;
    o.bridge.wait_deadline_ms = 5_000;
    o
}

fn user_body(email: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": "Given", "familyName": "Up"},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "active": true,
    })
}

fn filter(attr: &str, value: &str) -> String {
    format!("{attr}%20eq%20%22{value}%22")
}

/// Another writer holds `keys` of tenant `acme` for a minute.
async fn hold(h: &Harness, keys: &[String]) {
    let now = scim_bridge::clock::now_ms();
    assert!(h
        .bridge
        .store
        .take_write_locks("acme", keys, "another writer", now, now + 60_000)
        .await
        .unwrap());
}

async fn let_go(h: &Harness, keys: &[String]) {
    h.bridge
        .store
        .release_write_locks("acme", keys, "another writer")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lookup_does_not_import_a_user_a_create_is_taking() {
    let h = Harness::start(options()).await;
    let email = "in-flight@acme.example.com";
    assert!(seed_user(
        &h.emulator,
        "acme",
        PartnerUser {
            email: email.into(),
            first_name: "In".into(),
            last_name: "Flight".into(),
            groups: vec![],
        }
    ));
    let keys = [scim_bridge::store::user_name_key(email)];
    hold(&h, &keys).await;
    let lookup = format!("/Users?filter={}", filter("userName", email));
    let (status, found) = h.get(&lookup).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        found["totalResults"], 0,
        "imported a user a create was taking: {found}"
    );
    let_go(&h, &keys).await;
    // Once the create is over, the lookup imports as before.
    let (_, found) = h.get(&lookup).await;
    assert_eq!(found["totalResults"], 1, "{found}");
}

#[tokio::test]
async fn a_change_onto_an_email_being_taken_waits() {
    let h = Harness::start(options()).await;
    let id = create_user(&h, "before@acme.example.com", "Be", "Fore").await;
    let keys = [scim_bridge::store::user_email_key("After@acme.example.com")];
    hold(&h, &keys).await;
    let change = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "after@acme.example.com"},
        {"op": "replace", "path": "userName", "value": "after@acme.example.com"}]});
    let (status, body) = h.patch(&format!("/Users/{id}"), change.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(h.partner_user("acme", "after@acme.example.com").is_none());
    let_go(&h, &keys).await;
    let (status, body) = h.patch(&format!("/Users/{id}"), change).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A change of case only takes nothing: it is the same name.
    hold(
        &h,
        &[scim_bridge::store::user_name_key("after@acme.example.com")],
    )
    .await;
    let (status, body) = h
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "userName", "value": "AFTER@acme.example.com"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_create_whose_partner_calls_went_unanswered_keeps_its_names_for_a_late_write() {
    let h = Harness::start(options()).await;
    let email = "late@acme.example.com";
    // Every attempt hangs past the client's 1 s timeout (and lands at the partner later).
    h.emulator.set_faults(
        "acme",
        Faults {
            hang_for_ms: Some(1_500),
            script: vec![ScriptedFault {
                call: Some(kind_at(&h.emulator, "acme", CallKind::CreateUser)),
                count: 100,
                action: FaultAction::Hang,
            }],
            ..Faults::default()
        },
    );
    let (status, body) = h.post("/Users", user_body(email)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    h.emulator.set_faults("acme", Faults::default());
    // At once: a write of the failed create may still land; the names are held.
    let (status, body) = h.post("/Users", user_body(email)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Another request is creating")),
        "{body}"
    );
    // One HTTP attempt (1 s) plus 2 s later they are free.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (status, body) = h.post("/Users", user_body(email)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// The group twin of `leavers::a_create_the_idp_gave_up_on_leaves_nothing_behind_a_deletion`:
/// a POST /Groups with members the IdP gave up on, sent again, got and deleted, must not
/// leave a second group whose members hold it at the partner.
#[tokio::test]
async fn a_group_create_the_idp_gave_up_on_leaves_nothing_behind_a_deletion() {
    let h = Harness::start(options()).await;
    let member = create_user(&h, "member@acme.example.com", "Mem", "Ber").await;
    h.settle(Duration::from_secs(5)).await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Given Up",
        "members": [{"value": member}],
    });
    h.emulator.set_faults(
        "acme",
        Faults {
            hang_for_ms: Some(1_500),
            script: vec![ScriptedFault {
                call: Some(kind_at(&h.emulator, "acme", CallKind::CreateGroup)),
                count: 1,
                action: FaultAction::Hang,
            }],
            ..Faults::default()
        },
    );
    let first = h
        .http
        .post(format!("{}/Groups", h.base))
        .bearer_auth(crate::support::TOKEN)
        .timeout(Duration::from_millis(300))
        .json(&body)
        .send()
        .await;
    assert!(first.is_err(), "the first POST was answered: {first:?}");
    let lookup = format!("/Groups?filter={}", filter("displayName", "Given Up"));
    let id = crate::support::post_until_answered(&h, "/Groups", &body, &lookup).await;
    let (status, answer) = h.delete(&format!("/Groups/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    h.settle(Duration::from_secs(10)).await;
    let (_, found) = h.get(&lookup).await;
    assert_eq!(
        found["totalResults"], 0,
        "a group the IdP never heard of was left: {found}"
    );
    assert!(
        !h.partner_groups("acme", "member@acme.example.com")
            .contains(&"Given Up".to_owned()),
        "the member holds the deleted group at the partner"
    );
}
