//! The bridge on RBAC sites (issue 17, `partner-api.md` section 4): SCIM users become v2 users
//! holding `Everyone`, SCIM groups become roles (created from the template, or adopted by name
//! or `role_map`), membership goes through the engine onto each user's role list, and roles the
//! bridge does not manage survive. Every check reads the emulator's RBAC state directly.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::partner::rbac::{PartnerRole, PartnerUserV2, SiteApi, MANAGED_ROLE_MARK};
use serde_json::json;

use crate::support::{create_group, create_user, Harness, Options};

const SITE: &str = "acme";
const JANE: &str = "jane@example.com";
const SETTLE: Duration = Duration::from_secs(10);

fn rbac() -> Options {
    Options {
        api: SiteApi::Roles,
        ..Options::default()
    }
}

fn role_named(h: &Harness, site: &str, name: &str) -> Option<PartnerRole> {
    h.emulator
        .roles(site)
        .into_iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
}

fn user_v2(h: &Harness, email: &str) -> Option<PartnerUserV2> {
    h.emulator.rbac_user_by_email(SITE, email)
}

fn patch_members(op: &str, ids: &[&str]) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": op, "path": "members",
            "value": ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>()}]
    })
}

fn set_active(active: bool) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": active}}]
    })
}

fn rename(name: &str) -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"displayName": name}}]
    })
}

#[tokio::test]
async fn a_created_user_lands_with_its_names_and_everyone() {
    let h = Harness::start(rbac()).await;
    create_user(&h, JANE, "Jane", "Doe").await;
    h.settle(SETTLE).await;
    let u = user_v2(&h, JANE).expect("the user is at the RBAC site");
    assert_eq!(
        (u.first_name.as_str(), u.last_name.as_str()),
        ("Jane", "Doe")
    );
    let everyone = role_named(&h, SITE, "Everyone").unwrap();
    assert_eq!(u.roles, vec![everyone.id]);
    // Nothing went to the v1 API of the site.
    let log = h.emulator.call_log();
    assert!(log.iter().all(|c| c.call.is_rbac()), "{log:?}");
}

#[tokio::test]
async fn a_group_lands_as_a_role_granting_nothing_and_its_members_hold_it() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    create_group(&h, "BI Analysts", &[&jane]).await;
    h.settle(SETTLE).await;
    let role = role_named(&h, SITE, "BI Analysts").expect("the group is a role");
    assert!(role.privileges.is_empty() && role.permissions.is_empty());
    assert!(role.description.contains(MANAGED_ROLE_MARK));
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);
    let u = user_v2(&h, JANE).unwrap();
    assert!(u.roles.contains(&role.id));
}

#[tokio::test]
async fn an_existing_role_is_adopted_by_name_in_any_case_kept_through_renames_and_never_deleted() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let before = role_named(&h, SITE, "Analyst").unwrap();
    let group = create_group(&h, "analyst", &[&jane]).await;
    h.settle(SETTLE).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["Analyst"]);
    assert_eq!(
        role_named(&h, SITE, "Analyst").unwrap(),
        before,
        "not changed"
    );
    assert_eq!(
        h.emulator.roles(SITE).len(),
        5,
        "no role was created: {:?}",
        h.emulator.roles(SITE)
    );
    // A rename keeps the group's role (linked, not found by name): the role keeps its name
    // and its members, in any case of the new name.
    for name in ["Data Analysts", "DATA ANALYSTS"] {
        let (status, body) = h.patch(&format!("/Groups/{group}"), rename(name)).await;
        assert!(status.is_success(), "{status} {body}");
        h.settle(SETTLE).await;
        assert_eq!(
            role_named(&h, SITE, "Analyst").unwrap(),
            before,
            "not renamed"
        );
        assert_eq!(h.partner_groups(SITE, JANE), ["Analyst"], "still held");
        assert!(
            role_named(&h, SITE, name).is_none(),
            "no role made for {name}"
        );
    }
    let (_, read) = h.get(&format!("/Groups/{group}")).await;
    assert_eq!(read["displayName"], "DATA ANALYSTS");
    // A member added after the rename gets the same role.
    let john = create_user(&h, "john@acme.example.com", "John", "Roe").await;
    let (status, _) = h
        .patch(&format!("/Groups/{group}"), patch_members("add", &[&john]))
        .await;
    assert!(status.is_success());
    h.settle(SETTLE).await;
    assert_eq!(h.partner_groups(SITE, "john@acme.example.com"), ["Analyst"]);
    // Deleting the group takes the role from its members and keeps the role.
    let (status, _) = h.delete(&format!("/Groups/{group}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.settle(SETTLE).await;
    assert!(h.partner_groups(SITE, JANE).is_empty());
    assert_eq!(role_named(&h, SITE, "Analyst").unwrap(), before);
    // The link went with the group: a new group of its last name gets a role of its own,
    // not the adopted one.
    create_group(&h, "Data Analysts", &[&john]).await;
    h.settle(SETTLE).await;
    let own = role_named(&h, SITE, "Data Analysts").expect("a role of its own");
    assert_ne!(own.id, before.id);
    assert_eq!(
        h.partner_groups(SITE, "john@acme.example.com"),
        ["Data Analysts"]
    );
}

#[tokio::test]
async fn a_group_the_bridge_created_is_renamed_and_deleted_with_its_role() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    let id = role_named(&h, SITE, "Finance").unwrap().id;
    let (status, body) = h
        .patch(&format!("/Groups/{group}"), rename("Finance EMEA"))
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(SETTLE).await;
    let renamed = role_named(&h, SITE, "Finance EMEA").expect("renamed");
    assert_eq!(renamed.id, id, "the same role, renamed");
    assert!(role_named(&h, SITE, "Finance").is_none());
    assert_eq!(h.partner_groups(SITE, JANE), ["Finance EMEA"]);
    let (status, _) = h.delete(&format!("/Groups/{group}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.settle(SETTLE).await;
    assert!(role_named(&h, SITE, "Finance EMEA").is_none());
    assert!(h.partner_groups(SITE, JANE).is_empty());
    assert!(user_v2(&h, JANE).is_some(), "the user stays");
}

#[tokio::test]
async fn deactivation_removes_the_user_and_reactivation_restores_its_roles() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    let (status, body) = h.patch(&format!("/Users/{jane}"), set_active(false)).await;
    assert!(status.is_success(), "{body}");
    h.settle(SETTLE).await;
    assert!(user_v2(&h, JANE).is_none(), "removed under `remove`");
    let (status, body) = h.patch(&format!("/Users/{jane}"), set_active(true)).await;
    assert!(status.is_success(), "{body}");
    h.settle(SETTLE).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["Finance"]);
}

#[tokio::test]
async fn deletion_removes_the_user() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    h.settle(SETTLE).await;
    assert!(user_v2(&h, JANE).is_some());
    let (status, _) = h.delete(&format!("/Users/{jane}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.settle(SETTLE).await;
    assert!(user_v2(&h, JANE).is_none());
}

#[tokio::test]
async fn roles_assigned_in_the_ui_survive_membership_changes() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Finance", &[]).await;
    h.settle(SETTLE).await;
    // The site's administrator gives Jane `Read` and a custom role in the UI.
    let custom = PartnerRole {
        id: "custom/role 1".into(),
        name: "Vendor UI".into(),
        description: String::new(),
        privileges: vec![],
        permissions: vec![],
    };
    assert!(h.emulator.insert_role(SITE, custom.clone()));
    let read = role_named(&h, SITE, "Read").unwrap();
    let mut u = user_v2(&h, JANE).unwrap();
    u.roles.push(read.id.clone());
    u.roles.push(custom.id.clone());
    assert!(h.emulator.insert_rbac_user(SITE, u));
    let (status, body) = h
        .patch(&format!("/Groups/{group}"), patch_members("add", &[&jane]))
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(SETTLE).await;
    assert_eq!(
        h.partner_groups(SITE, JANE),
        ["Finance", "Read", "Vendor UI"]
    );
    let (status, body) = h
        .patch(
            &format!("/Groups/{group}"),
            patch_members("remove", &[&jane]),
        )
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(SETTLE).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["Read", "Vendor UI"]);
}

#[tokio::test]
async fn the_admin_and_everyone_roles_are_refused_by_default() {
    let h = Harness::start(rbac()).await;
    for name in ["Admin", "admin", "Everyone"] {
        let (status, body) = h
            .post(
                "/Groups",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        if name != "Everyone" {
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("allow_admin_grant"),
                "{body}"
            );
        }
    }
    let (_, list) = h.get("/Groups").await;
    assert_eq!(list["totalResults"], 0);
}

#[tokio::test]
async fn the_admin_role_is_granted_where_the_site_allows_it() {
    let h = Harness::start(Options {
        allow_admin_grant: true,
        ..rbac()
    })
    .await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    create_group(&h, "Admin", &[&jane]).await;
    h.settle(SETTLE).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["Admin"]);
}

#[tokio::test]
async fn role_map_links_a_group_to_a_role_of_another_name() {
    let h = Harness::start(Options {
        role_map: vec![("Okta Analysts".into(), "Analyst".into())],
        ..rbac()
    })
    .await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    create_group(&h, "okta analysts", &[&jane]).await;
    h.settle(SETTLE).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["Analyst"]);
    assert_eq!(h.emulator.roles(SITE).len(), 5, "no role created");
}

#[tokio::test]
async fn without_create_roles_a_group_without_a_role_is_unmapped() {
    let h = Harness::start(Options {
        create_roles: false,
        ..rbac()
    })
    .await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let finance = create_group(&h, "Finance", &[&jane]).await;
    let analysts = create_group(&h, "Business User", &[]).await;
    let (status, body) = h
        .patch(
            &format!("/Groups/{analysts}"),
            patch_members("add", &[&jane]),
        )
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(SETTLE).await;
    assert!(role_named(&h, SITE, "Finance").is_none(), "no role created");
    assert_eq!(h.partner_groups(SITE, JANE), ["Business User"]);
    // Jane's next convergences find her as she should be: the unmapped group is not wanted
    // at the site, so nothing is written (not a no-op rewrite of her roles each time).
    let before = crate::idp_okta::calls(&h);
    for op in ["remove", "add", "remove", "add"] {
        let (status, _) = h
            .patch(&format!("/Groups/{finance}"), patch_members(op, &[&jane]))
            .await;
        assert!(status.is_success());
        h.settle(SETTLE).await;
    }
    let after = crate::idp_okta::calls(&h);
    let writes = |c: &std::collections::BTreeMap<scim_bridge::partner::CallKind, u64>| {
        c.iter()
            .filter(|(k, _)| k.is_user_write())
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert_eq!(writes(&after), writes(&before), "{before:?} -> {after:?}");
    assert_eq!(h.partner_groups(SITE, JANE), ["Business User"]);
}

#[tokio::test]
async fn an_email_change_moves_the_same_partner_user() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    let id = user_v2(&h, JANE).unwrap().id;
    let (status, body) = h
        .patch(
            &format!("/Users/{jane}"),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {
                    "userName": "jane.doe@example.com",
                    "emails": [{"value": "jane.doe@example.com", "primary": true, "type": "work"}]
                }}]
            }),
        )
        .await;
    assert!(status.is_success(), "{body}");
    h.settle(SETTLE).await;
    assert!(user_v2(&h, JANE).is_none());
    let moved = user_v2(&h, "jane.doe@example.com").expect("moved");
    assert_eq!(moved.id, id, "the same partner user, its email changed");
    assert_eq!(h.partner_groups(SITE, "jane.doe@example.com"), ["Finance"]);
}

#[tokio::test]
async fn one_tenant_fans_out_to_a_v1_site_and_an_rbac_site() {
    let h = Harness::start(Options {
        sites: vec!["acme", "rbac"],
        api: SiteApi::Groups,
        other_api_sites: vec!["rbac"],
        ..Options::default()
    })
    .await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    assert!(h
        .emulator
        .groups("acme")
        .iter()
        .any(|g| g.name == "Finance"));
    assert!(role_named(&h, "rbac", "Finance").is_some());
    assert_eq!(h.partner_groups("acme", JANE), ["Finance"]);
    assert_eq!(h.partner_groups("rbac", JANE), ["Finance"]);
    let (status, _) = h.patch(&format!("/Groups/{group}"), rename("Money")).await;
    assert!(status.is_success());
    h.settle(SETTLE).await;
    assert_eq!(h.partner_groups("acme", JANE), ["Money"]);
    assert_eq!(h.partner_groups("rbac", JANE), ["Money"]);
    let (status, _) = h.delete(&format!("/Users/{jane}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.settle(SETTLE).await;
    assert!(h.partner_user("acme", JANE).is_none());
    assert!(h.partner_user("rbac", JANE).is_none());
}

#[tokio::test]
async fn a_user_beyond_the_first_page_of_the_partner_is_found() {
    let h = Harness::start(rbac()).await;
    for i in 0..230 {
        assert!(h.emulator.insert_rbac_user(
            SITE,
            PartnerUserV2 {
                id: format!("seed/{i}"),
                email: format!("a{i:03}@example.com"),
                first_name: "A".into(),
                last_name: "B".into(),
                roles: vec![],
            },
        ));
    }
    // zz@ sorts after every seeded user: on the third page.
    let jane = create_user(&h, "zz@example.com", "Zed", "Zed").await;
    create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    assert_eq!(h.partner_groups(SITE, "zz@example.com"), ["Finance"]);
    assert_eq!(h.emulator.rbac_users(SITE).len(), 232);
}

#[tokio::test]
async fn reconcile_finds_and_repairs_role_drift_and_reports_unmapped_groups() {
    use scim_bridge::bridge::reconcile::reconcile;
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    let tenant = h.bridge.tenant("acme").unwrap();
    assert!(reconcile(&h.bridge, &tenant, false).await.unwrap()[0].in_sync());
    // Someone takes Finance from Jane in the UI and gives her Analyst.
    let analyst = role_named(&h, SITE, "Analyst").unwrap();
    let everyone = role_named(&h, SITE, "Everyone").unwrap();
    let mut u = user_v2(&h, JANE).unwrap();
    u.roles = vec![everyone.id, analyst.id];
    assert!(h.emulator.insert_rbac_user(SITE, u));
    let drift = reconcile(&h.bridge, &tenant, false).await.unwrap();
    assert_eq!(drift[0].memberships_drifted.len(), 1, "{drift:?}");
    assert_eq!(drift[0].memberships_drifted[0].missing, ["Finance"]);
    reconcile(&h.bridge, &tenant, true).await.unwrap();
    h.settle(SETTLE).await;
    // Finance is back; Analyst, which no SCIM group manages, stays.
    assert_eq!(h.partner_groups(SITE, JANE), ["Analyst", "Finance"]);
    assert!(reconcile(&h.bridge, &tenant, false).await.unwrap()[0].in_sync());

    let h = Harness::start(Options {
        create_roles: false,
        ..rbac()
    })
    .await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    let tenant = h.bridge.tenant("acme").unwrap();
    let report = reconcile(&h.bridge, &tenant, true).await.unwrap();
    assert_eq!(report[0].groups_unmapped, ["Finance"]);
    assert!(
        report[0].memberships_drifted.is_empty(),
        "a member of an unmapped group is not missing its role: {report:?}"
    );
    assert!(report[0].groups_missing.is_empty() && report[0].in_sync());
    assert_eq!(report[0].groups_created, 0);
    assert!(role_named(&h, SITE, "Finance").is_none());
}

/// The store links a group to its role by id (`partner_links`). A role the bridge made that
/// the site's administrator renames in the UI stays the group's role and is named back after
/// its group at the next write that needs it (the bridge names its roles); no second role is
/// made under the group's name.
#[tokio::test]
async fn a_role_the_bridge_made_renamed_in_the_ui_stays_the_groups_and_is_named_back() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    let mut role = role_named(&h, SITE, "Finance").expect("the group's role");
    role.name = "Finance (ledger)".into();
    assert!(
        h.emulator.insert_role(SITE, role.clone()),
        "renamed as in the UI"
    );
    // Another group's create reads the role list again: the old name is gone from it.
    create_group(&h, "Other", &[]).await;
    h.settle(SETTLE).await;
    let john = create_user(&h, "john@example.com", "John", "Roe").await;
    let (status, _) = h
        .patch(&format!("/Groups/{group}"), patch_members("add", &[&john]))
        .await;
    assert!(status.is_success());
    h.settle(SETTLE).await;
    let john_roles = user_v2(&h, "john@example.com").unwrap().roles;
    assert!(john_roles.contains(&role.id), "{john_roles:?}");
    assert!(user_v2(&h, JANE).unwrap().roles.contains(&role.id));
    assert_eq!(
        role_named(&h, SITE, "Finance").map(|r| r.id),
        Some(role.id.clone()),
        "the same role, named back, no second one: {:?}",
        h.emulator.roles(SITE)
    );
    // Taking Jane out takes the role away, keeps John's.
    let (status, _) = h
        .patch(
            &format!("/Groups/{group}"),
            patch_members("remove", &[&jane]),
        )
        .await;
    assert!(status.is_success());
    h.settle(SETTLE).await;
    assert!(!user_v2(&h, JANE).unwrap().roles.contains(&role.id));
    assert!(user_v2(&h, "john@example.com")
        .unwrap()
        .roles
        .contains(&role.id));
}

/// An adopted role renamed in the UI keeps its new name (the bridge never renames it) and
/// stays the group's role. Another group named after the role's new name does not get it:
/// the role is the first group's.
#[tokio::test]
async fn an_adopted_role_renamed_in_the_ui_stays_the_groups_and_no_other_group_takes_it() {
    let h = Harness::start(rbac()).await;
    let data = PartnerRole {
        id: "data-role".into(),
        name: "Data".into(),
        description: "made in the UI".into(),
        privileges: Vec::new(),
        permissions: Vec::new(),
    };
    assert!(h.emulator.insert_role(SITE, data.clone()));
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "data", &[&jane]).await;
    h.settle(SETTLE).await;
    assert!(user_v2(&h, JANE).unwrap().roles.contains(&data.id));
    let mut renamed = data.clone();
    renamed.name = "Data Science".into();
    assert!(h.emulator.insert_role(SITE, renamed));
    create_group(&h, "Other", &[]).await;
    let john = create_user(&h, "john@example.com", "John", "Roe").await;
    let (status, _) = h
        .patch(&format!("/Groups/{group}"), patch_members("add", &[&john]))
        .await;
    assert!(status.is_success());
    h.settle(SETTLE).await;
    assert!(user_v2(&h, "john@example.com")
        .unwrap()
        .roles
        .contains(&data.id));
    assert_eq!(
        h.emulator.role(SITE, &data.id).unwrap().name,
        "Data Science"
    );
    // A group named after the role's new name is not given the first group's role.
    let ann = create_user(&h, "ann@example.com", "Ann", "Lee").await;
    let (status, body) = h
        .post(
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Data Science",
                "members": [{"value": ann}]
            }),
        )
        .await;
    h.settle(SETTLE).await;
    assert!(
        !user_v2(&h, "ann@example.com")
            .unwrap()
            .roles
            .contains(&data.id),
        "a member of another group was given the role of 'data' ({status} {body})"
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("'data'"),
        "{body}"
    );
    // Jane and John keep it.
    assert!(user_v2(&h, JANE).unwrap().roles.contains(&data.id));
}

/// Two replicas on one store. Replica B renames a group (its role with it) and makes a new
/// group under the old name (a new role of that name) while replica A still holds the role
/// list it read before: A gives a member of the new group the new group's role, not the
/// renamed one that used to carry the name (found through the store's link, not the list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_an_old_role_list_gives_a_group_its_own_role() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        store_url: Some(format!("sqlite://{}/shared.db", dir.path().display())),
        ..rbac()
    };
    let a = Harness::start(opts.clone()).await;
    let running = a.emulator.clone().spawn().await.unwrap();
    let b = Harness::start_with(opts, a.emulator.clone(), running).await;
    let jane = create_user(&a, JANE, "Jane", "Doe").await;
    let john = create_user(&a, "john@example.com", "John", "Roe").await;
    let old = create_group(&a, "Analysts", &[&jane]).await;
    a.settle(SETTLE).await;
    let first = role_named(&a, SITE, "Analysts").unwrap();
    // A reads the role list now (Jane's roles): within ROLE_LIST_MAX_AGE it is not read again.
    let (status, _) = a.get(&format!("/Users/{jane}")).await;
    assert!(status.is_success());
    let (status, body) = b.patch(&format!("/Groups/{old}"), rename("Finance")).await;
    assert!(status.is_success(), "{body}");
    b.settle(SETTLE).await;
    assert_eq!(a.emulator.role(SITE, &first.id).unwrap().name, "Finance");
    let new = create_group(&b, "Analysts", &[]).await;
    b.settle(SETTLE).await;
    let second = role_named(&a, SITE, "Analysts").expect("a new role for the new group");
    assert_ne!(second.id, first.id);
    let (status, _) = a
        .patch(&format!("/Groups/{new}"), patch_members("add", &[&john]))
        .await;
    assert!(status.is_success());
    a.settle(SETTLE).await;
    b.settle(SETTLE).await;
    let roles = user_v2(&a, "john@example.com").unwrap().roles;
    assert!(roles.contains(&second.id), "{roles:?}");
    assert!(
        !roles.contains(&first.id),
        "John was given the renamed role (Finance): {roles:?}"
    );
    assert!(user_v2(&a, JANE).unwrap().roles.contains(&first.id));
}

/// Links as another replica writes them: the first read of a link finds one that replica has
/// just written for a role it has just made (after this replica read its role list).
#[derive(Debug)]
struct JustMadeByAnotherReplica {
    inner: scim_bridge::partner::client::MemoryLinks,
    emulator: scim_bridge::partner::emulator::Emulator,
    role: PartnerRole,
    done: std::sync::atomic::AtomicBool,
}

impl scim_bridge::partner::client::SiteLinks for JustMadeByAnotherReplica {
    fn get<'a>(
        &'a self,
        kind: scim_bridge::partner::client::LinkKind,
        name: &'a str,
    ) -> scim_bridge::partner::client::LinkFuture<'a, Option<scim_bridge::partner::client::Link>>
    {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            assert!(self.emulator.insert_role(SITE, self.role.clone()));
            let link = scim_bridge::partner::client::Link {
                name: name.to_owned(),
                partner_id: self.role.id.clone(),
                adopted: false,
            };
            return Box::pin(async move {
                self.inner.put(kind, &link, None).await?;
                self.inner.get(kind, name).await
            });
        }
        self.inner.get(kind, name)
    }
    fn all(
        &self,
        kind: scim_bridge::partner::client::LinkKind,
    ) -> scim_bridge::partner::client::LinkFuture<'_, Vec<scim_bridge::partner::client::Link>> {
        self.inner.all(kind)
    }
    fn put<'a>(
        &'a self,
        kind: scim_bridge::partner::client::LinkKind,
        link: &'a scim_bridge::partner::client::Link,
        replacing: Option<&'a str>,
    ) -> scim_bridge::partner::client::LinkFuture<'a, ()> {
        self.inner.put(kind, link, replacing)
    }
    fn remove<'a>(
        &'a self,
        kind: scim_bridge::partner::client::LinkKind,
        name: &'a str,
    ) -> scim_bridge::partner::client::LinkFuture<'a, ()> {
        self.inner.remove(kind, name)
    }
}

/// A link to a role missing from a role list read just before it is not taken for a link to a
/// role that is gone: the role is read by its id first (another replica made it meanwhile).
#[tokio::test]
async fn a_link_newer_than_the_role_list_is_kept() {
    use scim_bridge::partner::client::{LinkKind, SiteLinks};
    let h = Harness::start(rbac()).await;
    let role = PartnerRole {
        id: "made-by-b".into(),
        name: "Finance".into(),
        description: MANAGED_ROLE_MARK.into(),
        privileges: Vec::new(),
        permissions: Vec::new(),
    };
    let links = std::sync::Arc::new(JustMadeByAnotherReplica {
        inner: Default::default(),
        emulator: h.emulator.clone(),
        role: role.clone(),
        done: Default::default(),
    });
    let client = rbac_client(&h);
    client.role_site().unwrap().keep_links_in(links.clone());
    let found = client.get_group("Finance").await.unwrap();
    assert!(
        found.is_some(),
        "the group's role, made after the list was read"
    );
    assert_eq!(
        links
            .get(LinkKind::Role, "finance")
            .await
            .unwrap()
            .map(|l| l.partner_id),
        Some(role.id),
        "the link was dropped"
    );
}

/// With `create_roles = false`, a role made in the UI for an unmapped group is given to its
/// members at their next convergence, even by a bridge whose role list is a few seconds old.
#[tokio::test]
async fn a_role_made_in_the_ui_for_an_unmapped_group_is_given_at_the_next_convergence() {
    let h = Harness::start(Options {
        create_roles: false,
        ..rbac()
    })
    .await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let finance = create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    assert!(h.partner_groups(SITE, JANE).is_empty());
    let role = PartnerRole {
        id: "finance-ui".into(),
        name: "Finance".into(),
        description: "made in the UI".into(),
        privileges: Vec::new(),
        permissions: Vec::new(),
    };
    assert!(h.emulator.insert_role(SITE, role.clone()));
    for op in ["remove", "add"] {
        let (status, _) = h
            .patch(&format!("/Groups/{finance}"), patch_members(op, &[&jane]))
            .await;
        assert!(status.is_success());
        h.settle(SETTLE).await;
    }
    assert_eq!(h.partner_groups(SITE, JANE), ["Finance"]);
}

/// Users are looked up by reading the user list, which the bridge reads again only every so
/// often: a user made in the site's UI since the last reading is found when the create is
/// refused because its email exists, and adopted (its id kept, its roles given), not lost.
#[tokio::test]
async fn a_user_made_in_the_ui_after_the_last_user_list_is_adopted() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Finance", &[&jane]).await;
    h.settle(SETTLE).await;
    // A reconcile reads the whole user list.
    let tenant = h.bridge.tenant("acme").unwrap();
    scim_bridge::bridge::reconcile::reconcile(&h.bridge, &tenant, false)
        .await
        .unwrap();
    let everyone = role_named(&h, SITE, "Everyone").unwrap();
    assert!(h.emulator.insert_rbac_user(
        SITE,
        PartnerUserV2 {
            id: "made-in-ui".into(),
            email: "Bob@Example.com".into(),
            first_name: "Robert".into(),
            last_name: "Roe".into(),
            roles: vec![everyone.id],
        }
    ));
    let bob = create_user(&h, "bob@example.com", "Bob", "Roe").await;
    let (status, _) = h
        .patch(&format!("/Groups/{group}"), patch_members("add", &[&bob]))
        .await;
    assert!(status.is_success());
    h.settle(SETTLE).await;
    let bobs: Vec<_> = h
        .emulator
        .rbac_users(SITE)
        .into_iter()
        .filter(|u| u.email.eq_ignore_ascii_case("bob@example.com"))
        .collect();
    assert_eq!(bobs.len(), 1, "{bobs:?}");
    assert_eq!(bobs[0].id, "made-in-ui", "adopted");
    assert_eq!(bobs[0].first_name, "Bob");
    assert_eq!(h.partner_groups(SITE, "bob@example.com"), ["Finance"]);
}

/// A leaver whose id the bridge holds is stale (deleted and made again in the UI, its link
/// gone) and that one reading of the user list misses (a cursor listing read while users are
/// added or removed can skip one) is not taken as gone: a second reading finds it, and it is
/// removed.
#[tokio::test]
async fn a_leaver_one_user_listing_misses_is_still_removed() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    h.settle(SETTLE).await;
    let old = user_v2(&h, JANE).unwrap();
    assert!(h.emulator.remove_rbac_user(SITE, &old.id));
    assert!(h.emulator.insert_rbac_user(
        SITE,
        PartnerUserV2 {
            id: "made-again".into(),
            ..old.clone()
        }
    ));
    h.bridge
        .store
        .delete_partner_link("acme", SITE, "user", JANE)
        .await
        .unwrap();
    assert!(h.emulator.skip_rbac_user_in_listings(SITE, JANE, 1));
    let (status, body) = h.patch(&format!("/Users/{jane}"), set_active(false)).await;
    assert!(status.is_success(), "{body}");
    let end = std::time::Instant::now() + SETTLE;
    while user_v2(&h, JANE).is_some() {
        assert!(
            std::time::Instant::now() < end,
            "the leaver is still at the site: {:?}",
            h.bridge.store.outbox_failures(Some("acme"), 10).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rbac_client(h: &Harness) -> scim_bridge::partner::PartnerClient {
    use scim_bridge::partner::client::RoleSite;
    use scim_bridge::partner::rbac::RoleSettings;
    use scim_bridge::partner::{ClientOptions, PartnerClient, SiteConnection};
    PartnerClient::new(
        SiteConnection {
            base_url: h.partner_base.parse().unwrap(),
            site_name: SITE.into(),
            api_key: scim_bridge::secret::Secret::new(format!("key-{SITE}")),
        },
        ClientOptions::default(),
    )
    .unwrap()
    .with_roles(RoleSite::new(
        RoleSettings {
            create_roles: true,
            ..RoleSettings::default()
        },
        None,
    ))
}

/// A recent reading of the user list never answers for a delete: a user made since (in the
/// UI, by a create whose answer was lost, by a replica whose link write failed) is deleted,
/// not taken as gone.
#[tokio::test]
async fn a_delete_never_trusts_an_earlier_reading_of_the_user_list() {
    use scim_bridge::partner::OrGone;
    let h = Harness::start(rbac()).await;
    let client = rbac_client(&h);
    assert!(client
        .list_users()
        .await
        .unwrap()
        .iter()
        .all(|u| u.email != JANE));
    assert!(h.emulator.insert_rbac_user(
        SITE,
        PartnerUserV2 {
            id: "made-since".into(),
            email: JANE.into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            roles: Vec::new(),
        }
    ));
    let deleted = client.delete_user(JANE, false).await.or_gone().unwrap();
    assert!(deleted.is_some(), "taken as gone");
    assert!(user_v2(&h, JANE).is_none());
    // And a lookup for a leaver reads the list again too.
    assert!(h.emulator.insert_rbac_user(
        SITE,
        PartnerUserV2 {
            id: "made-again".into(),
            email: JANE.into(),
            first_name: "Jane".into(),
            last_name: "Doe".into(),
            roles: Vec::new(),
        }
    ));
    assert!(client.get_user(JANE).await.unwrap().is_some());
}

/// A link left under a name the store never committed (a rename whose commit failed and
/// whose undo stopped after the partner call) does not hold the role against the group that
/// has it by name: a member added later gets it.
#[tokio::test]
async fn a_link_under_a_name_no_group_carries_does_not_hold_the_role() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    let group = create_group(&h, "Analysts", &[&jane]).await;
    h.settle(SETTLE).await;
    let role = role_named(&h, SITE, "Analysts").unwrap();
    h.bridge
        .store
        .put_partner_link(
            "acme",
            SITE,
            "role",
            &scim_bridge::store::PartnerLink {
                name: "Analysts EU".into(),
                partner_id: role.id.clone(),
                adopted: false,
            },
            Some("Analysts"),
        )
        .await
        .unwrap();
    let john = create_user(&h, "john@example.com", "John", "Roe").await;
    let (status, _) = h
        .patch(&format!("/Groups/{group}"), patch_members("add", &[&john]))
        .await;
    assert!(status.is_success());
    h.settle(SETTLE).await;
    assert!(user_v2(&h, "john@example.com")
        .unwrap()
        .roles
        .contains(&role.id));
    assert_eq!(h.emulator.roles(SITE).len(), 6, "no second role");
}

/// A role the bridge made, renamed in the UI while another role took its group's name there,
/// cannot be named back: its group's members keep it by its link, and their other changes
/// (leaving another group) are still written.
#[tokio::test]
async fn a_drifted_role_that_cannot_be_named_back_does_not_block_a_members_writes() {
    let h = Harness::start(rbac()).await;
    let jane = create_user(&h, JANE, "Jane", "Doe").await;
    create_group(&h, "Finance", &[&jane]).await;
    let other = create_group(&h, "Sales", &[&jane]).await;
    h.settle(SETTLE).await;
    let mut finance = role_named(&h, SITE, "Finance").unwrap();
    let sales = role_named(&h, SITE, "Sales").unwrap();
    finance.name = "Finance-old".into();
    assert!(h.emulator.insert_role(SITE, finance.clone()));
    assert!(h.emulator.insert_role(
        SITE,
        PartnerRole {
            id: "ui-finance".into(),
            name: "Finance".into(),
            description: "made in the UI".into(),
            privileges: Vec::new(),
            permissions: Vec::new(),
        }
    ));
    // Another group's create reads the role list again.
    create_group(&h, "Other", &[]).await;
    h.settle(SETTLE).await;
    let (status, _) = h
        .patch(
            &format!("/Groups/{other}"),
            patch_members("remove", &[&jane]),
        )
        .await;
    assert!(status.is_success());
    h.settle(SETTLE).await;
    let roles = user_v2(&h, JANE).unwrap().roles;
    assert!(!roles.contains(&sales.id), "Sales was not taken: {roles:?}");
    assert!(roles.contains(&finance.id), "{roles:?}");
    assert!(!roles.contains(&"ui-finance".to_owned()), "{roles:?}");
}
