//! When `serve` starts the sandbox (issue 15, item 5): only when nothing at all is configured,
//! or with `--sandbox`. Settings without a tenant (an environment file that failed to load on a
//! production host) stop the start with an error naming what was found and what is missing;
//! the sandbox keeps its store in `./sandbox-data` (or `--data-dir`), never in the production
//! `./data`, and refuses the production folder.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::cli::bridge;

const API_KEY: &str = "partner-key-0123456789";
const TOKEN: &str = "scim-token-abcdefghijklmnop";

/// How a `serve` run ended up.
enum Outcome {
    /// It printed the sandbox banner; `data` is the banner's `Data` line.
    Sandbox { data: String, child: Child },
    /// It logged `serving` without a sandbox.
    Serving { child: Child },
    /// It exited first.
    Exited { code: Option<i32>, stderr: String },
}

impl Outcome {
    fn stop(self) {
        if let Outcome::Sandbox { mut child, .. } | Outcome::Serving { mut child } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lines_of(out: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Runs `scim-bridge serve <args>` in `cwd` with `env` (nothing inherited) until it shows the
/// sandbox banner, logs `serving`, or exits; 30 s at most.
fn serve(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut child = bridge()
        .current_dir(cwd)
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .env("SCIM_BRIDGE_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let mut err_text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while let Ok(line) = stdout.try_recv() {
            if let Some(rest) = line.trim().strip_prefix("Data") {
                return Outcome::Sandbox {
                    data: rest.trim().to_owned(),
                    child,
                };
            }
        }
        while let Ok(line) = stderr.try_recv() {
            if line.contains("\"serving\"") {
                // A sandbox prints its banner before it logs `serving`: the banner is in the
                // pipe by now, if there is one.
                while let Ok(line) = stdout.recv_timeout(Duration::from_secs(1)) {
                    if let Some(rest) = line.trim().strip_prefix("Data") {
                        return Outcome::Sandbox {
                            data: rest.trim().to_owned(),
                            child,
                        };
                    }
                }
                return Outcome::Serving { child };
            }
            err_text.push_str(&line);
            err_text.push('\n');
        }
        if let Some(status) = child.try_wait().unwrap() {
            // The rest of stderr, to its end: the reader stops (and the channel closes) at EOF.
            while let Ok(line) = stderr.recv_timeout(Duration::from_secs(10)) {
                err_text.push_str(&line);
                err_text.push('\n');
            }
            return Outcome::Exited {
                code: status.code(),
                stderr: err_text,
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve neither started nor exited within 30 s: {err_text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The single-tenant settings of a production host, less what `missing` removes.
fn production(data_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SCIM_BRIDGE_SITE_NAME", "acme".into()),
        ("SCIM_BRIDGE_API_KEY", API_KEY.into()),
        ("SCIM_BRIDGE_BEARER_TOKEN", TOKEN.into()),
        ("SCIM_BRIDGE_INVITED_BY_EMAIL", "admin@acme.example".into()),
        // The partner is never called in these tests: nothing is provisioned.
        ("SCIM_BRIDGE_PARTNER_BASE_URL", "http://127.0.0.1:9".into()),
        ("SCIM_BRIDGE_DATA_DIR", data_dir.display().to_string()),
        (
            "SCIM_BRIDGE_PUBLIC_BASE_URL",
            "https://scim.acme.example".into(),
        ),
    ]
}

#[test]
fn production_settings_without_a_tenant_stop_the_start_naming_them() {
    // What a production host has left when its env file with the tenant did not load: the
    // settings of the unit or the compose file.
    for kept in [
        vec![("SCIM_BRIDGE_PUBLIC_BASE_URL", "https://scim.acme.example")],
        vec![("SCIM_BRIDGE_LISTEN", "0.0.0.0:0")],
        vec![
            ("SCIM_BRIDGE_LISTEN", "127.0.0.1:0"),
            ("SCIM_BRIDGE_DATA_DIR", "/nonexistent/scim-bridge-data"),
            ("SCIM_BRIDGE_LOG__LEVEL", "debug"),
        ],
        vec![("SCIM_BRIDGE_METRICS_LISTEN", "127.0.0.1:0")],
    ] {
        let cwd = tempfile::tempdir().unwrap();
        match serve(cwd.path(), &[], &kept) {
            Outcome::Exited { code, stderr } => {
                assert_eq!(code, Some(2), "{kept:?}: {stderr}");
                for (name, value) in &kept {
                    if name.starts_with("SCIM_BRIDGE_LOG") {
                        assert!(!stderr.contains(name), "{kept:?}: {stderr}");
                    } else {
                        assert!(
                            stderr.contains(name),
                            "{kept:?}: {name} not named: {stderr}"
                        );
                    }
                    // Names, not values.
                    assert!(!stderr.contains(value), "{kept:?}: {stderr}");
                }
                for what in ["no tenant", "SCIM_BRIDGE_SITE_NAME", "--sandbox"] {
                    assert!(stderr.contains(what), "{kept:?}: {what}: {stderr}");
                }
            }
            Outcome::Sandbox { data, child } => {
                Outcome::Sandbox { data, child }.stop();
                panic!("{kept:?}: the sandbox started on a host with production settings");
            }
            other => {
                other.stop();
                panic!("{kept:?}: serve started");
            }
        }
        // Nothing was created: no store, no sandbox store.
        let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
        assert!(left.is_empty(), "{kept:?}: {left:?}");
    }
    // The same for check-config, which says whether `serve` would start.
    let out = bridge()
        .arg("check-config")
        .env("SCIM_BRIDGE_PUBLIC_BASE_URL", "https://scim.acme.example")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("SCIM_BRIDGE_PUBLIC_BASE_URL"), "{stderr}");
    // A configuration file without a tenant is a setting too.
    let cwd = tempfile::tempdir().unwrap();
    let file = cwd.path().join("scim-bridge.toml");
    std::fs::write(&file, "public_base_url = \"https://scim.acme.example\"\n").unwrap();
    match serve(cwd.path(), &["--config", file.to_str().unwrap()], &[]) {
        Outcome::Exited { code, stderr } => {
            assert_eq!(code, Some(2), "{stderr}");
            assert!(stderr.contains("--config"), "{stderr}");
        }
        other => {
            other.stop();
            panic!("serve started with a configuration file without a tenant");
        }
    }
}

#[test]
fn with_nothing_configured_the_sandbox_starts_with_its_store_in_sandbox_data() {
    let cwd = tempfile::tempdir().unwrap();
    // Logging and the sandbox's token are not configuration.
    let outcome = serve(
        cwd.path(),
        &["--listen", "127.0.0.1:0"],
        &[
            ("SCIM_BRIDGE_LOG__LEVEL", "info"),
            (
                "SCIM_BRIDGE_SANDBOX_TOKEN",
                "a-sandbox-token-of-some-length",
            ),
        ],
    );
    let Outcome::Sandbox { data, child } = outcome else {
        if let Outcome::Exited { stderr, .. } = &outcome {
            panic!("the sandbox did not start: {stderr}");
        }
        outcome.stop();
        panic!("serve started without the sandbox");
    };
    Outcome::Sandbox {
        data: data.clone(),
        child,
    }
    .stop();
    assert_eq!(data, "./sandbox-data");
    assert!(cwd.path().join("sandbox-data/scim-bridge.db").exists());
    assert!(
        !cwd.path().join("data").exists(),
        "the sandbox wrote into the production default ./data"
    );
}

#[test]
fn the_sandbox_flag_starts_the_sandbox_apart_from_a_production_configuration() {
    let cwd = tempfile::tempdir().unwrap();
    let prod = cwd.path().join("prod-data");
    let env = production(&prod);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // Without the flag: the configured tenant is served.
    match serve(cwd.path(), &["--listen", "127.0.0.1:0"], &env) {
        Outcome::Serving { child } => Outcome::Serving { child }.stop(),
        Outcome::Exited { stderr, .. } => panic!("serve did not start: {stderr}"),
        other => {
            other.stop();
            panic!("the sandbox started although a tenant is configured");
        }
    }
    std::fs::remove_dir_all(&prod).unwrap();
    // With it: the sandbox, in its own folder; the production folder is not touched.
    match serve(cwd.path(), &["--sandbox", "--listen", "127.0.0.1:0"], &env) {
        Outcome::Sandbox { data, child } => {
            Outcome::Sandbox {
                data: data.clone(),
                child,
            }
            .stop();
            assert_eq!(data, "./sandbox-data");
        }
        Outcome::Exited { stderr, .. } => panic!("the sandbox did not start: {stderr}"),
        other => {
            other.stop();
            panic!("--sandbox served the configured tenant");
        }
    }
    assert!(cwd.path().join("sandbox-data/scim-bridge.db").exists());
    assert!(
        !prod.exists(),
        "the sandbox wrote into the production data_dir"
    );
    // The sandbox never takes the production folder, nor its SQLite file through store.url.
    let prod_arg = prod.display().to_string();
    let store_url = format!(
        "sqlite://{}/scim-bridge.db",
        cwd.path().join("db").display()
    );
    let db_dir = cwd.path().join("db").display().to_string();
    for (args, extra) in [
        (vec!["--sandbox", "--data-dir", prod_arg.as_str()], None),
        (
            vec!["--sandbox", "--data-dir", db_dir.as_str()],
            Some(("SCIM_BRIDGE_STORE__URL", store_url.as_str())),
        ),
    ] {
        let mut env = env.clone();
        env.extend(extra);
        match serve(cwd.path(), &args, &env) {
            Outcome::Exited { code, stderr } => {
                assert_eq!(code, Some(2), "{args:?}: {stderr}");
                assert!(stderr.contains("--data-dir"), "{args:?}: {stderr}");
            }
            other => {
                other.stop();
                panic!("{args:?}: the sandbox started in the production store");
            }
        }
    }
    assert!(!prod.exists());
    // With nothing configured, the production default ./data is refused too.
    match serve(
        cwd.path(),
        &["--data-dir", "./data", "--listen", "127.0.0.1:0"],
        &[],
    ) {
        Outcome::Exited { code, stderr } => assert_eq!(code, Some(2), "{stderr}"),
        other => {
            other.stop();
            panic!("the sandbox started in ./data");
        }
    }
}

#[test]
fn the_sandbox_emulates_an_rbac_site_when_asked() {
    let cwd = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let emulator = format!("127.0.0.1:{port}");
    // The variable is not configuration: with nothing else set, the sandbox still starts.
    let outcome = serve(
        cwd.path(),
        &["--listen", "127.0.0.1:0", "--emulator-listen", &emulator],
        &[("SCIM_BRIDGE_SANDBOX_SITE_API", "roles")],
    );
    let Outcome::Sandbox { data, child } = outcome else {
        if let Outcome::Exited { stderr, .. } = &outcome {
            panic!("the sandbox did not start: {stderr}");
        }
        outcome.stop();
        panic!("serve started without the sandbox");
    };
    let site: serde_json::Value =
        reqwest::blocking::get(format!("http://{emulator}/_emulator/sites/sandbox"))
            .and_then(|r| r.json())
            .unwrap();
    Outcome::Sandbox { data, child }.stop();
    assert_eq!(site["kind"], "rbac", "{site}");
    assert!(
        site["roles"].as_array().is_some_and(|r| r.len() == 5),
        "{site}"
    );
}

/// A port free at the time of asking, on the loopback address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `n` authenticated GETs of `path` from 8 threads at once; returns every status and
/// the body of the first 429.
fn burst(base: &str, token: &str, n: usize) -> (Vec<u16>, Option<serde_json::Value>) {
    let client = reqwest::blocking::Client::new();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, token) = (
                client.clone(),
                format!("{base}/scim/v2/ServiceProviderConfig"),
                token.to_owned(),
            );
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for _ in 0..n / 8 {
                    let res = client.get(&url).bearer_auth(&token).send().unwrap();
                    let status = res.status().as_u16();
                    let body = (status == 429).then(|| res.json::<serde_json::Value>().unwrap());
                    out.push((status, body));
                }
                out
            })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut first_429 = None;
    for t in threads {
        for (status, body) in t.join().unwrap() {
            statuses.push(status);
            if first_429.is_none() {
                first_429 = body;
            }
        }
    }
    (statuses, first_429)
}

/// Conformance tools the README points at the sandbox (scim2-cli's `test`) send bursts above
/// a production tenant's budget (200/s, 400 at once): the sandbox has no inbound limit unless
/// one is set, and a set one answers 429 naming the setting that raises it.
#[test]
fn the_sandbox_takes_a_conformance_tools_burst_unless_a_rate_limit_is_set() {
    let cwd = tempfile::tempdir().unwrap();
    let token = "a-sandbox-token-of-some-length";
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    let outcome = serve(
        cwd.path(),
        &["--listen", &listen],
        &[("SCIM_BRIDGE_SANDBOX_TOKEN", token)],
    );
    let Outcome::Sandbox { data, child } = outcome else {
        if let Outcome::Exited { stderr, .. } = &outcome {
            panic!("the sandbox did not start: {stderr}");
        }
        outcome.stop();
        panic!("serve started without the sandbox");
    };
    // Well above 400 + 200/s for as long as the burst can take on a busy machine.
    let (statuses, refused) = burst(&base, token, 1200);
    Outcome::Sandbox { data, child }.stop();
    assert_eq!(statuses.len(), 1200);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the sandbox refused part of a burst: {refused:?}"
    );

    // A limit the operator sets is kept, and its 429 names the setting to raise.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    let outcome = serve(
        cwd.path(),
        &["--sandbox", "--listen", &listen],
        &[
            ("SCIM_BRIDGE_SANDBOX_TOKEN", token),
            ("SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND", "1"),
            ("SCIM_BRIDGE_HTTP__RATE_LIMIT__BURST", "5"),
        ],
    );
    let Outcome::Sandbox { data, child } = outcome else {
        if let Outcome::Exited { stderr, .. } = &outcome {
            panic!("the sandbox did not start: {stderr}");
        }
        outcome.stop();
        panic!("serve started without the sandbox");
    };
    let (statuses, refused) = burst(&base, token, 40);
    Outcome::Sandbox { data, child }.stop();
    assert!(statuses.contains(&429), "{statuses:?}");
    let detail = refused.unwrap()["detail"].as_str().unwrap().to_owned();
    for named in [
        "Too many requests for this tenant",
        "http.rate_limit.per_second",
        "SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND",
        "SCIM_BRIDGE_HTTP__RATE_LIMIT__BURST",
    ] {
        assert!(detail.contains(named), "{named} not in: {detail}");
    }
}
