//! Health: `/healthz` and `/readyz` in process.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;

use crate::support::{Harness, Options};

async fn get_json(h: &Harness, path: &str) -> (StatusCode, Value) {
    let res = h
        .http
        .get(format!("{}{path}", h.root))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn readyz_is_ready_with_a_reachable_migrated_store_and_healthz_always_answers() {
    let h = Harness::start(Options::default()).await;
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    for check in ["store", "migrations", "outbox"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    let (status, body) = get_json(&h, "/healthz").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[tokio::test]
async fn readyz_answers_503_naming_the_store_when_it_is_unreachable() {
    let h = Harness::start(Options::default()).await;
    h.bridge.store.close().await;
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not ready");
    assert_eq!(body["failing"], serde_json::json!(["store"]));
    assert_eq!(body["checks"]["store"], "unreachable");
    assert_eq!(body["checks"]["migrations"], "skipped");
    assert!(body["detail"]["store"].is_string(), "{body}");
    // Alive all the same: a liveness probe must not restart the bridge for its database.
    let (status, _) = get_json(&h, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn readyz_names_migrations_the_store_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/bridge.db", dir.path().display());
    let h = Harness::start(Options {
        store_url: Some(url.clone()),
        ..Options::default()
    })
    .await;
    // As if this binary were newer than the schema: its latest migration is not recorded.
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failing"], serde_json::json!(["migrations"]));
    assert_eq!(body["checks"]["store"], "ok");
    assert_eq!(body["checks"]["migrations"], "pending");
}

#[tokio::test]
async fn readyz_reports_the_outbox_stuck_only_when_a_row_keeps_failing_past_the_limit() {
    let h = Harness::start(Options::default()).await;
    // The workers are stopped: the test claims and fails rows itself.
    h.bridge.engine.shutdown().await;
    let store = &h.bridge.store;
    let now = scim_bridge::bridge::now_ms();
    let minutes_ago = |m: i64| now - m * 60_000;
    let site = vec!["acme".to_owned()];

    // A backlog waiting for 20 minutes without failures is slow, not stuck.
    store
        .mark_outbox_at("acme", &site, &["old".to_owned()], minutes_ago(20))
        .await
        .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A change failing for 5 minutes is within the limit (15 minutes by default).
    store
        .mark_outbox_at("acme", &site, &["recent".to_owned()], minutes_ago(5))
        .await
        .unwrap();
    let claimed = store
        .claim_outbox("test", 10, Duration::from_secs(60), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let item = |user: &str| claimed.iter().find(|i| i.user_id == user).unwrap();
    store
        .fail_outbox(item("recent"), "partner 503", now + 60_000)
        .await
        .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // One failing for 20 minutes is stuck.
    store
        .fail_outbox(item("old"), "partner 503", now + 60_000)
        .await
        .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failing"], serde_json::json!(["outbox"]));
    assert_eq!(body["checks"]["outbox"], "stuck");
    assert!(
        body["detail"]["outbox"]
            .as_str()
            .unwrap()
            .contains("limit 900 s"),
        "{body}"
    );
}

#[tokio::test]
async fn readyz_never_reports_the_outbox_stuck_when_the_limit_is_zero() {
    let mut opts = Options::default();
    opts.bridge.outbox_stuck_after_s = 0;
    let h = Harness::start(opts).await;
    h.bridge.engine.shutdown().await;
    let store = &h.bridge.store;
    let now = scim_bridge::bridge::now_ms();
    store
        .mark_outbox_at(
            "acme",
            &["acme".to_owned()],
            &["u".to_owned()],
            now - 86_400_000,
        )
        .await
        .unwrap();
    let item = store
        .claim_outbox("test", 1, Duration::from_secs(60), now)
        .await
        .unwrap()
        .remove(0);
    store
        .fail_outbox(&item, "boom", now + 60_000)
        .await
        .unwrap();
    let (status, body) = get_json(&h, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
