//! Reconciliation: drift made behind the bridge's back at the partner is reported, repaired
//! with `apply`, and unknown partner users are left alone.

use std::time::Duration;

use scim_bridge::bridge::reconcile::{reconcile, render_text};
use scim_bridge::partner::{Access, PartnerGroup, PartnerUser};

use crate::support::{create_group, create_user, Harness, Options};

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
    h.emulator.insert_group(
        "acme",
        PartnerGroup {
            name: "VendorUI".into(),
            access: Access::View,
        },
    );
    h.emulator.insert_user(
        "acme",
        PartnerUser {
            email: "jane@acme.example.com".into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            groups: vec!["All Users".into(), "Sales".into(), "VendorUI".into()],
        },
    );
    h.emulator.insert_user(
        "acme",
        PartnerUser {
            email: "stranger@acme.example.com".into(),
            first_name: "S".into(),
            last_name: "T".into(),
            groups: vec!["All Users".into()],
        },
    );
    let calls_before = h.emulator.call_log().len();
    // John goes missing at the partner only.
    let key = "key-acme";
    let res = reqwest::Client::new()
        .delete(format!("{}/api/v1/users?test_mode=false", h.partner_base()))
        .header("HTTP-X-PARTNER-AUTH", format!("acme:{key}"))
        .header("HTTP-X-EMAIL", "john@acme.example.com")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());

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
        .filter(|c| c.call.is_write() && c.email.as_deref() != Some("john@acme.example.com"))
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
