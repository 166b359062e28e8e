//! The smallest whole flow: a user, a group with the user, a member removed, the group
//! deleted, each checked at the partner.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{create_group, create_user, Harness, Options};

#[tokio::test]
async fn user_and_group_membership_reach_the_partner() {
    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    let john = create_user(&h, "john@acme.example.com", "John", "Roe").await;
    let user = h.partner_user("acme", "jane@acme.example.com").unwrap();
    assert_eq!(
        (user.first_name.as_str(), user.last_name.as_str()),
        ("Jane", "Doe")
    );

    let group = create_group(&h, "Finance", &[&jane, &john]).await;
    assert_eq!(
        h.partner_groups("acme", "jane@acme.example.com"),
        ["Finance"]
    );
    assert_eq!(
        h.partner_groups("acme", "john@acme.example.com"),
        ["Finance"]
    );

    let (status, _) = h
        .patch(
            &format!("/Groups/{group}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "remove", "path": format!("members[value eq \"{john}\"]")}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        h.partner_groups("acme", "jane@acme.example.com"),
        ["Finance"]
    );
    assert!(h.partner_groups("acme", "john@acme.example.com").is_empty());

    let (status, body) = h.get(&format!("/Users/{jane}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["groups"][0]["display"], "Finance");

    let (status, _) = h.delete(&format!("/Groups/{group}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h.partner_groups("acme", "jane@acme.example.com").is_empty());
    h.settle(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn every_write_is_in_the_audit_log_without_secrets() {
    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    let (status, _) = h.get(&format!("/Users/{jane}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h.delete(&format!("/Users/{jane}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let all = h.bridge.store.audit_entries("acme", 10).await.unwrap();
    // The engine's convergence that deleted the partner user is audited beside the request.
    assert!(
        all.iter()
            .any(|e| e.credential == "membership-engine" && e.operation == "CONVERGE"),
        "{all:?}"
    );
    let entries: Vec<_> = all
        .into_iter()
        .filter(|e| e.credential != "membership-engine")
        .collect();
    // Two writes; the read is not audited.
    assert_eq!(entries.len(), 2, "{entries:?}");
    let ops: Vec<(&str, u16)> = entries
        .iter()
        .map(|e| (e.operation.as_str(), e.status))
        .collect();
    assert!(
        ops.contains(&("POST", 201)) && ops.contains(&("DELETE", 204)),
        "{ops:?}"
    );
    for e in &entries {
        assert_eq!(e.credential, "idp");
        assert_eq!(e.resource_type, "Users");
        assert_eq!(e.resource_id.as_deref(), Some(jane.as_str()));
        assert_eq!(e.client, "127.0.0.1");
        assert!(!e.request_id.is_empty());
        assert!(!format!("{e:?}").contains(crate::support::TOKEN));
    }
}

#[tokio::test]
async fn groups_get_the_default_access_or_their_configured_override() {
    let h = Harness::start(Options {
        group_access: vec![("Analysts".to_owned(), scim_bridge::partner::Access::Sql)],
        ..Options::default()
    })
    .await;
    create_group(&h, "Viewers", &[]).await;
    let analysts = create_group(&h, "analysts", &[]).await;
    let access = |name: &str| {
        h.emulator
            .groups("acme")
            .into_iter()
            .find(|g| g.name == name)
            .map(|g| g.access)
    };
    assert_eq!(access("Viewers"), Some(scim_bridge::partner::Access::View));
    assert_eq!(access("analysts"), Some(scim_bridge::partner::Access::Sql));
    // Renamed onto a name without an override: the access stays.
    let (status, _) = h
        .patch(
            &format!("/Groups/{analysts}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "displayName", "value": "Data Team"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(access("Data Team"), Some(scim_bridge::partner::Access::Sql));
}
