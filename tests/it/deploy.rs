//! `deploy/`: every `SCIM_BRIDGE_*` variable its files name is one the binary knows, and what
//! each runtime hands the bridge (image + compose, Kubernetes, systemd) loads as a working
//! configuration. The YAML structure is checked by `.ci/check_deploy.py`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use scim_bridge::config::{Config, ConfigErrors, Sources};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every text file under `deploy/`, with its path relative to it.
fn deploy_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), &deploy_dir(), &mut out);
    out.sort();
    out
}

/// The `SCIM_BRIDGE_*` names in a text: whole words, not a bare prefix (`SCIM_BRIDGE_<KEY>`,
/// `SCIM_BRIDGE_HTTP__...`).
fn variable_names(text: &str) -> Vec<String> {
    const PREFIX: &str = "SCIM_BRIDGE_";
    let is_name = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(PREFIX) {
        let start = from + at;
        let end = text[start..]
            .find(|c: char| !is_name(c))
            .map_or(text.len(), |n| start + n);
        let before = text[..start].chars().next_back();
        let name = &text[start..end];
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() > PREFIX.len()
            && !name.ends_with('_')
        {
            names.push(name.to_owned());
        }
        from = end.max(start + PREFIX.len());
    }
    names
}

/// What a `*_FILE` variable's file holds in these tests.
fn secret_for(name: &str) -> &'static str {
    if name.contains("STORE__URL") {
        "postgres://scim_bridge:secret@postgres:5432/scim_bridge"
    } else {
        "a-secret-value-long-enough-for-any-key-0123456789"
    }
}

fn load(file: Option<PathBuf>, env: Vec<(String, String)>) -> Result<Config, ConfigErrors> {
    Config::load(&Sources {
        file,
        env: Some(env),
    })
}

/// Gives every `*_FILE` variable a real file under `dir` (named after the variable).
fn with_secret_files(env: Vec<(String, String)>, dir: &Path) -> Vec<(String, String)> {
    env.into_iter()
        .map(|(k, v)| {
            if k.ends_with("_FILE") {
                let path = dir.join(&k);
                std::fs::write(&path, format!("{}\n", secret_for(&k))).unwrap();
                (k, path.display().to_string())
            } else {
                (k, v)
            }
        })
        .collect()
}

#[test]
fn variable_names_finds_whole_names_only() {
    let text = "ENV SCIM_BRIDGE_LISTEN=0.0.0.0:8080\n# SCIM_BRIDGE_<KEY>, SCIM_BRIDGE_HTTP__...\n\
                - name: SCIM_BRIDGE_STORE__URL_FILE\nX_SCIM_BRIDGE_NOT=1 `SCIM_BRIDGE_LOG__LEVEL`";
    assert_eq!(
        variable_names(text),
        [
            "SCIM_BRIDGE_LISTEN",
            "SCIM_BRIDGE_STORE__URL_FILE",
            "SCIM_BRIDGE_LOG__LEVEL"
        ]
    );
}

/// Each name alone, in comments and prose too: the loader names an unknown variable
/// ("unknown setting"); any other complaint (a missing site, a value of the wrong type) means
/// the name itself is known.
#[test]
fn every_scim_bridge_variable_named_under_deploy_is_one_the_binary_knows() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (file, text) in deploy_files() {
        for name in variable_names(&text) {
            seen.entry(name).or_insert_with(|| file.clone());
        }
    }
    for expected in [
        "SCIM_BRIDGE_LISTEN",
        "SCIM_BRIDGE_DATA_DIR",
        "SCIM_BRIDGE_PUBLIC_BASE_URL",
        "SCIM_BRIDGE_HTTP__TRUSTED_PROXIES",
        "SCIM_BRIDGE_METRICS_LISTEN",
        "SCIM_BRIDGE_STORE__URL_FILE",
        "SCIM_BRIDGE_API_KEY_FILE",
    ] {
        assert!(
            seen.contains_key(expected),
            "{expected} is not used in deploy/"
        );
    }
    let mut unknown = Vec::new();
    for (name, file) in &seen {
        let env = with_secret_files(vec![(name.clone(), "x".into())], dir.path());
        if let Err(errors) = load(None, env) {
            if errors
                .0
                .iter()
                .any(|e| e.message.contains("unknown setting"))
            {
                unknown.push(format!("{name} (in deploy/{file}): {errors}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "unknown variables:\n{}",
        unknown.join("\n")
    );
}

/// `KEY=VALUE` lines of an environment file, comments skipped.
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(v)
}

/// Compose's interpolation: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`,
/// `${VAR?error}`, from `vars` (deploy/compose.env.example, as deploy/.env).
fn interpolate(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').map(|n| at + n).unwrap();
        let expr = &rest[at + 2..end];
        let name_end = expr
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len());
        let (name, op) = expr.split_at(name_end);
        let default = op
            .strip_prefix(":-")
            .or_else(|| op.strip_prefix('-'))
            .map(str::to_owned);
        let value = vars
            .get(name)
            .cloned()
            .or(default)
            .unwrap_or_else(|| panic!("${{{name}}} is not set in compose.env.example"));
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `SCIM_BRIDGE_*: value` entries of compose.yaml, in order, comments skipped.
fn compose_environment() -> Vec<(String, String)> {
    let vars: BTreeMap<String, String> =
        env_file(&read("compose.env.example")).into_iter().collect();
    read("compose.yaml")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("SCIM_BRIDGE_"))
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_owned(), interpolate(unquote(v), &vars))
        })
        .collect()
}

/// `ENV KEY=VALUE` lines of the Dockerfile.
fn image_environment() -> Vec<(String, String)> {
    read("Dockerfile")
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|rest| rest.split_whitespace())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), unquote(v).to_owned())
        })
        .collect()
}

/// A compose bridge sees the image's ENV, then scim-bridge.env (copied from the example),
/// then compose's `environment:`; the PostgreSQL replicas also get the store URL.
#[test]
fn the_image_and_compose_configure_the_sqlite_bridge_and_the_postgres_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let mut base = image_environment();
    assert!(base.contains(&("SCIM_BRIDGE_DATA_DIR".into(), "/data".into())));
    base.extend(env_file(&read("scim-bridge.env.example")));
    let compose = compose_environment();
    assert!(compose
        .iter()
        .any(|(k, v)| k == "SCIM_BRIDGE_STORE__URL_FILE" && v == "/run/secrets/store-url"));

    let mut replica = base.clone();
    replica.extend(compose.iter().cloned());
    let config = load(None, with_secret_files(replica, dir.path())).unwrap();
    assert_eq!(config.tenants.len(), 1);
    assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.public_base(), "https://scim.example.com");
    assert_eq!(config.http.trusted_proxies, ["172.28.53.0/24"]);
    assert_eq!(config.metrics_listen.unwrap().port(), 9090);
    assert!(config.store_url().expose().starts_with("postgres://"));

    let mut single = base;
    single.extend(
        compose
            .into_iter()
            .filter(|(k, _)| k != "SCIM_BRIDGE_STORE__URL_FILE"),
    );
    let config = load(None, with_secret_files(single, dir.path())).unwrap();
    assert_eq!(
        config.store_url().expose(),
        "sqlite:///data/scim-bridge.db?mode=rwc"
    );
}

/// The `config.toml: |` block of the ConfigMap, without its indentation.
fn configmap_toml() -> String {
    let text = read("k8s/configmap.yaml");
    let mut lines = text.lines().skip_while(|l| l.trim() != "config.toml: |");
    lines.next().expect("configmap.yaml has config.toml");
    let indent = "    ";
    lines
        .take_while(|l| l.is_empty() || l.starts_with(indent))
        .map(|l| l.strip_prefix(indent).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `stringData:` entries of the Secret, comments skipped.
fn secret_entries() -> Vec<(String, String)> {
    let text = read("k8s/secret.yaml");
    text.lines()
        .skip_while(|l| l.trim() != "stringData:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_owned(), unquote(v).to_owned())
        })
        .collect()
}

/// The container's `env:` of the Deployment: `- name: X` followed by `value: Y`.
fn deployment_environment() -> Vec<(String, String)> {
    let text = read("k8s/deployment.yaml");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let name = w[0].strip_prefix("- name: ")?;
            let value = w[1].strip_prefix("value: ")?;
            Some((name.to_owned(), unquote(value).to_owned()))
        })
        .collect()
}

/// A pod reads config.toml from the ConfigMap, its secrets as files from the Secret, and the
/// Deployment's environment.
#[test]
fn the_kubernetes_manifests_configure_a_postgres_replica() {
    const SECRETS: &str = "/run/secrets/scim-bridge/";
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let entries = secret_entries();
    for (key, value) in &entries {
        std::fs::write(secrets.join(key), value).unwrap();
    }
    let local = format!("{}/", secrets.display());
    let config_file = dir.path().join("config.toml");
    std::fs::write(&config_file, configmap_toml().replace(SECRETS, &local)).unwrap();
    let env: Vec<(String, String)> = image_environment()
        .into_iter()
        .chain(deployment_environment())
        .map(|(k, v)| (k, v.replace(SECRETS, &local)))
        .collect();
    assert!(env.iter().any(|(k, _)| k == "SCIM_BRIDGE_CONFIG"));

    let config = load(Some(config_file), env).unwrap();
    assert_eq!(config.tenants.len(), 1);
    assert_eq!(config.metrics_listen.unwrap().to_string(), "0.0.0.0:9090");
    let store_url = &entries.iter().find(|(k, _)| k == "store-url").unwrap().1;
    assert_eq!(config.store_url().expose(), store_url);
    let api_key = &entries
        .iter()
        .find(|(k, _)| k == "periscope-api-key")
        .unwrap()
        .1;
    let site = &config.tenants[0].sites[0];
    assert_eq!(site.api_key.as_ref().unwrap().expose(), api_key);
}

/// The unit's `Environment=` lines, then the environment file (whose values win), with `%d`
/// (the credentials) and `%S` (/var/lib) pointing into a temporary folder.
#[test]
fn the_systemd_unit_and_its_environment_file_configure_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let unit = read("systemd/scim-bridge.service");
    let mut env = Vec::new();
    for line in unit.lines() {
        if let Some(credential) = line.strip_prefix("LoadCredential=") {
            let (name, _) = credential.split_once(':').unwrap();
            std::fs::write(credentials.join(name), secret_for(name)).unwrap();
        } else if let Some(kv) = line.strip_prefix("Environment=") {
            let (k, v) = unquote(kv).split_once('=').unwrap();
            let v = v
                .replace("%d", &credentials.display().to_string())
                .replace("%S", &dir.path().display().to_string());
            env.push((k.to_owned(), v));
        }
    }
    assert!(env.iter().any(|(k, _)| k == "SCIM_BRIDGE_API_KEY_FILE"));
    let file = env_file(&read("systemd/scim-bridge.env.example"));
    assert!(
        !file.iter().any(|(k, _)| k.ends_with("_FILE")),
        "the environment file would override the unit's credential paths"
    );
    env.extend(file);

    let config = load(None, env).unwrap();
    assert_eq!(config.tenants.len(), 1);
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.data_dir, dir.path().join("scim-bridge"));
    assert_eq!(config.http.trusted_proxies, ["127.0.0.1"]);
    assert_eq!(config.public_base(), "https://scim.example.com");
}
