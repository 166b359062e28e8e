//! Privileged partner groups and protected accounts through SCIM (issue 15, items 2 and 3):
//! a SCIM group maps to the site's `Administrators` only where the site sets
//! `allow_admin_grant`; `All Users` is never SCIM's; the tenant's inviting account (and its
//! `protected_emails`) keeps its names and email at the partner unless the tenant sets
//! `allow_protected_changes`, survives DELETE, and the audit log says what was left undone.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::partner::CallKind;
use serde_json::json;

use crate::support::{
    admin_group, all_users_group, count_job, create_group, create_user, is_rbac_site, seed_user,
    Harness, Options, OWNER,
};

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const JANE: &str = "jane@acme.example.com";

fn group_body(name: &str, members: &[&str]) -> serde_json::Value {
    let members: Vec<_> = members.iter().map(|m| json!({"value": m})).collect();
    json!({"schemas": [GROUP], "displayName": name, "members": members})
}

#[tokio::test]
async fn a_group_onto_administrators_is_refused_unless_the_site_allows_it() {
    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    h.settle(Duration::from_secs(10)).await;
    let group_calls = |h: &Harness| {
        count_job(&h.emulator, "acme", CallKind::CreateGroup, false)
            + count_job(&h.emulator, "acme", CallKind::UpdateGroup, false)
    };
    let before = group_calls(&h);
    // `Administrators` and `All Users`; `Admin` and `Everyone` on an RBAC site.
    let admins = admin_group(&h.emulator, "acme");
    let everyone = all_users_group(&h.emulator, "acme");
    for name in [admins.to_owned(), admins.to_lowercase()] {
        let (status, body) = h.post("/Groups", group_body(&name, &[&jane])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["scimType"], "invalidValue", "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("allow_admin_grant"),
            "{body}"
        );
    }
    for name in [everyone.to_owned(), everyone.to_lowercase()] {
        let (status, body) = h.post("/Groups", group_body(&name, &[&jane])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    // A rename onto it is refused the same way, and changes nothing.
    let team = create_group(&h, "Team", &[&jane]).await;
    let (status, body) = h
        .patch(
            &format!("/Groups/{team}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": admins}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        h.get(&format!("/Groups/{team}")).await.1["displayName"],
        "Team"
    );
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", JANE), ["Team"]);
    // Only "Team" was created at the partner.
    assert_eq!(group_calls(&h), before + 1);

    // Where the operator allows it, the group adopts Administrators and grants it.
    let h = Harness::start(Options {
        allow_admin_grant: true,
        ..Options::default()
    })
    .await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let (status, body) = h.post("/Groups", group_body(admins, &[&jane])).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", JANE), [admins]);
    // `All Users` stays refused.
    let (status, _) = h.post("/Groups", group_body(everyone, &[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Without `allow_admin_grant` the engine leaves the site's Administrators group alone: an
/// administrator the site made in its own UI keeps the rights while SCIM changes the user's
/// other groups.
#[tokio::test]
async fn site_made_administrators_keep_their_rights_through_scim_changes() {
    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    h.settle(Duration::from_secs(10)).await;
    // The site's own administrator makes Jane an administrator, behind the bridge's back (on
    // an RBAC site: gives her the `Admin` role).
    let admins = admin_group(&h.emulator, "acme");
    if is_rbac_site(&h.emulator, "acme") {
        let mut jane_at_site = h.partner_user("acme", JANE).unwrap();
        jane_at_site.groups.push(admins.to_owned());
        assert!(seed_user(&h.emulator, "acme", jane_at_site));
    } else {
        let http = reqwest::Client::new();
        let answer = http
            .put(format!("{}/api/v1/users", h.partner_base()))
            .header("HTTP-X-PARTNER-AUTH", "acme:key-acme")
            .header("HTTP-X-EMAIL", JANE)
            .json(&json!({"groups": ["Administrators"]}))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{:?}", answer.text().await);
    }
    assert_eq!(h.partner_groups("acme", JANE), [admins]);
    create_group(&h, "Team", &[&jane]).await;
    h.settle(Duration::from_secs(10)).await;
    let mut groups = h.partner_groups("acme", JANE);
    groups.sort();
    assert_eq!(groups, [admins, "Team"]);
}

fn audit_notes(entries: &[scim_bridge::store::AuditEntry]) -> String {
    entries
        .iter()
        .filter_map(|e| e.detail.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_inviting_account_is_not_renamed_or_deleted_by_scim() {
    let h = Harness::start(Options::default()).await;
    let before = h
        .partner_user("acme", OWNER)
        .expect("the site's owner exists");
    // The IdP provisions the owner under other names: adopted, names left as they are.
    let owner = create_user(&h, OWNER, "Mallory", "Changed").await;
    h.settle(Duration::from_secs(10)).await;
    let now = h.partner_user("acme", OWNER).unwrap();
    assert_eq!(
        (now.first_name.as_str(), now.last_name.as_str()),
        (before.first_name.as_str(), before.last_name.as_str())
    );
    // A name change: answered, not made at the partner.
    let (status, body) = h
        .patch(
            &format!("/Users/{owner}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "name.givenName", "value": "Eve"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(
        h.partner_user("acme", OWNER).unwrap().first_name,
        before.first_name
    );
    let (status, body) = h.delete(&format!("/Users/{owner}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    h.settle(Duration::from_secs(10)).await;
    assert!(h.partner_user("acme", OWNER).is_some());
    // Later creates still work (the inviter exists).
    create_user(&h, JANE, "Jane", "Doe").await;
    h.settle(Duration::from_secs(10)).await;
    assert!(h.partner_user("acme", JANE).is_some());
    // The audit log says what SCIM left undone.
    let notes = audit_notes(&h.bridge.store.audit_entries("acme", 50).await.unwrap());
    assert!(notes.contains("protected_account"), "{notes}");
    assert!(notes.contains("allow_protected_changes"), "{notes}");
    assert!(notes.contains("stays at the partner"), "{notes}");
}

/// An email change of a protected account does not move the account: the new email gets an
/// account of its own, the protected one stays as it is (under `email_change = update`, which
/// would otherwise change the account's email in place).
#[tokio::test]
async fn an_email_change_leaves_a_protected_account_in_place() {
    let keep = "keep@acme.example.com";
    let h = Harness::start(Options {
        protected_emails: vec![keep.to_owned()],
        ..Options::default()
    })
    .await;
    let id = create_user(&h, keep, "Kee", "Per").await;
    h.settle(Duration::from_secs(10)).await;
    assert!(h.partner_user("acme", keep).is_some());
    let moved = "moved.keep@acme.example.com";
    let (status, body) = h
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "userName", "value": moved},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": moved}]}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(Duration::from_secs(10)).await;
    assert!(
        h.partner_user("acme", keep).is_some(),
        "the protected account moved"
    );
    assert!(h.partner_user("acme", moved).is_some());
}

#[tokio::test]
async fn allow_protected_changes_lets_scim_rename_a_protected_account() {
    let h = Harness::start(Options {
        allow_protected_changes: true,
        ..Options::default()
    })
    .await;
    let owner = create_user(&h, OWNER, "Olivia", "Owner").await;
    h.settle(Duration::from_secs(10)).await;
    let now = h.partner_user("acme", OWNER).unwrap();
    assert_eq!(
        (now.first_name.as_str(), now.last_name.as_str()),
        ("Olivia", "Owner")
    );
    let (status, _) = h.delete(&format!("/Users/{owner}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Still never deleted.
    assert!(h.partner_user("acme", OWNER).is_some());
}
