//! The operator's questions answered (issue 18): the audit log found by the names an operator
//! knows (an email, even of a deleted user; a userName; a group name in any case; a resource
//! type in any case), and `check-config` printing no credential hash.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::config::{AdminConfig, BearerTokenConfig};
use scim_bridge::secret::Secret;
use serde_json::{json, Value};

use crate::support::{Harness, Options};

const ADMIN_TOKEN: &str = "operator-admin-token-0123456789";

async fn audit(h: &Harness, query: &str) -> Vec<Value> {
    let res = h
        .http
        .get(format!("{}/admin/audit?{query}", h.root))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{query}");
    let body: Value = res.json().await.unwrap();
    body["entries"].as_array().unwrap().clone()
}

fn ops(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| format!("{} {}", e["operation"], e["resource_id"]))
        .collect()
}

/// On SQLite and (when the environment names a server) PostgreSQL: the lookup is SQL.
#[tokio::test]
async fn admin_audit_finds_a_deleted_user_by_email_a_user_by_user_name_and_a_group_by_name() {
    crate::support::for_each_backend_url(finds_by_name).await;
}

async fn finds_by_name(store_url: String) {
    let h = Harness::start(Options {
        store_url: Some(store_url),
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
    let (status, body) = h
        .post(
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "bjones",
                "name": {"givenName": "Bob", "familyName": "Jones"},
                "emails": [{"value": "Bob.Jones@example.com", "primary": true}],
                "active": true,
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bob = body["id"].as_str().unwrap().to_owned();
    let other = crate::support::create_user(&h, "other@example.com", "O", "T").await;
    let group = crate::support::create_group(&h, "Finance Team", &[&bob]).await;
    h.settle(Duration::from_secs(10)).await;

    // By userName, in another case: Bob's entries only.
    let by_name = audit(&h, "resource=BJONES").await;
    assert!(!by_name.is_empty());
    assert!(
        by_name.iter().all(|e| e["resource_id"] == bob.as_str()),
        "{:?}",
        ops(&by_name)
    );

    let (status, _) = h.delete(&format!("/Users/{bob}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    h.settle(Duration::from_secs(10)).await;

    // The user row is gone; its email still names it (the tombstone), in any case.
    let found = audit(&h, "resource=bob.jones%40EXAMPLE.com").await;
    let seen = ops(&found);
    assert!(
        found
            .iter()
            .any(|e| e["operation"] == "POST" && e["resource_id"] == bob.as_str()),
        "{seen:?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e["operation"] == "DELETE" && e["resource_id"] == bob.as_str()),
        "{seen:?}"
    );
    assert!(
        found.iter().all(|e| e["resource_id"] == bob.as_str()),
        "another resource's entry: {seen:?}"
    );
    assert!(!seen.iter().any(|s| s.contains(&other)), "{seen:?}");

    // A group by its name in another case.
    let found = audit(&h, "resource=finance%20TEAM").await;
    assert!(
        found
            .iter()
            .any(|e| e["operation"] == "POST" && e["resource_type"] == "Groups"),
        "{:?}",
        ops(&found)
    );
    assert!(found.iter().all(|e| e["resource_id"] == group.as_str()));

    // Types in any case, singular or plural, by `type` or as the resource.
    for query in ["type=group", "type=GROUPS", "resource=groups"] {
        let found = audit(&h, query).await;
        assert!(!found.is_empty(), "{query}");
        assert!(
            found.iter().all(|e| e["resource_type"] == "Groups"),
            "{query}: {:?}",
            ops(&found)
        );
    }
    let users = audit(&h, "type=user&resource=other%40example.com").await;
    assert!(!users.is_empty());
    assert!(users
        .iter()
        .all(|e| e["resource_type"] == "Users" && e["resource_id"] == other.as_str()));
    // A name nobody has finds nothing (not everything).
    assert!(audit(&h, "resource=nobody%40example.com").await.is_empty());
}

/// `check-config` prints no SHA-256 of a token: the hash of a short token can be guessed
/// offline. The admin token and a tenant's tokens given as hashes both print as `***`.
#[test]
fn check_config_prints_token_hashes_as_stars() {
    let hash = "0f".repeat(32);
    let admin_hash = "a1".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[admin]\ntoken_sha256 = \"{admin_hash}\"\n\
             [[tenants]]\nname = \"acme\"\ninvited_by_email = \"admin@acme.example\"\n\
             [[tenants.credentials.bearer_tokens]]\nname = \"okta\"\nsha256 = \"{hash}\"\n\
             [[tenants.sites]]\nsite_name = \"acme\"\napi_key = \"partner-key-0123456789\"\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_scim-bridge"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SCIM_BRIDGE_") {
            command.env_remove(k);
        }
    }
    let out = command
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("name = \"okta\""), "{stdout}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(&hash), "{text}");
        assert!(!text.contains(&admin_hash), "{text}");
    }
    // Nothing hex-shaped and hash-long is left anywhere in the output.
    let hex_words = stdout
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() >= 32)
        .count();
    assert_eq!(hex_words, 0, "{stdout}");
    assert!(stdout.contains("sha256 = \"***\""), "{stdout}");
}
