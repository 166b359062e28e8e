//! Where configuration comes from: the `SCIM_BRIDGE_*` environment as a figment provider,
//! which settings were given at all, and figment's errors in the words of the settings.

use std::path::Path;

use super::naming::{self, Naming};
use super::*;

/// `--config <path>` and the names of the configuring variables of `env`; see
/// [`Config::settings_given`].
pub(super) fn settings_given(file: Option<&Path>, env: &[(String, String)]) -> Vec<String> {
    let file = file.map(|f| format!("--config {}", f.display()));
    let vars = env.iter().filter_map(|(k, _)| {
        let key = k.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
        (!key.is_empty() && key != "config" && !NOT_PRODUCTION_ENV.contains(&key.as_str()))
            .then(|| k.clone())
    });
    let mut out: Vec<String> = file.into_iter().chain(vars).collect();
    out.sort();
    out.dedup();
    out
}

/// `SCIM_BRIDGE_A__B` becomes key `a.b`.
pub(super) fn env_provider(vars: &[(String, String)]) -> Layer {
    use figment::value::{Dict, Value};
    let mut root = Dict::new();
    for (k, v) in vars {
        let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase();
        if key.is_empty() || NON_CONFIG_ENV.contains(&key.as_str()) {
            continue;
        }
        let parts: Vec<&str> = key.split("__").collect();
        // Parsed as figment's `Env` provider does ("true" is a boolean, "8080" a number,
        // "[a, b]" a list); string settings accept numbers through `lenient`.
        let value = if digits_that_must_stay_text(v) {
            Value::from(v.clone())
        } else {
            v.parse::<Value>()
                .unwrap_or_else(|_| Value::from(v.clone()))
        };
        insert_path(&mut root, &parts, value);
    }
    Layer {
        dict: root,
        metadata: figment::Metadata::named(ENV_SOURCE),
    }
}

/// The TOML file as a [`Layer`]; a file that does not parse is one error.
pub(super) fn file_layer(path: &Path) -> Result<Layer, ConfigErrors> {
    use figment::Provider;
    let toml = Toml::file_exact(path);
    let metadata = toml.metadata();
    let mut data = toml.data().map_err(|e| {
        ConfigErrors::one(
            format!("--config {}", path.display()),
            format!("not a valid TOML file: {}", e.kind),
        )
    })?;
    Ok(Layer {
        dict: data.remove(&figment::Profile::Default).unwrap_or_default(),
        metadata,
    })
}

/// Digits that a number would change: a leading zero (`007`) or more digits than an integer
/// keeps exactly. Such values (site names, keys) stay text.
fn digits_that_must_stay_text(v: &str) -> bool {
    let d = v.trim().strip_prefix('-').unwrap_or(v.trim());
    !d.is_empty()
        && d.bytes().all(|b| b.is_ascii_digit())
        && ((d.len() > 1 && d.starts_with('0')) || d.len() > 18)
}

/// One source of settings (the file, or the `SCIM_BRIDGE_*` variables as the provider named
/// [`ENV_SOURCE`]) as a figment provider whose data can lose a bad key, so that one wrong
/// setting does not hide the next.
#[derive(Clone)]
pub(super) struct Layer {
    dict: figment::value::Dict,
    metadata: figment::Metadata,
}

impl figment::Provider for Layer {
    fn metadata(&self) -> figment::Metadata {
        self.metadata.clone()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut map = figment::value::Map::new();
        map.insert(figment::Profile::Default, self.dict.clone());
        Ok(map)
    }
}

impl Layer {
    /// Whether the error is about a value of this layer.
    fn owns(&self, e: &figment::Error) -> bool {
        e.metadata
            .as_ref()
            .is_some_and(|m| m.name == self.metadata.name && m.source == self.metadata.source)
    }

    /// Removes the value at `path` (a list item takes its whole list along: the indices of
    /// the others stay as written). False when there is no such value.
    fn remove(&mut self, path: &[String]) -> bool {
        remove_at(&mut self.dict, path)
    }
}

fn remove_at(dict: &mut figment::value::Dict, path: &[String]) -> bool {
    use figment::value::Value;
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    if rest.is_empty() {
        return dict.remove(first).is_some();
    }
    let whole_list = match dict.get_mut(first) {
        Some(Value::Dict(_, d)) => return remove_at(d, rest),
        Some(Value::Array(_, items)) => {
            let item = rest[0].parse::<usize>().ok().and_then(|i| items.get_mut(i));
            match (item, &rest[1..]) {
                (Some(Value::Dict(_, d)), tail) if !tail.is_empty() => return remove_at(d, tail),
                _ => true,
            }
        }
        _ => false,
    };
    whole_list && dict.remove(first).is_some()
}

/// Extracts the configuration from `defaults` and `layers` (later ones win), reporting every
/// wrong value rather than the first: each error's value is taken out and the extraction
/// tried again, so the configuration returned (when one is) has defaults in their place.
pub(super) fn extract_all(
    defaults: &Config,
    mut layers: Vec<Layer>,
    naming: &Naming,
) -> (Option<Config>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    // Each round takes out at least one key, so this ends; the bound is for safety only.
    for _ in 0..256 {
        let mut fig = Figment::from(Serialized::defaults(defaults.clone()));
        for layer in &layers {
            fig = fig.merge(layer.clone());
        }
        let e = match fig.extract::<Config>() {
            Ok(config) => return (Some(config), errors),
            Err(e) => e,
        };
        let mut progress = false;
        for e in e {
            let layer = layers.iter_mut().find(|l| l.owns(&e));
            errors.push(describe(&e, layer.as_deref(), naming));
            if let Some(layer) = layer {
                progress |= layer.remove(&full_path(&e));
            }
        }
        if !progress {
            break;
        }
    }
    (None, errors)
}

/// Whether the file or the environment sets `http.rate_limit` (see
/// [`Config::rate_limit_given`]).
pub(super) fn rate_limit_given(layers: &[Layer]) -> bool {
    use figment::value::Value;
    layers.iter().any(|l| {
        matches!(l.dict.get("http"), Some(Value::Dict(_, http)) if http.contains_key("rate_limit"))
    })
}

/// The path of an error, with the unknown key itself for an unknown setting.
fn full_path(e: &figment::Error) -> Vec<String> {
    let mut path = e.path.clone();
    if let figment::error::Kind::UnknownField(field, _) = &e.kind {
        if path.last() != Some(field) {
            path.push(field.clone());
        }
    }
    path
}

fn insert_path(dict: &mut figment::value::Dict, parts: &[&str], value: figment::value::Value) {
    use figment::value::{Dict, Value};
    match parts {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            } else {
                let mut inner = Dict::new();
                insert_path(&mut inner, rest, value);
                *entry = Value::from(inner);
            }
        }
    }
}

/// One extraction error named as the operator wrote the setting, the value echoed when it
/// is not a secret, in plain words.
fn describe(e: &figment::Error, layer: Option<&Layer>, naming: &Naming) -> ConfigError {
    use figment::error::Kind;
    let from_env = e.metadata.as_ref().is_some_and(|m| m.name == ENV_SOURCE);
    let path = full_path(e);
    let dotted = path.join(".");
    let setting = if from_env {
        // The variable the operator set: the longest key of the path that one set (a list
        // item's variable is the list's).
        (1..=path.len())
            .rev()
            .find_map(|n| naming.env.get(&path[..n].join(".")).cloned())
            .unwrap_or_else(|| naming::env_name(&dotted))
    } else if path.is_empty() {
        "configuration".to_owned()
    } else {
        file_key(&path)
    };
    let source = match &e.metadata {
        Some(m) if m.name != ENV_SOURCE => match &m.source {
            Some(figment::Source::File(f)) => format!(" (in {})", f.display()),
            _ => String::new(),
        },
        _ => String::new(),
    };
    // Never the value of an unknown key (a mistyped secret's variable) nor of a secret.
    let value = match &e.kind {
        Kind::UnknownField(..) => None,
        _ => layer.and_then(|l| naming::shown_value(&l.dict, &path)),
    };
    let not = value.map(|v| format!(", not {v}")).unwrap_or_default();
    let message = match &e.kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            let plain = naming::plain_expectation(expected);
            if plain == naming::TABLE {
                // Whatever stands where a table goes is not shown: `SCIM_BRIDGE_ADMIN=<token>`
                // is a secret put in the wrong place.
                plain
            } else {
                format!("{plain}{not}")
            }
        }
        Kind::UnknownField(field, expected) => {
            let parent = &path[..path.len().saturating_sub(1)];
            unknown_setting(field, parent, expected, from_env)
        }
        Kind::UnknownVariant(_, expected) => {
            format!("must be one of {}{not}", expected.join(", "))
        }
        Kind::MissingField(f) => format!("needs the setting '{f}'"),
        Kind::DuplicateField(f) => format!("the setting '{f}' is given twice"),
        Kind::InvalidLength(_, expected) => format!("must have {expected}"),
        Kind::Message(m) => format!("{}{not}", plain_message(m)),
        Kind::Unsupported(_) | Kind::UnsupportedKey(..) => "has the wrong form".to_owned(),
        other => other.to_string(),
    };
    ConfigError {
        setting,
        message: format!("{message}{source}"),
    }
}

/// A file's key as written: `tenants[0].sites[1].api`.
fn file_key(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if seg.parse::<usize>().is_ok() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// "not a setting", with the nearest known name when the key looks like a typo of one.
fn unknown_setting(
    field: &str,
    parent: &[String],
    expected: &[&'static str],
    from_env: bool,
) -> String {
    let mut known: Vec<&str> = expected.to_vec();
    if parent.is_empty() && from_env {
        known.extend(naming::other_top_level_names());
    }
    let name_of = |k: &str| {
        let mut p = parent.to_vec();
        p.push(k.to_owned());
        if from_env {
            naming::env_name(&p.join("."))
        } else {
            file_key(&p)
        }
    };
    let what = if from_env {
        "not a variable scim-bridge knows"
    } else {
        "not a setting scim-bridge knows"
    };
    match naming::near_miss(field, &known) {
        Some(k) => format!("{what}; did you mean {}?", name_of(k)),
        None if parent.is_empty() => format!("{what} (the README lists the settings)"),
        None => format!(
            "{what}; the settings here are {}",
            expected
                .iter()
                .map(|k| name_of(k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A deserializer's own message in plain words.
fn plain_message(m: &str) -> String {
    let lower = m.to_ascii_lowercase();
    if lower.contains("socket address") {
        "must be an address and port, like 127.0.0.1:8080".to_owned()
    } else if lower.contains("url") || lower.contains("host") || lower.contains("port") {
        format!("must be a URL, like https://host.example ({m})")
    } else {
        m.to_owned()
    }
}
