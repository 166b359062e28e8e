//! The operator commands as a person runs them, the real binary against the partner emulator:
//! `import-csv`, `delete-csv` and `add-user` (dry run sends only `test_mode=true` writes, `--apply`
//! changes the sites, bad rows and SCIM-managed users are never sent, failures are summed up
//! with exit 1) and `status` (failing outbox items, the last reconcile, exit codes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::emulator::{CallRecord, Emulator, RunningEmulator, SiteSpec};
use scim_bridge::partner::{Access, CallKind, PartnerGroup, PartnerUser};
use scim_bridge::secret::Secret;
use serde_json::Value;

use crate::support::{create_group, create_user, Harness, Options, OWNER};

const BIN: &str = env!("CARGO_BIN_EXE_scim-bridge");

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

/// A configuration file naming one tenant `acme` on `sites` of the emulator at `partner` (key
/// `key-<site>`), a store, and a partner client that gives up fast.
struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(partner: &str, sites: &[&str]) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}/store.db", dir.path().display());
        Self::with_store(dir, store_url, partner, sites)
    }

    fn with_store(
        dir: tempfile::TempDir,
        store_url: String,
        partner: &str,
        sites: &[&str],
    ) -> Setup {
        let mut toml = format!(
            "data_dir = \"{}\"\n\
             [store]\nurl = \"{store_url}\"\n\
             [bridge.partner]\nmax_attempts = 1\nrequest_timeout_ms = 5000\n\
             [[tenants]]\nname = \"acme\"\ninvited_by_email = \"{OWNER}\"\n\
             [[tenants.credentials.bearer_tokens]]\ntoken = \"a-token-long-enough-for-the-bridge\"\n",
            dir.path().display()
        );
        for s in sites {
            toml.push_str(&format!(
                "[[tenants.sites]]\nsite_name = \"{s}\"\napi_key = \"key-{s}\"\nbase_url = \"{partner}\"\n"
            ));
        }
        let config = dir.path().join("scim-bridge.toml");
        std::fs::write(&config, toml).unwrap();
        Setup { dir, config }
    }

    fn csv(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs the binary off the async runtime (the emulator serves on it meanwhile).
    async fn run(&self, args: &[&str]) -> Run {
        self.run_with_env(args, &[]).await
    }

    /// `run` with more configuration in `SCIM_BRIDGE_*` variables.
    async fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = bridge();
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.envs(env.iter().copied());
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        Run::from(out)
    }

    async fn run_file(&self, command: &str, file: &Path, args: &[&str]) -> Run {
        let file = file.to_str().unwrap();
        let mut all = vec![command, file];
        all.extend_from_slice(args);
        self.run(&all).await
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// An emulator with `sites` (key `key-<site>`, owner [`OWNER`]), each with an `Analysts` group.
async fn emulator(sites: &[&str]) -> (Emulator, RunningEmulator) {
    let emu = Emulator::new(
        sites
            .iter()
            .map(|s| SiteSpec {
                name: (*s).to_owned(),
                api_key: Secret::new(format!("key-{s}")),
                owner_email: OWNER.into(),
            })
            .collect(),
    );
    for s in sites {
        emu.insert_group(
            s,
            PartnerGroup {
                name: "Analysts".into(),
                access: Access::View,
            },
        );
    }
    let running = emu.clone().spawn().await.unwrap();
    (emu, running)
}

fn partner_user(email: &str, first: &str, last: &str, groups: &[&str]) -> PartnerUser {
    PartnerUser {
        email: email.into(),
        first_name: first.into(),
        last_name: last.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

fn writes(log: &[CallRecord]) -> Vec<&CallRecord> {
    log.iter().filter(|c| c.call.is_write()).collect()
}

fn sorted_groups(emu: &Emulator, site: &str, email: &str) -> Vec<String> {
    let mut g = emu.user(site, email).unwrap().groups;
    g.sort();
    g
}

const PEOPLE: &str = "email,first_name,last_name,groups\n\
                      ann@example.com,Ann,Lee,analysts\n\
                      bob@example.com,Bob,Ray-Smith,\n";

#[tokio::test]
async fn import_csv_dry_run_sends_only_test_mode_writes_and_changes_nothing() {
    let (emu, running) = emulator(&["acme"]).await;
    emu.insert_user("acme", partner_user("bob@example.com", "Bob", "Ray", &[]));
    let setup = Setup::new(&running.base_url, &["acme"]);
    let file = setup.csv("people.csv", PEOPLE);

    let run = setup.run_file("import-csv", &file, &[]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("DRY RUN"), "{run}");
    assert!(
        run.stdout
            .contains("site acme: 1 would be created, 1 would be updated, 0 unchanged, 0 failed"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("line 3: bob@example.com  site acme: would be updated (last_name)"),
        "{run}"
    );
    // The partner saw both writes, in test mode only, and nothing changed.
    let log = emu.call_log();
    let w = writes(&log);
    assert_eq!(w.len(), 2, "{log:?}");
    assert!(w.iter().all(|c| c.test_mode && c.status == 200), "{log:?}");
    assert_eq!(emu.count("acme", CallKind::CreateUser, true), 1);
    assert_eq!(emu.count("acme", CallKind::UpdateUser, true), 1);
    assert!(emu.user("acme", "ann@example.com").is_none());
    assert_eq!(
        emu.user("acme", "bob@example.com").unwrap().last_name,
        "Ray"
    );
}

#[tokio::test]
async fn import_csv_apply_creates_and_updates_and_a_second_run_changes_nothing() {
    let (emu, running) = emulator(&["acme"]).await;
    emu.insert_user(
        "acme",
        partner_user("bob@example.com", "Bob", "Ray", &["Administrators"]),
    );
    let setup = Setup::new(&running.base_url, &["acme"]);
    let file = setup.csv(
        "people.csv",
        "email,first_name,last_name,groups\n\
         ann@example.com,Ann,Lee,analysts\n\
         bob@example.com,Bob,Ray-Smith,Analysts\n",
    );

    let run = setup.run_file("import-csv", &file, &["--apply"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout
            .contains("site acme: 1 created, 1 updated, 0 unchanged, 0 failed"),
        "{run}"
    );
    let log = emu.call_log();
    assert!(writes(&log).iter().all(|c| !c.test_mode), "{log:?}");
    let ann = emu.user("acme", "ann@example.com").unwrap();
    assert_eq!(
        (ann.first_name.as_str(), ann.last_name.as_str()),
        ("Ann", "Lee")
    );
    // The site's spelling of the group; the partner adds All Users.
    assert_eq!(
        sorted_groups(&emu, "acme", "ann@example.com"),
        ["All Users", "Analysts"]
    );
    // Bob keeps the group he had (added, not replaced) and gets the new name.
    assert_eq!(
        emu.user("acme", "bob@example.com").unwrap().last_name,
        "Ray-Smith"
    );
    assert_eq!(
        sorted_groups(&emu, "acme", "bob@example.com"),
        ["Administrators", "All Users", "Analysts"]
    );

    // The same file again: nothing to do, no write sent.
    emu.clear_call_log();
    let again = setup.run_file("import-csv", &file, &["--apply"]).await;
    assert_eq!(again.code, Some(0), "{again}");
    assert!(
        again
            .stdout
            .contains("site acme: 0 created, 0 updated, 2 unchanged, 0 failed"),
        "{again}"
    );
    assert!(writes(&emu.call_log()).is_empty());

    // --replace-groups makes the row's groups the whole set (All Users stays).
    let replace = setup.csv(
        "replace.csv",
        "email,first_name,last_name,groups\nbob@example.com,Bob,Ray-Smith,Analysts\n",
    );
    let run = setup
        .run_file("import-csv", &replace, &["--apply", "--replace-groups"])
        .await;
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        sorted_groups(&emu, "acme", "bob@example.com"),
        ["All Users", "Analysts"]
    );
}

#[tokio::test]
async fn import_csv_reports_bad_rows_by_line_and_never_sends_them() {
    let (emu, running) = emulator(&["acme"]).await;
    let setup = Setup::new(&running.base_url, &["acme"]);
    // Configurable columns and separators, as a spreadsheet may export them.
    let file = setup.csv(
        "people.csv",
        "Mail;Given;Family;Teams\n\
         ann@example.com;Ann;Lee;Analysts|All Users\n\
         not-an-email;X;Y;\n\
         cat@example.com;;Cole;\n\
         ANN@example.com;Ann;Again;\n\
         dan@example.com;Dan;Dee;Nope\n",
    );
    let run = setup
        .run_file(
            "import-csv",
            &file,
            &[
                "--apply",
                "--delimiter",
                ";",
                "--email-column",
                "mail",
                "--first-name-column",
                "Given",
                "--last-name-column",
                "Family",
                "--groups-column",
                "Teams",
                "--groups-separator",
                "|",
            ],
        )
        .await;
    assert_eq!(run.code, Some(1), "{run}");
    for expected in [
        "line 3: \"not-an-email\": invalid: the email must be local-part@domain",
        "line 4: \"cat@example.com\": invalid: the first name is empty",
        "line 5: \"ANN@example.com\": invalid: the email is already on line 2",
        "line 6: dan@example.com: site acme: failed: the site has no group 'Nope'",
        "rows not sent: 3 invalid, 0 refused",
        "site acme: 1 created, 0 updated, 0 unchanged, 1 failed",
    ] {
        assert!(run.stdout.contains(expected), "missing {expected:?}\n{run}");
    }
    // Only Ann was sent.
    let log = emu.call_log();
    let sent: Vec<_> = writes(&log)
        .iter()
        .map(|c| c.email.clone().unwrap_or_default())
        .collect();
    assert_eq!(sent, ["ann@example.com"], "{log:?}");
    assert_eq!(
        sorted_groups(&emu, "acme", "ann@example.com"),
        ["All Users", "Analysts"]
    );
}

#[tokio::test]
async fn import_csv_bad_input_exits_two_before_any_call() {
    let (emu, running) = emulator(&["acme"]).await;
    let setup = Setup::new(&running.base_url, &["acme"]);
    let no_names = setup.csv("x.csv", "email,groups\nann@example.com,\n");
    let run = setup.run_file("import-csv", &no_names, &[]).await;
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("no column 'first_name'"), "{run}");

    let people = setup.csv("people.csv", PEOPLE);
    let run = setup
        .run_file("import-csv", &people, &["--groups-column", "teams"])
        .await;
    assert_eq!(run.code, Some(2), "{run}");
    let run = setup
        .run_file("import-csv", &people, &["--site", "elsewhere"])
        .await;
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("no site named 'elsewhere'"), "{run}");
    let run = setup.run(&["import-csv", "/nonexistent/people.csv"]).await;
    assert_eq!(run.code, Some(2), "{run}");
    let run = setup
        .run_file("delete-csv", &people, &["--column", "mail"])
        .await;
    assert_eq!(run.code, Some(2), "{run}");
    let run = setup
        .run(&[
            "add-user",
            "bad email",
            "--first-name",
            "A",
            "--last-name",
            "B",
        ])
        .await;
    assert_eq!(run.code, Some(2), "{run}");
    assert!(emu.call_log().is_empty(), "{:?}", emu.call_log());
}

#[tokio::test]
async fn import_csv_partial_failures_are_listed_with_their_reason_and_exit_one() {
    let (emu, running) = emulator(&["acme"]).await;
    let setup = Setup::new(&running.base_url, &["acme"]);
    let file = setup.csv("people.csv", PEOPLE);
    // One create is refused by the partner, one update meets a 503 (the client gives up after
    // its one attempt).
    emu.insert_user("acme", partner_user("bob@example.com", "Bob", "Ray", &[]));
    emu.set_faults(
        "acme",
        Faults {
            script: vec![
                ScriptedFault {
                    call: Some(CallKind::CreateUser),
                    count: 1,
                    action: FaultAction::Status {
                        status: 422,
                        retry_after_secs: None,
                    },
                },
                ScriptedFault {
                    call: Some(CallKind::UpdateUser),
                    count: 1,
                    action: FaultAction::Status {
                        status: 503,
                        retry_after_secs: None,
                    },
                },
            ],
            ..Faults::default()
        },
    );
    let run = setup.run_file("import-csv", &file, &["--apply"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout
            .contains("site acme: 0 created, 0 updated, 0 unchanged, 2 failed"),
        "{run}"
    );
    assert!(run.stdout.contains("problems (2):"), "{run}");
    assert!(
        run.stdout
            .contains("line 2: ann@example.com: site acme: failed: partner call create_user on site acme failed: invalid (HTTP 422)"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("line 3: bob@example.com: site acme: failed: partner call update_user on site acme failed: transient (HTTP 503)"),
        "{run}"
    );
    assert!(emu.user("acme", "ann@example.com").is_none());

    // The faults are spent: a second run does the rest.
    let run = setup.run_file("import-csv", &file, &["--apply"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(emu.user("acme", "ann@example.com").is_some());
}

/// Users the IdP manages through SCIM are refused by import-csv and delete-csv unless --force.
#[tokio::test]
async fn scim_managed_users_are_refused_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}/store.db", dir.path().display());
    let h = Harness::start(Options {
        store_url: Some(store_url.clone()),
        ..Options::default()
    })
    .await;
    create_user(&h, "scim@example.com", "Sam", "Kim").await;
    h.emulator
        .insert_user("acme", partner_user("other@example.com", "O", "T", &[]));
    let setup = Setup::with_store(dir, store_url, h.partner_base(), &["acme"]);
    h.emulator.clear_call_log();

    let file = setup.csv(
        "people.csv",
        "email,first_name,last_name\nSCIM@example.com,Samuel,Kim\nnew@example.com,New,One\n",
    );
    let run = setup.run_file("import-csv", &file, &["--apply"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout
            .contains("line 2: \"SCIM@example.com\": refused: managed by SCIM (user ")
            && run
                .stdout
                .contains("change it in the identity provider, or pass --force"),
        "{run}"
    );
    assert!(
        run.stdout.contains("rows not sent: 0 invalid, 1 refused"),
        "{run}"
    );
    assert!(h.partner_user("acme", "new@example.com").is_some());
    assert_eq!(
        h.partner_user("acme", "scim@example.com")
            .unwrap()
            .first_name,
        "Sam"
    );
    let log = h.emulator.call_log();
    assert!(
        writes(&log).iter().all(|c| !c
            .email
            .as_deref()
            .unwrap_or_default()
            .eq_ignore_ascii_case("scim@example.com")),
        "{log:?}"
    );

    let gone = setup.csv(
        "gone.csv",
        "email_address\nscim@example.com\nother@example.com\n",
    );
    let run = setup
        .run_file(
            "delete-csv",
            &gone,
            &["--column", "email_address", "--apply"],
        )
        .await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("refused: managed by SCIM"), "{run}");
    assert!(h.partner_user("acme", "scim@example.com").is_some());
    assert!(h.partner_user("acme", "other@example.com").is_none());

    // --force: the operator takes the responsibility.
    let run = setup
        .run_file("import-csv", &file, &["--apply", "--force"])
        .await;
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(
        h.partner_user("acme", "scim@example.com")
            .unwrap()
            .first_name,
        "Samuel"
    );
}

#[tokio::test]
async fn delete_csv_dry_run_then_apply_deletes_the_listed_users() {
    let (emu, running) = emulator(&["acme"]).await;
    for e in ["a@example.com", "b@example.com", "keep@example.com"] {
        emu.insert_user("acme", partner_user(e, "X", "Y", &[]));
    }
    let setup = Setup::new(&running.base_url, &["acme"]);
    // The vendor's script reads the column `email_address`.
    let file = setup.csv(
        "gone.csv",
        "email_address,note\na@example.com,left\nB@example.com,left\nnever@example.com,typo\n",
    );
    let args = ["--column", "email_address"];
    let run = setup.run_file("delete-csv", &file, &args).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout
            .contains("site acme: 2 would be deleted, 1 not at the site, 0 failed"),
        "{run}"
    );
    assert_eq!(emu.count("acme", CallKind::DeleteUser, true), 2);
    assert_eq!(emu.count("acme", CallKind::DeleteUser, false), 0);
    assert_eq!(emu.users("acme").len(), 4, "nothing deleted in the dry run");

    let run = setup
        .run_file(
            "delete-csv",
            &file,
            &["--column", "email_address", "--apply"],
        )
        .await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout
            .contains("site acme: 2 deleted, 1 not at the site, 0 failed"),
        "{run}"
    );
    let left: Vec<String> = emu.users("acme").into_iter().map(|u| u.email).collect();
    assert_eq!(left, ["keep@example.com", OWNER]);

    // The inviting user is what creates need: refused unless --force.
    let owner = setup.csv("owner.csv", &format!("email\n{OWNER}\n"));
    let run = setup.run_file("delete-csv", &owner, &["--apply"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stdout.contains("invited_by_email"), "{run}");
    assert!(emu.user("acme", OWNER).is_some());
}

#[tokio::test]
async fn add_user_adds_one_user_to_every_site_of_a_tenant() {
    let (emu, running) = emulator(&["acme", "beta"]).await;
    let setup = Setup::new(&running.base_url, &["acme", "beta"]);
    let args = [
        "add-user",
        "new@example.com",
        "--first-name",
        "New",
        "--last-name",
        "Person",
        "--groups",
        "Analysts,Administrators",
    ];
    let run = setup.run(&args).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout
            .contains("new@example.com  site acme: would be created"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("new@example.com  site beta: would be created"),
        "{run}"
    );
    assert!(emu.user("acme", "new@example.com").is_none());
    assert!(emu.user("beta", "new@example.com").is_none());
    assert!(writes(&emu.call_log()).iter().all(|c| c.test_mode));

    let mut apply = args.to_vec();
    apply.push("--apply");
    let run = setup.run(&apply).await;
    assert_eq!(run.code, Some(0), "{run}");
    for site in ["acme", "beta"] {
        assert!(
            run.stdout
                .contains(&format!("new@example.com  site {site}: created")),
            "{run}"
        );
        assert_eq!(
            sorted_groups(&emu, site, "new@example.com"),
            ["Administrators", "All Users", "Analysts"]
        );
    }
    // Once there, the same call changes nothing.
    let run = setup.run(&apply).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("site beta: unchanged"), "{run}");

    // A site that fails makes the exit code 1; the other site is still done.
    emu.set_faults(
        "beta",
        Faults {
            script: vec![ScriptedFault {
                call: Some(CallKind::CreateUser),
                count: 1,
                action: FaultAction::Status {
                    status: 500,
                    retry_after_secs: None,
                },
            }],
            ..Faults::default()
        },
    );
    let mut other = apply.clone();
    other[1] = "other@example.com";
    let run = setup.run(&other).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout.contains("other@example.com  site acme: created"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("other@example.com  site beta: FAILED: partner call create_user on site beta failed: transient (HTTP 500)"),
        "{run}"
    );
    assert!(emu.user("acme", "other@example.com").is_some());
    assert!(emu.user("beta", "other@example.com").is_none());
}

/// `explain` and `explain-group` as an operator runs them: text naming the user's groups, the
/// site's desired state and (with --live) the differences; JSON; exit 1 for no such user, 2 for
/// an unknown tenant. The store and the emulator are the running bridge's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_a_users_groups_sites_and_differences() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}/store.db", dir.path().display());
    let h = Harness::start(Options {
        store_url: Some(store_url.clone()),
        ..Options::default()
    })
    .await;
    let setup = Setup::with_store(dir, store_url, h.partner_base(), &["acme"]);
    let id = create_user(&h, "jo@example.com", "Jo", "March").await;
    create_group(&h, "Readers", &[&id]).await;
    h.settle(Duration::from_secs(10)).await;

    let run = setup.run(&["explain", "JO@example.com"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout.contains(&format!(
            "user jo@example.com ({id}) in tenant acme: active"
        )),
        "{run}"
    );
    assert!(run.stdout.contains("groups        Readers"), "{run}");
    assert!(
        run.stdout.contains("should be     present: active"),
        "{run}"
    );
    assert!(run.stdout.contains("outbox        in line"), "{run}");
    assert!(run.stdout.contains("--live reads each site now"), "{run}");

    // Readers taken away at the site: --live says so.
    if !crate::support::under_roles() {
        let mut p = h.partner_user("acme", "jo@example.com").unwrap();
        p.groups.retain(|g| g != "Readers");
        assert!(h.emulator.insert_user("acme", p));
        let run = setup.run(&["explain", &id, "--live"]).await;
        assert_eq!(run.code, Some(0), "{run}");
        assert!(
            run.stdout
                .contains("DIFFERS       missing at the site: Readers"),
            "{run}"
        );
    }

    let run = setup.run(&["explain-group", "readers", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    let body: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(body["display_name"], "Readers");
    assert_eq!(body["members"][0]["id"], id.as_str());
    assert_eq!(body["sites"][0]["maps_to"], "Readers");

    let run = setup.run(&["explain", "nobody@example.com"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("no user 'nobody@example.com'"), "{run}");
    let run = setup
        .run(&["explain", "jo@example.com", "--tenant", "nope"])
        .await;
    assert_eq!(run.code, Some(2), "{run}");
    // Never a secret: the site's API key and the bearer token stay out of the output.
    let run = setup
        .run(&["explain", "jo@example.com", "--live", "--json"])
        .await;
    assert!(
        !run.stdout.contains("key-acme") && !run.stderr.contains("key-acme"),
        "{run}"
    );
    assert!(!run.stdout.contains("a-token-long-enough"), "{run}");
}

/// `status` on a bridge whose outbox has an item that keeps failing, before and after a
/// report-only reconcile; then healthy once the site is in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_failing_outbox_items_and_the_last_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}/store.db", dir.path().display());
    let mut opts = Options {
        store_url: Some(store_url.clone()),
        ..Options::default()
    };
    // A failed item waits long before its next try, so it stays failing while we look.
    opts.bridge.retry_base_ms = 600_000;
    opts.bridge.wait_deadline_ms = 500;
    opts.bridge.partner.max_attempts = 1;
    let h = Harness::start(opts).await;
    let setup = Setup::with_store(dir, store_url, h.partner_base(), &["acme"]);

    // Healthy at first: nothing waits, no reconcile ran yet.
    let run = setup.run(&["status"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("outbox: empty"), "{run}");
    assert!(
        run.stdout.contains("last reconcile: none recorded"),
        "{run}"
    );
    assert!(run.stdout.contains("status: healthy"), "{run}");

    let id = create_user(&h, "fail@example.com", "Fay", "Lure").await;
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
    create_group(&h, "Engineers", &[&id]).await;
    let end = Instant::now() + Duration::from_secs(20);
    while h.bridge.store.outbox_stats().await.unwrap().failing == 0 {
        assert!(Instant::now() < end, "the outbox item never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let run = setup.run(&["status", "--json"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["healthy"], false);
    let site = &report["tenants"][0]["sites"][0];
    assert_eq!(report["tenants"][0]["tenant"], "acme");
    assert_eq!(site["site"], "acme");
    assert_eq!(site["outbox"]["depth"], 1);
    assert_eq!(site["outbox"]["failing"], 1);
    let item = &site["failing_items"][0];
    assert_eq!(item["email"], "fail@example.com");
    assert_eq!(item["user_id"], id.as_str());
    assert!(item["attempts"].as_i64().unwrap() >= 1, "{item}");
    assert!(
        item["last_error"].as_str().unwrap().contains("503"),
        "{item}"
    );
    assert!(site["last_reconcile"].is_null(), "{site}");
    // Failing for seconds, far within `bridge.outbox_stuck_after_s`: not degraded.
    assert_eq!(report["readiness"], "ready", "{report}");
    assert_eq!(report["outbox"]["stuck"], false, "{report}");
    assert_eq!(report["outbox"]["failing"], 1, "{report}");

    // Past a 1 s limit, `status` says what `/readyz` then says: degraded.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let ages = h.bridge.store.outbox_ages().await.unwrap();
        let failing_since = ages.oldest_failing_marked_ms.unwrap();
        if scim_bridge::bridge::now_ms() - failing_since > 1_100 {
            break;
        }
        assert!(Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stuck = [("SCIM_BRIDGE_BRIDGE__OUTBOX_STUCK_AFTER_S", "1")];
    let run = setup.run_with_env(&["status", "--json"], &stuck).await;
    assert_eq!(run.code, Some(1), "{run}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["readiness"], "degraded", "{report}");
    assert_eq!(report["outbox"]["stuck"], true, "{report}");
    assert_eq!(report["outbox"]["stuck_after_s"], 1, "{report}");
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("degraded: 1 membership change is failing"),
        "{report}"
    );
    let run = setup.run_with_env(&["status"], &stuck).await;
    assert!(run.stdout.contains("readiness: degraded"), "{run}");

    // A report-only reconcile sees the missing group and leaves it: recorded as drift.
    let reconcile = setup.run(&["reconcile"]).await;
    assert_eq!(reconcile.code, Some(3), "{reconcile}");
    let run = setup.run(&["status"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    for expected in [
        "tenant acme",
        "outbox: 1 waiting, 1 failing",
        "FAILING fail@example.com (user ",
        "1 attempt, marked ",
        "by cli): DRIFT NOT REPAIRED (0 users missing, 0 not removed, 0 deleted but present, 1 with drifted groups",
        "readiness: ready",
        "status: UNHEALTHY",
        "tenant acme site acme: 1 outbox item failing",
        "tenant acme site acme: the last reconcile found drift it did not repair",
    ] {
        assert!(run.stdout.contains(expected), "missing {expected:?}\n{run}");
    }

    // The partner recovers; a reconcile with --apply marks the user again, the engine
    // converges it, and the site is healthy.
    h.emulator.set_faults("acme", Faults::default());
    let reconcile = setup.run(&["reconcile", "--apply", "--wait", "20"]).await;
    assert_eq!(reconcile.code, Some(0), "{reconcile}");
    h.settle(Duration::from_secs(20)).await;
    let run = setup.run(&["status", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let last = &report["tenants"][0]["sites"][0]["last_reconcile"];
    assert_eq!(last["result"], "repaired", "{report}");
    assert_eq!(last["by"], "cli");
    assert_eq!(last["detail"]["memberships_drifted"], 1);
    assert_eq!(report["tenants"][0]["sites"][0]["outbox"]["depth"], 0);

    // Bad configuration or tenant: 2.
    let run = setup.run(&["status", "--tenant", "nope"]).await;
    assert_eq!(run.code, Some(2), "{run}");
}

/// The store's views behind `status`, on SQLite and (when configured) PostgreSQL: gauges per
/// (tenant, site), failing rows with their user's email, the tenant filter and the limit.
#[tokio::test]
async fn outbox_views_per_site_and_failing_rows_on_each_backend() {
    use scim_bridge::store::{Store, UserRow};
    crate::support::for_each_backend_url(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let now = scim_bridge::bridge::now_ms();
        let row = |tenant: &str, id: &str| UserRow {
            tenant: tenant.into(),
            id: id.into(),
            user_name: format!("{id}@example.com"),
            external_id: None,
            active: true,
            partner_email: format!("{id}@example.com"),
            emails: vec![format!("{id}@example.com")],
            resource: serde_json::json!({"userName": format!("{id}@example.com")}),
            created_ms: now,
            last_modified_ms: now,
            version: 1,
        };
        for (tenant, id) in [("acme", "u1"), ("acme", "u2"), ("beta", "u3")] {
            store.insert_user(&row(tenant, id)).await.unwrap();
        }
        let both = ["a".to_owned(), "b".to_owned()];
        store
            .mark_outbox_at("acme", &both, &["u1".into(), "u2".into()], now)
            .await
            .unwrap();
        store
            .mark_outbox_at("beta", &["a".into()], &["u3".into()], now)
            .await
            .unwrap();
        // u1 fails at site a; u3 fails at beta's site a.
        let claimed = store
            .claim_outbox("w", 100, Duration::from_secs(60), now)
            .await
            .unwrap();
        for item in claimed.iter().filter(|i| {
            (i.tenant == "acme" && i.site == "a" && i.user_id == "u1") || i.tenant == "beta"
        }) {
            store
                .fail_outbox(item, "partner says 503", now + 60_000)
                .await
                .unwrap();
        }

        let all = store.outbox_by_site(None).await.unwrap();
        let gauges: Vec<(&str, &str, u64, u64)> = all
            .iter()
            .map(|s| (s.tenant.as_str(), s.site.as_str(), s.depth, s.failing))
            .collect();
        assert_eq!(
            gauges,
            [
                ("acme", "a", 2, 1),
                ("acme", "b", 2, 0),
                ("beta", "a", 1, 1)
            ]
        );
        assert_eq!(all[0].oldest_due_ms, Some(now));
        let acme = store.outbox_by_site(Some("acme")).await.unwrap();
        assert_eq!(acme.len(), 2);

        let failing = store.outbox_failures(Some("acme"), 10).await.unwrap();
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert_eq!(failing[0].email.as_deref(), Some("u1@example.com"));
        assert_eq!(failing[0].attempts, 1);
        assert_eq!(failing[0].last_error.as_deref(), Some("partner says 503"));
        assert_eq!(failing[0].due_ms, now + 60_000);
        assert_eq!(store.outbox_failures(None, 10).await.unwrap().len(), 2);
        assert_eq!(store.outbox_failures(None, 1).await.unwrap().len(), 1);
        store.close().await;
    })
    .await;
}

/// `status` shows parked rows (a warning), overdue claims and deletions pending too long
/// (failures, exit 1), per site and per tenant, in text and JSON; the metrics carry the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_parked_rows_overdue_claims_and_pending_deletions() {
    use scim_bridge::store::{Store, UserRow};
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}/store.db", dir.path().display());
    let store = Store::connect(&store_url).await.unwrap();
    store.migrate().await.unwrap();
    let now = scim_bridge::bridge::now_ms();
    for id in ["u1", "u2", "u3"] {
        let email = format!("{id}@example.com");
        store
            .insert_user(&UserRow {
                tenant: "acme".into(),
                id: id.into(),
                user_name: email.clone(),
                external_id: None,
                active: true,
                partner_email: email.clone(),
                emails: vec![email.clone()],
                resource: serde_json::json!({"userName": email}),
                created_ms: now,
                last_modified_ms: now,
                version: 1,
            })
            .await
            .unwrap();
    }
    // No partner call is made by `status`.
    let setup = Setup::with_store(dir, store_url.clone(), "http://127.0.0.1:9", &["acme"]);
    let site = ["acme".to_owned()];
    let status = |run: &Run| -> Value { serde_json::from_str(&run.stdout).expect("JSON") };

    // A parked row of a configured site: reported, a warning, still healthy.
    store
        .mark_outbox_at("acme", &site, &["u2".into()], now)
        .await
        .unwrap();
    let claimed = store
        .claim_outbox("elsewhere", 10, Duration::from_secs(30), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .park_outbox(&claimed[0], "not served here", now + 600_000)
        .await
        .unwrap();
    let run = setup.run(&["status", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    let report = status(&run);
    assert_eq!(report["tenants"][0]["sites"][0]["outbox"]["parked"], 1);
    assert_eq!(
        report["tenants"][0]["sites"][0]["outbox"]["overdue_claims"],
        0
    );
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("1 outbox item parked"),
        "{report}"
    );
    assert_eq!(report["tenants"][0]["pending_deletions"], 0);

    // A deletion pending for a moment: shown, healthy; for 20 minutes: a failure.
    store.delete_user("acme", "u3", None, &site).await.unwrap();
    let run = setup.run(&["status", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(status(&run)["tenants"][0]["pending_deletions"], 1);
    let pool = sqlx::SqlitePool::connect(&store_url).await.unwrap();
    sqlx::query("UPDATE user_tombstones SET deleted_ms = $1")
        .bind(now - 20 * 60_000)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let run = setup.run(&["status", "--json"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    let report = status(&run);
    let tenant = &report["tenants"][0];
    assert_eq!(tenant["pending_deletions"], 1);
    assert!(
        tenant["oldest_pending_deletion_age_ms"].as_i64().unwrap() >= 20 * 60_000,
        "{report}"
    );
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("tenant acme: 1 deletion pending, the oldest for 20"),
        "{report}"
    );

    // A claim whose lease ran out without an outcome (its worker died): a failure.
    store
        .mark_outbox_at("acme", &site, &["u1".into()], now - 200_000)
        .await
        .unwrap();
    let claimed = store
        .claim_outbox("dead", 10, Duration::from_secs(1), now - 120_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let run = setup.run(&["status"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    for expected in [
        "  pending deletions: 1, the oldest deleted 20",
        "outbox: 3 waiting, 0 failing, 1 parked, 1 overdue claims",
        "warnings:\n  tenant acme site acme: 1 outbox item parked",
        "status: UNHEALTHY",
        "tenant acme site acme: 1 outbox claim overdue",
        "tenant acme: 1 deletion pending",
    ] {
        assert!(run.stdout.contains(expected), "missing {expected:?}\n{run}");
    }

    // The same as Prometheus gauges.
    let metrics = scim_bridge::telemetry::metrics::Metrics::new().unwrap();
    metrics.refresh_outbox(&store, None).await;
    let text = metrics.render();
    for expected in [
        "scim_bridge_outbox_parked 1\n",
        "scim_bridge_outbox_overdue_claims 1\n",
        "scim_bridge_pending_deletions 1\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?}\n{text}");
    }
    let age = text
        .lines()
        .find_map(|l| l.strip_prefix("scim_bridge_pending_deletion_oldest_age_seconds "))
        .expect(&text);
    assert!(age.parse::<f64>().unwrap() >= 1200.0, "{text}");
    store.close().await;
}

#[tokio::test]
async fn csv_tools_on_an_rbac_site_use_role_names_in_a_roles_column() {
    let emu = Emulator::builder()
        .rbac_site(SiteSpec {
            name: "acme".into(),
            api_key: Secret::new("key-acme"),
            owner_email: OWNER.into(),
        })
        .build();
    let running = emu.clone().spawn().await.unwrap();
    let setup = Setup::new(&running.base_url, &["acme"]);
    let mut toml = std::fs::read_to_string(&setup.config).unwrap();
    toml.push_str("api = \"roles\"\n");
    std::fs::write(&setup.config, toml).unwrap();
    let roles_of = |email: &str| -> Vec<String> {
        let roles = emu.roles("acme");
        let mut names: Vec<String> = emu
            .rbac_user_by_email("acme", email)
            .map(|u| u.roles)
            .unwrap_or_default()
            .iter()
            .filter_map(|id| roles.iter().find(|r| &r.id == id))
            .map(|r| r.name.clone())
            .collect();
        names.sort();
        names
    };
    let file = setup.csv(
        "people.csv",
        "email,first_name,last_name,roles\n\
         ann@example.com,Ann,Lee,analyst;Read\n\
         bob@example.com,Bob,Ray,Nope\n",
    );
    let run = setup.run_file("import-csv", &file, &["--apply"]).await;
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stdout
            .contains("line 3: bob@example.com: site acme: failed: the site has no group 'Nope'"),
        "{run}"
    );
    assert_eq!(roles_of("ann@example.com"), ["Analyst", "Everyone", "Read"]);
    assert!(emu.rbac_user_by_email("acme", "bob@example.com").is_none());
    assert!(emu.call_log().iter().all(|c| c.call.is_rbac()));

    let gone = setup.csv("gone.csv", "email\nann@example.com\n");
    let run = setup.run_file("delete-csv", &gone, &["--apply"]).await;
    assert_eq!(run.code, Some(0), "{run}");
    assert!(emu.rbac_user_by_email("acme", "ann@example.com").is_none());
}
