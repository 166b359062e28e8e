//! Partner credentials and known-bad sites (issue 18): a wrong partner API key is visible at
//! once (`status` and its exit code, `/readyz` degraded but 200, the
//! `scim_bridge_partner_credentials_ok` gauge, `check-config --online`), a write to a site
//! whose key is refused or whose circuit is open answers 503 with `Retry-After` at once with
//! its intent kept, the refused key parks the work without calling the partner again, and the
//! work resumes by itself once a credential check passes; recovery clears `status`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use scim_bridge::partner::client::KeyCheck;
use scim_bridge::partner::emulator::faults::Faults;
use serde_json::{json, Value};

use crate::support::{
    create_group, create_user, partner_user_of, under_roles, Harness, Options, OWNER, TOKEN,
};

const BIN: &str = env!("CARGO_BIN_EXE_scim-bridge");
/// The key the harness configures for site `acme` (`key-<site>`).
const GOOD_KEY: &str = "key-acme";
/// The key the partner accepts after an operator rotated it in the vendor's UI.
const ROTATED_KEY: &str = "rotated-key-the-bridge-does-not-have";

/// A configuration file for the binary: tenant `acme`, site `acme` of the emulator at
/// `partner` with the bridge's key, on the harness's store.
struct Cli {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Cli {
    fn new(dir: tempfile::TempDir, store_url: &str, partner: &str) -> Cli {
        let toml = format!(
            "data_dir = \"{}\"\n\
             [store]\nurl = \"{store_url}\"\n\
             [bridge.partner]\nmax_attempts = 1\nrequest_timeout_ms = 5000\n\
             [[tenants]]\nname = \"acme\"\ninvited_by_email = \"{OWNER}\"\n\
             [[tenants.credentials.bearer_tokens]]\ntoken = \"a-token-long-enough-for-the-bridge\"\n\
             [[tenants.sites]]\nsite_name = \"acme\"\napi_key = \"{GOOD_KEY}\"\nbase_url = \"{partner}\"\n",
            dir.path().display()
        );
        let toml = if under_roles() {
            format!("{toml}api = \"roles\"\n")
        } else {
            toml
        };
        let config = dir.path().join("scim-bridge.toml");
        std::fs::write(&config, toml).unwrap();
        Cli { _dir: dir, config }
    }

    /// Runs the binary off the async runtime; (exit code, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("SCIM_BRIDGE_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--config").arg(&self.config).args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        for secret in [GOOD_KEY, ROTATED_KEY] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "a partner key was printed:\n{stdout}\n{stderr}"
            );
        }
        (out.status.code(), stdout, stderr)
    }
}

/// A harness on a SQLite store the binary can read too, and the binary's configuration.
async fn start(opts: Options) -> (Harness, Cli) {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}/store.db", dir.path().display());
    let h = Harness::start(Options {
        store_url: Some(store_url.clone()),
        ..opts
    })
    .await;
    let cli = Cli::new(dir, &store_url, h.partner_base());
    (h, cli)
}

async fn readyz(h: &Harness) -> (StatusCode, Value) {
    let res = h
        .http
        .get(format!("{}/readyz", h.root))
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

/// A membership PATCH adding `user` to `group`: status, `Retry-After`, body, time taken.
async fn add_member(
    h: &Harness,
    group: &str,
    user: &str,
) -> (StatusCode, Option<String>, Value, Duration) {
    let started = Instant::now();
    let res = h
        .http
        .patch(format!("{}/Groups/{group}", h.base))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": user}]}]
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = res.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, retry_after, body, started.elapsed())
}

fn gauge_line(h: &Harness, name: &str) -> Option<String> {
    let wanted = format!("{name}{{tenant=\"acme\",site=\"acme\"}} ");
    h.metrics
        .render()
        .lines()
        .find(|l| l.starts_with(&wanted))
        .map(|l| l.to_owned())
}

async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test]
async fn a_refused_key_shows_in_status_readyz_metrics_and_check_config_until_a_check_passes() {
    let (h, cli) = start(Options::default()).await;

    // The key works: a check says so everywhere.
    let checks = h.bridge.check_credentials().await;
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].result, KeyCheck::Accepted, "{checks:?}");
    let (code, out, _) = cli.run(&["check-config", "--online"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("credentials: tenant acme site acme"), "{out}");
    assert!(out.contains("): ok"), "{out}");
    assert_eq!(
        gauge_line(&h, "scim_bridge_partner_credentials_ok").as_deref(),
        Some("scim_bridge_partner_credentials_ok{tenant=\"acme\",site=\"acme\"} 1")
    );
    assert_eq!(
        gauge_line(&h, "scim_bridge_partner_circuit_open").as_deref(),
        Some("scim_bridge_partner_circuit_open{tenant=\"acme\",site=\"acme\"} 0")
    );

    // The key is rotated at the partner: the bridge's is refused.
    assert!(h.emulator.set_site_key("acme", ROTATED_KEY));
    let checks = h.bridge.check_credentials().await;
    assert_eq!(checks[0].result, KeyCheck::Refused, "{checks:?}");

    let (code, out, _) = cli.run(&["check-config", "--online"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("site acme") && out.contains("REFUSED"),
        "{out}"
    );

    let (status, body) = readyz(&h).await;
    assert_eq!(status, StatusCode::OK, "degraded, never unready: {body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["degraded"], json!(["credentials"]), "{body}");
    assert_eq!(body["checks"]["credentials"], "refused", "{body}");
    assert!(!body.to_string().contains(GOOD_KEY), "{body}");

    assert_eq!(
        gauge_line(&h, "scim_bridge_partner_credentials_ok").as_deref(),
        Some("scim_bridge_partner_credentials_ok{tenant=\"acme\",site=\"acme\"} 0")
    );

    let (code, out, _) = cli.run(&["status"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("credentials: REFUSED by the partner"), "{out}");
    assert!(
        out.contains("tenant acme site acme: the partner REFUSES the site's API key"),
        "{out}"
    );
    assert!(out.contains("check-config --online"), "{out}");
    let (_, json_out, _) = cli.run(&["status", "--json"]).await;
    let report: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(
        report["tenants"][0]["sites"][0]["credentials"]["state"], "refused",
        "{report}"
    );

    // A reconcile against the refusing partner fails; status says what clears it.
    let (code, out, err) = cli.run(&["reconcile"]).await;
    assert_ne!(code, Some(0), "{out}{err}");
    let (code, out, _) = cli.run(&["status"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "the last reconcile failed; run `scim-bridge reconcile --tenant acme --apply`"
        ),
        "{out}"
    );

    // The operator fixes the key; the next check clears everything by itself.
    assert!(h.emulator.set_site_key("acme", GOOD_KEY));
    let checks = h.bridge.check_credentials().await;
    assert_eq!(checks[0].result, KeyCheck::Accepted, "{checks:?}");
    let (status, body) = readyz(&h).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["credentials"], "ok", "{body}");
    assert_eq!(
        gauge_line(&h, "scim_bridge_partner_credentials_ok").as_deref(),
        Some("scim_bridge_partner_credentials_ok{tenant=\"acme\",site=\"acme\"} 1")
    );
    let (code, out, _) = cli.run(&["status"]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("credentials: ok"), "{out}");
    assert!(
        out.contains("before the partner accepted the site's API key again"),
        "the failed reconcile is explained, as a warning: {out}"
    );
    let (code, out, _) = cli.run(&["check-config", "--online"]).await;
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn a_write_to_a_site_whose_key_is_refused_answers_503_at_once_and_is_applied_after_the_fix() {
    let (h, _cli) = start(Options::default()).await;
    let user = create_user(&h, "jane@example.com", "Jane", "Doe").await;
    let group = create_group(&h, "Analysts", &[]).await;
    create_user(&h, "leaver@example.com", "Lee", "Ver").await;

    assert!(h.emulator.set_site_key("acme", ROTATED_KEY));
    assert_eq!(
        h.bridge.check_credentials().await[0].result,
        KeyCheck::Refused
    );
    let calls_before = h.emulator.call_log().len();

    let (status, retry_after, body, took) = add_member(&h, &group, &user).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        took < Duration::from_secs(5),
        "answered after {took:?}, not at once"
    );
    assert!(retry_after.is_some(), "503 without Retry-After");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("'acme'") && detail.contains("API key"),
        "{body}"
    );
    assert!(!body.to_string().contains(GOOD_KEY), "{body}");

    // The intent is stored: the group has the member in SCIM.
    let (_, g) = h.get(&format!("/Groups/{group}")).await;
    assert_eq!(g["members"][0]["value"], user, "{g}");

    // A name change is stored and answered at once as before (2xx), not after the wait.
    let started = Instant::now();
    let (status, body) = h
        .patch(
            &format!("/Users/{user}"),
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "name.givenName", "value": "Janet"}]
            }),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A deletion is stored and answered 503 at once, the site named.
    let leaver = scim_id_of_leaver(&h).await;
    let started = Instant::now();
    let (status, body) = h.delete(&format!("/Users/{leaver}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("'acme'"),
        "{body}"
    );

    // The engine parks the work without calling the partner with the refused key.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let calls = h.emulator.call_log();
    assert_eq!(
        calls.len(),
        calls_before,
        "calls with a refused key: {:?}",
        &calls[calls_before..]
    );
    assert!(!partner_user_of(&h.emulator, "acme", "jane@example.com")
        .unwrap()
        .groups
        .iter()
        .any(|g| g == "Analysts"));

    // The key is fixed; a passing check resumes the parked work by itself.
    assert!(h.emulator.set_site_key("acme", GOOD_KEY));
    assert_eq!(
        h.bridge.check_credentials().await[0].result,
        KeyCheck::Accepted
    );
    let applied = until(Duration::from_secs(10), || {
        partner_user_of(&h.emulator, "acme", "jane@example.com")
            .is_some_and(|u| u.groups.iter().any(|g| g == "Analysts"))
    })
    .await;
    assert!(
        applied,
        "the parked membership was not carried out after the fix"
    );
    h.settle(Duration::from_secs(10)).await;
    // The leaver answered 503 is removed too: nothing acknowledged or stored is lost.
    assert!(
        partner_user_of(&h.emulator, "acme", "leaver@example.com").is_none(),
        "the leaver kept access after the key was fixed"
    );
}

/// A 403 to one write (a change the partner refuses for that user: the key's owner, a seat
/// limit) is not a refused key: the site's other work goes on, and nothing is parked.
#[tokio::test]
async fn a_403_to_one_write_does_not_park_the_sites_work() {
    use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
    use scim_bridge::partner::CallKind;
    let (h, _cli) = start(Options::default()).await;
    let stuck = create_user(&h, "stuck@example.com", "Stu", "Ck").await;
    h.settle(Duration::from_secs(10)).await;
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
                    status: 403,
                    retry_after_secs: None,
                },
            }],
            ..Faults::default()
        },
    );
    let group = create_group(&h, "Analysts", &[]).await;
    let (status, _, body, _) = add_member(&h, &group, &stuck).await;
    // The one site refused the change: the write is stored and the IdP hears it failed.
    assert!(!status.is_client_error(), "{status} {body}");
    let refused = until(Duration::from_secs(10), || {
        h.emulator
            .call_log()
            .iter()
            .any(|c| c.status == 403 && c.email.as_deref() == Some("stuck@example.com"))
    })
    .await;
    assert!(refused, "the 403 fault never fired");
    // Another user's create goes through: the key is not taken as refused.
    create_user(&h, "joiner@example.com", "Jo", "Iner").await;
    let joined = until(Duration::from_secs(10), || {
        partner_user_of(&h.emulator, "acme", "joiner@example.com").is_some()
    })
    .await;
    assert!(joined, "the site's other work stopped after one 403");
    let client = h
        .bridge
        .tenant("acme")
        .unwrap()
        .site("acme")
        .unwrap()
        .client
        .clone();
    assert!(!client.key_refused());
    // The refused row fails (reported, retried), it is not parked.
    let failing = h
        .bridge
        .store
        .outbox_failures(Some("acme"), 10)
        .await
        .unwrap();
    assert!(
        failing.iter().any(|f| f.user_id == stuck),
        "the 403 row is not failing: {failing:?}"
    );
    let (_, ready) = readyz(&h).await;
    assert!(
        !ready.to_string().contains("credentials\":\"refused"),
        "{ready}"
    );
    h.emulator.set_faults("acme", Faults::default());
}

/// The SCIM id of `leaver@example.com`, created before the key was refused.
async fn scim_id_of_leaver(h: &Harness) -> String {
    let (_, found) = h
        .get("/Users?filter=userName%20eq%20%22leaver@example.com%22")
        .await;
    found["Resources"][0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_write_to_a_site_whose_circuit_is_open_answers_503_at_once_and_lands_later() {
    let mut opts = Options::default();
    opts.bridge.partner.circuit_failure_threshold = 1;
    opts.bridge.partner.circuit_open_ms = 3_000;
    opts.bridge.partner.max_attempts = 1;
    opts.bridge.retry_base_ms = 200;
    opts.bridge.retry_max_ms = 1_000;
    let (h, _cli) = start(opts).await;
    let jane = create_user(&h, "jane@example.com", "Jane", "Doe").await;
    let bob = create_user(&h, "bob@example.com", "Bob", "Roe").await;
    let group = create_group(&h, "Analysts", &[]).await;

    // The partner fails every call: the first write opens the circuit.
    h.emulator.set_faults(
        "acme",
        Faults {
            error_share: 1.0,
            error_statuses: vec![503],
            ..Faults::default()
        },
    );
    let (status, _, body, _) = add_member(&h, &group, &jane).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(h.bridge.tenants["acme"].sites[0].client.circuit_open());
    assert_eq!(
        gauge_line(&h, "scim_bridge_partner_circuit_open").as_deref(),
        Some("scim_bridge_partner_circuit_open{tenant=\"acme\",site=\"acme\"} 1")
    );

    // While it is open, a write answers at once, naming the site, intent kept.
    let (status, retry_after, body, took) = add_member(&h, &group, &bob).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=3).contains(&secs), "Retry-After {secs}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("'acme'"),
        "{body}"
    );

    // The partner recovers: both changes land without the IdP sending them again.
    h.emulator.set_faults("acme", Faults::default());
    let landed = until(Duration::from_secs(20), || {
        ["jane@example.com", "bob@example.com"].iter().all(|e| {
            partner_user_of(&h.emulator, "acme", e)
                .is_some_and(|u| u.groups.iter().any(|g| g == "Analysts"))
        })
    })
    .await;
    assert!(
        landed,
        "the stored intent was not carried out after the circuit closed"
    );
}

/// A leaver's DELETE while one of two sites refuses the key: 503 at once for that site, and
/// the site that answers has the account removed at once, not after the key is fixed.
#[tokio::test]
async fn a_delete_with_one_site_refusing_its_key_removes_the_account_at_the_other_at_once() {
    let (h, _cli) = start(Options {
        sites: vec!["acme", "beta"],
        ..Options::default()
    })
    .await;
    let leaver = create_user(&h, "leaver@example.com", "Lee", "Ver").await;
    h.settle(Duration::from_secs(10)).await;
    assert!(partner_user_of(&h.emulator, "beta", "leaver@example.com").is_some());
    assert!(h.emulator.set_site_key("acme", ROTATED_KEY));
    let checks = h.bridge.check_credentials().await;
    assert!(
        checks.iter().any(|c| c.result == KeyCheck::Refused),
        "{checks:?}"
    );

    let started = Instant::now();
    let (status, body) = h.delete(&format!("/Users/{leaver}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let gone = until(Duration::from_secs(3), || {
        partner_user_of(&h.emulator, "beta", "leaver@example.com").is_none()
    })
    .await;
    assert!(gone, "the leaver kept access at the site that answers");
    // The refusing site still has it, parked until the key is fixed; then it goes too.
    assert!(partner_user_of(&h.emulator, "acme", "leaver@example.com").is_some());
    assert!(h.emulator.set_site_key("acme", GOOD_KEY));
    h.bridge.check_credentials().await;
    let gone = until(Duration::from_secs(10), || {
        partner_user_of(&h.emulator, "acme", "leaver@example.com").is_none()
    })
    .await;
    assert!(
        gone,
        "the leaver kept access at the site whose key was fixed"
    );
}
