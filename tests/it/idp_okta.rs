//! Okta's real request sequences (`tests/fixtures/okta/requests.md`), end to end: each step is
//! checked at the partner (the emulator's state) and by the partner calls it cost.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use scim_bridge::config::DeprovisionPolicy;
use scim_bridge::partner::{CallKind, PartnerUser};
use serde_json::{json, Value};

use crate::support::{
    assert_calls_since, count_job, create_group, create_user, partner_created_group_names,
    partner_users_of, seed_group, seed_user, Harness, Options, TOKEN,
};

pub const SITE: &str = "acme";

/// A fixture body with its `$PLACEHOLDERS` replaced.
pub fn fixture(idp: &str, name: &str, subs: &[(&str, &str)]) -> Value {
    let path = format!("{}/tests/fixtures/{idp}/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (k, v) in subs {
        text = text.replace(k, v);
    }
    assert!(
        !text.contains("$USER") && !text.contains("$GROUP") && !text.contains("$MANAGER"),
        "unreplaced placeholder in {name}: {text}"
    );
    serde_json::from_str(&text).unwrap()
}

/// Partner calls of the site so far (live calls only), by kind; zero counts left out.
pub fn calls(h: &Harness) -> BTreeMap<CallKind, u64> {
    CallKind::ALL
        .into_iter()
        .map(|k| (k, h.emulator.count(SITE, k, false)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The calls made since `before`, as `[(kind, n)]` sorted by kind.
pub fn calls_since(h: &Harness, before: &BTreeMap<CallKind, u64>) -> Vec<(CallKind, u64)> {
    calls(h)
        .into_iter()
        .map(|(k, n)| (k, n - before.get(&k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// No test-mode call ever reaches the partner in these tests.
pub fn no_test_mode_calls(h: &Harness) {
    for k in CallKind::ALL {
        assert_eq!(h.emulator.count(SITE, k, true), 0, "{k} in test mode");
    }
}

/// A request with the headers an IdP sends, answering status, headers and body.
pub async fn raw(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<(&str, &Value)>,
    extra: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut req = h
        .http
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(TOKEN);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    if let Some((content_type, b)) = body {
        req = req
            .header("Content-Type", content_type)
            .body(serde_json::to_vec(b).unwrap());
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, value)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

const JANE: &str = "jane.doe@example.com";
const JOHN: &str = "john.roe@example.com";
const OKTA_HEADERS: &[(&str, &str)] = &[
    ("Accept", "application/scim+json"),
    ("User-Agent", "Okta SCIM Client 1.0.0"),
];

/// POSTs `create-user.json` and returns the user's id.
async fn create_jane(h: &Harness) -> String {
    let (status, body) = h
        .post("/Users", fixture("okta", "create-user.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn okta_test_connection_on_an_empty_tenant() {
    let h = Harness::start(Options::default()).await;
    let (status, headers, body) = raw(
        &h,
        reqwest::Method::GET,
        "/Users?startIndex=1&count=2",
        None,
        OKTA_HEADERS,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(header(&headers, "content-type").starts_with("application/scim+json"));
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(body["totalResults"], 0);
    assert_eq!(body["startIndex"], 1);
    assert_eq!(body["itemsPerPage"], 0);
    assert!(body["Resources"].as_array().is_none_or(|r| r.is_empty()));

    let (status, body) = h.get("/Groups?startIndex=1&count=100").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 0);
    assert_eq!(body["startIndex"], 1);
    // Reads are served from the store: the partner is not asked.
    assert!(calls(&h).is_empty(), "{:?}", calls(&h));
}

#[tokio::test]
async fn okta_create_user_after_lookup_then_duplicate_is_409() {
    let h = Harness::start(Options::default()).await;
    let (status, body) = h
        .get("/Users?filter=userName%20eq%20%22jane.doe%40example.com%22&startIndex=1&count=100")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 0);
    // import-on-lookup: the miss asks the partner once for that email, finds nothing.
    assert_calls_since(&h, SITE, &BTreeMap::new(), &[(CallKind::GetUser, 1)]);

    let before = calls(&h);
    let (status, headers, body) = raw(
        &h,
        reqwest::Method::POST,
        "/Users",
        Some((
            "application/json",
            &fixture("okta", "create-user.json", &[]),
        )),
        OKTA_HEADERS,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap();
    assert!(!id.is_empty());
    assert_eq!(header(&headers, "location"), body["meta"]["location"]);
    assert_eq!(header(&headers, "etag"), body["meta"]["version"]);
    assert!(body["meta"]["location"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/Users/{id}")));
    assert!(body.get("password").is_none(), "{body}");
    assert_eq!(body["userName"], JANE);
    assert_eq!(body["externalId"], "00ujl29u0le5T6Aj10h7");
    assert_eq!(body["active"], true);
    assert_calls_since(&h, SITE, &before, &[(CallKind::CreateUser, 1)]);
    let p = h.partner_user(SITE, JANE).unwrap();
    assert_eq!(
        (p.first_name.as_str(), p.last_name.as_str()),
        ("Jane", "Doe")
    );

    // The lookup now finds it, without asking the partner.
    let before = calls(&h);
    let (status, body) = h
        .get("/Users?filter=userName%20eq%20%22jane.doe%40example.com%22&startIndex=1&count=100")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["totalResults"], 1);
    assert_eq!(body["Resources"][0]["id"], id);
    assert!(calls_since(&h, &before).is_empty());

    // Okta retries an assignment: 409 uniqueness, and nothing reaches the partner.
    let before = calls(&h);
    let (status, body) = h
        .post("/Users", fixture("okta", "create-user.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["scimType"], "uniqueness");
    assert_eq!(body["status"], "409");
    assert!(calls_since(&h, &before).is_empty());
    assert_eq!(
        partner_users_of(&h.emulator, SITE).len(),
        2,
        "the owner and Jane"
    );
    no_test_mode_calls(&h);
}

#[tokio::test]
async fn okta_profile_push_by_put() {
    let h = Harness::start(Options::default()).await;
    let id = create_jane(&h).await;
    let group = create_group(&h, "BI Analysts", &[&id]).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);

    let before = calls(&h);
    let (status, got) = h.get(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["groups"][0]["value"], group);
    let version = got["meta"]["version"].clone();

    let body = fixture("okta", "replace-user.json", &[("$USER_ID", &id)]);
    let (status, put) = h.put(&format!("/Users/{id}"), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{put}");
    assert_eq!(put["name"]["givenName"], "Janet");
    assert_eq!(put["name"]["middleName"], "Q");
    assert_eq!(put["displayName"], "Janet Doe");
    assert_ne!(put["meta"]["version"], version);
    // The read-only `groups: []` in the body does not take Jane out of her group.
    assert_eq!(put["groups"][0]["value"], group);
    // One partner write: the names, by the user's convergence (which reads the partner user
    // first); no group change.
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    let p = h.partner_user(SITE, JANE).unwrap();
    assert_eq!(
        (p.first_name.as_str(), p.last_name.as_str()),
        ("Janet", "Doe")
    );
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);

    // The same PUT again: no partner call, no version bump.
    let before = calls(&h);
    let (status, again) = h.put(&format!("/Users/{id}"), body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["meta"]["version"], put["meta"]["version"]);
    assert_eq!(again["meta"]["lastModified"], put["meta"]["lastModified"]);
    assert!(calls_since(&h, &before).is_empty());
    h.settle(Duration::from_secs(5)).await;
    no_test_mode_calls(&h);
}

/// Jane in "BI Analysts", plus an unmanaged partner group "Vendor UI" given in the vendor UI.
async fn jane_in_a_group(h: &Harness) -> String {
    let id = create_jane(h).await;
    create_group(h, "BI Analysts", &[&id]).await;
    assert!(seed_group(&h.emulator, SITE, "Vendor UI"));
    let mut p = h.partner_user(SITE, JANE).unwrap();
    p.groups.push("Vendor UI".into());
    assert!(seed_user(&h.emulator, SITE, p));
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts", "Vendor UI"]);
    id
}

/// Deactivates and reactivates Jane by PATCH (`by_put == false`) or by PUT.
async fn set_active(h: &Harness, id: &str, active: bool, by_put: bool) -> Value {
    let (status, body) = if by_put {
        let mut body = fixture("okta", "replace-user.json", &[("$USER_ID", id)]);
        body["active"] = json!(active);
        h.put(&format!("/Users/{id}"), body).await
    } else {
        let name = if active {
            "reactivate-user.json"
        } else {
            "deactivate-user.json"
        };
        h.patch(&format!("/Users/{id}"), fixture("okta", name, &[]))
            .await
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], active);
    body
}

async fn deactivate_under_remove(by_put: bool) {
    let h = Harness::start(Options::default()).await;
    let id = jane_in_a_group(&h).await;

    let before = calls(&h);
    set_active(&h, &id, false, by_put).await;
    assert!(h.partner_user(SITE, JANE).is_none());
    // The delete, and the engine's read that confirms it after the commit.
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::DeleteUser, 1)],
    );
    // The SCIM user stays, inactive, still a member.
    let (status, got) = h.get(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["active"], false);
    assert_eq!(got["groups"][0]["display"], "BI Analysts");

    let before = calls(&h);
    set_active(&h, &id, true, by_put).await;
    let p = h.partner_user(SITE, JANE).unwrap();
    // Re-created with its managed groups in the create call (the vendor-UI group is gone
    // with the deleted account).
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);
    let names = if by_put {
        ("Janet", "Doe")
    } else {
        ("Jane", "Doe")
    };
    assert_eq!((p.first_name.as_str(), p.last_name.as_str()), names);
    // The create, and the engine's read that confirms it after the commit.
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::CreateUser, 1)],
    );
    h.settle(Duration::from_secs(5)).await;
    no_test_mode_calls(&h);
}

#[tokio::test]
async fn okta_deactivate_and_reactivate_by_patch_under_remove() {
    deactivate_under_remove(false).await;
}

#[tokio::test]
async fn okta_deactivate_and_reactivate_by_put_under_remove() {
    deactivate_under_remove(true).await;
}

async fn deactivate_under_strip(by_put: bool) {
    let h = Harness::start(Options {
        deprovision: DeprovisionPolicy::Strip,
        ..Options::default()
    })
    .await;
    let id = jane_in_a_group(&h).await;

    set_active(&h, &id, false, by_put).await;
    h.settle(Duration::from_secs(5)).await;
    // The account stays; the managed group goes, the unmanaged one stays.
    assert!(h.partner_user(SITE, JANE).is_some());
    assert_eq!(h.partner_groups(SITE, JANE), ["Vendor UI"]);

    set_active(&h, &id, true, by_put).await;
    h.settle(Duration::from_secs(5)).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts", "Vendor UI"]);
    assert_eq!(count_job(&h.emulator, SITE, CallKind::DeleteUser, false), 0);
    no_test_mode_calls(&h);
}

#[tokio::test]
async fn okta_deactivate_by_patch_under_strip() {
    let h = Harness::start(Options {
        deprovision: DeprovisionPolicy::Strip,
        ..Options::default()
    })
    .await;
    let id = jane_in_a_group(&h).await;
    let before = calls(&h);
    set_active(&h, &id, false, false).await;
    // One read and one write of the user's groups, done before the answer.
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    assert_eq!(h.partner_groups(SITE, JANE), ["Vendor UI"]);
    let before = calls(&h);
    set_active(&h, &id, true, false).await;
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts", "Vendor UI"]);
    h.settle(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn okta_deactivate_by_put_under_strip() {
    deactivate_under_strip(true).await;
}

#[tokio::test]
async fn okta_deactivate_under_keep_changes_nothing_at_the_partner() {
    for by_put in [false, true] {
        let h = Harness::start(Options {
            deprovision: DeprovisionPolicy::Keep,
            ..Options::default()
        })
        .await;
        let id = jane_in_a_group(&h).await;
        let before = calls(&h);
        set_active(&h, &id, false, by_put).await;
        h.settle(Duration::from_secs(5)).await;
        assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts", "Vendor UI"]);
        let expected: &[(CallKind, u64)] = if by_put {
            // The PUT also carries the new names of replace-user.json: the user's convergence
            // reads it and writes them.
            &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)]
        } else {
            &[]
        };
        assert_calls_since(&h, SITE, &before, expected);
        let before = calls(&h);
        set_active(&h, &id, true, by_put).await;
        h.settle(Duration::from_secs(5)).await;
        assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts", "Vendor UI"]);
        assert!(calls_since(&h, &before).is_empty());
        no_test_mode_calls(&h);
    }
}

fn partner_group_names(h: &Harness) -> Vec<String> {
    partner_created_group_names(&h.emulator, SITE)
}

/// Okta's group push, start to unlink.
pub async fn okta_group_push(h: &Harness) {
    let jane = create_jane(h).await;
    let john = create_user(h, JOHN, "John", "Roe").await;
    let subs = |group: &str| -> Vec<(&'static str, String)> {
        vec![
            ("$USER_ID", jane.clone()),
            ("$USER2_ID", john.clone()),
            ("$GROUP_ID", group.to_owned()),
        ]
    };
    let fx = |name: &str, group: &str| {
        let s = subs(group);
        let s: Vec<(&str, &str)> = s.iter().map(|(k, v)| (*k, v.as_str())).collect();
        fixture("okta", name, &s)
    };

    // Create, empty.
    let before = calls(h);
    let (status, body) = h
        .post("/Groups", fixture("okta", "create-group.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let gid = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["displayName"], "BI Analysts");
    assert!(
        body.get("members").is_none_or(|m| m == &json!([])),
        "{body}"
    );
    assert_calls_since(h, SITE, &before, &[(CallKind::CreateGroup, 1)]);
    assert_eq!(partner_group_names(h), ["BI Analysts"]);
    let path = format!("/Groups/{gid}");

    // Jane joins (a plain add).
    let (status, body) = h
        .patch(
            &path,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "add", "path": "members",
                                   "value": [{"value": jane, "display": JANE}]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);

    // Rename: a no-path replace carrying the group's own id. One partner call; members follow.
    let before = calls(h);
    let (status, body) = h.patch(&path, fx("rename-group.json", &gid)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_calls_since(h, SITE, &before, &[(CallKind::UpdateGroup, 1)]);
    assert_eq!(partner_group_names(h), ["BI Analysts EMEA"]);
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts EMEA"]);
    let (_, got) = h.get(&path).await;
    assert_eq!(got["displayName"], "BI Analysts EMEA");

    // Okta sends the rename with every membership update: unchanged, it costs nothing.
    let before = calls(h);
    let (status, _) = h.patch(&path, fx("rename-group.json", &gid)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(calls_since(h, &before).is_empty());

    // Remove-by-filter + add in one request: Jane out, John in; one read + one write each.
    let before = calls(h);
    let (status, body) = h.patch(&path, fx("membership-update.json", &gid)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(h.partner_groups(SITE, JANE).is_empty());
    assert_eq!(h.partner_groups(SITE, JOHN), ["BI Analysts EMEA"]);
    assert_calls_since(
        h,
        SITE,
        &before,
        &[(CallKind::GetUser, 2), (CallKind::UpdateUser, 2)],
    );

    // Full replace of members: only Jane changes.
    let before = calls(h);
    let (status, body) = h.patch(&path, fx("replace-members.json", &gid)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts EMEA"]);
    assert_eq!(h.partner_groups(SITE, JOHN), ["BI Analysts EMEA"]);
    assert_calls_since(
        h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    let (_, got) = h.get(&path).await;
    let members: HashSet<&str> = got["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, HashSet::from([jane.as_str(), john.as_str()]));

    // PUT (custom apps): the name of put-group.json renames back; members unchanged.
    let before = calls(h);
    let (status, body) = h.put(&path, fx("put-group.json", &gid)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayName"], "BI Analysts");
    assert_eq!(body["members"].as_array().unwrap().len(), 2);
    assert_calls_since(h, SITE, &before, &[(CallKind::UpdateGroup, 1)]);
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);
    assert_eq!(h.partner_groups(SITE, JOHN), ["BI Analysts"]);

    // PUT with John only: John leaves.
    let mut only_jane = fx("put-group.json", &gid);
    only_jane["members"].as_array_mut().unwrap().truncate(1);
    let before = calls(h);
    let (status, body) = h.put(&path, only_jane).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["members"].as_array().unwrap().len(), 1);
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);
    assert!(h.partner_groups(SITE, JOHN).is_empty());
    assert_calls_since(
        h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );

    // Unlink: the group goes; the partner drops it from its members; users stay.
    let before = calls(h);
    let (status, body) = h.delete(&path).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_calls_since(h, SITE, &before, &[(CallKind::DeleteGroup, 1)]);
    assert!(partner_group_names(h).is_empty());
    assert!(h.partner_groups(SITE, JANE).is_empty());
    assert!(h.partner_user(SITE, JANE).is_some());
    assert!(h.partner_user(SITE, JOHN).is_some());
    let (status, _) = h.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, got) = h.get(&format!("/Users/{jane}")).await;
    assert!(got.get("groups").is_none_or(|g| g == &json!([])), "{got}");
    h.settle(Duration::from_secs(5)).await;
    no_test_mode_calls(h);
}

#[tokio::test]
async fn okta_group_push_sqlite() {
    let h = Harness::start(Options::default()).await;
    okta_group_push(&h).await;
}

#[tokio::test]
async fn okta_group_push_postgres() {
    crate::support::with_postgres_url(|url| async move {
        let h = Harness::start(Options {
            store_url: Some(url),
            ..Options::default()
        })
        .await;
        okta_group_push(&h).await;
    })
    .await;
}

/// Pages through `/{resource}` with `count=100` as Okta imports.
async fn import_pages(h: &Harness, resource: &str, total: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut start = 1;
    while start <= total {
        let (status, body) = h
            .get(&format!("/{resource}?startIndex={start}&count=100"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["totalResults"], total);
        assert_eq!(body["startIndex"], start);
        let page = body["Resources"].as_array().unwrap();
        assert_eq!(body["itemsPerPage"], page.len());
        assert_eq!(page.len(), (total + 1 - start).min(100));
        ids.extend(page.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        start += 100;
    }
    ids
}

#[tokio::test]
async fn okta_import_pages_users_and_groups() {
    use futures::StreamExt;
    let h = Harness::start(Options::default()).await;
    let users: Vec<String> =
        futures::stream::iter(0..250)
            .map(|i| {
                let h = &h;
                async move {
                    create_user(h, &format!("user{i:03}@example.com"), "U", &format!("{i}")).await
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
    let groups: Vec<String> = futures::stream::iter(0..250)
        .map(|i| {
            let h = &h;
            async move { create_group(h, &format!("Group {i:03}"), &[]).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let before = calls(&h);
    for (resource, created) in [("Users", &users), ("Groups", &groups)] {
        let first = import_pages(&h, resource, 250).await;
        let unique: HashSet<&String> = first.iter().collect();
        assert_eq!(unique.len(), 250, "duplicates across pages of {resource}");
        assert_eq!(unique, created.iter().collect::<HashSet<_>>());
        // A second import sees the same order.
        assert_eq!(import_pages(&h, resource, 250).await, first);
        let (_, past) = h
            .get(&format!("/{resource}?startIndex=301&count=100"))
            .await;
        assert_eq!(past["totalResults"], 250);
        assert_eq!(past["itemsPerPage"], 0);
    }
    assert!(calls_since(&h, &before).is_empty());
    assert_eq!(partner_users_of(&h.emulator, SITE).len(), 251);
}

#[tokio::test]
async fn okta_headers_on_reads_and_writes() {
    let h = Harness::start(Options::default()).await;
    let headers: Vec<(&str, &str)> = OKTA_HEADERS.to_vec();
    let (status, res, body) = raw(
        &h,
        reqwest::Method::POST,
        "/Users",
        Some((
            "application/json",
            &fixture("okta", "create-user.json", &[]),
        )),
        &headers,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(header(&res, "content-type").starts_with("application/scim+json"));
    let id = body["id"].as_str().unwrap().to_owned();

    let (status, res, body) = raw(
        &h,
        reqwest::Method::GET,
        &format!("/Users/{id}"),
        None,
        &headers,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(header(&res, "content-type").starts_with("application/scim+json"));
    assert_eq!(header(&res, "etag"), body["meta"]["version"]);

    let (status, _, body) = raw(
        &h,
        reqwest::Method::PUT,
        &format!("/Users/{id}"),
        Some((
            "application/json; charset=utf-8",
            &fixture("okta", "replace-user.json", &[("$USER_ID", &id)]),
        )),
        &headers,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.partner_user(SITE, JANE).unwrap().first_name, "Janet");

    let (status, _, body) = raw(
        &h,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        Some((
            "application/json",
            &fixture("okta", "deactivate-user.json", &[]),
        )),
        &headers,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false);
    assert!(h.partner_user(SITE, JANE).is_none());

    let (status, res, body) = raw(
        &h,
        reqwest::Method::POST,
        "/Groups",
        Some((
            "application/json",
            &fixture("okta", "create-group.json", &[]),
        )),
        &headers,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(header(&res, "location"), body["meta"]["location"]);
}

#[tokio::test]
async fn okta_lookup_imports_an_existing_partner_user_then_links_it() {
    let h = Harness::start(Options::default()).await;
    // Jane already has an account, made in the vendor UI, with a vendor-UI group.
    assert!(seed_group(&h.emulator, SITE, "Vendor UI"));
    seed_user(
        &h.emulator,
        SITE,
        PartnerUser {
            email: JANE.into(),
            first_name: "J".into(),
            last_name: "D".into(),
            groups: vec!["All Users".into(), "Vendor UI".into()],
        },
    );
    let (status, body) = h
        .get("/Users?filter=userName%20eq%20%22jane.doe%40example.com%22&startIndex=1&count=100")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_calls_since(&h, SITE, &BTreeMap::new(), &[(CallKind::GetUser, 1)]);
    let id = body["Resources"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["Resources"][0]["userName"], JANE);

    // Okta matched it: GET then PUT of its profile.
    let (status, _) = h.get(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let before = calls(&h);
    let (status, body) = h
        .put(
            &format!("/Users/{id}"),
            fixture("okta", "replace-user.json", &[("$USER_ID", &id)]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["externalId"], "00ujl29u0le5T6Aj10h7");
    assert_calls_since(
        &h,
        SITE,
        &before,
        &[(CallKind::GetUser, 1), (CallKind::UpdateUser, 1)],
    );
    let p = h.partner_user(SITE, JANE).unwrap();
    assert_eq!(
        (p.first_name.as_str(), p.last_name.as_str()),
        ("Janet", "Doe")
    );

    // A pushed group is added next to the vendor-UI group, which stays.
    create_group(&h, "BI Analysts", &[&id]).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts", "Vendor UI"]);
    // The duplicate create Okta might still send is refused.
    let (status, _) = h
        .post("/Users", fixture("okta", "create-user.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    h.settle(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn okta_group_push_for_a_deactivated_user_applies_on_reactivation() {
    let h = Harness::start(Options::default()).await;
    let jane = create_jane(&h).await;
    set_active(&h, &jane, false, false).await;
    assert!(h.partner_user(SITE, JANE).is_none());
    let (status, body) = h
        .post("/Groups", fixture("okta", "create-group.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let gid = body["id"].as_str().unwrap().to_owned();
    let mut replace = fixture(
        "okta",
        "replace-members.json",
        &[("$USER_ID", &jane), ("$USER2_ID", "")],
    );
    replace["Operations"][0]["value"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    let before = calls(&h);
    let (status, body) = h.patch(&format!("/Groups/{gid}"), replace).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Not at the partner: looked up, not re-created.
    assert_calls_since(&h, SITE, &before, &[(CallKind::GetUser, 1)]);
    assert!(h.partner_user(SITE, JANE).is_none());

    set_active(&h, &jane, true, false).await;
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);

    // Okta's membership-update naming a member that is not (or no longer) in the group.
    let john = create_user(&h, JOHN, "John", "Roe").await;
    let body = fixture(
        "okta",
        "membership-update.json",
        &[("$USER_ID", &john), ("$USER2_ID", &jane)],
    );
    let before = calls(&h);
    let (status, res) = h.patch(&format!("/Groups/{gid}"), body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{res}");
    assert!(calls_since(&h, &before).is_empty());
    assert_eq!(h.partner_groups(SITE, JANE), ["BI Analysts"]);
    assert!(h.partner_groups(SITE, JOHN).is_empty());
    h.settle(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn okta_lookup_does_not_import_a_partner_user_another_scim_user_owns() {
    let h = Harness::start(Options::default()).await;
    // An earlier assignment with the "username" format: userName `jdoe`, email Jane's.
    let (status, body) = h
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                   "userName": "jdoe",
                   "name": {"givenName": "Jane", "familyName": "Doe"},
                   "emails": [{"primary": true, "value": JANE, "type": "work"}],
                   "active": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let owner = body["id"].as_str().unwrap().to_owned();
    assert!(h.partner_user(SITE, JANE).is_some());

    // The admin switches the app to the email format: Okta looks Jane up by email.
    let before = calls(&h);
    let (status, body) = h
        .get("/Users?filter=userName%20eq%20%22jane.doe%40example.com%22&startIndex=1&count=100")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The partner account is `jdoe`'s: importing it again would give one partner account two
    // SCIM users (deactivating either would delete it).
    assert_eq!(body["totalResults"], 0, "{body}");
    assert!(calls_since(&h, &before).is_empty());
    let (_, all) = h.get("/Users").await;
    assert_eq!(all["totalResults"], 1, "{all}");
    assert_eq!(all["Resources"][0]["id"], owner);
    // Okta's create that follows is refused as a duplicate, not silently linked.
    let (status, body) = h
        .post("/Users", fixture("okta", "create-user.json", &[]))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["scimType"], "uniqueness");
}
