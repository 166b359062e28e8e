//! `scim-bridge bench` in its short mode: the harness runs, reports JSON, and its correctness
//! checks pass (partner state equals the desired state, the outbox drains).

use std::process::Command;

#[test]
fn bench_quick_runs_and_reports_json_with_lower_bounds() {
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args([
            "bench",
            "--quick",
            "--scenarios",
            "s3,s4",
            "--churn-users",
            "40",
            "--big-group",
            "60",
            "--check",
            "--json",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2);
    let s3 = &scenarios[0];
    assert_eq!(s3["name"], "S3");
    assert_eq!(s3["lower_bound"], 40);
    assert!(s3["partner_writes"].as_u64().unwrap() >= 40, "{s3}");
    assert_eq!(s3["failures"].as_array().unwrap().len(), 0, "{s3}");
    let s4 = &scenarios[1];
    assert_eq!(s4["name"], "S4");
    // Adding 60 members costs at most 60 writes; removing one costs exactly one.
    assert_eq!(s4["lower_bound"], 61);
    let targets = s4["targets"].as_array().unwrap();
    assert!(
        targets.iter().any(|t| t[0]
            .as_str()
            .unwrap()
            .starts_with("removing 1 of 60: 1 partner writes")
            && t[1] == true),
        "{s4}"
    );
    for s in scenarios {
        let phases = s["phases"].as_array().unwrap();
        assert!(!phases.is_empty());
        assert!(phases[0][1]["requests"].as_u64().unwrap() > 0);
        assert!(s["peak_rss_mb"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_s1_and_s4_on_an_rbac_site_write_at_most_the_lower_bound() {
    let out = Command::new(env!("CARGO_BIN_EXE_scim-bridge"))
        .args([
            "bench",
            "--quick",
            "--site-api",
            "roles",
            "--scenarios",
            "s1,s4",
            "--users",
            "120",
            "--big-group",
            "60",
            "--check",
            "--json",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["site_api"], "roles");
    for s in report["scenarios"].as_array().unwrap() {
        assert_eq!(s["failures"].as_array().unwrap().len(), 0, "{s}");
        let (writes, bound) = (
            s["partner_writes"].as_u64().unwrap(),
            s["lower_bound"].as_u64().unwrap(),
        );
        assert!(bound > 0 && writes <= bound, "{s}");
    }
}
