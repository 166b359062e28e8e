//! Configuration errors in the words of the person who wrote the configuration: the
//! environment variable they set (`SCIM_BRIDGE_SITE_API`) or the key of their file
//! (`tenants[0].sites[1].api`, with the tenant's and site's names), the bad value when it is not
//! a secret, plain words instead of Rust type names, and "did you mean" for a near-miss
//! variable name.

use std::collections::HashMap;

use figment::value::{Dict, Value};

use super::{Config, ConfigError, ENV_PREFIX, NON_CONFIG_ENV};

/// Where the settings came from, to name each one as it was written.
pub(super) struct Naming {
    /// Dotted lowercase key (`http.rate_limit.burst`) -> the variable that set it.
    pub env: HashMap<String, String>,
    /// Whether a `--config` file was given.
    pub file: bool,
    /// Whether the single tenant was folded from the top-level shorthand keys.
    pub folded: bool,
    /// `(tenant name, its site names)` by index, to say which tenant `tenants[1]` is.
    pub tenants: Vec<(String, Vec<String>)>,
}

impl Naming {
    pub fn new(env_vars: &[(String, String)], file: bool) -> Self {
        let env = env_vars
            .iter()
            .filter_map(|(k, _)| {
                let rest = k.strip_prefix(ENV_PREFIX)?;
                Some((rest.to_ascii_lowercase().replace("__", "."), k.clone()))
            })
            .collect();
        Self {
            env,
            file,
            folded: false,
            tenants: Vec::new(),
        }
    }

    /// Learns the tenants' names and whether the shorthand made the only one.
    pub fn learn(&mut self, config: &Config, folded: bool) {
        self.folded = folded;
        self.tenants = config
            .tenants
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    t.sites.iter().map(|s| s.site_name.clone()).collect(),
                )
            })
            .collect();
    }

    /// An error of the checks, whose setting is the internal key (`tenants[0].sites[0].api_key`),
    /// named as the operator wrote it.
    pub fn rename(&self, e: ConfigError) -> ConfigError {
        ConfigError {
            setting: self.name(&e.setting),
            message: e.message,
        }
    }

    fn name(&self, setting: &str) -> String {
        if let Some(rest) = setting.strip_prefix("tenants[0].").filter(|_| self.folded) {
            if let Some(key) = shorthand_key(rest) {
                return self.top_level(&key, "");
            }
        }
        if setting.starts_with("tenants[") {
            return self.with_tenant_names(setting);
        }
        // `http.trusted_proxies[2]`: the variable holds the whole list.
        let (key, index) = match setting.find('[') {
            Some(i) => (&setting[..i], &setting[i..]),
            None => (setting, ""),
        };
        self.top_level(key, index)
    }

    /// A key outside `tenants`: its variable when the environment set it (or nothing set it
    /// and there is no file), else the file's key.
    fn top_level(&self, key: &str, index: &str) -> String {
        let var = self.env.get(key).cloned();
        match var {
            Some(var) => var,
            None if !self.file => env_name(key),
            None => format!("{key}{index}"),
        }
    }

    /// `tenants[0].sites[1].api` with the names it refers to: `tenants[0].sites[1].api
    /// (tenant "okta", site "main")`.
    pub fn with_tenant_names(&self, setting: &str) -> String {
        let index_after = |marker: &str| -> Option<usize> {
            let at = setting.find(marker)? + marker.len();
            setting[at..].split(']').next()?.parse().ok()
        };
        let Some((tenant, sites)) = index_after("tenants[").and_then(|i| self.tenants.get(i))
        else {
            return setting.to_owned();
        };
        let mut names = Vec::new();
        if !tenant.trim().is_empty() {
            names.push(format!("tenant \"{tenant}\""));
        }
        if let Some(site) = index_after(".sites[").and_then(|i| sites.get(i)) {
            if !site.trim().is_empty() {
                names.push(format!("site \"{site}\""));
            }
        }
        if names.is_empty() {
            setting.to_owned()
        } else {
            format!("{setting} ({})", names.join(", "))
        }
    }
}

/// The environment variable of a dotted key: `http.rate_limit.burst` ->
/// `SCIM_BRIDGE_HTTP__RATE_LIMIT__BURST`.
pub(super) fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// The top-level shorthand key that set a setting of the folded tenant (`sites[0].api` ->
/// `site_api`), `None` for settings the shorthand has no key for.
fn shorthand_key(rest: &str) -> Option<String> {
    // Indices of the folded tenant's lists are always 0 (one site, one credential of each
    // kind), except `protected_emails[i]`, whose variable holds the whole list.
    let strip = |p: &str| -> String {
        p.split('.')
            .map(|seg| seg.split('[').next().unwrap_or(seg))
            .collect::<Vec<_>>()
            .join(".")
    };
    let plain = strip(rest);
    let key = match plain.as_str() {
        "name" => "tenant_name".to_owned(),
        "credentials" | "credentials.bearer_tokens" | "credentials.bearer_tokens.token" => {
            "bearer_token".to_owned()
        }
        "credentials.bearer_tokens.name" => "bearer_token_name".to_owned(),
        "credentials.bearer_tokens.sha256" => "bearer_token_sha256".to_owned(),
        "credentials.bearer_tokens.token_file" => "bearer_token_file".to_owned(),
        "sites" | "sites.site_name" => "site_name".to_owned(),
        "sites.api" => "site_api".to_owned(),
        "sites.create_roles" => "site_create_roles".to_owned(),
        "sites.base_url" => "partner_base_url".to_owned(),
        "sites.api_key" | "sites.api_key_file" | "sites.allow_admin_grant" => {
            plain.trim_start_matches("sites.").to_owned()
        }
        "credentials.oauth" => "oauth".to_owned(),
        p if p.starts_with("credentials.oauth.clients.") => {
            format!("oauth.{}", &p["credentials.oauth.clients.".len()..])
        }
        p if p.starts_with("credentials.basic")
            || p.starts_with("credentials.jwt")
            || p.starts_with("credentials.oauth") =>
        {
            p.trim_start_matches("credentials.").to_owned()
        }
        "base_path"
        | "invited_by_email"
        | "protected_emails"
        | "allow_protected_changes"
        | "default_access"
        | "deprovision"
        | "email_change"
        | "unknown_members"
        | "dry_run" => plain.clone(),
        _ => return None,
    };
    Some(key)
}

/// A key is secret when its value may be a credential: it is never echoed.
pub(super) fn is_secret_key(path: &[String]) -> bool {
    let leaf = path
        .iter()
        .rev()
        .find(|p| p.parse::<usize>().is_err())
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    ["key", "token", "secret", "password", "hash", "sha256"]
        .iter()
        .any(|w| leaf.contains(w))
        || (leaf == "url" && path.first().is_some_and(|p| p == "store"))
}

/// The value at `path` of a provider's data, shown for an error message: scalars only, and
/// only when the key is not secret. `None` when it is not to be shown.
pub(super) fn shown_value(dict: &Dict, path: &[String]) -> Option<String> {
    if is_secret_key(path) {
        return None;
    }
    let mut value = dict.get(path.first()?)?;
    for seg in &path[1..] {
        value = match value {
            Value::Dict(_, d) => d.get(seg)?,
            Value::Array(_, a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    let text = match value {
        Value::String(_, s) => format!("\"{}\"", s.escape_debug()),
        Value::Char(_, c) => format!("\"{}\"", c.escape_debug()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(..) => match (value.to_i128(), value.to_u128(), value.to_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => f.to_string(),
            _ => return None,
        },
        _ => return None,
    };
    // A very long value is more likely pasted by mistake than a setting: keep the message
    // readable.
    Some(if text.chars().count() > 80 {
        format!("{}...\"", text.chars().take(76).collect::<String>())
    } else {
        text
    })
}

/// What a table of settings is expected to be, in [`plain_expectation`]'s words.
pub(super) const TABLE: &str = "must be a table of settings";

/// What serde expected, in plain words (`usize` -> "must be a whole number").
pub(super) fn plain_expectation(expected: &str) -> String {
    let e = expected.trim();
    let lower = e.to_ascii_lowercase();
    let unsigned = ["usize", "u8", "u16", "u32", "u64", "u128"];
    let signed = ["isize", "i8", "i16", "i32", "i64", "i128", "an integer"];
    if unsigned.contains(&lower.as_str()) {
        "must be a whole number (0 or more)".into()
    } else if signed.contains(&lower.as_str()) {
        "must be a whole number".into()
    } else if ["f32", "f64", "a float", "a number"].contains(&lower.as_str()) {
        "must be a number".into()
    } else if ["bool", "a boolean"].contains(&lower.as_str()) {
        "must be true or false".into()
    } else if [
        "a string",
        "string",
        "char",
        "a character",
        "a borrowed string",
    ]
    .contains(&lower.as_str())
        || lower.starts_with("path")
    {
        "must be text".into()
    } else if lower.contains("socket address") {
        "must be an address and port, like 127.0.0.1:8080".into()
    } else if lower.contains("url") {
        "must be a URL, like https://host.example".into()
    } else if lower.contains("sequence") || lower.contains("array") {
        "must be a list, like [a, b]".into()
    } else if lower.starts_with("struct ") || lower.contains("map") {
        TABLE.into()
    } else if lower.starts_with("enum ") || lower.contains("::") {
        "has the wrong form".into()
    } else {
        format!("must be {e}")
    }
}

/// The known name closest to `unknown` (both lowercase keys without the prefix), when it is
/// close enough to be a typo: the same letters but for the underscores, an edit or two (more
/// for long names), or a known name inside the unknown one (`partner_apikey` -> `api_key`).
pub(super) fn near_miss<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let squash = |s: &str| -> String { s.chars().filter(|c| *c != '_').collect() };
    let u = squash(&unknown.to_ascii_lowercase());
    let mut best: Option<(usize, &str)> = None;
    for k in known {
        let c = squash(&k.to_ascii_lowercase());
        if c.is_empty() {
            continue;
        }
        let distance = strsim::levenshtein(&u, &c);
        let score = if distance <= (c.len().max(u.len()) / 4).max(1) {
            distance
        } else if c.len() >= 5 && u.contains(&c) {
            // Inside: ranked after every typo, the longest known name first.
            100 - c.len().min(99)
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, k));
        }
    }
    best.map(|(_, k)| k)
}

/// The names a variable at the top level may have besides the settings: those read outside
/// the configuration.
pub(super) fn other_top_level_names() -> impl Iterator<Item = &'static str> {
    NON_CONFIG_ENV.iter().copied()
}
