//! Microsoft Entra ID's real request sequences (`tests/fixtures/entra/requests.md`), end to
//! end: each step is checked at the partner (the emulator's state) and by the partner calls it
//! cost.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::partner::CallKind;
use serde_json::{json, Value};

use crate::idp_okta::{calls, calls_since, fixture, no_test_mode_calls, raw, SITE};
use crate::support::{
    assert_calls_since, count_job, create_user, is_rbac_site, kind_at, partner_group_names,
    seed_user, Harness, Options,
};

const ALEX: &str = "alex.wu@contoso.com";
const SAM: &str = "sam.lee@contoso.com";
const ENTRA_HEADERS: &[(&str, &str)] = &[("Accept", "application/scim+json")];

/// POSTs `create-user.json` as Entra does and returns the user's id.
async fn create_alex(h: &Harness, query: &str) -> String {
    let before = calls(h);
    let (status, _, body) = raw(
        h,
        reqwest::Method::POST,
        &format!("/Users{query}"),
        Some((
            "application/scim+json",
            &fixture("entra", "create-user.json", &[]),
        )),
        ENTRA_HEADERS,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_calls_since(h, SITE, &before, &[(CallKind::CreateUser, 1)]);
    let p = h.partner_user(SITE, ALEX).unwrap();
    assert_eq!(
        (p.first_name.as_str(), p.last_name.as_str()),
        ("Alex", "Wu")
    );
    // Nulls are unassigned, not stored as null.
    assert!(body.get("addresses").is_none_or(Value::is_null), "{body}");
    assert_eq!(body["active"], true);
    body["id"].as_str().unwrap().to_owned()
}

/// `GET /Users?filter=...` (the filter as Entra writes it; the client percent-encodes it).
async fn find(h: &Harness, resource: &str, filter: &str, extra: &str) -> Value {
    let (status, body) = h
        .get(&format!("/{resource}?filter={}{extra}", encode(filter)))
        .await;
    assert_eq!(status, StatusCode::OK, "{filter}: {body}");
    body
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn entra_probe_with_random_ids_is_empty_and_costs_no_partner_call() {
    let h = Harness::start(Options::default()).await;
    create_user(&h, SAM, "Sam", "Lee").await;
    let before = calls(&h);
    for filter in [
        "userName eq \"7e3f1c2a-0d4b-4a55-9b1e-2f0c6d9a8b11\"",
        &format!("userName eq \"{}\"", uuid::Uuid::new_v4()),
        &format!("externalId eq \"{}\"", uuid::Uuid::new_v4()),
    ] {
        let body = find(&h, "Users", filter, "").await;
        assert_eq!(body["totalResults"], 0, "{filter}: {body}");
        assert_eq!(
            body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
        );
        // The raw form, as it appears in the docs (spaces and quotes left to the client).
        let (status, body) = h.get(&format!("/Users?filter={filter}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["totalResults"], 0);
    }
    // A userName that is no email address cannot be at the partner: it is not asked.
    assert!(calls_since(&h, &before).is_empty(), "{:?}", calls(&h));
}

#[tokio::test]
async fn entra_matches_users_and_groups() {
    let h = Harness::start(Options::default()).await;
    let id = create_alex(&h, "").await;
    let before = calls(&h);
    for filter in [
        format!("userName eq \"{ALEX}\""),
        "userName eq \"Alex.Wu@Contoso.com\"".to_owned(),
        "externalId eq \"alexw\"".to_owned(),
        format!("emails[type eq \"work\"].value eq \"{ALEX}\""),
    ] {
        let body = find(&h, "Users", &filter, "").await;
        assert_eq!(body["totalResults"], 1, "{filter}: {body}");
        assert_eq!(body["Resources"][0]["id"], id, "{filter}");
    }
    // externalId is case-exact.
    let body = find(&h, "Users", "externalId eq \"AlexW\"", "").await;
    assert_eq!(body["totalResults"], 0);

    let body = find(
        &h,
        "Groups",
        "displayName eq \"Finance Analysts\"",
        "&excludedAttributes=members",
    )
    .await;
    assert_eq!(body["totalResults"], 0);
    let (status, group) = h
        .post("/Groups", fixture("entra", "create-group.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let gid = group["id"].as_str().unwrap();
    let mut one = fixture(
        "entra",
        "add-members.json",
        &[("$USER_ID", &id), ("$USER2_ID", "")],
    );
    one["Operations"][0]["value"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    let (status, _) = h.patch(&format!("/Groups/{gid}"), one).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let before_groups = calls(&h);
    let body = find(
        &h,
        "Groups",
        "displayName eq \"Finance Analysts\"",
        "&excludedAttributes=members",
    )
    .await;
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_eq!(body["Resources"][0]["id"], gid);
    assert_eq!(body["Resources"][0]["displayName"], "Finance Analysts");
    assert!(body["Resources"][0].get("members").is_none(), "{body}");
    // Case-insensitive, as Entra requires of displayName.
    let body = find(&h, "Groups", "displayName eq \"finance analysts\"", "").await;
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_eq!(body["Resources"][0]["members"][0]["value"], id);
    assert!(calls_since(&h, &before_groups).is_empty());
    // Matching never asked the partner: only the group's creation and Alex's join did.
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[
            (CallKind::GetUser, 1),
            (CallKind::UpdateUser, 1),
            (CallKind::CreateGroup, 1),
        ],
    );
}

/// Create, update (default or `aadOptscim062020` dialect), disable.
async fn entra_user_lifecycle(flag: bool) {
    let h = Harness::start(Options::default()).await;
    let query = if flag { "?aadOptscim062020" } else { "" };
    let id = create_alex(&h, query).await;
    let path = format!("/Users/{id}{query}");

    let name = if flag {
        "update-user-flag.json"
    } else {
        "update-user-default.json"
    };
    let before = calls(&h);
    let (status, body) = h.patch(&path, fixture("entra", name, &[])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], "Alex Q. Wu");
    assert_eq!(body["name"]["givenName"], "Alexander");
    assert_eq!(body["emails"][0]["value"], "alex.q.wu@contoso.com");
    assert_eq!(body["emails"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(
        body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
        "20482"
    );
    if flag {
        // A `type eq "work"` filter that matches nothing creates the element.
        assert_eq!(body["phoneNumbers"][0]["type"], "work", "{body}");
        assert_eq!(body["phoneNumbers"][0]["value"], "+1 425 555 0100");
    } else {
        assert_eq!(body["nickName"], "Al");
    }
    // One partner write: the first name, by the user's convergence (which reads the partner
    // user first). The partner key stays the userName (an email).
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    let p = h.partner_user(SITE, ALEX).unwrap();
    assert_eq!(
        (p.first_name.as_str(), p.last_name.as_str()),
        ("Alexander", "Wu")
    );

    // The same PATCH again changes nothing: no partner call, no version bump.
    let before = calls(&h);
    let (status, again) = h.patch(&path, fixture("entra", name, &[])).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["meta"]["version"], body["meta"]["version"]);
    assert!(calls_since(&h, &before).is_empty());

    // Disable with the string "False": the partner user goes (default policy `remove`).
    let before = calls(&h);
    let (status, body) = h
        .patch(&path, fixture("entra", "disable-user.json", &[]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], json!(false));
    assert!(h.partner_user(SITE, ALEX).is_none());
    // The delete, and the engine's read that confirms it after the commit.
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::DeleteUser, 1)],
    );
    // Inactive users are still found by Entra's matching.
    let body = find(&h, "Users", &format!("userName eq \"{ALEX}\""), "").await;
    assert_eq!(body["totalResults"], 1);
    assert_eq!(body["Resources"][0]["active"], false);
    h.settle(Duration::from_secs(5)).await;
    no_test_mode_calls(&h);
}

#[tokio::test]
async fn entra_create_update_disable_default_dialect() {
    entra_user_lifecycle(false).await;
}

#[tokio::test]
async fn entra_create_update_disable_aadoptscim062020() {
    entra_user_lifecycle(true).await;
}

#[tokio::test]
async fn entra_manager_second_pass() {
    let h = Harness::start(Options::default()).await;
    let id = create_alex(&h, "").await;
    let manager = create_user(&h, SAM, "Sam", "Lee").await;
    let before = calls(&h);
    let (status, body) = h
        .patch(
            &format!("/Users/{id}"),
            fixture("entra", "add-manager.json", &[("$MANAGER_ID", &manager)]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ext = &body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    assert_eq!(ext["manager"]["value"], manager, "{body}");
    // The partner holds no manager: no call.
    assert!(calls_since(&h, &before).is_empty());

    let body = find(
        &h,
        "Users",
        &format!("id eq \"{id}\" and manager eq \"{manager}\""),
        "&attributes=id",
    )
    .await;
    assert_eq!(body["totalResults"], 1, "{body}");
    let r = &body["Resources"][0];
    assert_eq!(r["id"], id);
    assert!(r.get("userName").is_none(), "{r}");
    // Another manager does not match.
    let body = find(
        &h,
        "Users",
        &format!("id eq \"{id}\" and manager eq \"{id}\""),
        "&attributes=id",
    )
    .await;
    assert_eq!(body["totalResults"], 0, "{body}");
}

fn member_ids(group: &Value) -> HashSet<String> {
    group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Entra's group sequence, checked at the partner after each step.
pub async fn entra_groups(h: &Harness) {
    let alex = create_alex(h, "").await;
    let sam = create_user(h, SAM, "Sam", "Lee").await;
    let subs = [("$USER_ID", alex.as_str()), ("$USER2_ID", sam.as_str())];

    let before = calls(h);
    let (status, group) = h
        .post("/Groups", fixture("entra", "create-group.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    assert_calls_since(h, SITE, &before, &[(CallKind::CreateGroup, 1)]);
    assert_eq!(group["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    let gid = group["id"].as_str().unwrap().to_owned();
    let path = format!("/Groups/{gid}");
    assert!(partner_group_names(&h.emulator, SITE)
        .iter()
        .any(|g| g == "Finance Analysts"));
    // Duplicate displayName (any case) is 409.
    let mut dup = fixture("entra", "create-group.json", &[]);
    dup["displayName"] = json!("FINANCE ANALYSTS");
    let (status, body) = h.post("/Groups", dup).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let group_state = |h: &Harness| (h.partner_groups(SITE, ALEX), h.partner_groups(SITE, SAM));
    let fa = || vec!["Finance Analysts".to_owned()];

    // Add one member.
    let mut one = fixture("entra", "add-members.json", &subs);
    one["Operations"][0]["value"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    let before = calls(h);
    let (status, body) = h.patch(&path, one.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(group_state(h), (fa(), vec![]));
    assert_calls_since(
        h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    // Again: already a member, nothing changes.
    let before = calls(h);
    let (status, _) = h.patch(&path, one).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(calls_since(h, &before).is_empty());

    // Add many (one already there): only Sam is written.
    let before = calls(h);
    let (status, body) = h
        .patch(&path, fixture("entra", "add-members.json", &subs))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(group_state(h), (fa(), fa()));
    assert_calls_since(
        h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    let (status, got) = h.get(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(member_ids(&got), HashSet::from([alex.clone(), sam.clone()]));

    // Reads as Entra does them.
    let (status, got) = h.get(&format!("{path}?excludedAttributes=members")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert!(got.get("members").is_none(), "{got}");
    assert_eq!(got["id"], gid);

    // Remove, default dialect: only the listed member goes.
    let before = calls(h);
    let (status, body) = h
        .patch(
            &path,
            fixture("entra", "remove-members-default.json", &subs),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(group_state(h), (vec![], fa()));
    assert_calls_since(
        h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );

    // Back in, then removed with the flag dialect (a filter path): only Alex goes.
    let (status, _) = h
        .patch(&path, fixture("entra", "add-members.json", &subs))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(group_state(h), (fa(), fa()));
    let before = calls(h);
    let (status, body) = h
        .patch(&path, fixture("entra", "remove-members-flag.json", &subs))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(group_state(h), (vec![], fa()));
    assert_calls_since(
        h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    let (_, got) = h.get(&path).await;
    assert_eq!(member_ids(&got), HashSet::from([sam.clone()]));

    // Rename: one partner call; Sam's list follows.
    let before = calls(h);
    let (status, body) = h
        .patch(&path, fixture("entra", "rename-group.json", &[]))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_calls_since(h, SITE, &before, &[(CallKind::UpdateGroup, 1)]);
    assert_eq!(
        group_state(h),
        (vec![], vec!["Finance Analysts (EMEA)".to_owned()])
    );
    let (_, got) = h.get(&format!("{path}?excludedAttributes=members")).await;
    assert_eq!(got["displayName"], "Finance Analysts (EMEA)");
    assert!(got.get("members").is_none(), "{got}");
    let body = find(
        h,
        "Groups",
        "displayName eq \"Finance Analysts (EMEA)\"",
        "&excludedAttributes=members",
    )
    .await;
    assert_eq!(body["totalResults"], 1);

    // A PATCH asking for attributes answers 200 with the resource.
    let (status, body) = h
        .patch(
            &format!("{path}?attributes=displayName"),
            fixture("entra", "rename-group.json", &[]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], "Finance Analysts (EMEA)");

    // Delete the group: gone at the partner and from Sam's list.
    let before = calls(h);
    let (status, body) = h.delete(&path).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_calls_since(h, SITE, &before, &[(CallKind::DeleteGroup, 1)]);
    assert!(!partner_group_names(&h.emulator, SITE)
        .iter()
        .any(|g| g.starts_with("Finance")));
    assert_eq!(group_state(h), (vec![], vec![]));
    let (status, _) = h.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.settle(Duration::from_secs(5)).await;
    no_test_mode_calls(h);
}

#[tokio::test]
async fn entra_groups_sqlite() {
    let h = Harness::start(Options::default()).await;
    entra_groups(&h).await;
}

#[tokio::test]
async fn entra_groups_postgres() {
    crate::support::with_postgres_url(|url| async move {
        let h = Harness::start(Options {
            store_url: Some(url),
            ..Options::default()
        })
        .await;
        entra_groups(&h).await;
    })
    .await;
}

#[tokio::test]
async fn entra_delete_user_and_group() {
    let h = Harness::start(Options::default()).await;
    let alex = create_alex(&h, "").await;
    let sam = create_user(&h, SAM, "Sam", "Lee").await;
    let (status, group) = h
        .post("/Groups", fixture("entra", "create-group.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let gid = group["id"].as_str().unwrap().to_owned();
    let (status, _) = h
        .patch(
            &format!("/Groups/{gid}"),
            fixture(
                "entra",
                "add-members.json",
                &[("$USER_ID", &alex), ("$USER2_ID", &sam)],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Disabled first, deleted 30 days later.
    let (status, _) = h
        .patch(
            &format!("/Users/{alex}"),
            fixture("entra", "disable-user.json", &[]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.partner_user(SITE, ALEX).is_none());
    let before = calls(&h);
    let (status, body) = h.delete(&format!("/Users/{alex}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Already gone at the partner: the delete is tolerated (404 there).
    // (On an RBAC site the adapter reads the user list to find the user's id, and finds none.)
    let delete = kind_at(&h.emulator, SITE, CallKind::DeleteUser);
    let rbac = is_rbac_site(&h.emulator, SITE);
    assert!(calls_since(&h, &before)
        .iter()
        .all(|(k, _)| *k == delete || (rbac && !k.is_write())));
    assert!(h.partner_user(SITE, ALEX).is_none());
    let (status, body) = h.get(&format!("/Users/{alex}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["status"], "404");
    let body = find(&h, "Users", &format!("userName eq \"{ALEX}\""), "").await;
    assert_eq!(body["totalResults"], 0);
    // The group no longer lists it.
    let (_, got) = h.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got), HashSet::from([sam.clone()]));

    // An active user deleted directly: one partner delete.
    let before = calls(&h);
    let (status, _) = h.delete(&format!("/Users/{sam}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_calls_since(&h, SITE, &before, &[(CallKind::DeleteUser, 1)]);
    assert!(h.partner_user(SITE, SAM).is_none());
    let (status, _) = h.delete(&format!("/Users/{sam}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let before = calls(&h);
    let (status, _) = h.delete(&format!("/Groups/{gid}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_calls_since(&h, SITE, &before, &[(CallKind::DeleteGroup, 1)]);
    let (status, _) = h.get(&format!("/Groups/{gid}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    h.settle(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn entra_hundred_mixed_requests_without_5xx() {
    let h = Harness::start(Options::default()).await;
    let alex = create_alex(&h, "?aadOptscim062020").await;
    let (_, group) = h
        .post("/Groups", fixture("entra", "create-group.json", &[]))
        .await;
    let gid = group["id"].as_str().unwrap().to_owned();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut created = Vec::new();
    for batch in 0..4 {
        let reqs = (0..25).map(|i| {
            let n = batch * 25 + i;
            let h = &h;
            let (alex, gid) = (alex.clone(), gid.clone());
            async move {
                match n % 5 {
                    0 => {
                        let f = format!("userName eq \"{}\"", uuid::Uuid::new_v4());
                        let (s, _) = h.get(&format!("/Users?filter={}", encode(&f))).await;
                        (s, None)
                    }
                    1 => {
                        let email = format!("bulk{n:03}@contoso.com");
                        let (s, b) = h
                            .post(
                                "/Users?aadOptscim062020",
                                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                       "userName": email, "active": true,
                                       "name": {"givenName": "Bulk", "familyName": format!("{n}")},
                                       "emails": [{"primary": true, "type": "work", "value": email}]}),
                            )
                            .await;
                        (s, b["id"].as_str().map(str::to_owned))
                    }
                    2 => {
                        let (s, _) = h
                            .patch(
                                &format!("/Users/{alex}?aadOptscim062020"),
                                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                                       "Operations": [{"op": "Replace", "path": "title",
                                                       "value": format!("Analyst {n}")}]}),
                            )
                            .await;
                        (s, None)
                    }
                    3 => {
                        let (s, _) = h
                            .get(&format!("/Groups/{gid}?excludedAttributes=members"))
                            .await;
                        (s, None)
                    }
                    _ => {
                        let f = "displayName eq \"Finance Analysts\"";
                        let (s, _) = h
                            .get(&format!(
                                "/Groups?excludedAttributes=members&filter={}",
                                encode(f)
                            ))
                            .await;
                        (s, None)
                    }
                }
            }
        });
        for (status, id) in futures::future::join_all(reqs).await {
            *statuses.entry(status.as_u16()).or_default() += 1;
            created.extend(id);
        }
        // Each batch's new users join the group in one PATCH.
        let members: Vec<Value> = created
            .drain(..)
            .map(|id| json!({"$ref": null, "value": id}))
            .collect();
        let (status, _) = h
            .patch(
                &format!("/Groups/{gid}?aadOptscim062020"),
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "Add", "path": "members", "value": members}]}),
            )
            .await;
        *statuses.entry(status.as_u16()).or_default() += 1;
    }
    assert!(
        statuses.keys().all(|s| *s < 500),
        "server errors: {statuses:?}"
    );
    assert!(
        statuses.keys().all(|s| [200, 201, 204].contains(s)),
        "{statuses:?}"
    );
    h.settle(Duration::from_secs(10)).await;
    let (_, got) = h.get(&format!("/Groups/{gid}")).await;
    assert_eq!(member_ids(&got).len(), 20);
    for n in (1..100).step_by(5) {
        assert_eq!(
            h.partner_groups(SITE, &format!("bulk{n:03}@contoso.com")),
            ["Finance Analysts"]
        );
    }
}

#[tokio::test]
async fn entra_reenable_restores_groups_and_upn_change_moves_the_partner_user() {
    let h = Harness::start(Options::default()).await;
    let alex = create_alex(&h, "").await;
    let (_, group) = h
        .post("/Groups", fixture("entra", "create-group.json", &[]))
        .await;
    let gid = group["id"].as_str().unwrap().to_owned();
    let mut one = fixture(
        "entra",
        "add-members.json",
        &[("$USER_ID", &alex), ("$USER2_ID", "")],
    );
    one["Operations"][0]["value"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    let (status, _) = h.patch(&format!("/Groups/{gid}"), one).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let path = format!("/Users/{alex}");
    let (status, _) = h
        .patch(&path, fixture("entra", "disable-user.json", &[]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.partner_user(SITE, ALEX).is_none());
    let mut enable = fixture("entra", "disable-user.json", &[]);
    enable["Operations"][0]["value"] = json!("True");
    let before = calls(&h);
    let (status, body) = h.patch(&path, enable).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], json!(true));
    // The create, and the engine's read that confirms it after the commit.
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::CreateUser, 1)],
    );
    assert_eq!(h.partner_groups(SITE, ALEX), ["Finance Analysts"]);

    // Removing a member that is not in the group, in both dialects: nothing to do.
    let sam = create_user(&h, SAM, "Sam", "Lee").await;
    let before = calls(&h);
    for name in ["remove-members-default.json", "remove-members-flag.json"] {
        let (status, body) = h
            .patch(
                &format!("/Groups/{gid}"),
                fixture("entra", name, &[("$USER_ID", &sam)]),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{name}: {body}");
    }
    assert!(calls_since(&h, &before).is_empty());
    assert_eq!(h.partner_groups(SITE, ALEX), ["Finance Analysts"]);

    // The UPN changes: the partner user follows to the new email, groups kept.
    let new = "alex.wu2@contoso.com";
    let (status, body) = h
        .patch(
            &path,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "Replace", "path": "userName", "value": new}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h.partner_user(SITE, ALEX).is_none());
    assert_eq!(h.partner_groups(SITE, new), ["Finance Analysts"]);
    let body = find(&h, "Users", &format!("userName eq \"{new}\""), "").await;
    assert_eq!(body["totalResults"], 1);
    h.settle(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn entra_concurrent_group_patches_touching_the_same_users_lose_nothing() {
    let h = Harness::start(Options::default()).await;
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(create_user(&h, &format!("u{i}@contoso.com"), "U", &format!("{i}")).await);
    }
    let mut groups = Vec::new();
    for g in 0..5 {
        let mut body = fixture("entra", "create-group.json", &[]);
        body["displayName"] = json!(format!("Team {g}"));
        body["externalId"] = json!(uuid::Uuid::new_v4().to_string());
        let (status, res) = h.post("/Groups", body).await;
        assert_eq!(status, StatusCode::CREATED, "{res}");
        groups.push(res["id"].as_str().unwrap().to_owned());
    }
    // Entra provisions groups in parallel: each PATCH adds every user, all at once.
    let patches = groups.iter().map(|gid| {
        let members: Vec<Value> = users
            .iter()
            .map(|u| json!({"$ref": null, "value": u}))
            .collect();
        let h = &h;
        async move {
            h.patch(
                &format!("/Groups/{gid}"),
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "Add", "path": "members", "value": members}]}),
            )
            .await
        }
    });
    for (status, body) in futures::future::join_all(patches).await {
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    h.settle(Duration::from_secs(10)).await;
    let all: Vec<String> = (0..5).map(|g| format!("Team {g}")).collect();
    for i in 0..6 {
        assert_eq!(h.partner_groups(SITE, &format!("u{i}@contoso.com")), all);
    }
    // Coalesced: at most one write per user per group change, never more.
    assert!(count_job(&h.emulator, SITE, CallKind::UpdateUser, false) <= 30);
    // And half of them leave one group each, in parallel.
    let removes = groups.iter().enumerate().map(|(g, gid)| {
        let u = users[g % 3].clone();
        let h = &h;
        async move {
            h.patch(
                &format!("/Groups/{gid}"),
                fixture("entra", "remove-members-flag.json", &[("$USER_ID", &u)]),
            )
            .await
        }
    });
    for (status, body) in futures::future::join_all(removes).await {
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    h.settle(Duration::from_secs(10)).await;
    for i in 0..6 {
        let want: Vec<String> = (0..5)
            .filter(|g| !(i < 3 && g % 3 == i))
            .map(|g| format!("Team {g}"))
            .collect();
        assert_eq!(
            h.partner_groups(SITE, &format!("u{i}@contoso.com")),
            want,
            "u{i}"
        );
    }
}

#[tokio::test]
async fn entra_disabled_create_adoption_and_manager_removal() {
    let h = Harness::start(Options::default()).await;
    // A user provisioned disabled: no partner account under `remove`.
    let mut body = fixture("entra", "create-user.json", &[]);
    body["active"] = json!(false);
    let (status, res) = h.post("/Users", body).await;
    assert_eq!(status, StatusCode::CREATED, "{res}");
    assert_eq!(res["active"], false);
    let alex = res["id"].as_str().unwrap().to_owned();
    assert!(calls(&h).is_empty(), "{:?}", calls(&h));
    assert!(h.partner_user(SITE, ALEX).is_none());
    // Disabling again changes nothing.
    let (status, _) = h
        .patch(
            &format!("/Users/{alex}"),
            fixture("entra", "disable-user.json", &[]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(calls(&h).is_empty());

    // Sam already has a partner account, made by hand with other names: adopted.
    seed_user(
        &h.emulator,
        SITE,
        scim_bridge::partner::PartnerUser {
            email: SAM.into(),
            first_name: "S".into(),
            last_name: "L".into(),
            groups: vec!["All Users".into()],
        },
    );
    let sam = create_user(&h, SAM, "Sam", "Lee").await;
    h.settle(Duration::from_secs(5)).await;
    let p = h.partner_user(SITE, SAM).unwrap();
    assert_eq!(
        (p.first_name.as_str(), p.last_name.as_str()),
        ("Sam", "Lee")
    );
    assert_eq!(count_job(&h.emulator, SITE, CallKind::CreateUser, false), 1);

    // Manager set, then removed (URN-qualified path), as Entra's second pass does.
    let (status, _) = h
        .patch(
            &format!("/Users/{alex}"),
            fixture("entra", "add-manager.json", &[("$MANAGER_ID", &sam)]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let filter = format!("id eq \"{alex}\" and manager eq \"{sam}\"");
    assert_eq!(
        find(&h, "Users", &filter, "&attributes=id").await["totalResults"],
        1
    );
    let (status, res) = h
        .patch(
            &format!("/Users/{alex}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "Remove",
                     "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(
        find(&h, "Users", &filter, "&attributes=id").await["totalResults"],
        0
    );

    // Enabled with its group: created once, with the group in the create call.
    let (_, group) = h
        .post("/Groups", fixture("entra", "create-group.json", &[]))
        .await;
    let gid = group["id"].as_str().unwrap().to_owned();
    let (status, _) = h
        .patch(
            &format!("/Groups/{gid}"),
            fixture(
                "entra",
                "add-members.json",
                &[("$USER_ID", &alex), ("$USER2_ID", &sam)],
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h.partner_user(SITE, ALEX).is_none());
    let mut enable = fixture("entra", "disable-user.json", &[]);
    enable["Operations"][0]["value"] = json!("True");
    let before = calls(&h);
    let (status, res) = h.patch(&format!("/Users/{alex}"), enable).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    // The create, and the engine's read that confirms it after the commit.
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::CreateUser, 1)],
    );
    assert_eq!(h.partner_groups(SITE, ALEX), ["Finance Analysts"]);
    assert_eq!(h.partner_groups(SITE, SAM), ["Finance Analysts"]);
    h.settle(Duration::from_secs(5)).await;
}
