//! Prometheus metrics: a flow through a whole bridge, then a scrape of `/metrics`, checking the
//! numbers. Each harness has a recorder of its own, so the counts are exactly this test's.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::bridge::reconcile::reconcile;
use scim_bridge::config::{
    AdminConfig, BearerTokenConfig, CredentialsConfig, HttpConfig, OAuthClientConfig, OAuthConfig,
    RateLimitConfig,
};
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::CallKind;
use scim_bridge::secret::Secret;
use scim_bridge::telemetry::metrics;

use crate::support::{create_group, create_user, Harness, Options, TOKEN};

/// One sample of the text exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a scrape (label values here never hold quotes or commas).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap(),
            }
        })
        .collect()
}

/// The sum of the samples named `name` whose labels include every pair of `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn get_with_token(h: &Harness, path: &str, token: Option<&str>) -> StatusCode {
    let mut req = h.http.get(format!("{}{path}", h.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status()
}

#[tokio::test]
async fn scrape_counts_requests_auth_failures_partner_calls_and_the_outbox() {
    let h = Harness::start(Options::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scrape_url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let exporter = tokio::spawn(metrics::serve(
        listener,
        h.metrics.clone(),
        Some(metrics::OutboxSource {
            store: h.bridge.store.clone(),
            stuck_after_s: 900,
        }),
    ));

    // The partner answers the first user creation 429 once; the client retries it.
    assert!(h.emulator.set_faults(
        "acme",
        Faults {
            script: vec![ScriptedFault {
                call: Some(CallKind::CreateUser),
                count: 1,
                action: FaultAction::Status {
                    status: 429,
                    retry_after_secs: None,
                },
            }],
            ..Faults::default()
        }
    ));
    let mut ids = Vec::new();
    for name in ["ada", "bob", "cy"] {
        ids.push(create_user(&h, &format!("{name}@acme.example.com"), name, "Test").await);
    }
    create_group(&h, "Finance", &[&ids[0], &ids[1]]).await;
    assert_eq!(h.get("/Users").await.0, StatusCode::OK);
    assert_eq!(h.get(&format!("/Users/{}", ids[2])).await.0, StatusCode::OK);
    // Two unknown tokens and one request without credentials.
    for token in [Some("wrong-token-1"), Some("wrong-token-2"), None] {
        assert_eq!(
            get_with_token(&h, "/Users", token).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // A path no route knows: counted as `unmatched`, its text is no label.
    assert_eq!(
        get_with_token(&h, "/NoSuchThing/xyz-123", Some(TOKEN)).await,
        StatusCode::NOT_FOUND
    );
    h.settle(Duration::from_secs(10)).await;

    let res = h.http.get(&scrape_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = res.text().await.unwrap();
    let s = parse(&text);
    let http = |resource, operation, status| {
        sum(
            &s,
            metrics::HTTP_REQUESTS,
            &[
                ("tenant", "acme"),
                ("resource", resource),
                ("operation", operation),
                ("status", status),
            ],
        )
    };
    assert_eq!(http("Users", "create", "201"), 3.0, "{text}");
    assert_eq!(http("Groups", "create", "201"), 1.0, "{text}");
    assert_eq!(http("Users", "list", "200"), 1.0, "{text}");
    assert_eq!(http("Users", "get", "200"), 1.0, "{text}");
    assert_eq!(http("Users", "list", "401"), 3.0, "{text}");
    assert_eq!(http("unmatched", "get", "404"), 1.0, "{text}");
    assert_eq!(
        sum(
            &s,
            &format!("{}_count", metrics::HTTP_DURATION),
            &[
                ("tenant", "acme"),
                ("resource", "Users"),
                ("operation", "create")
            ],
        ),
        3.0,
        "{text}"
    );
    let auth = |reason| {
        sum(
            &s,
            metrics::AUTH_FAILURES,
            &[("tenant", "acme"), ("endpoint", "scim"), ("reason", reason)],
        )
    };
    assert_eq!(auth("unknown_token"), 2.0, "{text}");
    assert_eq!(auth("missing"), 1.0, "{text}");

    let partner = |call, outcome| {
        sum(
            &s,
            metrics::PARTNER_REQUESTS,
            &[
                ("tenant", "acme"),
                ("site", "acme"),
                ("call", call),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(partner("create_user", "ok"), 3.0, "{text}");
    assert_eq!(partner("create_user", "transient"), 1.0, "{text}");
    assert!(
        sum(&s, metrics::PARTNER_REQUESTS, &[("outcome", "ok")]) >= 3.0,
        "{text}"
    );
    let one_call = [
        ("tenant", "acme"),
        ("site", "acme"),
        ("call", "create_user"),
    ];
    assert_eq!(
        sum(&s, metrics::PARTNER_THROTTLED, &one_call),
        1.0,
        "{text}"
    );
    assert_eq!(sum(&s, metrics::PARTNER_RETRIES, &one_call), 1.0, "{text}");
    assert_eq!(
        sum(
            &s,
            &format!("{}_count", metrics::PARTNER_DURATION),
            &one_call
        ),
        4.0,
        "{text}"
    );
    // The group's memberships went through the outbox, which has drained.
    assert!(
        text.contains(&format!("{} 0\n", metrics::OUTBOX_DEPTH)),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 0\n", metrics::OUTBOX_FAILING)),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 0\n", metrics::OUTBOX_OLDEST_AGE)),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 0\n", metrics::DEGRADED)),
        "{text}"
    );

    // Bounded labels only: no ids, emails, raw paths or credentials.
    for secret_or_unbounded in ids.iter().map(String::as_str).chain([
        "ada@acme",
        "NoSuchThing",
        "xyz-123",
        TOKEN,
        "wrong-token",
        "key-acme",
    ]) {
        assert!(
            !text.contains(secret_or_unbounded),
            "{secret_or_unbounded} in {text}"
        );
    }
    // Every counter is described and typed.
    assert!(text.contains(&format!("# TYPE {} counter", metrics::HTTP_REQUESTS)));
    assert!(text.contains(&format!("# TYPE {} histogram", metrics::HTTP_DURATION)));

    // The metrics are on their own listener only.
    let on_api = h
        .http
        .get(format!("{}/metrics", h.root))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), StatusCode::NOT_FOUND);
    let elsewhere = h
        .http
        .get(scrape_url.replace("/metrics", "/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    exporter.abort();
}

#[tokio::test]
async fn refusals_are_counted_by_endpoint_reason_and_limit() {
    const SIGNING_KEY: &str = "metrics-test-signing-key-0123456789-abcdef";
    const ADMIN_TOKEN: &str = "metrics-test-admin-token-0123456789";
    // A tiny request budget (2) and failure budget (2), refilled far too slowly to matter.
    let slow = |burst| RateLimitConfig {
        per_second: 0.0001,
        burst,
    };
    let h = Harness::start(Options {
        http: HttpConfig {
            rate_limit: slow(2),
            auth_failure_limit: slow(2),
            ..HttpConfig::default()
        },
        credentials: CredentialsConfig {
            oauth: Some(OAuthConfig {
                clients: vec![OAuthClientConfig {
                    name: "okta".into(),
                    client_id: "okta-client".into(),
                    client_secret: Some(Secret::new("okta-secret-0123456789")),
                    ..OAuthClientConfig::default()
                }],
                signing_key: Some(Secret::new(SIGNING_KEY)),
                ..OAuthConfig::default()
            }),
            ..CredentialsConfig::default()
        },
        admin: AdminConfig {
            bearer_tokens: vec![BearerTokenConfig {
                name: "ops".into(),
                token: Some(Secret::new(ADMIN_TOKEN)),
                ..BearerTokenConfig::default()
            }],
            ..AdminConfig::default()
        },
        ..Options::default()
    })
    .await;

    // The tenant's budget: two requests, then 429.
    for want in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_eq!(get_with_token(&h, "/Users", Some(TOKEN)).await, want);
    }
    // Failures at three doors: the tenant's token endpoint and SCIM routes share one budget
    // per address (spent by the third failure), the admin endpoints have their own...
    let token = h
        .http
        .post(format!("{}/oauth/token", h.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "okta-client"),
            ("client_secret", "not-the-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
    let admin = h
        .http
        .get(format!("{}/admin/audit", h.root))
        .bearer_auth("not-the-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::UNAUTHORIZED);
    for _ in 0..2 {
        assert_eq!(
            get_with_token(&h, "/Users", Some("wrong-token")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // ... so the next wrong credential from this address is refused with 429.
    assert_eq!(
        get_with_token(&h, "/Groups", Some("wrong-token")).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    let s = parse(&h.metrics.render());
    let auth = |tenant, endpoint, reason| {
        sum(
            &s,
            metrics::AUTH_FAILURES,
            &[
                ("tenant", tenant),
                ("endpoint", endpoint),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(auth("acme", "token", "invalid_client"), 1.0);
    assert_eq!(auth("", "admin", "unknown_token"), 1.0);
    assert_eq!(auth("acme", "scim", "unknown_token"), 2.0);
    let limited = |limit| {
        sum(
            &s,
            metrics::RATE_LIMITED,
            &[("tenant", "acme"), ("endpoint", "scim"), ("limit", limit)],
        )
    };
    assert_eq!(limited("tenant"), 1.0);
    assert_eq!(limited("auth_failures"), 1.0);
    let http = |resource, operation, status| {
        sum(
            &s,
            metrics::HTTP_REQUESTS,
            &[
                ("resource", resource),
                ("operation", operation),
                ("status", status),
            ],
        )
    };
    assert_eq!(http("oauth", "token", "401"), 1.0);
    assert_eq!(http("audit", "list", "401"), 1.0);
    assert_eq!(http("Groups", "list", "429"), 1.0);
}

#[tokio::test]
async fn reconcile_drift_is_a_gauge_per_site_and_kind() {
    let h = Harness::start(Options::default()).await;
    create_user(&h, "ada@acme.example.com", "Ada", "L").await;
    create_user(&h, "bob@acme.example.com", "Bob", "M").await;
    // Bob goes missing at the partner, behind the bridge's back.
    crate::support::delete_partner_user(&h, "acme", "bob@acme.example.com").await;
    let tenant = h.bridge.tenant("acme").unwrap();
    reconcile(&h.bridge, &tenant, true).await.unwrap();

    let drift = |kind| {
        sum(
            &parse(&h.metrics.render()),
            metrics::RECONCILE_DRIFT,
            &[("tenant", "acme"), ("site", "acme"), ("kind", kind)],
        )
    };
    assert_eq!(drift("users_missing"), 1.0);
    assert_eq!(drift("memberships_drifted"), 0.0);
    // The site's owner is a partner user no SCIM user maps to.
    assert_eq!(drift("unknown_partner_users"), 1.0);

    // Repaired: the next run finds nothing missing, and the gauge says so.
    h.settle(Duration::from_secs(10)).await;
    reconcile(&h.bridge, &tenant, false).await.unwrap();
    assert_eq!(drift("users_missing"), 0.0);
    let runs = sum(
        &parse(&h.metrics.render()),
        metrics::RECONCILE_RUNS,
        &[("tenant", "acme"), ("outcome", "ok")],
    );
    assert_eq!(runs, 2.0);
}

#[tokio::test]
async fn each_site_is_labelled_with_its_api() {
    use scim_bridge::partner::rbac::SiteApi;
    let h = Harness::start(Options {
        sites: vec!["acme", "rbac"],
        api: SiteApi::Groups,
        other_api_sites: vec!["rbac"],
        ..Options::default()
    })
    .await;
    create_user(&h, "jane@example.com", "Jane", "Doe").await;
    h.settle(Duration::from_secs(10)).await;
    let s = parse(&h.metrics.render());
    let info = |site: &str, api: &str| {
        sum(
            &s,
            metrics::SITE_INFO,
            &[("tenant", "acme"), ("site", site), ("api", api)],
        )
    };
    assert_eq!(info("acme", "groups"), 1.0);
    assert_eq!(info("rbac", "roles"), 1.0);
    assert_eq!(info("acme", "roles") + info("rbac", "groups"), 0.0);
    // The RBAC site's calls are its own kinds.
    let ok = |site: &str, call: &str| {
        sum(
            &s,
            metrics::PARTNER_REQUESTS,
            &[("site", site), ("call", call), ("outcome", "ok")],
        )
    };
    assert_eq!(ok("rbac", "create_user_v2"), 1.0);
    assert_eq!(ok("acme", "create_user"), 1.0);
}
