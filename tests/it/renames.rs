//! Renames are intents (issue 14, item 11): every name the bridge has given a group stays
//! managed while the group exists, so a rename that half-happened at the partner (its answer
//! lost, the process killed before the store commit) is never mistaken for an unmanaged group
//! that would keep members who left; the convergence finishes or undoes it.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use serde_json::json;

use scim_bridge::partner::CallKind;

use crate::support::{
    create_group, create_user, is_rbac_site, kind_at, partner_created_group_names, Harness, Options,
};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn options() -> Options {
    let mut o = Options::default();
    o.bridge.partner.rate_per_second = 0.0;
    o.bridge.partner.call_deadline_ms = 1_000;
    o.bridge.partner.request_timeout_ms = 500;
    o.bridge.partner.max_attempts = 2;
    o.bridge.partner.circuit_failure_threshold = 1_000;
    o.bridge.retry_base_ms = 50;
    o.bridge.retry_max_ms = 500;
    // A half-done rename is repaired once its flow is surely over: here at once.
    o.bridge.rename_settle_ms = 0;
    o
}

/// The partner carries out the next 4 calls, then answers each 503: a rename lands while the
/// bridge's tries (and its undo) all fail.
fn applied_then_503(h: &Harness) {
    h.emulator.set_faults(
        "acme",
        Faults {
            // Any call on a v1 site; on an RBAC site the role writes (the adapter's reads of
            // the role list must go through for a write to be made at all).
            script: if is_rbac_site(&h.emulator, "acme") {
                [CallKind::UpdateRole, CallKind::CreateRole]
                    .into_iter()
                    .map(|k| ScriptedFault {
                        call: Some(k),
                        count: 4,
                        action: FaultAction::Applied { status: 503 },
                    })
                    .collect()
            } else {
                vec![ScriptedFault {
                    call: None,
                    count: 4,
                    action: FaultAction::Applied { status: 503 },
                }]
            },
            ..Faults::default()
        },
    );
}

/// A rename the partner carries out while the bridge hears only 503s (its tries and its undo
/// all fail): the IdP is answered 503, the site has the new name, the store the old one.
async fn half_done_rename(h: &Harness, group: &str, to: &str) {
    applied_then_503(h);
    let (status, body) = h.patch(&format!("/Groups/{group}"), rename(to)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    h.emulator.set_faults("acme", Faults::default());
}

fn rename(name: &str) -> serde_json::Value {
    json!({"schemas": [PATCH_OP],
           "Operations": [{"op": "replace", "path": "displayName", "value": name}]})
}

#[tokio::test]
async fn a_rename_whose_answer_was_lost_never_keeps_a_removed_member() {
    let h = Harness::start(options()).await;
    let stays = create_user(&h, "stays@acme.example.com", "St", "Ays").await;
    let leaves = create_user(&h, "leaves@acme.example.com", "Le", "Aves").await;
    let group = create_group(&h, "Team", &[&stays, &leaves]).await;
    h.settle(Duration::from_secs(5)).await;
    // The partner carries out the rename, then answers 503 (and so on for every group call:
    // the bridge's retries find the old name gone and fail the same way); the IdP hears 503
    // while the partner has the new name.
    half_done_rename(&h, &group, "Crew").await;
    assert!(
        h.partner_groups("acme", "leaves@acme.example.com")
            .contains(&"Crew".to_owned()),
        "the rename landed at the partner"
    );
    // A member leaves: 204, and it must lose the group at the partner, under any name.
    let (status, body) = h
        .patch(
            &format!("/Groups/{group}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "remove", "path": format!("members[value eq \"{leaves}\"]")}]}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(Duration::from_secs(5)).await;
    let left = h.partner_groups("acme", "leaves@acme.example.com");
    assert!(
        !left.contains(&"Crew".to_owned()) && !left.contains(&"Team".to_owned()),
        "a removed member kept the group: {left:?}"
    );
    // The IdP's retried rename lands; the member who stayed has the group under its new name.
    let (status, body) = h.patch(&format!("/Groups/{group}"), rename("Crew")).await;
    assert!(status.is_success(), "{status} {body}");
    h.settle(Duration::from_secs(5)).await;
    assert!(h
        .partner_groups("acme", "stays@acme.example.com")
        .contains(&"Crew".to_owned()));
    assert!(h
        .partner_groups("acme", "leaves@acme.example.com")
        .is_empty());
    let names = group_names(&h);
    assert!(!names.contains(&"Team".to_owned()), "{names:?}");
}

/// A reactivation (under `remove`) while a rename half-happened is not refused: the user is
/// re-created by the convergence once the group's name settles, and the IdP hears 200 (Okta
/// does not retry a refused reactivation).
#[tokio::test]
async fn a_reactivation_during_a_half_done_rename_is_not_refused() {
    let h = Harness::start(options()).await;
    let email = "back@acme.example.com";
    let user = create_user(&h, email, "Ba", "Ck").await;
    let group = create_group(&h, "Chaos Team", &[&user]).await;
    h.settle(Duration::from_secs(5)).await;
    let active = |on: bool| {
        json!({"schemas": [PATCH_OP],
               "Operations": [{"op": "replace", "value": {"active": on}}]})
    };
    let (status, body) = h.patch(&format!("/Users/{user}"), active(false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h.partner_user("acme", email).is_none());
    half_done_rename(&h, &group, "Chaos Crew").await;
    let (status, body) = h.patch(&format!("/Users/{user}"), active(true)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a valid reactivation was refused: {body}"
    );
    // The IdP retries the rename; everything settles.
    let (status, body) = h
        .patch(&format!("/Groups/{group}"), rename("Chaos Crew"))
        .await;
    assert!(status.is_success(), "{status} {body}");
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", email), ["Chaos Crew"]);
}

/// The convergence finishes or undoes a rename that half-happened: a member added while the
/// partner carries the new name and the store the old one gets the group, and the site ends
/// with the store's name (no second group made beside it).
#[tokio::test]
async fn the_convergence_undoes_a_half_done_rename_instead_of_failing() {
    let h = Harness::start(options()).await;
    let first = create_user(&h, "first@acme.example.com", "Fi", "Rst").await;
    let later = create_user(&h, "later@acme.example.com", "La", "Ter").await;
    let group = create_group(&h, "Analysts", &[&first]).await;
    h.settle(Duration::from_secs(5)).await;
    half_done_rename(&h, &group, "Analysts EU").await;
    let (status, body) = h
        .patch(
            &format!("/Groups/{group}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": later}]}]}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(Duration::from_secs(5)).await;
    assert_eq!(
        h.partner_groups("acme", "later@acme.example.com"),
        ["Analysts"]
    );
    assert_eq!(
        h.partner_groups("acme", "first@acme.example.com"),
        ["Analysts"]
    );
    let names = group_names(&h);
    assert!(!names.contains(&"Analysts EU".to_owned()), "{names:?}");
}

/// `reconcile --apply` finishes a half-done rename the same way: the group found at the site
/// under a name it had before is renamed (its members kept), not created a second time.
#[tokio::test]
async fn reconcile_renames_a_group_left_under_a_former_name() {
    let h = Harness::start(options()).await;
    let first = create_user(&h, "first@acme.example.com", "Fi", "Rst").await;
    let group = create_group(&h, "Analysts", &[&first]).await;
    h.settle(Duration::from_secs(5)).await;
    half_done_rename(&h, &group, "Analysts EU").await;
    let names = group_names;
    assert!(
        names(&h).contains(&"Analysts EU".to_owned()),
        "{:?}",
        names(&h)
    );
    let tenant = h.bridge.tenant("acme").unwrap();
    let report = scim_bridge::bridge::reconcile::reconcile(&h.bridge, &tenant, true)
        .await
        .unwrap();
    let site = &report[0];
    assert_eq!(site.groups_missing, ["Analysts"]);
    assert_eq!((site.groups_renamed, site.groups_created), (1, 0));
    assert!(
        names(&h).contains(&"Analysts".to_owned()),
        "{:?}",
        names(&h)
    );
    assert!(
        !names(&h).contains(&"Analysts EU".to_owned()),
        "{:?}",
        names(&h)
    );
    assert_eq!(
        h.partner_groups("acme", "first@acme.example.com"),
        ["Analysts"]
    );
}

/// The site's groups without those it started with (`Administrators`, `All Users`; the
/// default roles of an RBAC site).
fn group_names(h: &Harness) -> Vec<String> {
    partner_created_group_names(&h.emulator, "acme")
}

/// One writer at a time changes a group's names. A rename that arrives while another writer
/// holds them (a convergence putting a half-done rename back under the store's name, another
/// replica's rename) is answered 503 and changes nothing; once they are let go it goes
/// through. Before the lock, the IdP's retry of a rename could run beside such a repair and
/// leave the group under both names at a site (the simulation's seed 12 in CI).
#[tokio::test]
async fn a_rename_waits_while_another_writer_holds_the_groups_names() {
    let h = Harness::start(options()).await;
    let first = create_user(&h, "first@acme.example.com", "Fi", "Rst").await;
    let group = create_group(&h, "Analysts", &[&first]).await;
    h.settle(Duration::from_secs(5)).await;
    let store = &h.bridge.store;
    let now = scim_bridge::clock::now_ms();
    assert!(store
        .lock_group_names("acme", &group, "a repair", now, now + 60_000)
        .await
        .unwrap());
    let (status, body) = h
        .patch(&format!("/Groups/{group}"), rename("Analysts EU"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(group_names(&h), ["Analysts"]);
    let (status, body) = h.get(&format!("/Groups/{group}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["displayName"], "Analysts");
    store
        .unlock_group_names("acme", &group, "a repair")
        .await
        .unwrap();
    let (status, body) = h
        .patch(&format!("/Groups/{group}"), rename("Analysts EU"))
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(group_names(&h), ["Analysts EU"]);
    // And the rename let go of them: the next writer gets them at once.
    assert!(store
        .lock_group_names("acme", &group, "next", now, now + 60_000)
        .await
        .unwrap());
}

/// The other side: a convergence that would finish or undo a half-done rename leaves the
/// group alone while a rename holds its names, and repairs it once they are let go.
#[tokio::test]
async fn the_convergence_leaves_a_group_alone_while_a_rename_holds_its_names() {
    let h = Harness::start(options()).await;
    let first = create_user(&h, "first@acme.example.com", "Fi", "Rst").await;
    let later = create_user(&h, "later@acme.example.com", "La", "Ter").await;
    let group = create_group(&h, "Analysts", &[&first]).await;
    h.settle(Duration::from_secs(5)).await;
    half_done_rename(&h, &group, "Analysts EU").await;
    // The partner carries the new name, the store the old one; a rename holds the names.
    assert!(group_names(&h).contains(&"Analysts EU".to_owned()));
    let store = &h.bridge.store;
    let now = scim_bridge::clock::now_ms();
    assert!(store
        .lock_group_names("acme", &group, "a rename", now, now + 60_000)
        .await
        .unwrap());
    // A membership change makes a convergence that needs the group under its store name.
    let (status, body) = h
        .patch(
            &format!("/Groups/{group}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": later}]}]}),
        )
        .await;
    assert!(status.is_success(), "{body}");
    // The convergence has run (and failed: the site lacks the group it would write) at least
    // once while the names were held, so the check below is not vacuous.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while store.outbox_stats().await.unwrap().failing == 0 {
        assert!(
            std::time::Instant::now() < end,
            "no convergence ran while the names were held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        group_names(&h),
        ["Analysts EU"],
        "the convergence changed the group's names while a rename held them"
    );
    store
        .unlock_group_names("acme", &group, "a rename")
        .await
        .unwrap();
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(group_names(&h), ["Analysts"]);
    assert_eq!(
        h.partner_groups("acme", "later@acme.example.com"),
        ["Analysts"]
    );
}

/// A group DELETE takes the group's names too (review of the lock: without it, another
/// replica's rename could make the group again under a name the delete already took away),
/// and deletes the group under a former name a half-done rename left at the site: once the
/// store row is gone, nothing would ever take that group (and what it grants) away.
#[tokio::test]
async fn a_delete_waits_for_the_groups_names_and_takes_a_former_name_left_behind() {
    let h = Harness::start(options()).await;
    let first = create_user(&h, "first@acme.example.com", "Fi", "Rst").await;
    let group = create_group(&h, "Analysts", &[&first]).await;
    h.settle(Duration::from_secs(5)).await;
    half_done_rename(&h, &group, "Analysts EU").await;
    // The site carries the new name, the store the old one.
    assert_eq!(group_names(&h), ["Analysts EU"]);
    let store = &h.bridge.store;
    let now = scim_bridge::clock::now_ms();
    assert!(store
        .lock_group_names("acme", &group, "a rename", now, now + 60_000)
        .await
        .unwrap());
    let (status, body) = h.delete(&format!("/Groups/{group}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, _) = h.get(&format!("/Groups/{group}")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the refused delete changed the store"
    );
    store
        .unlock_group_names("acme", &group, "a rename")
        .await
        .unwrap();
    let (status, body) = h.delete(&format!("/Groups/{group}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(group_names(&h), Vec::<String>::new());
    assert!(h
        .partner_groups("acme", "first@acme.example.com")
        .is_empty());
}

/// A rename holds the group's names across its partner calls, not only around its commit:
/// while its call hangs at the partner, no other writer (another replica's rename, the
/// engine's repair, reconcile) can take them. (In one process a second rename of the group
/// waits for the first anyway: the in-process lock serializes them.)
#[tokio::test]
async fn a_rename_holds_the_groups_names_while_its_partner_call_is_in_flight() {
    let h = Harness::start(options()).await;
    let first = create_user(&h, "first@acme.example.com", "Fi", "Rst").await;
    let group = create_group(&h, "Analysts", &[&first]).await;
    h.settle(Duration::from_secs(5)).await;
    h.emulator.set_faults(
        "acme",
        Faults {
            hang_for_ms: Some(1_500),
            script: vec![ScriptedFault {
                call: Some(kind_at(&h.emulator, "acme", CallKind::UpdateGroup)),
                count: 1,
                action: FaultAction::Hang,
            }],
            ..Faults::default()
        },
    );
    let slow = {
        let (http, url, token) = (
            h.http.clone(),
            format!("{}/Groups/{group}", h.base),
            crate::support::TOKEN,
        );
        tokio::spawn(async move {
            http.patch(url)
                .bearer_auth(token)
                .json(&rename("Analysts EU"))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !slow.is_finished(),
        "the rename did not hang: {:?}",
        slow.await
    );
    let now = scim_bridge::clock::now_ms();
    let taken = h
        .bridge
        .store
        .lock_group_names("acme", &group, "another writer", now, now + 60_000)
        .await
        .unwrap();
    let first = slow.await;
    assert!(
        !taken,
        "another writer took the group's names while the rename's partner call was in flight \
         (the rename: {first:?})"
    );
}
