//! `DELETE /Groups/{id}` when the partner refuses (issue 14): a 401/403 is what a revoked API
//! key gets too, so only proof (a built-in group's name, or a refusal that says "built-in")
//! makes the bridge empty the partner group and forget it; any other refusal is an error the
//! IdP retries, and the store keeps the group until the partner deletes it.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::CallKind;

use crate::support::{
    admin_group, count_job, create_group, create_user, kind_at, partner_group_names, Harness,
    Options, TOKEN,
};

const JANE: &str = "jane@acme.example.com";

/// Sends `DELETE /Groups/{id}`; the status and the `Retry-After` header.
async fn delete_group(h: &Harness, id: &str) -> (StatusCode, Option<String>) {
    let res = h
        .http
        .delete(format!("{}/Groups/{id}", h.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status(), retry_after)
}

fn refuse_next_delete(h: &Harness, status: u16) {
    h.emulator.set_faults(
        "acme",
        Faults {
            script: vec![ScriptedFault {
                call: Some(kind_at(&h.emulator, "acme", CallKind::DeleteGroup)),
                count: 1,
                action: FaultAction::Status {
                    status,
                    retry_after_secs: None,
                },
            }],
            ..Faults::default()
        },
    );
}

fn partner_has_group(h: &Harness, name: &str) -> bool {
    partner_group_names(&h.emulator, "acme")
        .iter()
        .any(|g| g == name)
}

#[tokio::test]
async fn a_refused_group_delete_keeps_the_group_and_succeeds_once_the_partner_accepts() {
    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Analysts", &[&jane]).await;
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", JANE), ["Analysts"]);

    for status in [403, 401] {
        refuse_next_delete(&h, status);
        let deletes = count_job(&h.emulator, "acme", CallKind::DeleteGroup, false);
        let (answer, retry_after) = delete_group(&h, &group).await;
        assert_eq!(answer, StatusCode::SERVICE_UNAVAILABLE, "partner {status}");
        let secs: u64 = retry_after
            .expect("a 503 carries Retry-After")
            .parse()
            .unwrap();
        assert!(secs >= 1, "partner {status}: Retry-After {secs}");
        // The group stays (the IdP's retry deletes it), emptied: the members left it in the
        // store before the partner was asked, and their convergences take it off them at the
        // partner although the partner kept the group itself.
        let (s, body) = h.get(&format!("/Groups/{group}")).await;
        assert_eq!(s, StatusCode::OK, "partner {status}: {body}");
        assert!(
            body["members"].as_array().is_none_or(|m| m.is_empty()),
            "{body}"
        );
        h.settle(Duration::from_secs(10)).await;
        assert!(partner_has_group(&h, "Analysts"), "partner {status}");
        assert!(h.partner_groups("acme", JANE).is_empty());
        // The refusal answered the one delete the bridge sent (auth failures are not retried).
        assert_eq!(
            count_job(&h.emulator, "acme", CallKind::DeleteGroup, false),
            deletes + 1
        );
    }

    // The fault is spent: the IdP's retry deletes the group.
    let (answer, _) = delete_group(&h, &group).await;
    assert_eq!(answer, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/Groups/{group}")).await.0,
        StatusCode::NOT_FOUND
    );
    h.settle(Duration::from_secs(10)).await;
    assert!(!partner_has_group(&h, "Analysts"));
    assert!(h.partner_groups("acme", JANE).is_empty());
}

#[tokio::test]
async fn deleting_a_builtin_group_empties_it_and_keeps_it_at_the_partner() {
    let h = Harness::start(Options {
        allow_admin_grant: true,
        ..Options::default()
    })
    .await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    // The name exists at the partner: the SCIM group adopts the built-in one.
    // (`Administrators`; `Admin` on an RBAC site.)
    let admins = admin_group(&h.emulator, "acme");
    let group = create_group(&h, admins, &[&jane]).await;
    h.settle(Duration::from_secs(10)).await;
    assert_eq!(h.partner_groups("acme", JANE), [admins]);
    let deletes = count_job(&h.emulator, "acme", CallKind::DeleteGroup, false);

    let (answer, _) = delete_group(&h, &group).await;
    assert_eq!(answer, StatusCode::NO_CONTENT);
    assert_eq!(
        h.get(&format!("/Groups/{group}")).await.0,
        StatusCode::NOT_FOUND
    );
    // Known to be undeletable: not even tried; the bridge's member is taken out of it.
    assert_eq!(
        count_job(&h.emulator, "acme", CallKind::DeleteGroup, false),
        deletes
    );
    assert!(partner_has_group(&h, admins));
    h.settle(Duration::from_secs(10)).await;
    assert!(h.partner_groups("acme", JANE).is_empty());
}
