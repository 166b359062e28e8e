//! `deploy/monitoring/` against the bridge's `/metrics`: every `scim_bridge_*` metric the Grafana
//! dashboard, the Prometheus alert rules and the rules' unit tests name (in queries, series,
//! descriptions and comments alike) is a family a real scrape exposes, and every label their
//! queries select, group or join by is one of its labels. A misspelled or renamed metric or
//! label fails here instead of drawing an empty panel or an alert that can never fire.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use scim_bridge::bridge::reconcile::reconcile;
use scim_bridge::config::{HttpConfig, RateLimitConfig};
use scim_bridge::partner::emulator::faults::{FaultAction, Faults, ScriptedFault};
use scim_bridge::partner::rbac::SiteApi;
use scim_bridge::partner::CallKind;
use scim_bridge::telemetry::metrics;

use crate::support::{create_group, create_user, delete_partner_user, Harness, Options, TOKEN};

const DASHBOARD: &str = "deploy/monitoring/grafana/scim-bridge.json";
const RULES: &str = "deploy/monitoring/prometheus/scim-bridge-rules.yml";
const RULE_TESTS: &str = "deploy/monitoring/prometheus/scim-bridge-rules.test.yml";

/// Metrics of the partner credential check and circuit state (issue 18), added on another
/// branch: the rules and the dashboard use them, and until that branch is merged the scrape
/// may lack them. Each entry is (name, its labels); a missing one is checked against these
/// labels instead of failing. Remove this allowance once both are exposed.
const ADDED_BY_CREDENTIAL_CHECK: &[(&str, &[&str])] = &[
    // 1 while the site's circuit breaker is open.
    ("scim_bridge_partner_circuit_open", &["tenant", "site"]),
    // 1 when the site's last credential check passed, 0 when the partner refused the key.
    ("scim_bridge_partner_credentials_ok", &["tenant", "site"]),
];

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// A metric family of the exposition: its type and every label its samples carry.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The families of a text exposition, by name.
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                out.entry(name.to_owned()).or_default().kind = kind.to_owned();
            }
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample = &line[..end];
        let Some(family) = family_of(sample, &out).map(str::to_owned) else {
            continue;
        };
        let labels = match line[end..].strip_prefix('{') {
            Some(rest) => selector_labels(rest),
            None => Vec::new(),
        };
        out.entry(family).or_default().labels.extend(labels);
    }
    out
}

/// The family a sample or query name belongs to: itself, or a histogram's (summary's)
/// `_bucket`, `_sum` or `_count` series.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let kind = families.get(base)?.kind.as_str();
        let fits = kind == "histogram" || (kind == "summary" && *suffix != "_bucket");
        fits.then_some(base)
    })
}

/// Every `scim_bridge_*` token of a text, with its byte offset: whole words only.
fn metric_names(text: &str) -> Vec<(usize, &str)> {
    const PREFIX: &str = "scim_bridge_";
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(PREFIX) {
        let start = from + at;
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        let before = text[..start].chars().next_back();
        if !before.is_some_and(is_word) && end > start + PREFIX.len() {
            out.push((start, &text[start..end]));
        }
        from = end;
    }
    out
}

/// The label names of the matchers in `rest`, which starts just after a `{`; stops at the
/// matching `}`. Quoted values may hold any character.
fn selector_labels(rest: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut name = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '}' => break,
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '=' | '!' | '~' if !name.is_empty() => labels.push(std::mem::take(&mut name)),
            ',' => name.clear(),
            c if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
            _ => {}
        }
    }
    labels
}

/// The labels of `by (...)`, `without (...)`, `on (...)`, `ignoring (...)`,
/// `group_left (...)` and `group_right (...)` clauses of a PromQL expression.
fn grouping_labels(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut labels = Vec::new();
    for keyword in KEYWORDS {
        let mut from = 0;
        while let Some(at) = expr[from..].find(keyword) {
            let start = from + at;
            let end = start + keyword.len();
            from = end;
            let before = expr[..start].chars().next_back();
            let after = expr[end..].trim_start();
            if before.is_some_and(is_word) || !after.starts_with('(') {
                continue;
            }
            if expr[end..].chars().next().is_some_and(is_word) {
                continue;
            }
            let inner = &after[1..after.find(')').unwrap_or(after.len())];
            labels.extend(
                inner
                    .split(',')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            );
        }
    }
    labels
}

/// What a monitoring file names that the scrape does not have.
#[derive(Debug, Default)]
struct Findings {
    /// "file: message" lines.
    problems: Vec<String>,
}

impl Findings {
    fn add(&mut self, file: &str, message: String) {
        self.problems.push(format!("{file}: {message}"));
    }
}

/// Checks monitoring files against an exposition.
struct Checker<'a> {
    families: &'a BTreeMap<String, Family>,
    /// Names allowed to be missing, with the labels they will have.
    pending: &'a [(&'a str, &'a [&'a str])],
}

impl Checker<'_> {
    /// The labels of the family `name` names (with the target labels, and `le` for a
    /// histogram's buckets); `None` for a name the scrape does not have and no allowance
    /// covers.
    fn labels_of(&self, name: &str) -> Option<BTreeSet<String>> {
        let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        if let Some(family) = family_of(name, self.families) {
            labels.extend(self.families[family].labels.iter().cloned());
            if name.ends_with("_bucket") {
                labels.insert("le".into());
            }
            return Some(labels);
        }
        let (_, pending) = self.pending.iter().find(|(n, _)| *n == name)?;
        labels.extend(pending.iter().map(|l| l.to_string()));
        Some(labels)
    }

    /// Every `scim_bridge_*` name anywhere in `text` (queries, comments, descriptions).
    fn names(&self, file: &str, text: &str, found: &mut Findings) {
        let unknown: BTreeSet<&str> = metric_names(text)
            .into_iter()
            .map(|(_, n)| n)
            .filter(|n| self.labels_of(n).is_none())
            .collect();
        for name in unknown {
            found.add(file, format!("`{name}` is not a metric the bridge exposes"));
        }
    }

    /// The labels a PromQL expression selects and groups by.
    fn expr(&self, file: &str, expr: &str, found: &mut Findings) {
        let mut in_expr = BTreeSet::new();
        for (at, name) in metric_names(expr) {
            let Some(labels) = self.labels_of(name) else {
                continue; // reported by `names`
            };
            in_expr.extend(labels.iter().cloned());
            let rest = expr[at + name.len()..].trim_start();
            if let Some(rest) = rest.strip_prefix('{') {
                for label in selector_labels(rest) {
                    if !labels.contains(&label) {
                        found.add(
                            file,
                            format!("`{name}` has no label `{label}` (in `{expr}`)"),
                        );
                    }
                }
            }
        }
        for label in grouping_labels(expr) {
            if !in_expr.contains(&label) {
                found.add(
                    file,
                    format!("no metric of `{expr}` has the label `{label}` it groups by"),
                );
            }
        }
    }
}

/// Checks the three monitoring files (given as text) against an exposition.
fn check(
    scrape: &str,
    pending: &[(&str, &[&str])],
    dashboard: &str,
    rules: &str,
    rule_tests: &str,
) -> Findings {
    let families = families(scrape);
    let checker = Checker {
        families: &families,
        pending,
    };
    let mut found = Findings::default();

    checker.names(DASHBOARD, dashboard, &mut found);
    let dashboard: serde_json::Value = serde_json::from_str(dashboard).unwrap();
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            checker.expr(DASHBOARD, target["expr"].as_str().unwrap(), &mut found);
            exprs += 1;
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        // label_values(<selector>, <label>): the label must be the selector's metric's.
        let Some(query) = var["query"]["query"].as_str() else {
            continue;
        };
        if let Some(args) = query
            .strip_prefix("label_values(")
            .and_then(|a| a.strip_suffix(')'))
        {
            let (selector, label) = args.rsplit_once(',').unwrap();
            checker.expr(
                DASHBOARD,
                &format!("count by ({}) ({selector})", label.trim()),
                &mut found,
            );
        }
    }
    assert!(exprs > 20, "the dashboard has only {exprs} queries");

    checker.names(RULES, rules, &mut found);
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(rules).unwrap();
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            checker.expr(RULES, rule["expr"].as_str().unwrap(), &mut found);
            alerts += 1;
        }
    }
    assert!(alerts >= 8, "the rules have only {alerts} alerts");

    checker.names(RULE_TESTS, rule_tests, &mut found);
    let rule_tests: serde_yaml_ng::Value = serde_yaml_ng::from_str(rule_tests).unwrap();
    for test in rule_tests["tests"].as_sequence().unwrap() {
        // An input series, `name{labels}`, is a selector too: its labels must be the family's.
        for input in test["input_series"].as_sequence().into_iter().flatten() {
            checker.expr(RULE_TESTS, input["series"].as_str().unwrap(), &mut found);
        }
    }
    found
}

fn read(relative: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A bridge that has seen a little of everything, scraped over HTTP: requests answered and
/// refused, a partner 429 and its retry, memberships through the outbox, a reconciliation
/// that found drift.
async fn busy_bridge_scrape() -> String {
    let h = Harness::start(Options {
        api: SiteApi::Groups,
        // A tiny failed-authentication budget per address, then 429: the limit's counter
        // appears.
        http: HttpConfig {
            auth_failure_limit: RateLimitConfig {
                per_second: 0.0001,
                burst: 2,
            },
            ..HttpConfig::default()
        },
        ..Options::default()
    })
    .await;
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
    let ada = create_user(&h, "ada@acme.example.com", "Ada", "L").await;
    let bob = create_user(&h, "bob@acme.example.com", "Bob", "M").await;
    create_group(&h, "Finance", &[&ada, &bob]).await;
    assert_eq!(h.get("/Users").await.0, StatusCode::OK);
    // Wrong tokens: 401s until the address's budget is spent, then 429.
    let mut answers = Vec::new();
    while !answers.contains(&StatusCode::TOO_MANY_REQUESTS) && answers.len() < 5 {
        let res = h
            .http
            .get(format!("{}/Users", h.base))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        answers.push(res.status());
    }
    assert_eq!(
        answers.first(),
        Some(&StatusCode::UNAUTHORIZED),
        "{answers:?}"
    );
    assert_eq!(
        answers.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{answers:?}"
    );
    h.settle(Duration::from_secs(10)).await;
    delete_partner_user(&h, "acme", "bob@acme.example.com").await;
    let tenant = h.bridge.tenant("acme").unwrap();
    reconcile(&h.bridge, &tenant, false).await.unwrap();

    let res = h.http.get(&scrape_url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    exporter.abort();
    assert!(!text.contains(TOKEN), "the scrape shows the bearer token");
    text
}

#[tokio::test]
async fn every_metric_and_label_the_dashboard_and_alert_rules_name_is_exposed() {
    let scrape = busy_bridge_scrape().await;
    // The families this test relies on are all there (a harness change that loses one
    // would otherwise show as a misleading "not exposed").
    let exposed = families(&scrape);
    for name in [
        metrics::HTTP_REQUESTS,
        metrics::HTTP_DURATION,
        metrics::AUTH_FAILURES,
        metrics::RATE_LIMITED,
        metrics::PARTNER_REQUESTS,
        metrics::PARTNER_DURATION,
        metrics::PARTNER_RETRIES,
        metrics::PARTNER_THROTTLED,
        metrics::OUTBOX_DEPTH,
        metrics::OUTBOX_FAILING,
        metrics::OUTBOX_OLDEST_AGE,
        metrics::OUTBOX_PARKED,
        metrics::OUTBOX_OVERDUE_CLAIMS,
        metrics::PENDING_DELETIONS,
        metrics::PENDING_DELETION_OLDEST_AGE,
        metrics::DEGRADED,
        metrics::RECONCILE_DRIFT,
        metrics::RECONCILE_RUNS,
        metrics::SITE_INFO,
    ] {
        assert!(
            exposed.get(name).is_some_and(|f| !f.kind.is_empty()),
            "{name} is not in the scrape:\n{scrape}"
        );
    }
    let found = check(
        &scrape,
        ADDED_BY_CREDENTIAL_CHECK,
        &read(DASHBOARD),
        &read(RULES),
        &read(RULE_TESTS),
    );
    assert!(
        found.problems.is_empty(),
        "deploy/monitoring names what the bridge does not expose:\n  {}\n\nthe scrape:\n{scrape}",
        found.problems.join("\n  ")
    );
}

/// The check itself: a misspelled metric, a label the family lacks, a grouping label no
/// metric of the expression has, a histogram suffix on a gauge and a series with a wrong
/// label are each reported; the allowance covers only its own names.
#[test]
fn the_check_reports_misspelled_metrics_and_labels() {
    let scrape = "\
# TYPE scim_bridge_outbox_depth gauge
scim_bridge_outbox_depth 0
# TYPE scim_bridge_partner_requests_total counter
scim_bridge_partner_requests_total{tenant=\"acme\",site=\"acme\",call=\"get_user\",outcome=\"ok\"} 3
# TYPE scim_bridge_http_request_duration_seconds histogram
scim_bridge_http_request_duration_seconds_bucket{tenant=\"acme\",resource=\"Users\",operation=\"list\",le=\"0.005\"} 1
scim_bridge_http_request_duration_seconds_sum{tenant=\"acme\",resource=\"Users\",operation=\"list\"} 0.001
scim_bridge_http_request_duration_seconds_count{tenant=\"acme\",resource=\"Users\",operation=\"list\"} 1
";
    let dashboard = |exprs: &[&str]| {
        let targets: Vec<_> = exprs
            .iter()
            .map(|e| serde_json::json!({ "expr": e }))
            .collect();
        serde_json::json!({
            "panels": [{ "targets": targets }],
            "templating": { "list": [
                { "query": { "query": "label_values(scim_bridge_partner_requests_total, site)" } }
            ] }
        })
        .to_string()
    };
    let good = [
        "max(scim_bridge_outbox_depth)",
        "sum by (site, outcome) (rate(scim_bridge_partner_requests_total{site=~\"$site\", outcome!~\"ok|not_found\"}[5m]))",
        "histogram_quantile(0.95, sum by (le, operation) (rate(scim_bridge_http_request_duration_seconds_bucket{tenant=~\"$tenant\"}[5m])))",
        "sum(rate(scim_bridge_http_request_duration_seconds_sum[5m])) / sum(rate(scim_bridge_http_request_duration_seconds_count[5m]))",
        "max by (tenant, site) (scim_bridge_partner_circuit_open{site=\"a\"})",
    ];
    let good_dashboard =
        dashboard(&[&good[..], &good[..], &good[..], &good[..], &good[..]].concat());
    let rules = |expr: &str| {
        let rules: Vec<_> = (0..8)
            .map(|i| format!("      - alert: A{i}\n        expr: '{expr}'\n"))
            .collect();
        format!("groups:\n  - name: g\n    rules:\n{}", rules.concat())
    };
    let good_rules = rules("max by (job) (scim_bridge_outbox_depth) > 0");
    let rule_tests = |series: &str| {
        format!("tests:\n  - input_series:\n      - series: '{series}'\n        values: '1x5'\n")
    };
    let good_tests = rule_tests(
        "scim_bridge_partner_requests_total{job=\"j\", tenant=\"a\", site=\"a\", outcome=\"ok\"}",
    );
    let pending: &[(&str, &[&str])] = &[("scim_bridge_partner_circuit_open", &["tenant", "site"])];
    let run = |d: &str, r: &str, t: &str| check(scrape, pending, d, r, t).problems;
    assert_eq!(
        run(&good_dashboard, &good_rules, &good_tests),
        Vec::<String>::new()
    );

    let bad = |d: String, r: String, t: String, want: &str| {
        let problems = run(&d, &r, &t);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "no `{want}` in {problems:?}"
        );
    };
    let with_bad_query =
        |q: &str| dashboard(&[&good[..], &good[..], &good[..], &good[..], &[q]].concat());
    // A misspelled metric, in a query or only in a description.
    bad(
        with_bad_query("max(scim_bridge_outbox_dept)"),
        good_rules.clone(),
        good_tests.clone(),
        "`scim_bridge_outbox_dept` is not a metric",
    );
    bad(
        good_dashboard.replace(
            "\"panels\"",
            "\"description\":\"see scim_bridge_outbox_depht\",\"panels\"",
        ),
        good_rules.clone(),
        good_tests.clone(),
        "`scim_bridge_outbox_depht` is not a metric",
    );
    // A histogram suffix on a gauge; `_bucket` of a histogram is fine, of a counter is not.
    bad(
        with_bad_query("scim_bridge_outbox_depth_count"),
        good_rules.clone(),
        good_tests.clone(),
        "`scim_bridge_outbox_depth_count` is not a metric",
    );
    // A label the family does not have, in a selector and in a grouping.
    bad(
        with_bad_query("sum(scim_bridge_partner_requests_total{status=\"500\"})"),
        good_rules.clone(),
        good_tests.clone(),
        "has no label `status`",
    );
    bad(
        good_dashboard.clone(),
        rules("sum by (tennant) (scim_bridge_partner_requests_total) > 0"),
        good_tests.clone(),
        "the label `tennant` it groups by",
    );
    bad(
        good_dashboard.replace(
            "scim_bridge_partner_requests_total, site",
            "scim_bridge_partner_requests_total, sight",
        ),
        good_rules.clone(),
        good_tests.clone(),
        "the label `sight` it groups by",
    );
    // The allowance covers its own names with their own labels only.
    bad(
        with_bad_query("scim_bridge_partner_credentials_ok"),
        good_rules.clone(),
        good_tests.clone(),
        "`scim_bridge_partner_credentials_ok` is not a metric",
    );
    bad(
        with_bad_query("scim_bridge_partner_circuit_open{call=\"x\"}"),
        good_rules.clone(),
        good_tests.clone(),
        "has no label `call`",
    );
    // A promtool input series with a misspelled metric or label.
    bad(
        good_dashboard.clone(),
        good_rules.clone(),
        rule_tests("scim_bridge_outbox_failling{job=\"j\"}"),
        "`scim_bridge_outbox_failling` is not a metric",
    );
    bad(
        good_dashboard,
        good_rules,
        rule_tests("scim_bridge_partner_requests_total{job=\"j\", sites=\"a\"}"),
        "has no label `sites`",
    );
}

#[test]
fn metric_names_are_whole_words() {
    let text = "max(scim_bridge_outbox_depth) my_scim_bridge_x record:scim_bridge_y scim_bridge_ \"scim_bridge_site_info{";
    let names: Vec<_> = metric_names(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["scim_bridge_outbox_depth", "scim_bridge_site_info"]);
    assert_eq!(
        grouping_labels(
            "sum by (tenant, site) (x) / on(tenant) group_left (api) y unless bypass (z)"
        ),
        ["tenant", "site", "tenant", "api"]
    );
    assert_eq!(
        selector_labels("a=\"x,}\", b!~\"y\\\"\" , c=~\"$c\"} ignored{d=\"1\"}"),
        ["a", "b", "c"]
    );
}
