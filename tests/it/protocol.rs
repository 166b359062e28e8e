//! HTTP protocol features end to end: versions (ETag, If-Match, If-None-Match), /Bulk with
//! bulkId references, root /.search, the email-change policies, and a dry-run tenant going
//! live through reconciliation.

use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::config::EmailChangePolicy;
use serde_json::json;

use crate::support::{create_group, create_user, Harness, Options, TOKEN};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[tokio::test]
async fn etags_guard_writes_and_reads() {
    let h = Harness::start(Options::default()).await;
    let id = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    let url = format!("{}/Users/{id}", h.base);
    let res = h.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, "W/\"1\"");
    // If-None-Match with the current version: 304, no body.
    let res = h
        .http
        .get(&url)
        .bearer_auth(TOKEN)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    // If-Match with a stale version: 412 and nothing changes at the partner.
    let writes_before = h
        .emulator
        .call_log()
        .iter()
        .filter(|c| c.call.is_write())
        .count();
    let patch = json!({"schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Janet"}]});
    let res = h
        .http
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("If-Match", "W/\"7\"")
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "412");
    assert_eq!(
        h.emulator
            .call_log()
            .iter()
            .filter(|c| c.call.is_write())
            .count(),
        writes_before
    );
    // The current version: applied, version 2.
    let res = h
        .http
        .patch(&url)
        .bearer_auth(TOKEN)
        .header("If-Match", &etag)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["etag"], "W/\"2\"");
    assert_eq!(
        h.partner_user("acme", "jane@acme.example.com")
            .unwrap()
            .first_name,
        "Janet"
    );
}

#[tokio::test]
async fn bulk_creates_with_bulk_id_references_and_reports_each_operation() {
    let h = Harness::start(Options::default()).await;
    let (status, body) = h
        .post(
            "/Bulk",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                "failOnErrors": 10,
                "Operations": [
                    {"method": "POST", "path": "/Groups", "bulkId": "g1",
                     "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                              "displayName": "Finance",
                              "members": [{"value": "bulkId:u1"}]}},
                    {"method": "POST", "path": "/Users", "bulkId": "u1",
                     "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                              "userName": "bulk@acme.example.com",
                              "name": {"givenName": "Bulk", "familyName": "User"}}},
                    {"method": "PATCH", "path": "/Users/does-not-exist",
                     "data": {"schemas": [PATCH_OP],
                              "Operations": [{"op": "replace", "path": "active", "value": false}]}}
                ]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ops = body["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 3);
    let status_of = |bulk_id: &str| {
        ops.iter()
            .find(|o| o["bulkId"] == bulk_id)
            .map(|o| o["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(status_of("u1").as_deref(), Some("201"));
    assert_eq!(status_of("g1").as_deref(), Some("201"));
    assert!(ops.iter().any(|o| o["status"] == "404"), "{body}");
    // The group was created after the user it references, with the user as member.
    assert_eq!(
        h.partner_groups("acme", "bulk@acme.example.com"),
        ["Finance"]
    );
}

#[tokio::test]
async fn bulk_over_the_advertised_operation_limit_is_413() {
    let h = Harness::start(Options::default()).await;
    let ops: Vec<serde_json::Value> = (0..1001)
        .map(|i| json!({"method": "DELETE", "path": format!("/Users/{i}")}))
        .collect();
    let (status, body) = h
        .post(
            "/Bulk",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                   "Operations": ops}),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["status"], "413");
}

#[tokio::test]
async fn root_search_finds_users_and_groups() {
    let h = Harness::start(Options::default()).await;
    create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    create_group(&h, "Finance", &[]).await;
    let (status, body) = h
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "startIndex": 1, "count": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 2);
    let (status, body) = h
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "filter": "displayName eq \"Finance\""}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1);
    assert_eq!(body["Resources"][0]["displayName"], "Finance");
}

async fn rename_user(h: &Harness, id: &str, to: &str) -> (StatusCode, serde_json::Value) {
    h.patch(
        &format!("/Users/{id}"),
        json!({"schemas": [PATCH_OP],
               "Operations": [{"op": "replace", "path": "userName", "value": to}]}),
    )
    .await
}

#[tokio::test]
async fn email_change_policy_recreate_moves_names_and_groups_to_a_new_partner_user() {
    let h = Harness::start(Options {
        email_change: EmailChangePolicy::Recreate,
        ..Options::default()
    })
    .await;
    let id = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    create_group(&h, "Finance", &[&id]).await;
    let (status, body) = rename_user(&h, &id, "jane.doe@acme.example.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h.partner_user("acme", "jane@acme.example.com").is_none());
    let new = h.partner_user("acme", "jane.doe@acme.example.com").unwrap();
    assert_eq!(
        (new.first_name.as_str(), new.last_name.as_str()),
        ("Jane", "Doe")
    );
    assert_eq!(
        h.partner_groups("acme", "jane.doe@acme.example.com"),
        ["Finance"]
    );
    // The emulator saw a create and a delete, no email-changing update.
    let log = h.emulator.call_log();
    assert!(log
        .iter()
        .any(|c| c.call == scim_bridge::partner::CallKind::CreateUser
            && c.email.as_deref() == Some("jane.doe@acme.example.com")));
}

#[tokio::test]
async fn email_change_policy_reject_is_a_mutability_error_with_no_partner_call() {
    let h = Harness::start(Options {
        email_change: EmailChangePolicy::Reject,
        ..Options::default()
    })
    .await;
    let id = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    let calls = h.emulator.call_log().len();
    let (status, body) = rename_user(&h, &id, "jane.doe@acme.example.com").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["scimType"], "mutability");
    assert_eq!(h.emulator.call_log().len(), calls);
    assert!(h.partner_user("acme", "jane@acme.example.com").is_some());
}

#[tokio::test]
async fn email_change_policy_update_changes_the_partner_email_in_place() {
    let h = Harness::start(Options::default()).await;
    let id = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    create_group(&h, "Finance", &[&id]).await;
    let (status, _) = rename_user(&h, &id, "jane.doe@acme.example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.partner_user("acme", "jane@acme.example.com").is_none());
    assert_eq!(
        h.partner_groups("acme", "jane.doe@acme.example.com"),
        ["Finance"]
    );
}

#[tokio::test]
async fn a_dry_run_tenant_goes_live_by_turning_dry_run_off_and_reconciling() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/shared.db", dir.path().display());
    let dry = Harness::start(Options {
        dry_run: true,
        store_url: Some(url.clone()),
        ..Options::default()
    })
    .await;
    let id = create_user(&dry, "jane@acme.example.com", "Jane", "Doe").await;
    create_group(&dry, "Finance", &[&id]).await;
    dry.settle(Duration::from_secs(10)).await;
    assert!(dry.partner_user("acme", "jane@acme.example.com").is_none());
    let emulator = dry.emulator.clone();
    // The dry-run process is gone before the live one starts (its workers would otherwise
    // still claim outbox rows of the shared store).
    dry.bridge.shutdown().await;
    drop(dry);

    // Same store, same partner, dry_run off: reconcile --apply pushes the plan.
    let running = emulator.clone().spawn().await.unwrap();
    let live = Harness::start_with(
        Options {
            store_url: Some(url),
            ..Options::default()
        },
        emulator,
        running,
    )
    .await;
    let tenant = live.bridge.tenant("acme").unwrap();
    let report = scim_bridge::bridge::reconcile::reconcile(&live.bridge, &tenant, true)
        .await
        .unwrap();
    assert_eq!(report[0].groups_missing, ["Finance"]);
    assert_eq!(report[0].users_missing, ["jane@acme.example.com"]);
    live.settle(Duration::from_secs(10)).await;
    assert_eq!(
        live.partner_groups("acme", "jane@acme.example.com"),
        ["Finance"]
    );
}

/// A `userName eq` miss asks the partner for that email (import on lookup), but never waits
/// longer than `bridge.import_timeout_ms` for it: a saturated partner does not slow reads.
#[tokio::test]
async fn a_lookup_does_not_wait_for_a_slow_partner() {
    use scim_bridge::partner::emulator::faults::{Faults, Latency};
    let mut opts = Options::default();
    opts.bridge.import_timeout_ms = 200;
    let h = Harness::start(opts).await;
    h.emulator.insert_user(
        "acme",
        scim_bridge::partner::PartnerUser {
            email: "known@acme.example.com".into(),
            first_name: "Known".into(),
            last_name: "User".into(),
            groups: vec![],
        },
    );
    h.emulator.set_faults(
        "acme",
        Faults {
            latency: Some(Latency::FixedMs(3000)),
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    let (status, body) = h
        .get("/Users?filter=userName%20eq%20%22known@acme.example.com%22")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["totalResults"], 0, "{body}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    // With the partner quick again, the same lookup imports the user.
    h.emulator.set_faults(
        "acme",
        scim_bridge::partner::emulator::faults::Faults::default(),
    );
    let (_, body) = h
        .get("/Users?filter=userName%20eq%20%22known@acme.example.com%22")
        .await;
    assert_eq!(body["totalResults"], 1, "{body}");
}

const NUL_ADMIN_TOKEN: &str = "nul-admin-token-0123456789";

/// PostgreSQL text cannot hold U+0000, so a NUL anywhere in a request used to be a 500 there
/// (and a partner user created before the store refused it). Both back ends now refuse it
/// alike, before the partner and the store.
async fn nul_characters_are_refused(h: &Harness) {
    let email = "nul@acme.example.com";
    let (status, body) = h
        .post(
            "/Users",
            json!({"userName": email, "displayName": "a\u{0}b", "emails": [{"value": email}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["scimType"], "invalidValue");
    assert!(h.partner_user("acme", email).is_none());
    let id = create_user(h, email, "Nul", "Free").await;
    let (status, body) = h
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "title", "value": "\u{0}"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for path in [
        "/Users/a%00b",
        "/Groups/a%00b",
        "/Users?filter=userName%20eq%20%22a%00%22",
        "/Groups?filter=displayName%20eq%20%22a%00%22&excludedAttributes=members",
    ] {
        let (status, body) = h.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["scimType"], "invalidValue", "{path}");
    }
    let (status, _) = h.delete("/Users/a%00b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let res = h
        .http
        .get(format!("{}/admin/audit?tenant=a%00", h.root))
        .bearer_auth(NUL_ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (status, body) = h.get(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("title").is_none());
}

fn nul_options() -> Options {
    Options {
        admin: scim_bridge::config::AdminConfig {
            bearer_tokens: vec![scim_bridge::config::BearerTokenConfig {
                name: "ops".into(),
                token: Some(scim_bridge::secret::Secret::new(NUL_ADMIN_TOKEN)),
                ..Default::default()
            }],
            ..Default::default()
        },
        ..Options::default()
    }
}

#[tokio::test]
async fn nul_characters_are_refused_sqlite() {
    nul_characters_are_refused(&Harness::start(nul_options()).await).await;
}

#[tokio::test]
async fn nul_characters_are_refused_postgres() {
    crate::support::with_postgres_url(|url| async move {
        let h = Harness::start(Options {
            store_url: Some(url),
            ..nul_options()
        })
        .await;
        nul_characters_are_refused(&h).await;
    })
    .await;
}

/// A collection path with a trailing slash (`/Users/?filter=...`, as the IdPs' own test
/// suites send it) is served like the collection: filters, lists and creates.
#[tokio::test]
async fn a_collection_path_with_a_trailing_slash_is_the_collection() {
    let h = Harness::start(Options::default()).await;
    let jane = create_user(&h, "jane@acme.example.com", "Jane", "Doe").await;
    let (status, body) = h
        .get("/Users/?filter=userName%20eq%20%22jane@acme.example.com%22")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    assert_eq!(body["Resources"][0]["id"], jane.as_str());
    let (status, body) = h
        .post(
            "/Groups/",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Slashed",
                "members": [{"value": jane}]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = h.get("/Groups/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["totalResults"], 1, "{body}");
    assert_eq!(body["Resources"][0]["displayName"], "Slashed", "{body}");
    // Only the collection with one trailing slash: a write without an id is still no
    // write, and an empty id between two slashes names no resource.
    let (status, _) = h.delete("/Users/").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = h.get("/Users//").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h.get(&format!("/Users/{jane}/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
