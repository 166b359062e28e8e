use super::*;

fn env(pairs: &[(&str, &str)]) -> Sources {
    Sources {
        file: None,
        env: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ),
    }
}

const SINGLE: &[(&str, &str)] = &[
    ("SCIM_BRIDGE_SITE_NAME", "acme"),
    ("SCIM_BRIDGE_API_KEY", "1234567890"),
    ("SCIM_BRIDGE_BEARER_TOKEN", "a-long-enough-token-value"),
    ("SCIM_BRIDGE_INVITED_BY_EMAIL", "admin@acme.example"),
    ("SCIM_BRIDGE_DRY_RUN", "true"),
    ("SCIM_BRIDGE_DEFAULT_ACCESS", "discovery"),
    ("SCIM_BRIDGE_LISTEN", "0.0.0.0:9000"),
    ("SCIM_BRIDGE_SANDBOX_TOKEN", "ignored"),
    ("UNRELATED", "x"),
];

#[test]
fn audit_retention_days_defaults_to_90_parses_and_refuses_invalid_values() {
    assert_eq!(Config::load(&env(&[])).unwrap().audit.retention_days, 90);
    let c = Config::load(&env(&[("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", "30")])).unwrap();
    assert_eq!(c.audit.retention_days, 30);
    // 0 keeps entries forever.
    let c = Config::load(&env(&[("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", "0")])).unwrap();
    assert_eq!(c.audit.retention_days, 0);
    assert!(c.redacted_toml().contains("[audit]\nretention_days = 0"));
    // From a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[audit]\nretention_days = 400\n").unwrap();
    let c = Config::load(&Sources {
        file: Some(file),
        env: Some(vec![]),
    })
    .unwrap();
    assert_eq!(c.audit.retention_days, 400);
    // Negative, not a number, or absurdly long: refused, naming the variable or setting.
    for bad in ["-1", "ninety", "1.5"] {
        let err = Config::load(&env(&[("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", bad)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SCIM_BRIDGE_AUDIT__RETENTION_DAYS"),
            "{bad}: {err}"
        );
    }
    let err = Config::load(&env(&[("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", "36501")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SCIM_BRIDGE_AUDIT__RETENTION_DAYS: must be at most 36500"),
        "{err}"
    );
}

#[test]
fn default_partner_url_parses() {
    assert_eq!(
        default_partner_url().as_str(),
        "https://api.periscopedata.com/"
    );
}

#[test]
fn single_tenant_from_environment_alone() {
    let c = Config::load(&env(SINGLE)).unwrap();
    assert_eq!(c.tenants.len(), 1);
    let t = &c.tenants[0];
    assert_eq!(t.base_path, "/scim/v2");
    assert_eq!(t.sites[0].site_name, "acme");
    assert_eq!(t.sites[0].api_key.as_ref().unwrap().expose(), "1234567890");
    assert_eq!(
        t.sites[0].base_url.as_str(),
        "https://api.periscopedata.com/"
    );
    assert!(t.dry_run);
    assert_eq!(t.default_access, Access::Discovery);
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(t.token_hashes().len(), 1);
}

#[test]
fn a_basic_password_by_its_sha256_from_the_environment_and_its_mistakes_named() {
    fn with(extra: &[(&str, &str)]) -> String {
        let mut vars = vec![
            ("SCIM_BRIDGE_SITE_NAME", "acme"),
            ("SCIM_BRIDGE_API_KEY", "1234567890"),
            ("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example"),
            ("SCIM_BRIDGE_BASIC__USERNAME", "okta-scim"),
        ];
        vars.extend_from_slice(extra);
        match Config::load(&env(&vars)) {
            Ok(c) => format!("{:?}", c.tenants[0].credentials.basic[0].password_sha256),
            Err(e) => format!("error: {e}"),
        }
    }
    let digest = hex::encode(sha256("generated"));
    assert_eq!(
        with(&[("SCIM_BRIDGE_BASIC__PASSWORD_SHA256", &digest)]),
        format!("{:?}", Some(&digest))
    );
    // Named by the variables the operator set (or would set).
    let setting = "SCIM_BRIDGE_BASIC__PASSWORD_";
    let hash = crate::http::auth::basic::hash_password("pw").unwrap();
    for wrong in [
        vec![("SCIM_BRIDGE_BASIC__PASSWORD_SHA256", "not-hex")],
        vec![
            ("SCIM_BRIDGE_BASIC__PASSWORD_SHA256", digest.as_str()),
            ("SCIM_BRIDGE_BASIC__PASSWORD_HASH", hash.as_str()),
        ],
        vec![],
    ] {
        let err = with(&wrong);
        assert!(
            err.starts_with("error: ") && err.contains(setting),
            "{wrong:?}: {err}"
        );
    }
    // A SHA-256 pasted where the Argon2 hash goes says where it belongs.
    let err = with(&[("SCIM_BRIDGE_BASIC__PASSWORD_HASH", &digest)]);
    assert!(
        err.starts_with("error: ") && err.contains("password_sha256"),
        "{err}"
    );
}

#[test]
fn every_credential_type_from_environment_alone() {
    let hash = crate::http::auth::basic::hash_password("pw").unwrap();
    let c = Config::load(&env(&[
        ("SCIM_BRIDGE_SITE_NAME", "acme"),
        ("SCIM_BRIDGE_API_KEY", "1234567890"),
        ("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example"),
        ("SCIM_BRIDGE_BASIC__USERNAME", "okta-scim"),
        ("SCIM_BRIDGE_BASIC__PASSWORD_HASH", &hash),
        (
            "SCIM_BRIDGE_JWT__ENTRA_TENANT_ID",
            "0b7e3d4c-1f2a-4e5b-9c8d-7a6b5c4d3e2f",
        ),
        (
            "SCIM_BRIDGE_JWT__AUDIENCE",
            "8adf8e6e-67b2-4cf2-a259-e3dc5476c621",
        ),
        ("SCIM_BRIDGE_OAUTH__CLIENT_ID", "okta"),
        (
            "SCIM_BRIDGE_OAUTH__CLIENT_SECRET",
            "client-secret-0123456789",
        ),
        (
            "SCIM_BRIDGE_OAUTH__SIGNING_KEY",
            "signing-key-0123456789abcdef0123456789",
        ),
        ("SCIM_BRIDGE_ADMIN__TOKEN_SHA256", &"a".repeat(64)),
        (
            "SCIM_BRIDGE_HTTP__TRUSTED_PROXIES",
            "[10.0.0.0/8, 192.168.1.1]",
        ),
        ("SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND", "0"),
        ("SCIM_BRIDGE_HTTP__BASIC_AUTH_MAX_CONCURRENT", "3"),
    ]))
    .unwrap();
    let cred = &c.tenants[0].credentials;
    assert!(cred.bearer_tokens.is_empty());
    assert_eq!(cred.basic[0].username, "okta-scim");
    assert_eq!(
        cred.jwt[0].issuer,
        "https://sts.windows.net/0b7e3d4c-1f2a-4e5b-9c8d-7a6b5c4d3e2f/"
    );
    assert_eq!(
            cred.jwt[0].jwks_url.as_ref().unwrap().as_str(),
            "https://login.microsoftonline.com/0b7e3d4c-1f2a-4e5b-9c8d-7a6b5c4d3e2f/discovery/v2.0/keys"
        );
    assert_eq!(
        cred.jwt[0].audience,
        ["8adf8e6e-67b2-4cf2-a259-e3dc5476c621"]
    );
    let oauth = cred.oauth.as_ref().unwrap();
    assert_eq!(oauth.clients[0].client_id, "okta");
    assert_eq!(oauth.token_ttl_s, 3600);
    assert_eq!(c.admin.bearer_tokens.len(), 1);
    assert_eq!(c.http.trusted_proxies, ["10.0.0.0/8", "192.168.1.1"]);
    assert!(!c.http.rate_limit.enabled());
    assert_eq!(c.http.basic_auth_max_concurrent, 3);
    let text = c.redacted_toml();
    for secret in [
        hash.as_str(),
        "client-secret-0123456789",
        "signing-key-0123456789",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn wrong_security_settings_are_named() {
    let err = Config::load(&env(&[
        ("SCIM_BRIDGE_SITE_NAME", "acme"),
        ("SCIM_BRIDGE_API_KEY", "1234567890"),
        ("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example"),
        ("SCIM_BRIDGE_BASIC__USERNAME", "okta:scim"),
        ("SCIM_BRIDGE_BASIC__PASSWORD_HASH", "plain-password"),
        ("SCIM_BRIDGE_JWT__ISSUER", "https://idp.example/"),
        ("SCIM_BRIDGE_JWT__HS256_SECRET", "short-secret"),
        ("SCIM_BRIDGE_JWT__ALGORITHMS", "[HS256, RS256, none]"),
        ("SCIM_BRIDGE_OAUTH__CLIENT_ID", "okta"),
        (
            "SCIM_BRIDGE_OAUTH__CLIENT_SECRET",
            "client-secret-0123456789",
        ),
        ("SCIM_BRIDGE_HTTP__TRUSTED_PROXIES", "[not-an-address]"),
        ("SCIM_BRIDGE_HTTP__AUTH_FAILURE_LIMIT__BURST", "0"),
        ("SCIM_BRIDGE_HTTP__MAX_BODY_BYTES", "0"),
        ("SCIM_BRIDGE_HTTP__BASIC_AUTH_MAX_CONCURRENT", "5000"),
    ]))
    .unwrap_err();
    let text = err.to_string();
    for setting in [
        "SCIM_BRIDGE_BASIC__USERNAME:",
        "SCIM_BRIDGE_BASIC__PASSWORD_HASH:",
        "SCIM_BRIDGE_JWT__AUDIENCE:",
        "SCIM_BRIDGE_JWT__HS256_SECRET:",
        "SCIM_BRIDGE_JWT__ALGORITHMS:",
        "SCIM_BRIDGE_OAUTH__SIGNING_KEY:",
        "SCIM_BRIDGE_HTTP__TRUSTED_PROXIES:",
        "SCIM_BRIDGE_HTTP__AUTH_FAILURE_LIMIT__BURST:",
        "SCIM_BRIDGE_HTTP__MAX_BODY_BYTES:",
        "SCIM_BRIDGE_HTTP__BASIC_AUTH_MAX_CONCURRENT:",
    ] {
        assert!(text.contains(setting), "{setting} not named in:\n{text}");
    }
    for secret in ["plain-password", "short-secret", "client-secret-0123456789"] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn digits_keep_their_leading_zeros_and_length() {
    let long = "123456789012345678901234567890";
    let c = Config::load(&env(&[
        ("SCIM_BRIDGE_SITE_NAME", "007"),
        ("SCIM_BRIDGE_API_KEY", long),
        ("SCIM_BRIDGE_BEARER_TOKEN", "0123456789012345"),
        ("SCIM_BRIDGE_INVITED_BY_EMAIL", "owner@acme.example"),
        ("SCIM_BRIDGE_LISTEN", "127.0.0.1:9000"),
        ("SCIM_BRIDGE_BRIDGE__WORKERS", "8"),
    ]))
    .unwrap();
    let t = &c.tenants[0];
    assert_eq!(t.sites[0].site_name, "007");
    assert_eq!(t.sites[0].api_key.as_ref().unwrap().expose(), long);
    assert_eq!(
        t.credentials.bearer_tokens[0]
            .token
            .as_ref()
            .unwrap()
            .expose(),
        "0123456789012345"
    );
    assert_eq!(c.bridge.workers, 8);
}

#[test]
fn an_unknown_variable_is_named_once() {
    let err = Config::load(&env(&[("SCIM_BRIDGE_METRIC_LISTEN", "1")])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("SCIM_BRIDGE_METRIC_LISTEN:"), "{text}");
    assert!(!text.contains("METRIC_LISTEN__"), "{text}");
}

#[test]
fn nothing_configured_means_sandbox() {
    let c = Config::load(&env(&[])).unwrap();
    assert!(c.is_unconfigured());
    assert!(c.nothing_configured());
    // Logging, the sandbox's token and the test suite's variables configure nothing.
    let c = Config::load(&env(&[
        ("SCIM_BRIDGE_LOG__LEVEL", "debug"),
        ("SCIM_BRIDGE_LOG__FORMAT", "json"),
        ("SCIM_BRIDGE_LOG_FORMAT", "text"),
        (
            "SCIM_BRIDGE_SANDBOX_TOKEN",
            "a-sandbox-token-of-some-length",
        ),
        ("SCIM_BRIDGE_TEST_POSTGRES_URL", "postgres://x"),
        ("SCIM_BRIDGE_TEST_POSTGRES_REQUIRED", "1"),
        ("HOME", "/root"),
    ]))
    .unwrap();
    assert!(c.nothing_configured(), "{:?}", c.settings_given);
}

#[test]
fn a_production_setting_without_a_tenant_is_not_nothing() {
    for vars in [
        vec![("SCIM_BRIDGE_PUBLIC_BASE_URL", "https://scim.example.com")],
        vec![("SCIM_BRIDGE_LISTEN", "0.0.0.0:8080")],
        vec![("SCIM_BRIDGE_LISTEN", "127.0.0.1:8080")],
        vec![
            ("SCIM_BRIDGE_DATA_DIR", "/data"),
            ("SCIM_BRIDGE_LOG__LEVEL", "info"),
        ],
        vec![("SCIM_BRIDGE_STORE__URL", "postgres://db/scim")],
        vec![("SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND", "0")],
        vec![("SCIM_BRIDGE_DEPROVISION", "strip")],
    ] {
        let c = Config::load(&env(&vars)).unwrap();
        assert!(c.is_unconfigured(), "{vars:?}");
        assert!(!c.nothing_configured(), "{vars:?}");
        let named: Vec<&str> = vars
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !k.starts_with("SCIM_BRIDGE_LOG"))
            .collect();
        assert_eq!(c.settings_given, named, "{vars:?}");
    }
    // A file is a setting too, even one without a tenant.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n").unwrap();
    let c = Config::load(&Sources {
        file: Some(path.clone()),
        env: Some(Vec::new()),
    })
    .unwrap();
    assert!(!c.nothing_configured());
    assert_eq!(c.settings_given, [format!("--config {}", path.display())]);
}

#[test]
fn secrets_never_print() {
    let c = Config::load(&env(SINGLE)).unwrap();
    for text in [format!("{c:?}"), c.redacted_toml()] {
        assert!(!text.contains("1234567890"), "{text}");
        assert!(!text.contains("a-long-enough-token-value"), "{text}");
        assert!(text.contains("***"));
    }
}

#[test]
fn file_variants_read_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "from-file-key\n").unwrap();
    let mut vars: Vec<(&str, &str)> = SINGLE
        .iter()
        .copied()
        .filter(|(k, _)| *k != "SCIM_BRIDGE_API_KEY")
        .collect();
    let key_path = key.display().to_string();
    vars.push(("SCIM_BRIDGE_API_KEY_FILE", &key_path));
    let c = Config::load(&env(&vars)).unwrap();
    assert_eq!(
        c.tenants[0].sites[0].api_key.as_ref().unwrap().expose(),
        "from-file-key"
    );
}

#[test]
fn missing_settings_are_named() {
    let err = Config::load(&env(&[("SCIM_BRIDGE_SITE_NAME", "acme")])).unwrap_err();
    let text = err.to_string();
    // The variables to set, as nothing else configures this tenant.
    assert!(text.contains("SCIM_BRIDGE_API_KEY: missing"), "{text}");
    assert!(
        text.contains("SCIM_BRIDGE_INVITED_BY_EMAIL: required"),
        "{text}"
    );
    assert!(
        text.contains("SCIM_BRIDGE_BEARER_TOKEN: no credential"),
        "{text}"
    );
}

#[test]
fn unknown_and_mistyped_settings_are_named() {
    // Errors from the environment name the variable the operator set.
    let err = Config::load(&env(&[("SCIM_BRIDGE_LISTEN_ADRESS", "x")])).unwrap_err();
    assert!(
        err.to_string().contains("SCIM_BRIDGE_LISTEN_ADRESS"),
        "{err}"
    );
    let err = Config::load(&env(&[("SCIM_BRIDGE_LISTEN", "not an address")])).unwrap_err();
    assert!(err.to_string().contains("SCIM_BRIDGE_LISTEN:"), "{err}");
    let mut vars = SINGLE.to_vec();
    vars.push(("SCIM_BRIDGE_DEPROVISION", "shred"));
    let err = Config::load(&env(&vars)).unwrap_err();
    assert!(err.to_string().contains("SCIM_BRIDGE_DEPROVISION"), "{err}");
    let mut vars = SINGLE.to_vec();
    vars.push(("SCIM_BRIDGE_UNKNOWN_MEMBERS", "ignore"));
    let err = Config::load(&env(&vars)).unwrap_err();
    assert!(
        err.to_string().contains("SCIM_BRIDGE_UNKNOWN_MEMBERS"),
        "{err}"
    );
    let mut vars = SINGLE.to_vec();
    vars.push(("SCIM_BRIDGE_UNKNOWN_MEMBERS", "reject"));
    let c = Config::load(&env(&vars)).unwrap();
    assert_eq!(c.tenants[0].unknown_members, UnknownMembersPolicy::Reject);
    let c = Config::load(&env(SINGLE)).unwrap();
    assert_eq!(c.tenants[0].unknown_members, UnknownMembersPolicy::Skip);
    // The test suite's own variable is not configuration.
    let ok = Config::load(&env(&[("SCIM_BRIDGE_TEST_POSTGRES_URL", "postgres://x")]));
    assert!(ok.is_ok());
    let ok = Config::load(&env(&[("SCIM_BRIDGE_TEST_POSTGRES_REQUIRED", "1")]));
    assert!(ok.is_ok(), "{:?}", ok.err());
    // A file's errors name the setting and the file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "listen = 5\n").unwrap();
    let err = Config::load(&Sources {
        file: Some(file.clone()),
        env: Some(vec![]),
    })
    .unwrap_err()
    .to_string();
    // (figment may print the path relative to the working directory)
    assert!(err.contains("listen:") && err.contains("c.toml)"), "{err}");
}

#[test]
fn toml_file_with_tenants_overlaid_by_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        r#"
listen = "127.0.0.1:7000"
[[tenants]]
name = "acme"
base_path = "/t/acme/scim/v2"
invited_by_email = "admin@acme.example"
deprovision = "strip"
email_change = "recreate"
unknown_members = "reject"
[[tenants.credentials.bearer_tokens]]
name = "okta"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
[[tenants.sites]]
base_url = "http://127.0.0.1:9999"
site_name = "acme"
api_key = "k"
[[tenants.sites]]
site_name = "acme-eu"
api_key = "k2"
"#,
    )
    .unwrap();
    let c = Config::load(&Sources {
        file: Some(file),
        env: Some(vec![("SCIM_BRIDGE_LISTEN".into(), "127.0.0.1:7001".into())]),
    })
    .unwrap();
    assert_eq!(c.listen.port(), 7001);
    let t = &c.tenants[0];
    assert_eq!(t.sites.len(), 2);
    assert_eq!(t.deprovision, DeprovisionPolicy::Strip);
    assert_eq!(t.email_change, EmailChangePolicy::Recreate);
    assert_eq!(t.unknown_members, UnknownMembersPolicy::Reject);
    assert!(
        c.redacted_toml().contains("unknown_members = \"reject\""),
        "check-config shows the policy"
    );
    assert_eq!(t.token_hashes()[0].1, sha256("test"));
}

#[test]
fn bad_base_path_and_short_token_are_rejected() {
    let mut vars = SINGLE.to_vec();
    vars.retain(|(k, _)| *k != "SCIM_BRIDGE_BEARER_TOKEN");
    vars.push(("SCIM_BRIDGE_BEARER_TOKEN", "short"));
    vars.push(("SCIM_BRIDGE_BASE_PATH", "scim/../v2/"));
    let text = Config::load(&env(&vars)).unwrap_err().to_string();
    assert!(text.contains("SCIM_BRIDGE_BASE_PATH:"), "{text}");
    assert!(text.contains("not \"scim/../v2/\""), "{text}");
    assert!(text.contains("too short"), "{text}");
    assert!(!text.contains("short\""), "{text}");
}

#[test]
fn an_rbac_site_from_the_environment_and_role_settings_checked() {
    use crate::partner::rbac::SiteApi;
    let mut vars = SINGLE.to_vec();
    vars.push(("SCIM_BRIDGE_SITE_API", "roles"));
    vars.push(("SCIM_BRIDGE_SITE_CREATE_ROLES", "false"));
    let c = Config::load(&env(&vars)).unwrap();
    let site = &c.tenants[0].sites[0];
    assert_eq!(site.api, SiteApi::Roles);
    assert!(!site.create_roles);
    // The default stays a v1 site that creates roles if switched.
    let c = Config::load(&env(SINGLE)).unwrap();
    assert_eq!(c.tenants[0].sites[0].api, SiteApi::Groups);
    assert!(c.tenants[0].sites[0].create_roles);
    let mut vars = SINGLE.to_vec();
    vars.push(("SCIM_BRIDGE_SITE_API", "teams"));
    let err = Config::load(&env(&vars)).unwrap_err().to_string();
    assert!(err.contains("SCIM_BRIDGE_SITE_API"), "{err}");
    // From a file: role settings on a v1 site, and a group mapped onto Everyone, are refused.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let tenant = "[[tenants]]\nname = \"t\"\ninvited_by_email = \"a@b.io\"\n\
        [[tenants.credentials.bearer_tokens]]\nname = \"idp\"\ntoken = \"a-long-enough-token-value\"\n\
        [[tenants.sites]]\nsite_name = \"s\"\napi_key = \"k123\"\n";
    std::fs::write(
        &file,
        format!("{tenant}[tenants.sites.role_map]\n\"Okta Analysts\" = \"Analyst\"\n"),
    )
    .unwrap();
    let load = || {
        Config::load(&Sources {
            file: Some(file.clone()),
            env: Some(vec![]),
        })
    };
    let err = load().unwrap_err().to_string();
    // The file's key, with the names of the tenant and the site it is in.
    assert!(
        err.contains(
            "tenants[0].sites[0].role_map (tenant \"t\", site \"s\"): applies only to a site \
             with api = \"roles\""
        ),
        "{err}"
    );
    std::fs::write(
        &file,
        format!(
            "{tenant}api = \"roles\"\n[tenants.sites.role_map]\n\"All\" = \"everyone\"\n\
             [tenants.sites.role_template]\ndescription = \"From Okta\"\n\
             privileges = [{{ object_type = \"Dashboard\", permissions = [\"read_dashboards\"] }}]\n"
        ),
    )
    .unwrap();
    let err = load().unwrap_err().to_string();
    assert!(err.contains("`Everyone` is every user's role"), "{err}");
    std::fs::write(
        &file,
        format!(
            "{tenant}api = \"roles\"\n[tenants.sites.role_map]\n\"Okta Analysts\" = \"Analyst\"\n\
             [tenants.sites.role_template]\ndescription = \"From Okta\"\n\
             privileges = [{{ object_type = \"Dashboard\", permissions = [\"read_dashboards\"] }}]\n"
        ),
    )
    .unwrap();
    let c = load().unwrap();
    let site = &c.tenants[0].sites[0];
    assert_eq!(site.role_map["Okta Analysts"], "Analyst");
    // Admin through role_map needs allow_admin_grant; two groups may not share one role.
    std::fs::write(
        &file,
        format!("{tenant}api = \"roles\"\n[tenants.sites.role_map]\n\"Okta Admins\" = \"admin\"\n\"A\" = \"Read\"\n\"B\" = \"read\"\n"),
    )
    .unwrap();
    let err = load().unwrap_err().to_string();
    assert!(
        err.contains("only where the site sets allow_admin_grant"),
        "{err}"
    );
    assert!(err.contains("two groups map to the same role"), "{err}");
    assert_eq!(
        site.role_template.privileges[0].permissions,
        ["read_dashboards"]
    );
}

#[test]
fn single_tenant_and_token_names_from_the_environment() {
    let mut vars = SINGLE.to_vec();
    vars.push(("SCIM_BRIDGE_TENANT_NAME", "acme"));
    vars.push(("SCIM_BRIDGE_BEARER_TOKEN_NAME", "okta"));
    let c = Config::load(&env(&vars)).unwrap();
    assert_eq!(c.tenants[0].name, "acme");
    assert_eq!(c.tenants[0].credentials.bearer_tokens[0].name, "okta");
    let c = Config::load(&env(SINGLE)).unwrap();
    assert_eq!(c.tenants[0].name, "default");
    assert_eq!(c.tenants[0].credentials.bearer_tokens[0].name, "default");
}

/// Rust's names for types, which mean nothing to the person who set the variable.
const TYPE_NAMES: &[&str] = &[
    "usize",
    "u16",
    "u32",
    "u64",
    "i64",
    "f64",
    "SocketAddr",
    "struct ",
    "enum ",
    "Option",
];

#[test]
fn every_wrong_setting_is_reported_at_once_named_as_set_with_its_value() {
    let admin_token = "admin-token-that-must-never-print-0123";
    let err = Config::load(&env(&[
        ("SCIM_BRIDGE_SITE_NAME", "acme"),
        ("SCIM_BRIDGE_API_KEY", "partner-key-never-printed"),
        ("SCIM_BRIDGE_BEARER_TOKEN", "short-secret"),
        ("SCIM_BRIDGE_INVITED_BY_EMAIL", "not-an-email"),
        ("SCIM_BRIDGE_LISTEN", "not an address"),
        ("SCIM_BRIDGE_AUDIT__RETENTION_DAYS", "ninety"),
        ("SCIM_BRIDGE_HTTP__MAX_BODY_BYTES", "-1"),
        ("SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND", "fast"),
        ("SCIM_BRIDGE_DRY_RUN", "maybe"),
        ("SCIM_BRIDGE_DEPROVISION", "shred"),
        ("SCIM_BRIDGE_SITE_API", "rolez"),
        // A secret where a table of settings goes.
        ("SCIM_BRIDGE_ADMIN", admin_token),
    ]))
    .unwrap_err();
    let text = err.to_string();
    for (setting, says) in [
        ("SCIM_BRIDGE_LISTEN", "must be an address and port"),
        (
            "SCIM_BRIDGE_AUDIT__RETENTION_DAYS",
            "must be a whole number (0 or more), not \"ninety\"",
        ),
        (
            "SCIM_BRIDGE_HTTP__MAX_BODY_BYTES",
            "must be a whole number (0 or more), not -1",
        ),
        (
            "SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND",
            "must be a number, not \"fast\"",
        ),
        (
            "SCIM_BRIDGE_DRY_RUN",
            "must be true or false, not \"maybe\"",
        ),
        (
            "SCIM_BRIDGE_DEPROVISION",
            "must be one of remove, strip, keep, not \"shred\"",
        ),
        (
            "SCIM_BRIDGE_SITE_API",
            "must be one of groups, roles, not \"rolez\"",
        ),
        ("SCIM_BRIDGE_ADMIN", "must be a table of settings"),
        (
            "SCIM_BRIDGE_INVITED_BY_EMAIL",
            "must be an email address, not \"not-an-email\"",
        ),
        ("SCIM_BRIDGE_BEARER_TOKEN", "too short"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("- {setting}:")))
            .unwrap_or_else(|| panic!("{setting} not reported in:\n{text}"));
        assert!(line.contains(says), "{setting}: {line}");
    }
    assert_eq!(err.0.len(), 10, "one error each:\n{text}");
    for secret in [admin_token, "partner-key-never-printed", "short-secret"] {
        assert!(!text.contains(secret), "{text}");
    }
    for rust in TYPE_NAMES {
        assert!(!text.contains(rust), "{rust} in:\n{text}");
    }
}

#[test]
fn a_near_miss_variable_name_gets_a_did_you_mean() {
    for (wrong, meant) in [
        ("SCIM_BRIDGE_PARTNER_APIKEY", Some("SCIM_BRIDGE_API_KEY")),
        ("SCIM_BRIDGE_APIKEY", Some("SCIM_BRIDGE_API_KEY")),
        (
            "SCIM_BRIDGE_METRIC_LISTEN",
            Some("SCIM_BRIDGE_METRICS_LISTEN"),
        ),
        (
            "SCIM_BRIDGE_INVITED_BY_EMIAL",
            Some("SCIM_BRIDGE_INVITED_BY_EMAIL"),
        ),
        (
            "SCIM_BRIDGE_HTTP__RATE_LIMIT__PERSECOND",
            Some("SCIM_BRIDGE_HTTP__RATE_LIMIT__PER_SECOND"),
        ),
        (
            "SCIM_BRIDGE_SANDBOX_TOKN",
            Some("SCIM_BRIDGE_SANDBOX_TOKEN"),
        ),
        ("SCIM_BRIDGE_COFFEE_MACHINE", None),
    ] {
        let value = "value-of-an-unknown-variable-never-printed";
        let text = Config::load(&env(&[(wrong, value)]))
            .unwrap_err()
            .to_string();
        assert!(text.contains(&format!("{wrong}: not a variable")), "{text}");
        match meant {
            Some(meant) => assert!(
                text.contains(&format!("did you mean {meant}?")),
                "{wrong}: {text}"
            ),
            None => assert!(!text.contains("did you mean"), "{wrong}: {text}"),
        }
        assert!(!text.contains(value), "{text}");
    }
    // Several at once, each with its own suggestion.
    let text = Config::load(&env(&[
        ("SCIM_BRIDGE_PARTNER_APIKEY", "x"),
        ("SCIM_BRIDGE_SITENAME", "acme"),
    ]))
    .unwrap_err()
    .to_string();
    assert!(text.contains("did you mean SCIM_BRIDGE_API_KEY?"), "{text}");
    assert!(
        text.contains("did you mean SCIM_BRIDGE_SITE_NAME?"),
        "{text}"
    );
}

#[test]
fn a_files_errors_name_its_keys_with_the_tenant_and_site() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        r#"
listen = 5
[audit]
retention_days = "ninety"
[[tenants]]
name = "okta"
invited_by_emial = "admin@acme.example"
[[tenants.credentials.bearer_tokens]]
name = "idp"
token = "a-long-enough-token-value"
[[tenants.sites]]
site_name = "main"
api = "rols"
"#,
    )
    .unwrap();
    let text = Config::load(&Sources {
        file: Some(file),
        env: Some(vec![("SCIM_BRIDGE_BRIDGE__WORKERS".into(), "many".into())]),
    })
    .unwrap_err()
    .to_string();
    for expected in [
        "- listen: must be an address and port",
        "- audit.retention_days: must be a whole number (0 or more), not \"ninety\"",
        "- tenants[0].invited_by_emial (tenant \"okta\"): not a setting scim-bridge knows; did \
         you mean tenants[0].invited_by_email?",
        "- tenants[0].sites[0].api (tenant \"okta\", site \"main\"): must be one of groups, \
         roles, not \"rols\"",
        // Checks after loading, in the same report.
        "- tenants[0].sites[0].api_key (tenant \"okta\", site \"main\"): missing",
        // The environment over the file: the variable.
        "- SCIM_BRIDGE_BRIDGE__WORKERS: must be a whole number (0 or more), not \"many\"",
    ] {
        assert!(text.contains(expected), "{expected}\nnot in:\n{text}");
    }
    for rust in TYPE_NAMES {
        assert!(!text.contains(rust), "{rust} in:\n{text}");
    }
}

#[test]
fn a_rate_limit_is_given_only_when_the_file_or_the_environment_sets_one() {
    assert!(!Config::load(&env(&[])).unwrap().rate_limit_given);
    assert!(!Config::load(&env(SINGLE)).unwrap().rate_limit_given);
    let c = Config::load(&env(&[("SCIM_BRIDGE_HTTP__RATE_LIMIT__BURST", "10")])).unwrap();
    assert!(c.rate_limit_given);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[http.rate_limit]\nper_second = 5.0\nburst = 5\n").unwrap();
    let c = Config::load(&Sources {
        file: Some(file),
        env: Some(vec![]),
    })
    .unwrap();
    assert!(c.rate_limit_given);
}
