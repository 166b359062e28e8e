//! The web console (`/console`) and `scim-bridge retry` (issue 18, "Web console"): sign-in with
//! the admin token (throttled as the admin endpoint is), the session cookie, CSRF on every
//! action, the security headers, no secret on any page, "retry now", and reconcile's dry run
//! and repair; `retry` through the binary and the store operation on both back ends.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use scim_bridge::config::{AdminConfig, BearerTokenConfig, HttpConfig, RateLimitConfig};
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::CallKind;
use scim_bridge::secret::Secret;

use crate::support::{create_group, create_user, Harness, Options, OWNER, TOKEN};

const ADMIN_TOKEN: &str = "console-admin-token-0123456789abcdef";
const BIN: &str = env!("CARGO_BIN_EXE_scim-bridge");

fn admin() -> AdminConfig {
    AdminConfig {
        bearer_tokens: vec![BearerTokenConfig {
            name: "ops".into(),
            token: Some(Secret::new(ADMIN_TOKEN)),
            ..BearerTokenConfig::default()
        }],
        ..AdminConfig::default()
    }
}

fn options() -> Options {
    Options {
        admin: admin(),
        ..Options::default()
    }
}

/// A client that shows redirects instead of following them and keeps no cookies.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A signed-in browser: the session cookie and the CSRF token of its forms.
struct Browser {
    root: String,
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

async fn sign_in_with(h: &Harness, token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/console/sign-in", h.root))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

impl Browser {
    async fn sign_in(h: &Harness) -> Browser {
        let res = sign_in_with(h, ADMIN_TOKEN).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(res.headers()[LOCATION], "/console");
        let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        let mut b = Browser {
            root: h.root.clone(),
            http: client(),
            cookie,
            csrf: String::new(),
        };
        let (status, page) = b.get("/console").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        b.csrf = csrf_of(&page);
        b
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.root))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// Posts `fields` with the session's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.root))
            .header("Cookie", &self.cookie)
            .form(fields)
            .send()
            .await
            .unwrap()
    }
}

const PAGES: [&str; 5] = [
    "/console",
    "/console/failing",
    "/console/reconcile",
    "/console/audit",
    "/console/user",
];
const ACTIONS: [&str; 5] = [
    "/console/failing/retry",
    "/console/reconcile/dry-run",
    "/console/reconcile/confirm",
    "/console/reconcile/apply",
    "/console/sign-out",
];

fn assert_protected(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    let csp = h
        .get(CONTENT_SECURITY_POLICY)
        .unwrap_or_else(|| panic!("{what}: no CSP"));
    assert_eq!(
        csp,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
        "{what}"
    );
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    assert_eq!(h["cache-control"], "no-store", "{what}");
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
}

#[tokio::test]
async fn console_pages_need_a_session_and_every_answer_carries_the_security_headers() {
    let h = Harness::start(options()).await;
    let http = client();
    for page in PAGES {
        let res = http.get(format!("{}{page}", h.root)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{page}");
        assert_eq!(res.headers()[LOCATION], "/console/sign-in", "{page}");
        assert_protected(&res, page);
        // A cookie that is no session is no better.
        let res = http
            .get(format!("{}{page}", h.root))
            .header("Cookie", "scim_bridge_console=00ff")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{page}");
    }
    for path in ACTIONS {
        let res = http
            .post(format!("{}{path}", h.root))
            .form(&[("tenant", "acme"), ("confirm", "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_protected(&res, path);
    }
    for path in [
        "/console/sign-in",
        "/console/static/console.css",
        "/console/nope",
    ] {
        let res = http.get(format!("{}{path}", h.root)).send().await.unwrap();
        assert_protected(&res, path);
        let expected = if path.ends_with("nope") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(res.status(), expected, "{path}");
    }
    let css = http
        .get(format!("{}/console/static/console.css", h.root))
        .send()
        .await
        .unwrap();
    assert!(css.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    // Signed in, every page answers 200 with the same headers, and no script anywhere.
    let b = Browser::sign_in(&h).await;
    for page in PAGES {
        let res = b
            .http
            .get(format!("{}{page}", h.root))
            .header("Cookie", &b.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{page}");
        assert_protected(&res, page);
        let body = res.text().await.unwrap();
        assert!(!body.contains("<script"), "{page}");
        assert!(
            body.contains(r#"href="/console/static/console.css""#),
            "{page}"
        );
    }
}

#[tokio::test]
async fn console_is_not_served_without_an_admin_token() {
    let h = Harness::start(Options::default()).await;
    for path in [
        "/console",
        "/console/sign-in",
        "/console/static/console.css",
    ] {
        let res = client()
            .get(format!("{}{path}", h.root))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = sign_in_with(&h, ADMIN_TOKEN).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn console_session_cookie_is_strict_and_sign_out_ends_the_session() {
    let h = Harness::start(options()).await;
    let res = sign_in_with(&h, ADMIN_TOKEN).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    let id = attrs[0].strip_prefix("scim_bridge_console=").unwrap();
    assert_eq!(id.len(), 64, "256 random bits: {set}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    for a in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(attrs.contains(&a), "{a} missing: {set}");
    }
    // Plain HTTP and a public URL that is http: no `Secure` (the browser would drop it).
    assert!(!attrs.contains(&"Secure"), "{set}");
    // Two sign-ins are two sessions.
    let other = sign_in_with(&h, ADMIN_TOKEN).await;
    assert_ne!(other.headers()[SET_COOKIE], set.as_str());

    let b = Browser::sign_in(&h).await;
    assert!(b.get("/console").await.1.contains("Sign out (ops)"));
    // Sign-out is an action: without the CSRF token it is refused and the session stays.
    let res = b.post_raw("/console/sign-out", &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(b.get("/console").await.0, StatusCode::OK);
    let res = b.post("/console/sign-out", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/console/sign-in");
    let cleared = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("scim_bridge_console=;") && cleared.contains("Max-Age=0"));
    // The old cookie opens nothing any more.
    assert_eq!(b.get("/console").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn console_sign_in_refuses_wrong_tokens_and_throttles_them_with_the_admin_endpoint() {
    let h = Harness::start(Options {
        http: HttpConfig {
            auth_failure_limit: RateLimitConfig {
                // A failure forgiven every 100 s: none within the test.
                per_second: 0.01,
                burst: 2,
            },
            ..HttpConfig::default()
        },
        ..options()
    })
    .await;
    // Not an admin token: the SCIM bearer token, an empty one, guesses. A burst of 2 failures
    // is spent by the third, which puts the address over budget: the fourth is 429.
    let mut statuses = Vec::new();
    for guess in [TOKEN, "", "console-admin-token-0123456789abcdeX", "guess"] {
        let res = sign_in_with(&h, guess).await;
        assert!(res.headers().get(SET_COOKIE).is_none());
        statuses.push(res.status());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().get(RETRY_AFTER).is_some());
            let body = res.text().await.unwrap();
            assert!(body.contains("Too many failed sign-ins"), "{body}");
        } else {
            let body = res.text().await.unwrap();
            assert!(body.contains("not an admin token"), "{body}");
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // One budget with the admin endpoint: its wrong tokens are throttled now too.
    let res = client()
        .get(format!("{}/admin/audit", h.root))
        .bearer_auth("wrong-admin-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Over budget, the right token still signs in: guessers cannot lock the operator out.
    let res = sign_in_with(&h, ADMIN_TOKEN).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

/// A user whose membership write keeps failing at the partner, retried only in 10 minutes.
async fn failing_item(h: &Harness) -> String {
    let id = create_user(h, "stuck@example.com", "Stu", "Ck").await;
    h.emulator.set_faults(
        "acme",
        Faults {
            script: vec![ScriptedFault {
                call: Some(crate::support::kind_at(
                    &h.emulator,
                    "acme",
                    CallKind::UpdateUser,
                )),
                count: 1000,
                action: FaultAction::Status {
                    status: 503,
                    retry_after_secs: None,
                },
            }],
            ..Faults::default()
        },
    );
    create_group(h, "Engineers", &[&id]).await;
    let end = Instant::now() + Duration::from_secs(20);
    while h
        .bridge
        .store
        .outbox_failures(None, 10)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < end, "the outbox item never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    id
}

fn slow_retries(mut opts: Options) -> Options {
    opts.bridge.retry_base_ms = 600_000;
    opts.bridge.retry_max_ms = 600_000;
    opts.bridge.wait_deadline_ms = 500;
    opts.bridge.partner.max_attempts = 1;
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_retry_now_makes_a_failing_item_due_and_csrf_guards_it() {
    let h = Harness::start(slow_retries(options())).await;
    let id = failing_item(&h).await;
    let b = Browser::sign_in(&h).await;
    let (status, page) = b.get("/console/failing").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("stuck@example.com") && page.contains(&id),
        "{page}"
    );
    assert!(page.contains("503"), "the reason is shown: {page}");
    assert!(page.contains("Retry now"));
    let before = h.bridge.store.outbox_failures(None, 10).await.unwrap();
    assert_eq!(before.len(), 1);
    assert!(before[0].due_ms > scim_bridge::bridge::now_ms() + 60_000);

    // Without the CSRF token (or with another session's), nothing happens.
    let fields = [("tenant", "acme"), ("site", "acme"), ("user", id.as_str())];
    let res = b.post_raw("/console/failing/retry", &fields).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let mut wrong = vec![("csrf", "0".repeat(64))];
    wrong.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        b.post_raw("/console/failing/retry", &wrong).await.status(),
        StatusCode::FORBIDDEN
    );
    // Bad input is refused and changes nothing.
    let res = b
        .post("/console/failing/retry", &[("tenant", "nobody")])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = b
        .post(
            "/console/failing/retry",
            &[("tenant", "acme"), ("site", "nowhere")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        h.bridge.store.outbox_failures(None, 10).await.unwrap(),
        before
    );

    let res = b.post("/console/failing/retry", &fields).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/console/failing?retried=1");
    // Due now: the worker runs it again at once (and fails again at the partner), instead of
    // in ten minutes.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let now = h.bridge.store.outbox_failures(None, 10).await.unwrap();
        if now.first().is_some_and(|f| f.attempts > before[0].attempts) {
            break;
        }
        assert!(
            Instant::now() < end,
            "retry now did not run the item: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, page) = b.get("/console/failing?retried=1").await;
    assert!(page.contains("1 item(s) made due now"), "{page}");
    // The overview shows the failing item, the open or closed circuit and the calls chart.
    let (_, page) = b.get("/console").await;
    assert!(page.contains("attention"), "{page}");
    assert!(page.contains("<svg class=\"chart\""), "{page}");
    assert!(page.contains("failed, in the last hour"), "{page}");
    assert!(
        page.contains("API key") && page.contains(">accepted<"),
        "{page}"
    );
    // The action is in the audit log, under the console and the token's name.
    let entries = h.bridge.store.audit_entries("acme", 50).await.unwrap();
    let retry = entries
        .iter()
        .find(|e| e.operation == "RETRY")
        .unwrap_or_else(|| panic!("no RETRY entry: {entries:?}"));
    assert_eq!(retry.credential, "console:ops");
    assert!(
        retry.detail.as_deref().unwrap().contains("\"made_due\":1"),
        "{retry:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_dry_run_shows_the_drift_and_apply_repairs_it_after_confirmation() {
    let h = Harness::start(options()).await;
    let id = create_user(&h, "drift@example.com", "Dee", "Rift").await;
    create_group(&h, "Analysts", &[&id]).await;
    crate::support::delete_partner_user(&h, "acme", "drift@example.com").await;
    assert!(h.partner_user("acme", "drift@example.com").is_none());

    let b = Browser::sign_in(&h).await;
    let (_, page) = b.get("/console/reconcile").await;
    assert!(page.contains(r#"action="/console/reconcile/dry-run""#));
    // Without CSRF: refused before any partner call.
    let res = b
        .post_raw("/console/reconcile/dry-run", &[("tenant", "acme")])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = b
        .post("/console/reconcile/dry-run", &[("tenant", "acme")])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("Users missing at the site"), "{page}");
    assert!(page.contains("drift@example.com"), "{page}");
    assert!(page.contains("nothing was changed"));
    assert!(
        h.partner_user("acme", "drift@example.com").is_none(),
        "a dry run repairs nothing"
    );

    // Confirmation first; apply without it, or without CSRF, is refused.
    let res = b
        .post("/console/reconcile/confirm", &[("tenant", "acme")])
        .await;
    let page = res.text().await.unwrap();
    assert!(page.contains("Yes, repair the drift"), "{page}");
    let res = b
        .post("/console/reconcile/apply", &[("tenant", "acme")])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = b
        .post_raw(
            "/console/reconcile/apply",
            &[("tenant", "acme"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(h.partner_user("acme", "drift@example.com").is_none());

    let res = b
        .post(
            "/console/reconcile/apply",
            &[("tenant", "acme"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("Repair started"), "{page}");
    let end = Instant::now() + Duration::from_secs(20);
    while h.partner_user("acme", "drift@example.com").is_none() {
        assert!(Instant::now() < end, "the repair never recreated the user");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.partner_groups("acme", "drift@example.com"), ["Analysts"]);
    // Both runs are in the audit log under the console's name, and the overview shows the last.
    let (_, page) = b
        .get("/console/audit?resource=Site&credential=console:ops")
        .await;
    assert!(page.contains("2 entries"), "{page}");
    assert!(page.contains("RECONCILE"));
    let (_, page) = b.get("/console").await;
    assert!(page.contains("repaired"), "{page}");
}

#[tokio::test]
async fn console_audit_filters_and_pages_and_refuses_bad_filters() {
    let h = Harness::start(options()).await;
    for i in 0..55 {
        create_user(&h, &format!("a{i}@example.com"), "A", "B").await;
    }
    let b = Browser::sign_in(&h).await;
    let (_, page) = b.get("/console/audit?tenant=acme&credential=idp").await;
    assert!(page.contains("55 entries; page 1 of 2"), "{page}");
    assert_eq!(
        page.matches("<tr>").count(),
        51,
        "a header row and 50 entries"
    );
    assert!(page.contains("page=2"), "a link to the next page");
    let (_, page) = b
        .get("/console/audit?tenant=acme&credential=idp&page=2")
        .await;
    assert_eq!(page.matches("<tr>").count(), 6);
    let (_, page) = b.get("/console/audit?credential=someone-else").await;
    assert!(page.contains("0 entries"), "{page}");
    let (_, page) = b.get("/console/audit?until=2000-01-01T00:00:00Z").await;
    assert!(page.contains("0 entries"), "{page}");
    for bad in ["since=soon", "until=later", "page=x"] {
        let (status, page) = b.get(&format!("/console/audit?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_show_no_secret() {
    let h = Harness::start(slow_retries(options())).await;
    failing_item(&h).await;
    let b = Browser::sign_in(&h).await;
    let mut bodies = Vec::new();
    for page in PAGES {
        bodies.push(b.get(page).await.1);
    }
    bodies.push(b.get("/console/audit?since=1h").await.1);
    let res = b
        .post("/console/reconcile/dry-run", &[("tenant", "acme")])
        .await;
    bodies.push(res.text().await.unwrap());
    let res = b
        .post("/console/reconcile/confirm", &[("tenant", "acme")])
        .await;
    bodies.push(res.text().await.unwrap());
    bodies.push(sign_in_with(&h, "wrong").await.text().await.unwrap());
    for body in &bodies {
        for secret in [ADMIN_TOKEN, TOKEN, "key-acme"] {
            assert!(!body.contains(secret), "a page shows a secret: {body}");
        }
    }
    assert!(bodies.iter().any(|b| b.contains("stuck@example.com")));
}

/// `scim-bridge retry` with a configuration on `store_url`.
fn retry_cli(dir: &std::path::Path, store_url: &str, args: &[&str]) -> std::process::Output {
    let config = dir.join("console.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[store]\nurl = \"{store_url}\"\n\
             [[tenants]]\nname = \"acme\"\ninvited_by_email = \"{OWNER}\"\n\
             [[tenants.credentials.bearer_tokens]]\ntoken = \"a-token-long-enough-for-the-bridge\"\n\
             [[tenants.sites]]\nsite_name = \"a\"\napi_key = \"key-a\"\nbase_url = \"http://127.0.0.1:9\"\n\
             [[tenants.sites]]\nsite_name = \"b\"\napi_key = \"key-b\"\nbase_url = \"http://127.0.0.1:9\"\n",
            dir.display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SCIM_BRIDGE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--config").arg(&config).arg("retry").args(args);
    cmd.output().unwrap()
}

/// Users u1..u3 of `acme` marked at sites a and b; the rows of u1 and u2 at a fail (due in
/// ten minutes), u3's row at a is failing and claimed again by a live worker, b's rows are
/// parked (u1) or fine.
async fn seed_outbox(store: &scim_bridge::store::Store, now: i64) {
    use scim_bridge::store::UserRow;
    for id in ["u1", "u2", "u3"] {
        store
            .insert_user(&UserRow {
                tenant: "acme".into(),
                id: id.into(),
                user_name: format!("{id}@example.com"),
                external_id: None,
                active: true,
                partner_email: format!("{id}@Example.com"),
                emails: vec![format!("{id}@example.com")],
                resource: serde_json::json!({"userName": format!("{id}@example.com")}),
                created_ms: now,
                last_modified_ms: now,
                version: 1,
            })
            .await
            .unwrap();
    }
    let sites = ["a".to_owned(), "b".to_owned()];
    let users = ["u1".to_owned(), "u2".to_owned(), "u3".to_owned()];
    store
        .mark_outbox_at("acme", &sites, &users, now)
        .await
        .unwrap();
    let claimed = store
        .claim_outbox("w", 100, Duration::from_secs(60), now)
        .await
        .unwrap();
    for item in &claimed {
        match (item.site.as_str(), item.user_id.as_str()) {
            ("a", _) => store
                .fail_outbox(item, "partner says 503", now + 600_000)
                .await
                .unwrap(),
            ("b", "u1") => store
                .park_outbox(item, "not served", now + 600_000)
                .await
                .unwrap(),
            _ => store.release_outbox(item).await.unwrap(),
        }
    }
    // u3 at a is failing and due again: a live worker holds it now.
    let held = store
        .claim_outbox_marks(
            "w2",
            &[scim_bridge::store::OutboxMark {
                tenant: "acme".into(),
                site: "a".into(),
                user_id: "u3".into(),
                generation: 0,
            }],
            Duration::from_secs(60),
            now + 600_000,
        )
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_makes_failing_and_parked_rows_due_and_leaves_held_claims_alone() {
    crate::support::for_each_backend_url(|url| async move {
        let store = scim_bridge::store::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let now = scim_bridge::bridge::now_ms();
        seed_outbox(&store, now).await;
        let filter = |site: Option<&str>, user: Option<&str>| scim_bridge::store::RetryFilter {
            tenant: Some("acme".into()),
            site: site.map(Into::into),
            user: user.map(Into::into),
        };
        // Another tenant or an unknown user: nothing.
        let other = scim_bridge::store::RetryFilter {
            tenant: Some("beta".into()),
            ..Default::default()
        };
        assert_eq!(store.retry_outbox_now(&other, now).await.unwrap(), 0);
        assert_eq!(
            store
                .retry_outbox_now(&filter(None, Some("nobody")), now)
                .await
                .unwrap(),
            0
        );
        // One user by partner email, in any case.
        assert_eq!(
            store
                .retry_outbox_now(&filter(Some("a"), Some("U1@EXAMPLE.COM")), now)
                .await
                .unwrap(),
            1
        );
        let due = |site: &'static str, user: &'static str, at: i64| {
            let store = store.clone();
            async move {
                store
                    .claim_outbox_marks(
                        "probe",
                        &[scim_bridge::store::OutboxMark {
                            tenant: "acme".into(),
                            site: site.into(),
                            user_id: user.into(),
                            generation: 0,
                        }],
                        Duration::from_millis(1),
                        at,
                    )
                    .await
                    .unwrap()
                    .len()
                    == 1
            }
        };
        assert!(due("a", "u1", now + 1).await, "u1 at a is due now");
        assert!(
            !due("a", "u2", now + 1).await,
            "u2 at a still waits for its backoff"
        );
        // The rest of the tenant that waits: u2 at a (failing) and u1 at b (parked). u1 at a
        // is due already, u3 is held by a worker, b's healthy rows are no business of a retry.
        assert_eq!(
            store
                .retry_outbox_now(&filter(None, None), now + 5)
                .await
                .unwrap(),
            2
        );
        assert!(due("a", "u2", now + 10).await);
        assert_eq!(
            store
                .retry_outbox_now(&filter(None, None), now + 20)
                .await
                .unwrap(),
            0
        );
        let failing = store.outbox_failures(Some("acme"), 10).await.unwrap();
        let u3 = failing.iter().find(|f| f.user_id == "u3").unwrap();
        assert_eq!(u3.due_ms, now + 600_000, "a held claim is not touched");
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_command_makes_failing_items_due_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}/store.db", dir.path().display());
    let store = scim_bridge::store::Store::connect(&store_url)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let now = scim_bridge::bridge::now_ms();
    seed_outbox(&store, now).await;
    let path = dir.path().to_owned();
    let run = move |args: &'static [&'static str]| {
        let (path, url) = (path.clone(), store_url.clone());
        async move {
            tokio::task::spawn_blocking(move || retry_cli(&path, &url, args))
                .await
                .unwrap()
        }
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // Bad input: exit 2, nothing changed.
    for args in [
        &["--tenant", "beta"][..],
        &["--site", "c"][..],
        &["--user", " "][..],
    ] {
        let out = run(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    let failing = store.outbox_failures(None, 10).await.unwrap();
    assert!(
        failing.iter().all(|f| f.due_ms == now + 600_000),
        "{failing:?}"
    );

    let out = run(&["--site", "a", "--user", "u2@example.com"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 failing or parked outbox item made due now\n"
    );
    let out = run(&["--tenant", "acme"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 failing or parked outbox items made due now\n",
        "u1 at a and the parked row at b; u2 is due already, u3 is held by a worker"
    );
    let failing = store.outbox_failures(None, 10).await.unwrap();
    let later = now + 60_000;
    assert_eq!(
        failing.iter().filter(|f| f.due_ms < later).count(),
        2,
        "{failing:?}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_user_page_explains_a_user_and_says_when_there_is_none() {
    let h = Harness::start(options()).await;
    let id = create_user(&h, "eve@example.com", "Eve", "Example").await;
    create_group(&h, "Auditors", &[&id]).await;
    let b = Browser::sign_in(&h).await;
    let (status, page) = b.get("/console/user").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"name="q""#), "{page}");
    let (status, page) = b.get("/console/user?tenant=acme&q=EVE@example.com").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(&id) && page.contains("Auditors"), "{page}");
    let (status, page) = b
        .get("/console/user?tenant=acme&q=nobody@example.com")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("no user"), "{page}");
    let (status, _) = b.get("/console/user?tenant=nope&q=eve@example.com").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn console_cookie_is_secure_when_the_public_url_is_https() {
    use scim_bridge::config::Config;
    use scim_bridge::http::{self, AppState};
    let opts = options();
    let h = Harness::start(options()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Behind a proxy that ends TLS: the bridge knows HTTPS from `public_base_url` only.
    let config = Config {
        listen: addr,
        public_base_url: Some(url::Url::parse("https://scim.example.com").unwrap()),
        tenants: vec![crate::support::tenant_config(&opts, &h.partner_base)],
        admin: admin(),
        ..Config::default()
    };
    let state = AppState::from_config(&config)
        .unwrap()
        .with_bridge(h.bridge.clone());
    let server = tokio::spawn(async move {
        let _ = http::run(listener, state, std::future::pending()).await;
    });
    let res = client()
        .post(format!("http://{addr}/console/sign-in"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.split(';').any(|a| a.trim() == "Secure"), "{set}");
    server.abort();
}
