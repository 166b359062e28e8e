//! Regression tests from the skeptical review of issue 14: each failed on f98afca (before the
//! fixes in the commit after it); the assertion messages say what went wrong then.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use scim_bridge::partner::client::UserUpdate;
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::CallKind;
use scim_bridge::store::{GroupRow, Store};
use serde_json::json;

use crate::support::{create_group, create_user, for_each_backend_url, Harness, Options};

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

fn delete_fails() -> Faults {
    Faults {
        script: vec![ScriptedFault {
            call: Some(CallKind::DeleteUser),
            count: 1_000,
            action: FaultAction::Status {
                status: 503,
                retry_after_secs: None,
            },
        }],
        ..Faults::default()
    }
}

/// Finding: a `userName eq` lookup while a deletion is pending imports the leaver's partner
/// account as a new SCIM user (`users::import_on_lookup` never looks at tombstones); the
/// tombstone's removal then skips the email ("a live user holds it"), converges, and the
/// IdP's retried DELETE is answered 204 while the account, with its groups, stays.
#[tokio::test]
async fn a_lookup_during_a_pending_deletion_does_not_revive_the_leaver() {
    let h = Harness::start(options()).await;
    let email = "leaver@acme.example.com";
    let id = create_user(&h, email, "Lea", "Ver").await;
    create_group(&h, "Payroll", &[&id]).await;
    h.settle(Duration::from_secs(5)).await;
    assert_eq!(h.partner_groups("acme", email), ["Payroll"]);
    h.emulator.set_faults("acme", delete_fails());
    let (status, body) = h.delete(&format!("/Users/{id}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // The IdP (Okta and Entra match by userName before a create) or an admin looks it up.
    let (status, body) = h
        .get("/Users?filter=userName%20eq%20%22leaver%40acme.example.com%22")
        .await;
    eprintln!(
        "lookup during the pending deletion: {status} totalResults={}",
        body["totalResults"]
    );
    h.emulator.set_faults("acme", Faults::default());
    h.settle(Duration::from_secs(5)).await;
    let (retry, _) = h.delete(&format!("/Users/{id}")).await;
    h.settle(Duration::from_secs(5)).await;
    assert!(
        h.partner_user("acme", email).is_none(),
        "the IdP deleted {id} (its retried DELETE answered {retry}), yet the partner account \
         is still there with groups {:?}",
        h.partner_groups("acme", email)
    );
}

/// Finding: an email change killed between its partner write and its commit leaves a
/// `claimed` tombstone; the next convergence of the user (the taken-over claim) skips it as
/// "in flight" (younger than `rename_settle_ms`) and `complete_outbox` then marks every pending
/// tombstone of the user converged, the skipped one included. The account the change made is
/// never removed: it outlives even the user's DELETE.
#[tokio::test]
async fn a_crash_mid_email_change_leaves_no_account_behind() {
    let mut o = options();
    o.bridge.rename_settle_ms = 2_000;
    let h = Harness::start(o).await;
    let old = "mover@acme.example.com";
    let new = "moved@acme.example.com";
    let id = create_user(&h, old, "Mo", "Ver").await;
    create_group(&h, "Payroll", &[&id]).await;
    h.settle(Duration::from_secs(5)).await;
    // What `users::update` has done when the process dies: the new email claimed, the user's
    // rows marked (and claimed: a restart or a takeover releases them), the partner renamed.
    let store = &h.bridge.store;
    store.claim_new_email("acme", &id, new).await.unwrap();
    let tenant = h.bridge.tenant("acme").unwrap();
    tenant.sites[0]
        .client
        .update_user(
            old,
            &UserUpdate {
                email: Some(new.to_owned()),
                ..UserUpdate::default()
            },
            false,
        )
        .await
        .unwrap();
    let sites = ["acme".to_owned()];
    store
        .mark_outbox("acme", &sites, std::slice::from_ref(&id))
        .await
        .unwrap();
    h.bridge.engine.kick();
    h.settle(Duration::from_secs(5)).await;
    // Long after the claim could be in flight, the user is converged again.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    store
        .mark_outbox("acme", &sites, std::slice::from_ref(&id))
        .await
        .unwrap();
    h.bridge.engine.kick();
    h.settle(Duration::from_secs(5)).await;
    let pending = store.pending_tombstones("acme", &id).await.unwrap();
    // The IdP deletes the person.
    let (status, _) = h.delete(&format!("/Users/{id}")).await;
    h.settle(Duration::from_secs(5)).await;
    assert!(
        h.partner_user("acme", new).is_none() && h.partner_user("acme", old).is_none(),
        "deleted user {id} (DELETE answered {status}) still has an account: {new}: {:?}, \
         {old}: {:?}; pending tombstones before the DELETE: {pending:?}",
        h.partner_user("acme", new),
        h.partner_user("acme", old),
    );
}

/// Finding: `DELETE /Groups` deletes the partner group at every site, then the store row. A
/// member's convergence in between (any mark: a name change here) finds the group missing,
/// and `repair_groups` re-creates it (the store still has it) and puts the member back in.
/// Once the store row goes the name is unmanaged: the group and the membership stay for ever.
#[tokio::test]
async fn a_group_delete_racing_a_member_convergence_leaves_no_group_behind() {
    let mut o = options();
    o.sites = vec!["acme", "beta"];
    o.bridge.partner.request_timeout_ms = 6_000;
    o.bridge.partner.call_deadline_ms = 8_000;
    let h = Harness::start(o).await;
    let email = "member@acme.example.com";
    let u = create_user(&h, email, "Mem", "Ber").await;
    let g = create_group(&h, "Doomed", &[&u]).await;
    h.settle(Duration::from_secs(5)).await;
    assert_eq!(h.partner_groups("acme", email), ["Doomed"]);
    // The second site is slow to delete the group (3 s).
    h.emulator.set_faults(
        "beta",
        Faults {
            hang_for_ms: Some(3_000),
            script: vec![ScriptedFault {
                call: Some(CallKind::DeleteGroup),
                count: 1,
                action: FaultAction::Hang,
            }],
            ..Faults::default()
        },
    );
    let gone_at_acme = |h: &Harness| !h.emulator.groups("acme").iter().any(|x| x.name == "Doomed");
    let group_path = format!("/Groups/{g}");
    let (deleted, renamed) = tokio::join!(h.delete(&group_path), async {
        let end = Instant::now() + Duration::from_secs(3);
        while !gone_at_acme(&h) {
            assert!(Instant::now() < end, "the group never went at acme");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        h.patch(
            &format!("/Users/{u}"),
            json!({"schemas": [PATCH_OP],
                   "Operations": [{"op": "replace", "path": "name.givenName", "value": "Renamed"}]}),
        )
        .await
    });
    eprintln!("group DELETE: {}; user PATCH: {}", deleted.0, renamed.0);
    assert_eq!(deleted.0, StatusCode::NO_CONTENT, "{}", deleted.1);
    h.settle(Duration::from_secs(5)).await;
    assert!(
        gone_at_acme(&h),
        "the IdP deleted group Doomed (204), yet acme has it again, and {email} is in it: {:?}",
        h.partner_groups("acme", email)
    );
}

fn group(id: &str, name: &str) -> GroupRow {
    GroupRow {
        tenant: "a".into(),
        id: id.into(),
        display_name: name.into(),
        external_id: None,
        partner_name: name.into(),
        access: None,
        resource: json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
        }),
        created_ms: 1_000,
        last_modified_ms: 1_000,
        version: 1,
    }
}

/// Finding: `Store::former_names_of` compares `LOWER(partner_name)` (SQL) with Rust's
/// `to_lowercase()`. SQLite's LOWER folds ASCII only: for a non-ASCII group name it finds no
/// former name (the repair creates a second group instead of finishing the rename, and skips
/// the `rename_settle_ms` guard), and it offers a name another group carries now (the repair
/// would rename that group's partner group), which df862f6 meant to exclude.
#[tokio::test]
async fn former_names_of_non_ascii_names_agree_on_both_backends() {
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    for_each_backend_url(|url| {
        let failures = failures.clone();
        async move {
            let store = Store::connect(&url).await.unwrap();
            store.migrate().await.unwrap();
            let backend = format!("{:?}", store.backend());
            let mut wrong = Vec::new();
            // G was "Équipe Sud", renamed "Équipe Nord".
            store
                .insert_group(&group("g", "Équipe Nord"))
                .await
                .unwrap();
            let names = ["Équipe Sud".to_owned(), "Équipe Nord".to_owned()];
            store
                .add_group_known_names("a", "g", &names, 1_000)
                .await
                .unwrap();
            let formers = store.former_names_of("a", "Équipe Nord").await.unwrap();
            if formers != vec![("Équipe Sud".to_owned(), 1_000)] {
                wrong.push(format!("former names of G: {formers:?}"));
            }
            // K was "Ärzte", renamed "Kliniker"; then H is created as "ÄRZTE": the name is H's.
            store.insert_group(&group("k", "Kliniker")).await.unwrap();
            let names = ["Ärzte".to_owned(), "Kliniker".to_owned()];
            store
                .add_group_known_names("a", "k", &names, 1_000)
                .await
                .unwrap();
            store.insert_group(&group("h", "ÄRZTE")).await.unwrap();
            let formers = store.former_names_of("a", "Kliniker").await.unwrap();
            if !formers.is_empty() {
                wrong.push(format!(
                    "former names of K offer the name group H carries: {formers:?}"
                ));
            }
            store.close().await;
            eprintln!(
                "{backend}: {}",
                if wrong.is_empty() {
                    "ok".into()
                } else {
                    format!("{wrong:?}")
                }
            );
            if !wrong.is_empty() {
                failures
                    .lock()
                    .unwrap()
                    .push(format!("{backend}: {wrong:?}"));
            }
        }
    })
    .await;
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "{failures:?}");
}

// ---------------------------------------------------------------------------------------------
// The liveness takeover against a write still in flight at the partner.

/// A partner that keeps working on a request after its client went away (as most HTTP
/// servers do): every write is held `hold` before it is carried out, on a task of its own.
struct Holding {
    target: String,
    hold: Duration,
    http: reqwest::Client,
    /// (method path, received, carried out)
    log: Mutex<Vec<(String, Instant, Option<Instant>)>>,
}

async fn forward(
    axum::extract::State(p): axum::extract::State<Arc<Holding>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let task = tokio::spawn(async move {
        let what = format!("{} {}", parts.method, parts.uri.path());
        let n = {
            let mut log = p.log.lock().unwrap();
            log.push((what, Instant::now(), None));
            log.len() - 1
        };
        if parts.method != http::Method::GET {
            tokio::time::sleep(p.hold).await;
        }
        let pq = parts.uri.path_and_query().map_or("/", |x| x.as_str());
        let mut rb = p
            .http
            .request(parts.method.clone(), format!("{}{pq}", p.target));
        for (k, v) in &parts.headers {
            if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
                rb = rb.header(k, v);
            }
        }
        let answer = rb.body(bytes).send().await;
        p.log.lock().unwrap()[n].2 = Some(Instant::now());
        let resp = answer.ok()?;
        let status = resp.status();
        let ctype = resp.headers().get(http::header::CONTENT_TYPE).cloned();
        let body = resp.bytes().await.ok()?;
        Some((status, ctype, body))
    });
    match task.await {
        Ok(Some((status, ctype, body))) => {
            let mut r = (status, body).into_response();
            if let Some(c) = ctype {
                r.headers_mut().insert(http::header::CONTENT_TYPE, c);
            }
            r
        }
        _ => StatusCode::BAD_GATEWAY.into_response(),
    }
}

async fn holding_partner(target: &str, hold: Duration) -> (String, Arc<Holding>) {
    let p = Arc::new(Holding {
        target: target.to_owned(),
        hold,
        http: reqwest::Client::new(),
        log: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new().fallback(forward).with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), p)
}

async fn scim(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut rb = http
        .request(method, url)
        .bearer_auth("crash-test-bearer-token-0123456789")
        .header("Accept", "application/scim+json");
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/scim+json")
            .body(serde_json::to_vec(&b).unwrap());
    }
    match rb.send().await {
        Ok(r) => {
            let s = r.status();
            (s, r.json().await.unwrap_or_default())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, json!({"error": e.to_string()})),
    }
}

async fn outbox_depth(db: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(db)
        .await
        .unwrap()
}

/// Finding: a dead worker's claims are released after three renewal periods (6 s at the
/// defaults), but a write it had sent may still be in flight at the partner for up to the
/// request timeout (10 s by default; the fence margin allows request_timeout + 2 s for exactly
/// this). Here the killed replica's re-create (a reactivation) lands after the survivor carried
/// out the IdP's DELETE, answered 204: the deleted user is back at the partner, with its groups.
async fn takeover_while_a_write_is_in_flight(store_url: String) {
    use crate::crash::{write_config, BridgeProc, ChildConfig, SITE};
    use sqlx::Connection;
    let (emu, running) = crate::crash::emulator(1, 0, 0).await;
    // The bridge's own bound on a write in flight (request_timeout_ms below) is 20 s; this
    // partner takes 12 s to carry a write out.
    let (proxy, holding) = holding_partner(&running.base_url, Duration::from_secs(12)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, partner: &str| {
        let path = write_config(
            dir.path(),
            name,
            &ChildConfig {
                store_url: store_url.clone(),
                partner: partner.to_owned(),
                lease_ms: 60_000,
            },
        );
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("request_timeout_ms = 1500", "request_timeout_ms = 20000")
            .replace("call_deadline_ms = 2000", "call_deadline_ms = 30000");
        std::fs::write(&path, text).unwrap();
        path
    };
    let cfg_a = config("replica-a", &proxy);
    let cfg_b = config("replica-b", &running.base_url);
    let log = |n: &str| dir.path().join(format!("{n}.log"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut db = sqlx::PgConnection::connect(&store_url).await.unwrap();
    let email = "rehired@acme.example.com";

    // Set-up through B: the user, in Payroll, then deactivated (gone at the partner).
    let b = BridgeProc::start_with(&cfg_b, &log("b-0"), &[("HOSTNAME", "replica-b")]).await;
    let (s, user) = scim(
        &http,
        reqwest::Method::POST,
        format!("{}/Users", b.base),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": email, "name": {"givenName": "Re", "familyName": "Hired"},
            "emails": [{"value": email, "primary": true}], "active": true}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap().to_owned();
    let (s, body) = scim(
        &http,
        reqwest::Method::POST,
        format!("{}/Groups", b.base),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Payroll", "members": [{"value": id}]}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let active = |on: bool| json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": on}}]});
    let end = Instant::now() + Duration::from_secs(20);
    while emu
        .user(SITE, email)
        .is_none_or(|u| !u.groups.contains(&"Payroll".to_owned()))
    {
        assert!(Instant::now() < end, "set-up: the user never got Payroll");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, body) = scim(
        &http,
        reqwest::Method::PATCH,
        format!("{}/Users/{id}", b.base),
        Some(active(false)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    while emu.user(SITE, email).is_some() || outbox_depth(&mut db).await > 0 {
        assert!(
            Instant::now() < end,
            "set-up: the deactivation never converged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.kill();

    // A (behind the slow partner) works the IdP's reactivation: it re-creates the user.
    let a = BridgeProc::start_with(&cfg_a, &log("a"), &[("HOSTNAME", "replica-a")]).await;
    let reactivate = {
        let (http, url) = (http.clone(), format!("{}/Users/{id}", a.base));
        tokio::spawn(
            async move { scim(&http, reqwest::Method::PATCH, url, Some(active(true))).await },
        )
    };
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let sent = holding
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|(w, _, _)| w == "POST /api/v1/users");
        if sent {
            break;
        }
        assert!(Instant::now() < end, "replica A never sent the re-create");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.kill();
    let killed = Instant::now();
    eprintln!(
        "reactivation answer from A: {:?}",
        reactivate.await.ok().map(|r| r.0)
    );

    // B comes back; the IdP deletes the person and retries until it hears 204.
    let b = BridgeProc::start_with(&cfg_b, &log("b-1"), &[("HOSTNAME", "replica-b")]).await;
    let end = Instant::now() + Duration::from_secs(40);
    let answered = loop {
        let (s, _) = scim(
            &http,
            reqwest::Method::DELETE,
            format!("{}/Users/{id}", b.base),
            None,
        )
        .await;
        if s == StatusCode::NO_CONTENT || s == StatusCode::NOT_FOUND {
            break (s, killed.elapsed());
        }
        assert!(
            Instant::now() < end,
            "the DELETE was never answered 204 (last {s})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Wait until the dead replica's write has been carried out.
    let end = Instant::now() + Duration::from_secs(20);
    let landed = loop {
        let done = holding
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|(w, _, _)| w == "POST /api/v1/users")
            .and_then(|(_, _, d)| *d);
        if let Some(d) = done {
            break d.saturating_duration_since(killed);
        }
        assert!(Instant::now() < end, "the held write never went through");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b);
    let at_partner = emu.user(SITE, email);
    assert!(
        at_partner.is_none(),
        "the IdP's DELETE was answered {} {:?} after replica A was killed (its claim taken over \
         by B); A's re-create, sent before the kill, reached the partner {:?} after the kill: \
         the deleted user is back at the partner: {:?}",
        answered.0,
        answered.1,
        landed,
        at_partner
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_write_in_flight_lands_before_the_takeover() {
    crate::support::with_postgres_url(takeover_while_a_write_is_in_flight).await;
}
