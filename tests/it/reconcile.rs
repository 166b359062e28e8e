//! Reconciliation: drift made behind the bridge's back at the partner is reported, repaired
//! with `apply`, and unknown partner users are left alone. Leavers who kept access are their
//! own categories; protected accounts are kept, only their managed groups can drift.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::bridge::reconcile::{reconcile, render_text, DeletedUser, NameDrift};
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::{Access, CallKind, PartnerUser};
use serde_json::json;

use crate::support::{
    create_group, create_user, delete_partner_user, kind_at, seed_group, seed_user,
    skip_under_roles, Harness, Options, OWNER,
};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[tokio::test]
async fn reconcile_reports_drift_and_repairs_it() {
    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    let john = create_user(&h, "john@acme.example.com", "John", "Roe").await;
    create_group(&h, "Finance", &[&jane, &john]).await;
    let tenant = h.bridge.tenant("acme").unwrap();

    let clean = reconcile(&h.bridge, &tenant, false).await.unwrap();
    assert!(clean[0].in_sync(), "{clean:?}");

    // Behind the bridge's back: Jane loses Finance and gains a managed group she is not in
    // (Sales), John is deleted, a stranger and an unmanaged group appear.
    create_group(&h, "Sales", &[]).await;
    assert!(seed_group(&h.emulator, "acme", "VendorUI"));
    seed_user(
        &h.emulator,
        "acme",
        PartnerUser {
            email: "jane@acme.example.com".into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            groups: vec!["All Users".into(), "Sales".into(), "VendorUI".into()],
        },
    );
    seed_user(
        &h.emulator,
        "acme",
        PartnerUser {
            email: "stranger@acme.example.com".into(),
            first_name: "S".into(),
            last_name: "T".into(),
            groups: vec!["All Users".into()],
        },
    );
    // John goes missing at the partner only.
    delete_partner_user(&h, "acme", "john@acme.example.com").await;
    let calls_before = h.emulator.call_log().len();

    let drift = reconcile(&h.bridge, &tenant, false).await.unwrap();
    let r = &drift[0];
    assert!(!r.in_sync());
    assert_eq!(r.users_missing, ["john@acme.example.com"]);
    assert_eq!(r.memberships_drifted.len(), 1);
    assert_eq!(r.memberships_drifted[0].email, "jane@acme.example.com");
    assert_eq!(r.memberships_drifted[0].missing, ["Finance"]);
    assert_eq!(r.memberships_drifted[0].extra, ["Sales"]);
    // The site owner and the stranger: neither was provisioned by SCIM.
    assert_eq!(
        r.unknown_partner_users,
        ["owner@acme.example.com", "stranger@acme.example.com"]
    );
    let text = render_text(&drift, false);
    assert!(
        text.contains("DRIFTED") && text.contains("john@acme.example.com"),
        "{text}"
    );
    // A dry report writes nothing.
    let writes = h
        .emulator
        .call_log()
        .iter()
        .skip(calls_before)
        .filter(|c| c.call.is_write())
        .count();
    assert_eq!(writes, 0);

    let repaired = reconcile(&h.bridge, &tenant, true).await.unwrap();
    assert_eq!(repaired[0].marked, 2);
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(
        h.partner_groups("acme", "jane@acme.example.com"),
        ["Finance", "VendorUI"]
    );
    assert_eq!(
        h.partner_groups("acme", "john@acme.example.com"),
        ["Finance"]
    );
    assert!(h
        .partner_user("acme", "stranger@acme.example.com")
        .is_some());
    let after = reconcile(&h.bridge, &tenant, false).await.unwrap();
    assert!(after[0].in_sync(), "{after:?}");
}

/// A group missing at the partner is re-created with the access stored with the group (what
/// the bridge gave it), not the tenant's `default_access`.
#[tokio::test]
async fn reconcile_recreates_a_missing_group_with_its_own_access() {
    if skip_under_roles("access levels are a v1 group's; a role has none") {
        return;
    }
    let h = Harness::start(Options {
        group_access: vec![("Finance".into(), Access::Sql)],
        ..Options::default()
    })
    .await;
    let finance = create_group(&h, "Finance", &[]).await;
    let sales = create_group(&h, "Sales", &[]).await;
    let tenant = h.bridge.tenant("acme").unwrap();
    // Sales was given Discovery (as by an earlier configuration): the store remembers it.
    let mut row = h
        .bridge
        .store
        .get_group("acme", &sales)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.access.as_deref(), Some("View"));
    row.access = Some("Discovery".into());
    h.bridge
        .store
        .update_group(&row, row.version)
        .await
        .unwrap();
    // Both deleted at the partner behind the bridge's back.
    for name in ["Finance", "Sales"] {
        let res = reqwest::Client::new()
            .delete(format!(
                "{}/api/v1/groups/{name}?test_mode=false",
                h.partner_base()
            ))
            .header("HTTP-X-PARTNER-AUTH", "acme:key-acme")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{name}");
    }
    let repaired = reconcile(&h.bridge, &tenant, true).await.unwrap();
    assert_eq!(repaired[0].groups_created, 2, "{repaired:?}");
    let access = |name: &str| {
        h.emulator
            .groups("acme")
            .into_iter()
            .find(|g| g.name == name)
            .map(|g| g.access)
    };
    assert_eq!(access("Finance"), Some(Access::Sql));
    assert_eq!(access("Sales"), Some(Access::Discovery));
    assert!(h
        .bridge
        .store
        .get_group("acme", &finance)
        .await
        .unwrap()
        .is_some());
}

/// A partner first/last name changed behind the bridge's back is drift: reported with what the
/// partner has and what SCIM gives, and repaired by the engine with `apply`.
#[tokio::test]
async fn reconcile_reports_and_repairs_drifted_names() {
    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    create_group(&h, "Finance", &[&jane]).await;
    h.settle(Duration::from_secs(10)).await;
    let tenant = h.bridge.tenant("acme").unwrap();
    assert!(reconcile(&h.bridge, &tenant, false).await.unwrap()[0].in_sync());

    let mut renamed = h.partner_user("acme", "jane@acme.example.com").unwrap();
    renamed.first_name = "Janet".into();
    seed_user(&h.emulator, "acme", renamed);

    let drift = reconcile(&h.bridge, &tenant, false).await.unwrap();
    let r = &drift[0];
    assert!(!r.in_sync(), "{r:?}");
    assert_eq!(
        r.names_drifted,
        [NameDrift {
            email: "jane@acme.example.com".into(),
            first_name: "Janet".into(),
            last_name: "Doe".into(),
            want_first_name: "Jane".into(),
            want_last_name: "Doe".into(),
        }]
    );
    assert!(r.memberships_drifted.is_empty() && r.users_missing.is_empty());
    let json = serde_json::to_value(&drift).unwrap();
    assert_eq!(json[0]["names_drifted"][0]["want_first_name"], "Jane");
    let text = render_text(&drift, false);
    assert!(
        text.contains("users whose names drifted (1)") && text.contains("'Janet Doe'"),
        "{text}"
    );

    let repaired = reconcile(&h.bridge, &tenant, true).await.unwrap();
    assert_eq!(repaired[0].marked, 1);
    h.settle(Duration::from_secs(10)).await;
    let jane_at_partner = h.partner_user("acme", "jane@acme.example.com").unwrap();
    assert_eq!(
        (
            jane_at_partner.first_name.as_str(),
            jane_at_partner.last_name.as_str()
        ),
        ("Jane", "Doe")
    );
    assert_eq!(
        h.partner_groups("acme", "jane@acme.example.com"),
        ["Finance"]
    );
    assert!(reconcile(&h.bridge, &tenant, false).await.unwrap()[0].in_sync());
}

/// Two sites; `beta` refuses deletions and updates, so the deletions of the leaver and of the
/// (protected) site owner stay pending there while `acme` carried them out.
fn beta_refuses_deletions(h: &Harness) {
    let refuse = |call| ScriptedFault {
        call: Some(call),
        count: 1_000,
        action: FaultAction::Status {
            status: 400,
            retry_after_secs: None,
        },
    };
    h.emulator.set_faults(
        "beta",
        Faults {
            script: vec![
                refuse(kind_at(&h.emulator, "beta", CallKind::DeleteUser)),
                refuse(kind_at(&h.emulator, "beta", CallKind::UpdateUser)),
            ],
            ..Faults::default()
        },
    );
}

/// Leavers who kept access (a deleted user whose deletion is still pending, a user deactivated
/// under `remove`) are reported as their own categories, first, and removed with `apply`. A
/// deleted or deactivated protected account is never one of them: it is kept on purpose, and
/// is drift only while it still has managed groups.
#[tokio::test]
async fn reconcile_reports_leavers_who_kept_access_and_removes_them() {
    let mut options = Options {
        sites: vec!["acme", "beta"],
        protected_emails: vec!["admin@acme.example.com".into()],
        ..Options::default()
    };
    options.bridge.retry_base_ms = 50;
    options.bridge.retry_max_ms = 200;
    let h = Harness::start(options).await;
    let leaver = create_user(&h, "leaver@acme.example.com", "Lea", "Ver").await;
    let quitter = create_user(&h, "quitter@acme.example.com", "Qui", "Tter").await;
    let owner = create_user(&h, OWNER, "Site", "Owner").await;
    let admin = create_user(&h, "admin@acme.example.com", "Ad", "Min").await;
    create_group(&h, "Finance", &[&leaver, &quitter, &owner, &admin]).await;
    h.settle(Duration::from_secs(10)).await;
    let tenant = h.bridge.tenant("acme").unwrap();

    // The quitter is deactivated (deleted at both sites under `remove`), and so is a protected
    // admin (stripped, kept).
    let deactivate = json!({"schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "value": {"active": false}}]});
    for id in [&quitter, &admin] {
        let (status, body) = h.patch(&format!("/Users/{id}"), deactivate.clone()).await;
        assert!(status.is_success(), "{body}");
    }
    h.settle(Duration::from_secs(10)).await;
    assert!(h.partner_user("beta", "quitter@acme.example.com").is_none());
    assert_eq!(
        h.partner_groups("acme", "admin@acme.example.com"),
        Vec::<String>::new()
    );
    let clean = reconcile(&h.bridge, &tenant, false).await.unwrap();
    assert!(clean.iter().all(|r| r.in_sync()), "{clean:?}");

    // The leaver and the owner are deleted; beta refuses, so both deletions stay pending.
    beta_refuses_deletions(&h);
    for id in [&leaver, &owner] {
        let (status, _) = h.delete(&format!("/Users/{id}")).await;
        assert_ne!(status, StatusCode::NOT_FOUND);
    }
    assert!(h.partner_user("acme", "leaver@acme.example.com").is_none());
    assert!(h
        .bridge
        .store
        .user_tombstone("acme", &leaver)
        .await
        .unwrap()
        .is_some());
    // Behind the bridge's back at acme: the leaver and the quitter are added again, the
    // owner and the deactivated admin get Finance back.
    for (email, groups) in [
        ("leaver@acme.example.com", vec!["All Users", "Finance"]),
        ("quitter@acme.example.com", vec!["All Users"]),
        (OWNER, vec!["All Users", "Finance"]),
        ("admin@acme.example.com", vec!["All Users", "Finance"]),
    ] {
        let mut user = h.partner_user("acme", email).unwrap_or(PartnerUser {
            email: email.into(),
            first_name: "X".into(),
            last_name: "Y".into(),
            groups: vec![],
        });
        user.groups = groups.into_iter().map(String::from).collect();
        seed_user(&h.emulator, "acme", user);
    }

    let drift = reconcile(&h.bridge, &tenant, false).await.unwrap();
    let r = &drift[0];
    assert_eq!(r.site, "acme");
    assert_eq!(
        r.deleted_users_present,
        [DeletedUser {
            id: leaver.clone(),
            email: "leaver@acme.example.com".into(),
        }]
    );
    assert_eq!(r.users_not_removed, ["quitter@acme.example.com"]);
    assert_eq!(r.leavers(), 2);
    // The protected accounts: kept, but their managed groups are drift.
    let mut stripped: Vec<(&str, &[String])> = r
        .memberships_drifted
        .iter()
        .map(|d| (d.email.as_str(), d.extra.as_slice()))
        .collect();
    stripped.sort();
    assert_eq!(
        stripped,
        [
            ("admin@acme.example.com", &["Finance".to_owned()][..]),
            (OWNER, &["Finance".to_owned()][..])
        ]
    );
    assert!(r.unknown_partner_users.is_empty(), "{r:?}");
    assert!(r.names_drifted.is_empty(), "{r:?}");
    // beta still has the leaver too (its deletion is failing there).
    assert_eq!(drift[1].deleted_users_present.len(), 1, "{:?}", drift[1]);
    let text = render_text(&drift, false);
    let leavers_at = text.find("LEAVERS STILL AT THE PARTNER (2)").expect(&text);
    assert!(
        leavers_at < text.find("users whose managed groups drifted").unwrap(),
        "{text}"
    );
    assert!(
        text.contains(&format!("leaver@acme.example.com (deleted user {leaver})")),
        "{text}"
    );
    let json = serde_json::to_value(&drift).unwrap();
    assert_eq!(
        json[0]["deleted_users_present"][0]["email"],
        "leaver@acme.example.com"
    );

    // Repaired through the engine once beta accepts again.
    h.emulator.set_faults("beta", Faults::default());
    let repaired = reconcile(&h.bridge, &tenant, true).await.unwrap();
    assert_eq!(repaired[0].marked, 4, "{repaired:?}");
    h.settle(Duration::from_secs(10)).await;
    for site in ["acme", "beta"] {
        assert!(h.partner_user(site, "leaver@acme.example.com").is_none());
        assert!(h.partner_user(site, "quitter@acme.example.com").is_none());
        assert!(h.partner_user(site, OWNER).is_some(), "the owner is kept");
        assert!(!h
            .partner_groups(site, OWNER)
            .contains(&"Finance".to_owned()));
        assert!(h.partner_groups(site, "admin@acme.example.com").is_empty());
    }
    assert!(h
        .bridge
        .store
        .user_tombstone("acme", &leaver)
        .await
        .unwrap()
        .is_none());
    let after = reconcile(&h.bridge, &tenant, false).await.unwrap();
    assert!(after.iter().all(|r| r.in_sync()), "{after:?}");
}
