//! Group members that are not users of the tenant (issue 14): skipped by default (logged,
//! counted in `scim_bridge_unknown_members_skipped_total`, noted in the request's audit entry),
//! so one bad id does not lose an Okta group push; refused atomically with 400 under
//! `unknown_members = "reject"`. Every request shape that writes members: POST and PUT
//! `/Groups`, PATCH add/replace/remove in the Okta and Entra dialects, and `/Bulk`.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::config::UnknownMembersPolicy;
use scim_bridge::partner::CallKind;
use scim_bridge::telemetry::metrics::UNKNOWN_MEMBERS_SKIPPED;
use serde_json::{json, Value};

use crate::idp_okta::fixture;
use crate::support::{create_group, create_user, Harness, Options};

const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const JANE: &str = "jane@acme.example.com";
const JOHN: &str = "john@acme.example.com";
const GHOST: &str = "00000000-dead-beef-0000-000000000000";

fn options(policy: UnknownMembersPolicy) -> Options {
    Options {
        unknown_members: policy,
        ..Options::default()
    }
}

/// A group's member ids as `GET /Groups/{id}` shows them, sorted.
async fn members(h: &Harness, group: &str) -> Vec<String> {
    let (status, body) = h.get(&format!("/Groups/{group}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut ids: Vec<String> = body["members"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

async fn version(h: &Harness, group: &str) -> Value {
    h.get(&format!("/Groups/{group}")).await.1["meta"]["version"].clone()
}

/// The skipped-members counter of tenant `acme`.
fn skipped_count(h: &Harness) -> f64 {
    let prefix = format!("{UNKNOWN_MEMBERS_SKIPPED}{{tenant=\"acme\"}} ");
    h.metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

/// The `skipped_members` notes of the newest audit entry.
async fn last_audit_skips(h: &Harness) -> Value {
    let entries = h.bridge.store.audit_entries("acme", 1).await.unwrap();
    let detail: Value = entries[0]
        .detail
        .as_deref()
        .map(|d| serde_json::from_str(d).unwrap())
        .unwrap_or(Value::Null);
    detail["skipped_members"].clone()
}

#[tokio::test]
async fn patch_with_a_known_and_an_unknown_member_adds_the_known_one() {
    let h = Harness::start(options(UnknownMembersPolicy::Skip)).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let john = create_user(&h, JOHN, "John", "Roe").await;
    let group = create_group(&h, "Analysts", &[]).await;

    // Entra: one Add with a list, one id unknown.
    let body = fixture(
        "entra",
        "add-members.json",
        &[("$USER_ID", &jane), ("$USER2_ID", GHOST)],
    );
    let (status, answer) = h.patch(&format!("/Groups/{group}"), body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(members(&h, &group).await, [jane.as_str()]);
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", JANE), ["Analysts"]);
    assert_eq!(skipped_count(&h), 1.0);
    let skips = last_audit_skips(&h).await;
    assert_eq!(
        skips,
        json!([{"group": group, "count": 1, "ids": [GHOST], "truncated": false}])
    );

    // Okta: remove-by-filter of a member plus an add naming an unknown id and a known one.
    let ghost2 = "no-such-user";
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "remove", "path": format!("members[value eq \"{jane}\"]")},
            {"op": "add", "path": "members", "value": [
                {"value": ghost2, "display": "ghost@example.com"},
                {"value": john, "display": JOHN}]},
        ]
    });
    let (status, answer) = h.patch(&format!("/Groups/{group}"), body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(members(&h, &group).await, [john.as_str()]);
    h.settle(Duration::from_secs(10)).await;
    assert!(h.partner_groups("acme", JANE).is_empty());
    assert_eq!(h.partner_groups("acme", JOHN), ["Analysts"]);
    assert_eq!(skipped_count(&h), 2.0);
    assert_eq!(last_audit_skips(&h).await[0]["ids"], json!([ghost2]));

    // Okta: a full `replace` of members with an unknown id keeps only the known ones.
    let body = fixture(
        "okta",
        "replace-members.json",
        &[("$USER_ID", &jane), ("$USER2_ID", GHOST)],
    );
    let (status, answer) = h.patch(&format!("/Groups/{group}"), body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(members(&h, &group).await, [jane.as_str()]);
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", JANE), ["Analysts"]);
    assert!(h.partner_groups("acme", JOHN).is_empty());
    assert_eq!(skipped_count(&h), 3.0);
}

#[tokio::test]
async fn post_and_put_with_an_unknown_member_write_the_known_ones() {
    let h = Harness::start(options(UnknownMembersPolicy::Skip)).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let john = create_user(&h, JOHN, "John", "Roe").await;
    let (status, body) = h
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "BI Analysts",
                   "members": [{"value": jane}, {"value": GHOST}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let group = body["id"].as_str().unwrap().to_owned();
    // The answer shows what was written, not what was asked.
    assert_eq!(body["members"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(members(&h, &group).await, [jane.as_str()]);
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", JANE), ["BI Analysts"]);
    assert_eq!(skipped_count(&h), 1.0);
    let entries = h.bridge.store.audit_entries("acme", 1).await.unwrap();
    assert_eq!(entries[0].resource_id.as_deref(), Some(group.as_str()));
    assert_eq!(last_audit_skips(&h).await[0]["group"], json!(group));

    // Okta's PUT of the whole group: john is new, the ghost is skipped again.
    let body = fixture(
        "okta",
        "put-group.json",
        &[
            ("$GROUP_ID", &group),
            ("$USER_ID", &john),
            ("$USER2_ID", GHOST),
        ],
    );
    let (status, answer) = h.put(&format!("/Groups/{group}"), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["members"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(answer["members"][0]["value"], json!(john));
    assert_eq!(members(&h, &group).await, [john.as_str()]);
    h.settle(Duration::from_secs(10)).await;
    assert!(h.partner_groups("acme", JANE).is_empty());
    assert_eq!(h.partner_groups("acme", JOHN), ["BI Analysts"]);
    assert_eq!(skipped_count(&h), 2.0);

    // The same PUT again changes nothing: no new version.
    let before = version(&h, &group).await;
    let body = fixture(
        "okta",
        "put-group.json",
        &[
            ("$GROUP_ID", &group),
            ("$USER_ID", &john),
            ("$USER2_ID", GHOST),
        ],
    );
    let (status, answer) = h.put(&format!("/Groups/{group}"), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(version(&h, &group).await, before);
}

#[tokio::test]
async fn unknown_members_only_change_nothing_and_removing_one_is_a_no_op() {
    let h = Harness::start(options(UnknownMembersPolicy::Skip)).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Analysts", &[&jane]).await;
    h.settle(Duration::from_secs(10)).await;
    let before = version(&h, &group).await;
    let calls = h.emulator.count("acme", CallKind::UpdateUser, false);
    let patches = [
        // Adding only unknown ids.
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "add", "path": "members", "value": [{"value": GHOST}]}]}),
        // Okta's remove by filter of an unknown id.
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "remove", "path": format!("members[value eq \"{GHOST}\"]")}]}),
        // Entra's remove with a value list.
        fixture(
            "entra",
            "remove-members-default.json",
            &[("$USER_ID", GHOST)],
        ),
    ];
    for body in patches {
        let (status, answer) = h.patch(&format!("/Groups/{group}"), body.clone()).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}: {answer}");
        assert_eq!(version(&h, &group).await, before, "{body}");
        assert_eq!(members(&h, &group).await, [jane.as_str()], "{body}");
    }
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.emulator.count("acme", CallKind::UpdateUser, false), calls);
    assert_eq!(h.partner_groups("acme", JANE), ["Analysts"]);
    // Only the add skipped something.
    assert_eq!(skipped_count(&h), 1.0);
}

#[tokio::test]
async fn bulk_operations_skip_unknown_members() {
    let h = Harness::start(options(UnknownMembersPolicy::Skip)).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let john = create_user(&h, JOHN, "John", "Roe").await;
    let existing = create_group(&h, "Existing", &[]).await;
    let (status, body) = h
        .post(
            "/Bulk",
            json!({"schemas": [BULK_REQUEST], "failOnErrors": 1, "Operations": [
                {"method": "POST", "path": "/Groups", "bulkId": "g1",
                 "data": {"schemas": [GROUP_SCHEMA], "displayName": "Bulk Group",
                          "members": [{"value": jane}, {"value": GHOST}]}},
                {"method": "PATCH", "path": format!("/Groups/{existing}"),
                 "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "add", "path": "members",
                                          "value": [{"value": "ghost-2"}, {"value": john}]}]}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let statuses: Vec<&str> = body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "200"], "{body}");
    assert_eq!(members(&h, &existing).await, [john.as_str()]);
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", JANE), ["Bulk Group"]);
    assert_eq!(h.partner_groups("acme", JOHN), ["Existing"]);
    assert_eq!(skipped_count(&h), 2.0);
    // One audit entry for the Bulk request, with both skips.
    let skips = last_audit_skips(&h).await;
    assert_eq!(skips.as_array().map(Vec::len), Some(2), "{skips}");
    assert_eq!(skips[1]["group"], json!(existing));
}

#[tokio::test]
async fn reject_mode_refuses_unknown_members_and_changes_nothing() {
    let h = Harness::start(options(UnknownMembersPolicy::Reject)).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Analysts", &[]).await;
    let other = create_group(&h, "Other", &[]).await;
    h.settle(Duration::from_secs(10)).await;
    let before = version(&h, &group).await;
    let groups_before = h.emulator.groups("acme");
    let calls_before: u64 = h.emulator.counters().iter().map(|c| c.count).sum();

    let refused = |what: &str, status: StatusCode, body: &Value| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["scimType"], "invalidValue", "{what}: {body}");
        assert_eq!(body["status"], "400", "{what}: {body}");
    };
    let (status, body) = h
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Never",
                   "members": [{"value": jane}, {"value": GHOST}]}),
        )
        .await;
    refused("POST", status, &body);
    assert!(body["detail"].as_str().unwrap().contains(GHOST), "{body}");
    let body = fixture(
        "entra",
        "add-members.json",
        &[("$USER_ID", &jane), ("$USER2_ID", GHOST)],
    );
    let (status, body) = h.patch(&format!("/Groups/{group}"), body).await;
    refused("PATCH", status, &body);
    let body = fixture(
        "okta",
        "put-group.json",
        &[
            ("$GROUP_ID", &group),
            ("$USER_ID", &jane),
            ("$USER2_ID", GHOST),
        ],
    );
    let (status, body) = h.put(&format!("/Groups/{group}"), body).await;
    refused("PUT", status, &body);
    // A group as a member: the partner has no nested groups.
    let (status, body) = h
        .patch(
            &format!("/Groups/{group}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "add", "path": "members", "value": [{"value": other}]}]}),
        )
        .await;
    refused("nested", status, &body);
    assert!(
        body["detail"].as_str().unwrap().contains("nested"),
        "{body}"
    );
    let (status, body) = h
        .post(
            "/Bulk",
            json!({"schemas": [BULK_REQUEST], "Operations": [
                {"method": "PATCH", "path": format!("/Groups/{group}"),
                 "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "add", "path": "members",
                                          "value": [{"value": jane}, {"value": GHOST}]}]}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Operations"][0]["status"], "400", "{body}");
    // Removing an unknown member is not an error in either mode.
    let (status, body) = h
        .patch(
            &format!("/Groups/{group}"),
            fixture(
                "entra",
                "remove-members-default.json",
                &[("$USER_ID", GHOST)],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Nothing changed, here or at the partner.
    assert_eq!(version(&h, &group).await, before);
    assert!(members(&h, &group).await.is_empty());
    let (_, list) = h.get("/Groups?filter=displayName%20eq%20%22Never%22").await;
    assert_eq!(list["totalResults"], 0, "{list}");
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.emulator.groups("acme"), groups_before);
    let calls_after: u64 = h.emulator.counters().iter().map(|c| c.count).sum();
    assert_eq!(
        calls_after, calls_before,
        "a refused write reached the partner"
    );
    assert!(h.partner_groups("acme", JANE).is_empty());
    assert_eq!(skipped_count(&h), 0.0);
}
