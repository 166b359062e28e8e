//! Leavers always lose access (issue 14): a deletion is the IdP's intent, committed with its
//! outbox marks and carried out by the convergence of each (site, user); it survives a partner
//! outage and a race with membership churn, never resurrects the account, and never deletes a
//! protected account (the site's inviting user). Claims of the outbox are fenced.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, Latency, ScriptedFault};
use scim_bridge::partner::CallKind;
use scim_bridge::store::{OutboxMark, Store, StoreError, UserRow};
use serde_json::json;

use crate::support::{
    create_group, create_user, kind_at, partner_users_of, seed_user, Harness, Options, OWNER,
};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn options() -> Options {
    let mut o = Options::default();
    o.bridge.partner.rate_per_second = 0.0;
    o.bridge.partner.call_deadline_ms = 1_000;
    o.bridge.partner.request_timeout_ms = 1_000;
    o.bridge.partner.circuit_open_ms = 200;
    o.bridge.retry_base_ms = 50;
    o.bridge.retry_max_ms = 500;
    o.bridge.wait_deadline_ms = 5_000;
    o
}

fn member_op(op: &str, id: &str) -> serde_json::Value {
    match op {
        "add" => json!({"schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]}),
        _ => json!({"schemas": [PATCH_OP],
            "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]}),
    }
}

#[tokio::test]
async fn the_inviting_account_survives_scim_deletion_and_deactivation() {
    let h = Harness::start(options()).await;
    let before = h
        .partner_user("acme", OWNER)
        .expect("the site's owner exists");
    // The IdP provisions the site owner: the bridge adopts the partner account.
    let owner = create_user(&h, OWNER, "Site", "Owner").await;
    create_group(&h, "Finance", &[&owner]).await;
    h.settle(Duration::from_secs(5)).await;
    assert!(h
        .partner_groups("acme", OWNER)
        .contains(&"Finance".to_owned()));

    let (status, body) = h.delete(&format!("/Users/{owner}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    h.settle(Duration::from_secs(5)).await;
    let after = h
        .partner_user("acme", OWNER)
        .expect("the inviting account survives a SCIM delete");
    assert!(!after.groups.contains(&"Finance".to_owned()), "{after:?}");
    for g in &before.groups {
        assert!(
            after.groups.contains(g),
            "unmanaged group {g} kept: {after:?}"
        );
    }
    // Creates still work: the inviting user is still there to invite.
    create_user(&h, "joiner@acme.example.com", "Jo", "Iner").await;

    // Deactivation under `remove` strips instead of deleting.
    let owner = create_user(&h, OWNER, "Site", "Owner").await;
    let (status, body) = h
        .patch(
            &format!("/Groups/{}", create_group(&h, "Ops", &[]).await),
            member_op("add", &owner),
        )
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(Duration::from_secs(5)).await;
    assert!(h.partner_groups("acme", OWNER).contains(&"Ops".to_owned()));
    let (status, body) = h
        .patch(
            &format!("/Users/{owner}"),
            json!({"schemas": [PATCH_OP],
                   "Operations": [{"op": "replace", "value": {"active": false}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.settle(Duration::from_secs(5)).await;
    let after = h
        .partner_user("acme", OWNER)
        .expect("the inviting account survives a deactivation");
    assert!(!after.groups.contains(&"Ops".to_owned()), "{after:?}");
    create_user(&h, "joiner2@acme.example.com", "Jo", "Iner").await;
}

#[tokio::test]
async fn a_delete_during_a_partner_outage_answers_503_and_lands_on_retry() {
    let h = Harness::start(options()).await;
    let email = "leaver@acme.example.com";
    let id = create_user(&h, email, "Lea", "Ver").await;
    h.emulator.set_faults(
        "acme",
        Faults {
            script: vec![ScriptedFault {
                call: Some(kind_at(&h.emulator, "acme", CallKind::DeleteUser)),
                count: 1_000,
                action: FaultAction::Status {
                    status: 503,
                    retry_after_secs: None,
                },
            }],
            ..Faults::default()
        },
    );
    let (status, body) = h.delete(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Gone from SCIM, still at the partner, and the deletion is kept.
    assert_eq!(
        h.get(&format!("/Users/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(h.partner_user("acme", email).is_some());
    assert_eq!(
        h.bridge.store.user_tombstone("acme", &id).await.unwrap(),
        Some(email.to_owned())
    );
    // A new user of that email waits for the deletion.
    let (status, _) = h
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "userName": email, "emails": [{"value": email, "primary": true}]}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // The IdP's retry once the partner is back.
    h.emulator.set_faults("acme", Faults::default());
    // The engine's own retry finishes the deletion before the IdP retries: the retry is
    // answered 204 (what it asked for is done), not 404.
    h.settle(Duration::from_secs(5)).await;
    let (status, body) = h.delete(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    h.settle(Duration::from_secs(5)).await;
    assert!(h.partner_user("acme", email).is_none());
    assert_eq!(
        h.bridge.store.user_tombstone("acme", &id).await.unwrap(),
        None
    );
    // Answered 204: the resource is gone for good (RFC 7644 3.6).
    assert_eq!(
        h.delete(&format!("/Users/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.get(&format!("/Users/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    create_user(&h, email, "Lea", "Ver").await;
    assert!(h.partner_user("acme", email).is_some());
}

#[tokio::test]
async fn a_delete_racing_membership_churn_leaves_no_account_behind() {
    let mut o = options();
    o.sites = vec!["acme", "beta"];
    let h = Harness::start(o).await;
    for site in ["acme", "beta"] {
        h.emulator.set_faults(
            site,
            Faults {
                latency: Some(Latency::UniformMs { min: 0, max: 15 }),
                seed: 7,
                ..Faults::default()
            },
        );
    }
    let group_a = create_group(&h, "Churn A", &[]).await;
    let group_b = create_group(&h, "Churn B", &[]).await;
    let mut users = Vec::new();
    for i in 0..8 {
        let email = format!("churn{i}@acme.example.com");
        users.push((create_user(&h, &email, "C", "U").await, email));
    }
    for round in 0..3 {
        let mut tasks = Vec::new();
        for (i, (id, _)) in users.iter().enumerate() {
            for (g, op) in [(&group_a, "add"), (&group_b, "add"), (&group_a, "remove")] {
                let path = format!("/Groups/{g}");
                let body = member_op(op, id);
                let h = &h;
                tasks.push(Box::pin(async move {
                    let (s, b) = h.patch(&path, body).await;
                    assert!(
                        s.is_success()
                            || s == StatusCode::NOT_FOUND
                            || s == StatusCode::BAD_REQUEST,
                        "{s} {b}"
                    );
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>);
            }
            if (i + round) % 2 == 0 {
                let path = format!("/Users/{id}");
                let h = &h;
                tasks.push(Box::pin(async move {
                    let (s, b) = h.delete(&path).await;
                    assert!(
                        s == StatusCode::NO_CONTENT || s == StatusCode::NOT_FOUND,
                        "{s} {b}"
                    );
                }));
            }
        }
        futures::future::join_all(tasks).await;
        let mut alive = Vec::new();
        for (id, email) in users.drain(..) {
            if h.get(&format!("/Users/{id}")).await.0 == StatusCode::OK {
                alive.push((id, email));
            } else {
                h.settle(Duration::from_secs(10)).await;
                for site in ["acme", "beta"] {
                    assert!(
                        h.partner_user(site, &email).is_none(),
                        "{email} deleted in SCIM is back at {site}"
                    );
                }
            }
        }
        users = alive;
    }
    h.settle(Duration::from_secs(10)).await;
    for site in ["acme", "beta"] {
        for u in partner_users_of(&h.emulator, site) {
            if u.email.starts_with("churn") {
                assert!(
                    users.iter().any(|(_, e)| e == &u.email),
                    "{} left at {site}",
                    u.email
                );
            }
        }
    }
    crate::membership::assert_one_write_in_flight_per_user(&h.emulator.call_log());
}

fn row(tenant: &str, id: &str, email: &str) -> UserRow {
    UserRow {
        tenant: tenant.into(),
        id: id.into(),
        user_name: id.into(),
        external_id: None,
        active: true,
        partner_email: email.into(),
        emails: vec![email.into()],
        resource: json!({"userName": id}),
        created_ms: 1,
        last_modified_ms: 1,
        version: 1,
    }
}

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/s.db", dir.path().display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

#[tokio::test]
async fn one_partner_email_maps_to_one_user_in_the_database() {
    crate::support::for_each_backend_url(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store
            .insert_user(&row("a", "u1", "Ann@x.com"))
            .await
            .unwrap();
        let e = store
            .insert_user(&row("a", "u2", "ann@X.com"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::Conflict { ref what } if what.contains("partner email")),
            "{e:?}"
        );
        // Another tenant, and users without an email, are free.
        store
            .insert_user(&row("b", "u1", "ann@x.com"))
            .await
            .unwrap();
        store.insert_user(&row("a", "u3", "")).await.unwrap();
        store.insert_user(&row("a", "u4", "")).await.unwrap();
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn outbox_claims_are_fenced_by_their_token() {
    let (store, _dir) = sqlite().await;
    store
        .insert_user(&row("a", "u1", "u1@x.com"))
        .await
        .unwrap();
    let marks = store
        .mark_outbox_at("a", &["s".to_owned()], &["u1".to_owned()], 1_000)
        .await
        .unwrap();
    let lease = Duration::from_millis(100);
    let old = store.claim_outbox("w1", 10, lease, 1_000).await.unwrap();
    assert_eq!(old.len(), 1);
    // Renewed while held.
    assert_eq!(
        store
            .renew_outbox_claims("w1", &[old[0].token.clone()], 1_150)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .claim_outbox("w2", 10, lease, 1_120)
        .await
        .unwrap()
        .is_empty());
    // The lease runs out; another worker claims the row under a new token.
    let new = store.claim_outbox("w2", 10, lease, 1_200).await.unwrap();
    assert_eq!(new.len(), 1);
    assert_ne!(new[0].token, old[0].token);
    // The old claim can neither renew, fail nor complete the row.
    assert!(store
        .renew_outbox_claims("w1", &[old[0].token.clone()], 5_000)
        .await
        .unwrap()
        .is_empty());
    store.fail_outbox(&old[0], "stale", 9_999).await.unwrap();
    assert!(!store.complete_outbox(&old[0]).await.unwrap());
    assert_eq!(store.outbox_pending(&marks).await.unwrap(), 1);
    assert_eq!(store.outbox_stats().await.unwrap().failing, 0);
    // The holder completes it.
    assert!(store.complete_outbox(&new[0]).await.unwrap());
    assert_eq!(store.outbox_pending(&marks).await.unwrap(), 0);
}

#[tokio::test]
async fn a_user_update_and_its_marks_commit_together() {
    let (store, _dir) = sqlite().await;
    store
        .insert_user(&row("a", "u1", "u1@x.com"))
        .await
        .unwrap();
    let mut changed = row("a", "u1", "u1@x.com");
    changed.active = false;
    // A stale version writes neither the change nor a mark.
    assert!(matches!(
        store
            .update_user_marking(&changed, 7, &["s".to_owned()], None)
            .await,
        Err(StoreError::VersionMismatch)
    ));
    assert_eq!(store.outbox_stats().await.unwrap().depth, 0);
    let marks: Vec<OutboxMark> = store
        .update_user_marking(&changed, 1, &["s".to_owned(), "t".to_owned()], None)
        .await
        .unwrap();
    assert_eq!(marks.len(), 2);
    assert_eq!(store.outbox_pending(&marks).await.unwrap(), 2);
    assert!(!store.get_user("a", "u1").await.unwrap().unwrap().active);
}

#[tokio::test]
async fn a_deleted_user_is_a_tombstone_until_every_site_converged() {
    let (store, _dir) = sqlite().await;
    store
        .insert_user(&row("a", "u1", "U1@x.com"))
        .await
        .unwrap();
    let sites = ["s".to_owned(), "t".to_owned()];
    let (_, marks) = store.delete_user("a", "u1", None, &sites).await.unwrap();
    assert_eq!(marks.len(), 2);
    assert_eq!(store.get_user("a", "u1").await.unwrap(), None);
    assert_eq!(
        store.user_tombstone("a", "u1").await.unwrap().as_deref(),
        Some("U1@x.com")
    );
    assert!(store
        .email_tombstoned("a", "u1@X.com", None, &[])
        .await
        .unwrap());
    let items = store
        .claim_outbox("w", 10, Duration::from_secs(10), i64::MAX / 2)
        .await
        .unwrap();
    assert_eq!(items.len(), 2);
    assert!(store.complete_outbox(&items[0]).await.unwrap());
    assert!(store.user_tombstone("a", "u1").await.unwrap().is_some());
    assert!(store.complete_outbox(&items[1]).await.unwrap());
    assert_eq!(store.user_tombstone("a", "u1").await.unwrap(), None);
    assert!(!store
        .email_tombstoned("a", "u1@x.com", None, &[])
        .await
        .unwrap());
}

/// Slows the partner to 400 ms a call and sends an email change of user `id` to `moved` from
/// a client that gives up after 100 ms (the change is written to the partner by the request
/// itself, before the commit); returns that impatient client.
async fn abandon_email_change(h: &Harness, id: &str, moved: &str) -> reqwest::Client {
    h.emulator.set_faults(
        "acme",
        Faults {
            latency: Some(Latency::FixedMs(400)),
            ..Faults::default()
        },
    );
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let sent = impatient
        .patch(format!("{}/Users/{id}", h.base))
        .bearer_auth(crate::support::TOKEN)
        .header("content-type", "application/scim+json")
        .json(&json!({"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "userName", "value": moved},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": moved}]}))
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up: {sent:?}");
    impatient
}

/// A request the client gives up on (its timeout, a disconnect) still runs to its end: the
/// partner write and the store commit both happen, never one without the other.
#[tokio::test]
async fn a_write_the_client_abandons_runs_to_completion() {
    let h = Harness::start(options()).await;
    let email = "patient@acme.example.com";
    let moved = "moved.patient@acme.example.com";
    let id = create_user(&h, email, "Pat", "Ient").await;
    let impatient = abandon_email_change(&h, &id, moved).await;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = h.get(&format!("/Users/{id}")).await;
        let at_partner = (
            h.partner_user("acme", email).is_some(),
            h.partner_user("acme", moved).is_some(),
        );
        if body["userName"] == moved && at_partner == (false, true) {
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "the abandoned PATCH did not finish: store {}, partner (old, new) {at_partner:?}",
            body["userName"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let email = moved;
    // The same for a DELETE.
    let sent = impatient
        .delete(format!("{}/Users/{id}", h.base))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up: {sent:?}");
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while h.partner_user("acme", email).is_some() {
        assert!(
            std::time::Instant::now() < end,
            "the abandoned DELETE did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.get(&format!("/Users/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

/// A graceful shutdown waits for the writes in flight, also those whose client went away:
/// when `Bridge::shutdown` returns, an abandoned email change has reached the partner and the
/// store (the process may exit right after).
#[tokio::test]
async fn a_shutdown_waits_for_abandoned_writes() {
    let h = Harness::start(options()).await;
    let email = "leaving@acme.example.com";
    let moved = "moved.leaving@acme.example.com";
    let id = create_user(&h, email, "Lea", "Ving").await;
    abandon_email_change(&h, &id, moved).await;
    h.bridge.shutdown().await;
    let row = h.bridge.store.get_user("acme", &id).await.unwrap().unwrap();
    assert_eq!(
        row.user_name, moved,
        "the write did not end before the shutdown returned"
    );
    assert!(h.partner_user("acme", moved).is_some());
    assert!(h.partner_user("acme", email).is_none());
}

/// An email change one site refuses while another applies it: the IdP gets 2xx (the change
/// stands), and the convergence brings the refusing site in line; the former email is gone at
/// both sites, never left behind.
#[tokio::test]
async fn an_email_change_one_site_refuses_leaves_no_former_account() {
    let mut o = options();
    o.sites = vec!["acme", "beta"];
    let h = Harness::start(o).await;
    let old = "mover@acme.example.com";
    let new = "moved@acme.example.com";
    let id = create_user(&h, old, "Mo", "Ver").await;
    // At beta the new email is taken by an account made in the vendor's UI: the rename is
    // refused there (409).
    seed_user(
        &h.emulator,
        "beta",
        scim_bridge::partner::PartnerUser {
            email: new.into(),
            first_name: "Other".into(),
            last_name: "Person".into(),
            groups: vec!["All Users".into()],
        },
    );
    let (status, body) = h
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "userName", "value": new},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": new}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.settle(Duration::from_secs(5)).await;
    for site in ["acme", "beta"] {
        assert!(
            h.partner_user(site, old).is_none(),
            "the former account is left at {site}"
        );
        let now = h.partner_user(site, new).expect("the new email is there");
        assert_eq!(now.first_name, "Mo", "{site}: {now:?}");
    }
    let (_, got) = h.get(&format!("/Users/{id}")).await;
    assert_eq!(got["userName"], new);
}

/// A deactivation that also changes the email (rename-on-disable) removes the former account.
#[tokio::test]
async fn a_deactivation_that_changes_the_email_removes_the_former_account() {
    let h = Harness::start(options()).await;
    let old = "leaving@acme.example.com";
    let id = create_user(&h, old, "Lea", "Ving").await;
    let (status, body) = h
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "value": {"active": false,
                    "userName": "disabled-leaving@acme.example.com"}},
                {"op": "replace", "path": "emails[type eq \"work\"].value",
                    "value": "disabled-leaving@acme.example.com"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.settle(Duration::from_secs(5)).await;
    assert!(
        h.partner_user("acme", old).is_none(),
        "the leaver kept access"
    );
    assert!(h
        .partner_user("acme", "disabled-leaving@acme.example.com")
        .is_none());
}

/// A deletion left only at a site no process serves (its rows parked, e.g. the site was taken
/// out of the configuration) does not hold the email for ever: a new user may take it; while
/// a served site still carries the removal out, it holds it.
#[tokio::test]
async fn a_removal_parked_at_an_unserved_site_does_not_hold_the_email() {
    let (store, _dir) = sqlite().await;
    store
        .insert_user(&row("a", "u1", "U1@x.com"))
        .await
        .unwrap();
    let sites = ["s".to_owned(), "gone".to_owned()];
    store.delete_user("a", "u1", None, &sites).await.unwrap();
    let items = store
        .claim_outbox("w", 10, Duration::from_secs(10), i64::MAX / 2)
        .await
        .unwrap();
    let (served, gone): (Vec<_>, Vec<_>) = items.into_iter().partition(|i| i.site == "s");
    store
        .park_outbox(&gone[0], "site not served", i64::MAX / 2)
        .await
        .unwrap();
    // Site `s` has not converged yet: the email is held.
    assert!(store
        .email_tombstoned("a", "u1@x.com", None, &[])
        .await
        .unwrap());
    assert!(store.complete_outbox(&served[0]).await.unwrap());
    // Only the parked row is left: the tombstone stays pending (reported), the email is free.
    assert!(store.user_tombstone("a", "u1").await.unwrap().is_some());
    assert!(!store
        .email_tombstoned("a", "u1@x.com", None, &[])
        .await
        .unwrap());
    // Parked at a site this process serves (its key refused: the row resumes once the key is
    // accepted), the removal is still being carried out: it holds the email.
    let served = ["gone".to_owned()];
    assert!(store
        .email_tombstoned("a", "u1@x.com", None, &served)
        .await
        .unwrap());
}

/// An IdP gives up on a slow POST /Users (its answer never arrives, the bridge carries the
/// write on), sends it again, gets the user, and deletes it: the first POST, still creating
/// the account at the partner, must neither leave that account behind nor a SCIM user the
/// IdP never heard of. Found by the simulation (seed 14): a create in flight past a deletion.
#[tokio::test]
async fn a_create_the_idp_gave_up_on_leaves_nothing_behind_a_deletion() {
    let mut o = options();
    o.bridge.partner.call_deadline_ms = 4_000;
    o.bridge.partner.request_timeout_ms = 4_000;
    let h = Harness::start(o).await;
    let email = "given-up@acme.example.com";
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": "Given", "familyName": "Up"},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "active": true,
    });
    h.emulator.set_faults(
        "acme",
        Faults {
            hang_for_ms: Some(1_500),
            script: vec![ScriptedFault {
                call: Some(kind_at(&h.emulator, "acme", CallKind::CreateUser)),
                count: 1,
                action: FaultAction::Hang,
            }],
            ..Faults::default()
        },
    );
    // The first POST: the IdP stops waiting after 300 ms.
    let first = h
        .http
        .post(format!("{}/Users", h.base))
        .bearer_auth(crate::support::TOKEN)
        .timeout(Duration::from_millis(300))
        .json(&body)
        .send()
        .await;
    assert!(first.is_err(), "the first POST was answered: {first:?}");
    // The IdP sends it again until it is answered (a 503 says retry; a 409 says the user
    // exists: it finds it by userName, as Okta and Entra do).
    let filter = format!("/Users?filter=userName%20eq%20%22{email}%22");
    let id = crate::support::post_until_answered(&h, "/Users", &body, &filter).await;
    let (status, body) = h.delete(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The first POST has long finished its partner call (1.5 s) and its commit.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    h.settle(Duration::from_secs(10)).await;
    let (_, found) = h.get(&filter).await;
    assert_eq!(
        found["totalResults"], 0,
        "a SCIM user the IdP never heard of was left: {found}"
    );
    assert!(
        h.partner_user("acme", email).is_none(),
        "the deleted user kept its account at the partner"
    );
}
