//! The binary as a person or a container runs it: `check-config`, `token new`, the sandbox, and
//! the example configuration files under `deploy/`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scim-bridge");

/// A command with no SCIM_BRIDGE_* variables inherited from the developer's shell.
pub(crate) fn bridge() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SCIM_BRIDGE_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

const API_KEY: &str = "partner-key-0123456789";
const TOKEN: &str = "scim-token-abcdefghijklmnop";

#[test]
fn check_config_prints_redacted_configuration_and_exits_zero() {
    let out = bridge()
        .arg("check-config")
        .env("SCIM_BRIDGE_SITE_NAME", "acme")
        .env("SCIM_BRIDGE_API_KEY", API_KEY)
        .env("SCIM_BRIDGE_BEARER_TOKEN", TOKEN)
        .env("SCIM_BRIDGE_INVITED_BY_EMAIL", "admin@acme.example")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("site_name = \"acme\""), "{stdout}");
    assert!(stdout.contains("***"));
    for text in [&stdout, &stderr] {
        assert!(!text.contains(API_KEY) && !text.contains(TOKEN), "{text}");
    }
}

#[test]
fn global_options_go_before_or_after_the_subcommand_and_serve_flags_only_with_serve() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[[tenants]]\nname = \"acme\"\ninvited_by_email = \"admin@acme.example\"\n\
             [[tenants.credentials.bearer_tokens]]\ntoken = \"{TOKEN}\"\n\
             [[tenants.sites]]\nsite_name = \"acme\"\napi_key = \"{API_KEY}\"\n"
        ),
    )
    .unwrap();
    for args in [
        vec!["--config", file.to_str().unwrap(), "check-config"],
        vec!["check-config", "--config", file.to_str().unwrap()],
        vec![
            "--log-format",
            "json",
            "-c",
            file.to_str().unwrap(),
            "check-config",
        ],
    ] {
        let out = bridge().args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("name = \"acme\""), "{args:?}: {stdout}");
    }
    let out = bridge()
        .args(["--listen", "127.0.0.1:0", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belong to `serve`"));
}

#[test]
fn check_config_names_the_wrong_setting_and_exits_non_zero() {
    let out = bridge()
        .arg("check-config")
        .env("SCIM_BRIDGE_SITE_NAME", "acme")
        .env("SCIM_BRIDGE_API_KEY", API_KEY)
        .env("SCIM_BRIDGE_BEARER_TOKEN", TOKEN)
        .env("SCIM_BRIDGE_INVITED_BY_EMAIL", "admin@acme.example")
        .env("SCIM_BRIDGE_DEPROVISION", "shred")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SCIM_BRIDGE_DEPROVISION"), "{stderr}");
    assert!(
        !stderr.contains(API_KEY) && !stderr.contains(TOKEN),
        "{stderr}"
    );
}

/// `check-config` reports every wrong setting at once, each by the variable that was set,
/// with its value unless it is a secret, in plain words, and a "did you mean" for a
/// mistyped variable; it exits 2.
#[test]
fn check_config_reports_every_wrong_setting_at_once_and_exits_non_zero() {
    let out = bridge()
        .arg("check-config")
        .env("SCIM_BRIDGE_SITE_NAME", "acme")
        .env("SCIM_BRIDGE_PARTNER_APIKEY", API_KEY)
        .env("SCIM_BRIDGE_BEARER_TOKEN", TOKEN)
        .env("SCIM_BRIDGE_INVITED_BY_EMAIL", "admin@acme.example")
        .env("SCIM_BRIDGE_DEPROVISION", "shred")
        .env("SCIM_BRIDGE_HTTP__MAX_BODY_BYTES", "lots")
        .env("SCIM_BRIDGE_SITE_API", "rolez")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "SCIM_BRIDGE_PARTNER_APIKEY: not a variable scim-bridge knows; did you mean \
         SCIM_BRIDGE_API_KEY?",
        "SCIM_BRIDGE_DEPROVISION: must be one of remove, strip, keep, not \"shred\"",
        "SCIM_BRIDGE_HTTP__MAX_BODY_BYTES: must be a whole number (0 or more), not \"lots\"",
        "SCIM_BRIDGE_SITE_API: must be one of groups, roles, not \"rolez\"",
        // The key the mistyped variable meant to set is missing.
        "SCIM_BRIDGE_API_KEY: missing",
    ] {
        assert!(stderr.contains(line), "{line}\nnot in:\n{stderr}");
    }
    assert!(!stderr.contains("usize"), "{stderr}");
    assert!(
        !stderr.contains(API_KEY) && !stderr.contains(TOKEN),
        "{stderr}"
    );
}

#[test]
fn token_new_prints_a_token_and_its_hash() {
    let out = bridge().args(["token", "new"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .unwrap()
        .trim()
        .to_owned();
    let hash = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sha256:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.len() >= 40);
    assert_eq!(hash, hex::encode(scim_bridge::config::sha256(&token)));
}

#[test]
fn every_variable_of_the_example_env_file_is_one_the_binary_knows() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/scim-bridge.env.example"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').unwrap();
        let v = if k.ends_with("_FILE") {
            let path = dir.path().join(k);
            std::fs::write(&path, "a-secret-value-long-enough\n").unwrap();
            path.display().to_string()
        } else {
            v.to_owned()
        };
        vars.push((k.to_owned(), v));
    }
    let config = scim_bridge::config::Config::load(&scim_bridge::config::Sources {
        file: None,
        env: Some(vars),
    })
    .unwrap();
    assert_eq!(config.tenants.len(), 1);
}

#[test]
fn the_annotated_example_file_parses_and_only_misses_its_secret_files() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/scim-bridge.example.toml"
    );
    let err = scim_bridge::config::Config::load(&scim_bridge::config::Sources {
        file: Some(path.into()),
        env: Some(vec![]),
    })
    .unwrap_err();
    // The example points at /run/secrets files that do not exist here; nothing else is wrong.
    for e in &err.0 {
        // `tenants[0].credentials.oauth.signing_key_file (tenant "acme")`
        let key = e.setting.split(" (").next().unwrap();
        assert!(key.ends_with("_file"), "unexpected error: {e}");
    }
}

/// Starts the sandbox on a free port, reads the banner, and stops it with SIGTERM.
#[test]
fn sandbox_starts_without_configuration_prints_token_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = bridge()
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("SCIM_BRIDGE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the banner on another thread, to the end, so the child never writes into a closed pipe.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut base = None;
    let mut token = None;
    let mut emulator = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(30)) {
        if let Some(rest) = line.trim().strip_prefix("SCIM base URL") {
            base = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("Partner emulator") {
            emulator = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("Bearer token") {
            token = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.contains("curl") || Instant::now() > deadline {
            assert!(line.contains("Authorization: Bearer"), "{line}");
            break;
        }
    }
    let base = base.expect("banner shows the base URL");
    let token = token.expect("banner shows the token");
    assert!(base.starts_with("http://127.0.0.1:") && base.ends_with("/scim/v2"));
    // The token authenticates; a wrong one does not.
    let client = reqwest::blocking::Client::new();
    let ok = client
        .get(format!("{base}/ServiceProviderConfig"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_ne!(ok.status().as_u16(), 401);
    let bad = client
        .get(format!("{base}/ServiceProviderConfig"))
        .bearer_auth("wrong-token")
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    // What the README promises: the printed create-user request makes a user, and the user
    // appears at the emulated partner.
    let created = client
        .post(format!("{base}/Users"))
        .bearer_auth(&token)
        .header("Content-Type", "application/scim+json")
        .body(
            r#"{"userName":"jane.doe@example.com","name":{"givenName":"Jane","familyName":"Doe"}}"#,
        )
        .send()
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let emulator = emulator.expect("banner shows the emulator");
    let site: serde_json::Value = client
        .get(format!("{emulator}/_emulator/sites/sandbox"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        site["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["email"] == "jane.doe@example.com" && u["first_name"] == "Jane"),
        "{site}"
    );
    // SIGTERM: a clean exit.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `scim-bridge reconcile` against an emulated site: a partner user unknown to SCIM is
/// reported (JSON), the exit code says "in sync" since nothing managed drifted.
#[tokio::test]
async fn reconcile_subcommand_prints_a_json_report() {
    use scim_bridge::partner::emulator::{Emulator, SiteSpec};
    let emulator = Emulator::new(vec![SiteSpec {
        name: "acme".into(),
        api_key: scim_bridge::secret::Secret::new(API_KEY),
        owner_email: "owner@acme.example.com".into(),
    }]);
    let running = emulator.clone().spawn().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let base = running.base_url.clone();
        let data = dir.path().to_owned();
        move || {
            bridge()
                .args(["reconcile", "--json"])
                .env("SCIM_BRIDGE_SITE_NAME", "acme")
                .env("SCIM_BRIDGE_API_KEY", API_KEY)
                .env("SCIM_BRIDGE_PARTNER_BASE_URL", base)
                .env("SCIM_BRIDGE_BEARER_TOKEN", TOKEN)
                .env("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example.com")
                .env("SCIM_BRIDGE_DATA_DIR", data)
                .env("SCIM_BRIDGE_LOG_FORMAT", "json")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report[0]["site"], "acme");
    assert_eq!(
        report[0]["unknown_partner_users"][0],
        "owner@acme.example.com"
    );
    assert!(!stderr.contains(API_KEY) && !stdout.contains(API_KEY));
}
