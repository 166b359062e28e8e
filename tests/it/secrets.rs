//! The secrets requirement, tested on the binary: partner API keys, bearer tokens, JWT keys,
//! OAuth client secrets, Basic passwords (and their hashes) and the admin token never appear in
//! the log of a whole run at trace level, in the bridge's HTTP answers, in `check-config`
//! output, in configuration errors, or in the `audit` command's output.
//!
//! Every secret is a fresh random string, so "not a substring of the output" means what it says.
//! Every search also checks that the text searched holds the events that would carry a leak
//! (failed authentications, partner failures, audit lines), so no test passes by logging nothing.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::{json, Value};

use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::CallKind;
use scim_bridge::secret::Secret;

const BIN: &str = env!("CARGO_BIN_EXE_scim-bridge");

/// Generous: the machine running the tests may be busy.
const STARTUP: Duration = Duration::from_secs(60);

const TENANT: &str = "acme";
const SITE: &str = "acme";
const OWNER: &str = "owner@acme.example.com";
const BASIC_USER: &str = "okta";
const CLIENT_ID: &str = "entra-client";
const JWT_ISSUER: &str = "https://idp.secrets.example.test/";
const JWT_AUDIENCE: &str = "api://scim-bridge-secrets";

/// A command with no SCIM_BRIDGE_* variables inherited from the developer's shell.
fn bridge() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SCIM_BRIDGE_") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

/// A distinctive random value: a substring search for it finds nothing else.
fn random(label: &str) -> String {
    format!("{label}-{}", uuid::Uuid::new_v4().simple())
}

fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

// ---------------------------------------------------------------------------------------------
// Child processes whose whole output is kept.

/// One output stream of a child, read to the end on a thread: every line is kept, and sent to
/// whoever waits for one.
struct Stream {
    lines: Arc<Mutex<Vec<String>>>,
    fresh: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Stream {
    fn read(from: impl Read + Send + 'static) -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, fresh) = mpsc::channel();
        let kept = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Self {
            lines,
            fresh,
            reader: Some(reader),
        }
    }

    /// The first new line `pick` accepts, mapped by it.
    fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.fresh.recv_timeout(left) {
                Ok(line) => {
                    if let Some(t) = pick(&line) {
                        return t;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("output ended before {what}:\n{}", self.text())
                }
            }
        }
    }

    fn text(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

/// A running child. Dropped without [`Proc::stop`] (a failed assertion), it is killed.
struct Proc {
    child: Child,
    stdout: Stream,
    stderr: Stream,
}

/// What a stopped child left.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Proc {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Stream::read(child.stdout.take().unwrap());
        let stderr = Stream::read(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// SIGTERM, then waits for the exit and the end of both streams.
    fn stop(mut self) -> Finished {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + STARTUP;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {STARTUP:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        for stream in [&mut self.stdout, &mut self.stderr] {
            if let Some(reader) = stream.reader.take() {
                reader.join().unwrap();
            }
        }
        Finished {
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to its end.
fn run(mut command: Command) -> Finished {
    let out = command.stdin(Stdio::null()).output().unwrap();
    Finished {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// The secrets and the configuration holding them.

/// Every secret of the configuration, each a fresh random value.
struct Secrets {
    api_key: String,
    token: String,
    basic_password: String,
    basic_hash: String,
    jwt_secret: String,
    signing_key: String,
    client_secret: String,
    admin_token: String,
}

impl Secrets {
    fn new() -> Self {
        let basic_password = random("basic-password");
        Self {
            api_key: random("partner-api-key"),
            token: random("static-bearer-token"),
            basic_hash: scim_bridge::http::auth::basic::hash_password(&basic_password).unwrap(),
            basic_password,
            jwt_secret: random("jwt-hs256-secret"),
            signing_key: random("oauth-signing-key"),
            client_secret: random("oauth-client-secret"),
            admin_token: random("admin-token"),
        }
    }

    /// `(what, value)` of every configured secret, and the forms a client sends them in.
    fn all(&self) -> Vec<(String, String)> {
        // The digest part of the PHC string, on its own.
        let digest = self.basic_hash.rsplit('$').next().unwrap().to_owned();
        let mut all = vec![
            ("partner API key", self.api_key.clone()),
            ("static bearer token", self.token.clone()),
            ("Basic password", self.basic_password.clone()),
            ("Basic password hash", self.basic_hash.clone()),
            ("Basic password hash digest", digest),
            ("JWT HS256 secret", self.jwt_secret.clone()),
            ("OAuth signing key", self.signing_key.clone()),
            ("OAuth client secret", self.client_secret.clone()),
            ("admin token", self.admin_token.clone()),
            (
                "Basic credentials, encoded",
                base64(&format!("{BASIC_USER}:{}", self.basic_password)),
            ),
            (
                "OAuth client credentials, encoded",
                base64(&format!("{CLIENT_ID}:{}", self.client_secret)),
            ),
        ];
        all.retain(|(_, v)| !v.is_empty());
        all.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// The configuration file of one tenant with every kind of credential, logging at `level` as
/// JSON.
fn write_config(dir: &Path, emulator: &str, s: &Secrets, level: &str) -> PathBuf {
    let db = dir.join("bridge.db");
    let text = format!(
        r#"listen = "127.0.0.1:0"
data_dir = "{dir}"

[store]
url = "sqlite://{db}?mode=rwc"

[log]
level = "{level}"
format = "json"

[admin]
token = "{admin}"

# Quick partner retries, so a failing partner answers within the test's time.
[bridge.partner]
max_attempts = 2
backoff_base_ms = 10
backoff_max_ms = 50

[[tenants]]
name = "{TENANT}"
base_path = "/scim/v2"
invited_by_email = "{OWNER}"

[[tenants.credentials.bearer_tokens]]
name = "okta-token"
token = "{token}"

[[tenants.credentials.basic]]
name = "okta-basic"
username = "{BASIC_USER}"
password_hash = "{hash}"

[[tenants.credentials.jwt]]
name = "idp-jwt"
issuer = "{JWT_ISSUER}"
audience = "{JWT_AUDIENCE}"
hs256_secret = "{jwt}"

[tenants.credentials.oauth]
signing_key = "{signing}"

[[tenants.credentials.oauth.clients]]
name = "entra-oauth"
client_id = "{CLIENT_ID}"
client_secret = "{client_secret}"

[[tenants.sites]]
base_url = "{emulator}"
site_name = "{SITE}"
api_key = "{api_key}"
"#,
        dir = dir.display(),
        db = db.display(),
        admin = s.admin_token,
        token = s.token,
        hash = s.basic_hash,
        jwt = s.jwt_secret,
        signing = s.signing_key,
        client_secret = s.client_secret,
        api_key = s.api_key,
    );
    let path = dir.join("scim-bridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// Searching output.

/// Fails naming the secret and the line it is in.
fn assert_absent(place: &str, text: &str, secrets: &[(String, String)]) {
    for (what, value) in secrets {
        if let Some(line) = text.lines().find(|l| l.contains(value.as_str())) {
            panic!("the {what} appears in {place}:\n{line}");
        }
    }
}

/// The JSON log lines of a stream (anything else is skipped).
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

fn has_message(lines: &[Value], text: &str) -> bool {
    lines.iter().any(|l| message(l) == text)
}

/// True for an event logged inside a span called `name`.
fn in_span(line: &Value, name: &str) -> bool {
    line["span"]["name"] == name
        || line["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["name"] == name))
}

/// Asserts the log holds what a leak would ride on: without these lines, a clean search
/// proves nothing.
fn assert_log_is_substantial(lines: &[Value], expected: &[&str]) {
    assert!(lines.len() >= 50, "only {} JSON log lines", lines.len());
    assert!(
        lines.iter().any(|l| in_span(l, "partner_call")),
        "no event inside a partner_call span"
    );
    assert!(
        lines.iter().any(|l| l["target"] == "audit"),
        "no audit log line"
    );
    for text in expected {
        assert!(has_message(lines, text), "no log line '{text}'");
    }
}

// ---------------------------------------------------------------------------------------------
// The partner emulator and the bridge as processes.

struct Emulator {
    proc: Proc,
    url: String,
}

impl Emulator {
    fn start(api_key: &str) -> Self {
        let mut command = bridge();
        command.args([
            "partner-emulator",
            "--listen",
            "127.0.0.1:0",
            "--site",
            &format!("{SITE}:{api_key}:{OWNER}"),
        ]);
        let proc = Proc::spawn(command);
        let url = proc.stdout.wait_for("the emulator's address", |l| {
            l.strip_prefix("partner emulator listening on ")
                .map(|u| u.trim().to_owned())
        });
        Self { proc, url }
    }

    /// Replaces the site's faults with `script`.
    fn script(&self, script: Vec<ScriptedFault>) {
        let faults = Faults {
            script,
            ..Faults::default()
        };
        let res = Client::new()
            .put(format!("{}/_emulator/sites/{SITE}/faults", self.url))
            .json(&faults)
            .send()
            .unwrap();
        assert!(res.status().is_success(), "{:?}", res.text());
    }
}

fn fail(call: CallKind, count: u32, status: u16) -> ScriptedFault {
    ScriptedFault {
        call: Some(call),
        count,
        action: FaultAction::Status {
            status,
            retry_after_secs: None,
        },
    }
}

/// The bridge serving `config`; `base` is its root URL.
struct Bridge {
    proc: Proc,
    base: String,
}

impl Bridge {
    fn start(config: &Path) -> Self {
        let mut command = bridge();
        command.arg("--config").arg(config);
        let proc = Proc::spawn(command);
        // The `serving` line names the address the listener was bound to.
        let listen = proc.stderr.wait_for("the `serving` log line", |l| {
            let v: Value = serde_json::from_str(l).ok()?;
            if message(&v) != "serving" {
                return None;
            }
            v["fields"]["listen"].as_str().map(str::to_owned)
        });
        let base = format!("http://{listen}");
        wait_healthy(&base);
        Self { proc, base }
    }
}

fn wait_healthy(base: &str) {
    let client = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send() {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{base}/healthz never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// An HTTP client that keeps every answer of the bridge.

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    Basic(String, String),
}

/// One answer of the bridge, as text: status line, headers, body.
struct Answer {
    text: String,
    /// The token endpoint's success: its body is the access token, by design.
    issues_a_token: bool,
}

struct Http {
    client: Client,
    answers: Vec<Answer>,
    requests: usize,
}

impl Http {
    fn new() -> Self {
        Self {
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            answers: Vec::new(),
            requests: 0,
        }
    }

    /// Sends, keeps the answer, and returns the status, the body as JSON (Null when it is
    /// not), and the request id it was sent with.
    fn send(&mut self, request: RequestBuilder, auth: &Auth) -> (u16, Value, String) {
        self.requests += 1;
        let request_id = format!("secrets-test-{}", self.requests);
        let request = match auth {
            Auth::None => request,
            Auth::Bearer(t) => request.bearer_auth(t),
            Auth::Basic(u, p) => request.basic_auth(u, Some(p)),
        };
        let res = request.header("X-Request-Id", &request_id).send().unwrap();
        let status = res.status().as_u16();
        let mut text = format!("HTTP {status}\n");
        for (name, value) in res.headers() {
            text.push_str(&format!(
                "{name}: {}\n",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        let body = res.text().unwrap();
        text.push_str(&body);
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        self.answers.push(Answer {
            issues_a_token: status == 200 && json["access_token"].is_string(),
            text,
        });
        (status, json, request_id)
    }

    fn get(&mut self, url: &str, auth: &Auth) -> (u16, Value, String) {
        let r = self.client.get(url);
        self.send(r, auth)
    }

    fn post(&mut self, url: &str, auth: &Auth, body: Value) -> (u16, Value, String) {
        let r = self
            .client
            .post(url)
            .header("Content-Type", "application/scim+json")
            .body(body.to_string());
        self.send(r, auth)
    }

    fn patch(&mut self, url: &str, auth: &Auth, body: Value) -> (u16, Value, String) {
        let r = self
            .client
            .patch(url)
            .header("Content-Type", "application/scim+json")
            .body(body.to_string());
        self.send(r, auth)
    }

    /// A token request; `basic` sends the client credentials by HTTP Basic, else in the form.
    fn token(&mut self, base: &str, secret: &str, basic: bool) -> (u16, Value, String) {
        let url = format!("{base}/oauth/token");
        let r = self
            .client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded");
        let (r, auth) = if basic {
            (
                r.body("grant_type=client_credentials"),
                Auth::Basic(CLIENT_ID.into(), secret.into()),
            )
        } else {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("client_id", CLIENT_ID)
                .append_pair("client_secret", secret)
                .finish();
            (r.body(form), Auth::None)
        };
        self.send(r, &auth)
    }
}

fn user(email: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "active": true,
    })
}

fn add_member(id: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}],
    })
}

/// An HS256 JWT that expired an hour ago, for the configured issuer and audience.
fn expired_jwt(secret: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({
            "iss": JWT_ISSUER,
            "aud": JWT_AUDIENCE,
            "sub": "idp",
            "iat": now - 7200,
            "nbf": now - 7200,
            "exp": now - 3600,
        }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// A configured bridge at trace level, driven with every credential right and wrong, the token
/// endpoint, the admin endpoint and a failing partner: neither its log nor its answers hold
/// any secret, nor any credential a client presented.
#[test]
fn full_configured_run_at_trace_level_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let s = Secrets::new();
    let emulator = Emulator::start(&s.api_key);
    let config = write_config(dir.path(), &emulator.url, &s, "trace");
    let server = Bridge::start(&config);
    let scim = format!("{}/scim/v2", server.base);
    let mut http = Http::new();

    // Credentials a client presents: the test sends them, so none may be logged either.
    let wrong_token = random("wrong-bearer-token");
    let wrong_password = random("wrong-basic-password");
    let wrong_client_secret = random("wrong-client-secret");
    let wrong_admin_token = random("wrong-admin-token");
    let other_secret = random("another-hs256-secret");
    let jwt = scim_bridge::http::auth::jwt::issue_hs256(
        &Secret::new(s.jwt_secret.as_str()),
        JWT_ISSUER,
        JWT_AUDIENCE,
        "idp",
        600,
    )
    .unwrap();
    let jwt_other_key = scim_bridge::http::auth::jwt::issue_hs256(
        &Secret::new(other_secret.as_str()),
        JWT_ISSUER,
        JWT_AUDIENCE,
        "idp",
        600,
    )
    .unwrap();
    let jwt_expired = expired_jwt(&s.jwt_secret);
    // A token as the tenant's own endpoint would issue it, signed with another key.
    let forged_access_token = scim_bridge::http::auth::jwt::issue_hs256(
        &Secret::new(other_secret.as_str()),
        &scim,
        &scim,
        CLIENT_ID,
        600,
    )
    .unwrap();

    // The token endpoint, with the client credentials in the form and by Basic.
    let mut access_tokens = Vec::new();
    for basic in [false, true] {
        let (status, body, _) = http.token(&scim, &s.client_secret, basic);
        assert_eq!(status, 200, "{body}");
        access_tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }

    // Every credential, right: read, create a user, add it to a group.
    let token = Auth::Bearer(s.token.clone());
    let (status, body, _) = http.post(
        &format!("{scim}/Groups"),
        &token,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Finance",
            "members": [],
        }),
    );
    assert_eq!(status, 201, "{body}");
    let group = body["id"].as_str().unwrap().to_owned();
    let credentials = [
        ("okta-token", token.clone()),
        (
            "okta-basic",
            Auth::Basic(BASIC_USER.into(), s.basic_password.clone()),
        ),
        ("idp-jwt", Auth::Bearer(jwt.clone())),
        ("entra-oauth", Auth::Bearer(access_tokens[0].clone())),
    ];
    for (name, auth) in &credentials {
        let (status, body, _) = http.get(&format!("{scim}/Users"), auth);
        assert_eq!(status, 200, "{name}: {body}");
        let email = format!("{name}@acme.example.com");
        let (status, body, _) = http.post(&format!("{scim}/Users"), auth, user(&email));
        assert_eq!(status, 201, "{name}: {body}");
        let id = body["id"].as_str().unwrap();
        let (status, body, _) = http.patch(&format!("{scim}/Groups/{group}"), auth, add_member(id));
        assert!(status == 200 || status == 204, "{name}: {status} {body}");
    }
    // The second issued token works too.
    let (status, _, _) = http.get(
        &format!("{scim}/Users"),
        &Auth::Bearer(access_tokens[1].clone()),
    );
    assert_eq!(status, 200);

    // Every credential, wrong.
    let wrong = [
        Auth::Bearer(wrong_token.clone()),
        Auth::Basic(BASIC_USER.into(), wrong_password.clone()),
        Auth::Bearer(jwt_other_key.clone()),
        Auth::Bearer(jwt_expired.clone()),
        Auth::Bearer(forged_access_token.clone()),
        Auth::None,
    ];
    for auth in &wrong {
        let (status, body, _) = http.get(&format!("{scim}/Users"), auth);
        assert_eq!(status, 401, "{body}");
    }
    // A secret in a header the bridge does not read.
    let r = http
        .client
        .get(format!("{scim}/Users"))
        .header("X-Api-Key", &s.token);
    let (status, _, _) = http.send(r, &Auth::None);
    assert_eq!(status, 401);
    for basic in [false, true] {
        let (status, body, _) = http.token(&scim, &wrong_client_secret, basic);
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
    }

    // The partner fails: transiently (retried, then 503), refusing the key, refusing the change.
    emulator.script(vec![
        fail(CallKind::CreateUser, 2, 503),
        fail(CallKind::CreateUser, 1, 401),
        fail(CallKind::CreateUser, 1, 400),
    ]);
    for (n, expected) in [(1, 503), (2, 503), (3, 400)] {
        let email = format!("partner-failure-{n}@acme.example.com");
        let (status, body, _) = http.post(&format!("{scim}/Users"), &token, user(&email));
        assert_eq!(status, expected, "{body}");
    }

    // The admin endpoint, right and wrong.
    let admin_url = format!("{}/admin/audit?tenant={TENANT}", server.base);
    let (status, body, _) = http.get(&admin_url, &Auth::Bearer(s.admin_token.clone()));
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["credential"].as_str())
        .collect();
    for (name, _) in &credentials {
        assert!(names.contains(name), "{name} not in {names:?}");
    }
    let (status, _, _) = http.get(&admin_url, &Auth::Bearer(wrong_admin_token.clone()));
    assert_eq!(status, 401);

    let finished = server.proc.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let emulator_out = emulator.proc.stop();

    // What must not appear: every configured secret and every credential the test presented.
    let mut secrets = s.all();
    let presented = [
        ("wrong bearer token", wrong_token),
        ("wrong Basic password", wrong_password.clone()),
        (
            "wrong Basic credentials, encoded",
            base64(&format!("{BASIC_USER}:{wrong_password}")),
        ),
        ("wrong OAuth client secret", wrong_client_secret.clone()),
        (
            "wrong OAuth client credentials, encoded",
            base64(&format!("{CLIENT_ID}:{wrong_client_secret}")),
        ),
        ("wrong admin token", wrong_admin_token),
        ("HS256 secret of another issuer", other_secret),
        ("valid JWT", jwt),
        ("JWT signed with another key", jwt_other_key),
        ("expired JWT", jwt_expired),
        ("forged access token", forged_access_token),
    ];
    secrets.extend(presented.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let issued: Vec<(String, String)> = access_tokens
        .iter()
        .map(|t| ("issued access token".to_owned(), t.clone()))
        .collect();

    // The log: non-trivial, and clean.
    let log = json_lines(&finished.stderr);
    assert_log_is_substantial(
        &log,
        &[
            "authentication failed",
            "admin authentication failed",
            "token request with wrong client credentials",
            "issued an access token",
            "transient partner failure, retrying",
            "partner refused the site's credentials or the change",
            "partner call failed",
            "request failed",
        ],
    );
    assert!(
        log.iter().any(|l| l["level"] == "TRACE"),
        "no trace-level line: the run was not at trace level"
    );
    // Each wrong credential reached the check that refuses it.
    let reasons: Vec<&str> = log
        .iter()
        .filter(|l| message(l) == "authentication failed")
        .filter_map(|l| l["fields"]["reason"].as_str())
        .collect();
    for reason in [
        "unknown_token",
        "bad_password",
        "signature",
        "expired",
        "missing",
    ] {
        assert!(reasons.contains(&reason), "{reason} not in {reasons:?}");
    }
    for (place, text) in [
        ("the bridge's stderr", &finished.stderr),
        ("the bridge's stdout", &finished.stdout),
    ] {
        assert_absent(place, text, &secrets);
        assert_absent(place, text, &issued);
    }
    // The emulator's own output (it is given the key on its command line) stays clean too.
    for text in [&emulator_out.stdout, &emulator_out.stderr] {
        assert_absent("the emulator's output", text, &secrets);
    }

    // The answers: none holds a secret; an access token only in the answer that issued it.
    assert!(http.answers.len() > 20);
    for answer in &http.answers {
        assert_absent("an answer of the bridge", &answer.text, &secrets);
        if !answer.issues_a_token {
            assert_absent("an answer of the bridge", &answer.text, &issued);
        }
    }
}

/// `check-config` prints the configuration with every secret as `***`; an invalid one names
/// each wrong setting without printing its value, including a secret given where a table
/// belongs (a configuration error quoting the value would leak it).
#[test]
fn check_config_output_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let s = Secrets::new();
    let config = write_config(dir.path(), "http://127.0.0.1:9", &s, "info");
    let secrets = s.all();

    let mut command = bridge();
    command.arg("check-config").arg("--config").arg(&config);
    let out = run(command);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("***"), "{}", out.stdout);
    // The configuration was printed: the credential names are there, the values are not.
    for name in ["okta-token", "okta-basic", "idp-jwt", "entra-oauth", SITE] {
        assert!(out.stdout.contains(name), "{name}: {}", out.stdout);
    }
    assert_absent("check-config's stdout", &out.stdout, &secrets);
    assert_absent("check-config's stderr", &out.stderr, &secrets);

    // Values that validation refuses: a short JWT secret, a short signing key, a Basic hash that
    // is no PHC string (the password itself, a mangled Argon2 hash).
    let short_jwt = random("jwt").chars().take(20).collect::<String>();
    let short_signing = random("sig").chars().take(24).collect::<String>();
    let plain_password = random("plain-password");
    let mangled = format!("$argon2id$v=19$m=19456,t=2,p=1${}$!", random("mangled"));
    let text = std::fs::read_to_string(&config).unwrap();
    let bad = |hash: &str| {
        text.replace(&s.jwt_secret, &short_jwt)
            .replace(&s.signing_key, &short_signing)
            .replace(&s.basic_hash, hash)
    };
    for hash in [&plain_password, &mangled] {
        let file = dir.path().join("invalid.toml");
        std::fs::write(&file, bad(hash)).unwrap();
        let mut command = bridge();
        command.arg("check-config").arg("--config").arg(&file);
        let out = run(command);
        assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
        for setting in [
            "tenants[0].credentials.jwt[0].hs256_secret",
            "tenants[0].credentials.oauth.signing_key",
            "tenants[0].credentials.basic[0].password_hash",
        ] {
            assert!(out.stderr.contains(setting), "{setting}: {}", out.stderr);
        }
        let refused = [
            ("short JWT secret".to_owned(), short_jwt.clone()),
            ("short signing key".to_owned(), short_signing.clone()),
            ("invalid Basic hash".to_owned(), hash.clone()),
        ];
        for text in [&out.stdout, &out.stderr] {
            assert_absent("an invalid configuration's errors", text, &refused);
            assert_absent("an invalid configuration's errors", text, &secrets);
        }
    }

    // A secret where a table belongs: in the environment (`SCIM_BRIDGE_ADMIN` for
    // `SCIM_BRIDGE_ADMIN__TOKEN`) and in the file (`admin = "..."`).
    let mut command = bridge();
    command
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .env("SCIM_BRIDGE_ADMIN", &s.admin_token);
    let out = run(command);
    assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("SCIM_BRIDGE_ADMIN:"), "{}", out.stderr);
    assert_absent("a mistyped setting's error", &out.stderr, &secrets);
    let file = dir.path().join("mistyped.toml");
    let admin_table = format!("[admin]\ntoken = \"{}\"\n", s.admin_token);
    assert!(text.contains(&admin_table));
    std::fs::write(
        &file,
        text.replace(&admin_table, "").replacen(
            "listen =",
            &format!("admin = \"{}\"\nlisten =", s.admin_token),
            1,
        ),
    )
    .unwrap();
    let mut command = bridge();
    command.arg("check-config").arg("--config").arg(&file);
    let out = run(command);
    assert_eq!(out.status.code(), Some(2), "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("admin:"), "{}", out.stderr);
    assert_absent("a mistyped setting's error", &out.stderr, &secrets);
}

/// A 43-character URL-safe base64 word with both letter cases: the shape of
/// `scim-bridge`'s random keys (`random_token`), such as the sandbox's emulator key. (A UUID
/// has no capitals; a random key lacks one case with a chance of about 1 in 10^10.)
fn random_key_words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| {
            w.len() == 43
                && w.chars().any(|c| c.is_ascii_uppercase())
                && w.chars().any(|c| c.is_ascii_lowercase())
        })
        .collect()
}

/// The sandbox at debug level: its log holds neither the bearer token nor the in-process
/// emulator's API key (random, so sought by its shape and next to the partner header's name),
/// and stdout does not print a token that came from the environment.
#[test]
fn sandbox_at_debug_level_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let token = random("sandbox-token");
    let wrong = random("wrong-sandbox-token");
    let mut command = bridge();
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("SCIM_BRIDGE_SANDBOX_TOKEN", &token)
        .env("SCIM_BRIDGE_LOG__LEVEL", "debug")
        .env("SCIM_BRIDGE_LOG_FORMAT", "json");
    let proc = Proc::spawn(command);
    let scim = proc.stdout.wait_for("the banner's base URL", |l| {
        l.trim()
            .strip_prefix("SCIM base URL")
            .map(|u| u.trim().to_owned())
    });
    let base = scim.trim_end_matches("/scim/v2").to_owned();
    wait_healthy(&base);

    let mut http = Http::new();
    let auth = Auth::Bearer(token.clone());
    let (status, body, _) = http.post(
        &format!("{scim}/Users"),
        &auth,
        user("jane.doe@example.com"),
    );
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, _, _) = http.get(&format!("{scim}/Users"), &Auth::Bearer(wrong.clone()));
    assert_eq!(status, 401);
    let (status, body, _) = http.post(
        &format!("{scim}/Groups"),
        &auth,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Engineering",
            "members": [{"value": id}],
        }),
    );
    assert_eq!(status, 201, "{body}");

    let finished = proc.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let log = json_lines(&finished.stderr);
    assert_log_is_substantial(&log, &["authentication failed", "serving"]);
    assert!(
        log.iter().any(|l| l["level"] == "DEBUG"),
        "no debug-level line: the run was not at debug level"
    );

    let presented = [
        ("sandbox token".to_owned(), token.clone()),
        ("wrong sandbox token".to_owned(), wrong),
    ];
    assert_absent("the sandbox's log", &finished.stderr, &presented);
    // The emulator's key is random and never shown: no word of its shape, and nothing follows
    // the partner header's name or the site name as `<site>:<key>` would.
    let keys = random_key_words(&finished.stderr);
    assert!(keys.is_empty(), "key-shaped words in the log: {keys:?}");
    let lower = finished.stderr.to_ascii_lowercase();
    assert!(
        !lower.contains("partner-auth"),
        "the partner header is logged"
    );
    assert!(
        !finished.stderr.contains("sandbox:"),
        "a `sandbox:<key>` in the log"
    );

    // The banner names the variable instead of printing the token it holds.
    assert!(
        finished.stdout.contains("$SCIM_BRIDGE_SANDBOX_TOKEN"),
        "{}",
        finished.stdout
    );
    assert_absent("the sandbox's stdout", &finished.stdout, &presented);
    assert!(random_key_words(&finished.stdout).is_empty());
    for answer in &http.answers {
        assert_absent("an answer of the sandbox", &answer.text, &presented);
    }
}

/// Without `SCIM_BRIDGE_SANDBOX_TOKEN` the sandbox makes a token and prints it in its banner
/// (that is what the sandbox is for), and only there: not in the log.
#[test]
fn sandbox_prints_a_generated_token_in_its_banner_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = bridge();
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("SCIM_BRIDGE_LOG__LEVEL", "debug")
        .env("SCIM_BRIDGE_LOG_FORMAT", "json");
    let proc = Proc::spawn(command);
    let scim = proc.stdout.wait_for("the banner's base URL", |l| {
        l.trim()
            .strip_prefix("SCIM base URL")
            .map(|u| u.trim().to_owned())
    });
    let token = proc.stdout.wait_for("the banner's token", |l| {
        l.trim()
            .strip_prefix("Bearer token")
            .and_then(|t| t.split_whitespace().next())
            .map(str::to_owned)
    });
    wait_healthy(scim.trim_end_matches("/scim/v2"));
    let mut http = Http::new();
    let (status, body, _) = http.post(
        &format!("{scim}/Users"),
        &Auth::Bearer(token.clone()),
        user("jane.doe@example.com"),
    );
    assert_eq!(status, 201, "{body}");
    let finished = proc.stop();
    assert!(finished.status.success(), "{}", finished.stderr);

    assert!(has_message(&json_lines(&finished.stderr), "audit"));
    let shown = [("generated sandbox token".to_owned(), token.clone())];
    assert_absent("the sandbox's log", &finished.stderr, &shown);
    // The token line and the example request, nothing else.
    let lines: Vec<&str> = finished
        .stdout
        .lines()
        .filter(|l| l.contains(token.as_str()))
        .collect();
    assert_eq!(lines.len(), 2, "{}", finished.stdout);
    assert!(lines[0].trim().starts_with("Bearer token"), "{}", lines[0]);
    assert!(lines[1].trim().starts_with("curl"), "{}", lines[1]);
    // The emulator's key is not printed beside it.
    let keys: Vec<&str> = random_key_words(&finished.stdout)
        .into_iter()
        .filter(|w| *w != token)
        .collect();
    assert!(keys.is_empty(), "key-shaped words on stdout: {keys:?}");
}

/// After a run, `scim-bridge audit` prints every write with its credential's name (never a
/// secret), the client address, the request id and the partner calls; filters work and a bad
/// `--since` is refused.
#[test]
fn audit_command_reads_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Secrets::new();
    let emulator = Emulator::start(&s.api_key);
    let config = write_config(dir.path(), &emulator.url, &s, "debug");
    let server = Bridge::start(&config);
    let scim = format!("{}/scim/v2", server.base);
    let mut http = Http::new();
    let token = Auth::Bearer(s.token.clone());
    let (status, body, post_id) = http.post(
        &format!("{scim}/Users"),
        &token,
        user("jane@acme.example.com"),
    );
    assert_eq!(status, 201, "{body}");
    let jane = body["id"].as_str().unwrap().to_owned();
    let (status, body, _) = http.post(
        &format!("{scim}/Groups"),
        &token,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Finance",
            "members": [],
        }),
    );
    assert_eq!(status, 201, "{body}");
    let group = body["id"].as_str().unwrap().to_owned();
    let (status, body, _) = http.token(&scim, &s.client_secret, false);
    assert_eq!(status, 200, "{body}");
    let oauth = Auth::Bearer(body["access_token"].as_str().unwrap().to_owned());
    let (status, body, patch_id) =
        http.patch(&format!("{scim}/Groups/{group}"), &oauth, add_member(&jane));
    assert!(status == 200 || status == 204, "{status} {body}");
    emulator.script(vec![fail(CallKind::CreateUser, 2, 503)]);
    let (status, _, failed_id) = http.post(
        &format!("{scim}/Users"),
        &token,
        user("john@acme.example.com"),
    );
    assert_eq!(status, 503);
    let finished = server.proc.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    drop(emulator);

    let secrets = s.all();
    let audit = |args: &[&str]| {
        let mut command = bridge();
        command.arg("audit").arg("--config").arg(&config).args(args);
        let out = run(command);
        assert_absent("the audit command's output", &out.stdout, &secrets);
        assert_absent("the audit command's output", &out.stderr, &secrets);
        out
    };

    let out = audit(&["--json", "--tenant", TENANT]);
    assert!(out.status.success(), "{}", out.stderr);
    let entries: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_request = |id: &str| {
        entries
            .iter()
            .find(|e| e["request_id"] == id)
            .unwrap_or_else(|| panic!("no entry for request {id}:\n{}", out.stdout))
    };
    let created = by_request(&post_id);
    assert_eq!(created["tenant"], TENANT);
    assert_eq!(created["operation"], "POST");
    assert_eq!(created["resource_type"], "Users");
    assert_eq!(created["resource_id"], jane.as_str());
    assert_eq!(created["status"], 201);
    assert_eq!(created["credential"], "okta-token");
    assert_eq!(created["client"], "127.0.0.1");
    let calls = created["detail"]["partner_calls"].as_array().unwrap();
    assert!(
        calls
            .iter()
            .any(|c| c["site"] == SITE && c["call"] == "create_user" && c["outcome"] == "ok"),
        "{created}"
    );
    // The membership engine's own partner calls, beside the request that caused them.
    assert!(
        entries.iter().any(|e| e["operation"] == "CONVERGE"
            && e["credential"] == "membership-engine"
            && e["resource_id"] == jane.as_str()),
        "{}",
        out.stdout
    );
    let patched = by_request(&patch_id);
    assert_eq!(patched["operation"], "PATCH");
    assert_eq!(patched["resource_type"], "Groups");
    assert_eq!(patched["resource_id"], group.as_str());
    assert_eq!(patched["credential"], "entra-oauth");
    let failed = by_request(&failed_id);
    assert_eq!(failed["status"], 503);
    let calls = failed["detail"]["partner_calls"].as_array().unwrap();
    assert!(
        calls.iter().any(|c| c["call"] == "create_user"
            && c["outcome"] == "transient"
            && c["attempts"] == 2),
        "{failed}"
    );

    // Text, only Users, from the last hour: the users' writes, not the group's.
    let out = audit(&["--resource", "Users", "--since", "1h"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("request={post_id}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("credential=okta-token client=127.0.0.1"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("{SITE}:create_user=ok")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(&patch_id), "{}", out.stdout);
    let (listed, summary) = out.stdout.trim_end().rsplit_once('\n').unwrap();
    assert!(
        summary.starts_with("# ") && summary.ends_with(" entries"),
        "{}",
        out.stdout
    );
    for line in listed.lines() {
        assert!(line.contains(" Users "), "{line}");
    }

    let out = audit(&["--since", "garbage"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--since"), "{}", out.stderr);
}
