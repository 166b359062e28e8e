//! Where configuration comes from: the `SCIM_BRIDGE_*` environment as a figment provider,
//! which settings were given at all, and figment's errors in the words of the settings.

use std::path::Path;

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
pub(super) fn env_provider(vars: &[(String, String)]) -> EnvProvider {
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
    EnvProvider(root)
}

/// Digits that a number would change: a leading zero (`007`) or more digits than an integer
/// keeps exactly. Such values (site names, keys) stay text.
fn digits_that_must_stay_text(v: &str) -> bool {
    let d = v.trim().strip_prefix('-').unwrap_or(v.trim());
    !d.is_empty()
        && d.bytes().all(|b| b.is_ascii_digit())
        && ((d.len() > 1 && d.starts_with('0')) || d.len() > 18)
}

/// `SCIM_BRIDGE_*` variables as a figment provider named [`ENV_SOURCE`], so errors can name
/// the variable.
pub(super) struct EnvProvider(figment::value::Dict);

impl figment::Provider for EnvProvider {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(ENV_SOURCE)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut map = figment::value::Map::new();
        map.insert(figment::Profile::Default, self.0.clone());
        Ok(map)
    }
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

pub(super) fn figment_errors(e: figment::Error) -> ConfigErrors {
    ConfigErrors(
        e.into_iter()
            .map(|e| {
                let from_env = e.metadata.as_ref().is_some_and(|m| m.name == ENV_SOURCE);
                let mut path = e.path.clone();
                if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                    if path.last() != Some(field) {
                        path.push(field.clone());
                    }
                }
                let setting = if from_env {
                    // The variable the operator set.
                    format!("{ENV_PREFIX}{}", path.join("__").to_uppercase())
                } else if path.is_empty() {
                    "configuration".to_owned()
                } else {
                    path.join(".")
                };
                let source = match &e.metadata {
                    Some(m) if m.name == ENV_SOURCE => String::new(),
                    Some(m) => match &m.source {
                        Some(src) => format!(" (in {src})"),
                        None => String::new(),
                    },
                    None => String::new(),
                };
                // The kind names the expected type; never print the offending value, which
                // may be a secret.
                ConfigError {
                    setting,
                    message: format!("{}{source}", describe_kind(&e.kind)),
                }
            })
            .collect(),
    )
}

fn describe_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        // Only the kind of the value found: figment's own text quotes it, and a secret put
        // where a table is expected (`SCIM_BRIDGE_ADMIN=<token>`) would be printed.
        Kind::InvalidType(actual, expected) => {
            format!("expected {expected}, found {}", value_kind(actual))
        }
        Kind::InvalidValue(_, expected) => format!("invalid value: expected {expected}"),
        Kind::UnknownField(field, _) => format!("unknown setting '{field}'"),
        Kind::UnknownVariant(v, expected) => {
            format!(
                "unknown value '{v}': expected one of {}",
                expected.join(", ")
            )
        }
        Kind::MissingField(f) => format!("missing setting '{f}'"),
        Kind::DuplicateField(f) => format!("setting '{f}' given twice"),
        Kind::InvalidLength(_, expected) => format!("invalid length: expected {expected}"),
        Kind::Message(m) => m.clone(),
        Kind::Unsupported(actual) => format!("unsupported type {}", value_kind(actual)),
        Kind::UnsupportedKey(actual, expected) => format!(
            "unsupported key type {}: must be {expected}",
            value_kind(actual)
        ),
        other => other.to_string(),
    }
}

/// What a wrong value is, without the value.
fn value_kind(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit | Actual::Option => "nothing",
        Actual::Seq => "a list",
        Actual::Map | Actual::NewtypeStruct => "a table",
        Actual::Enum
        | Actual::UnitVariant
        | Actual::NewtypeVariant
        | Actual::TupleVariant
        | Actual::StructVariant => "an enum",
        Actual::Other(_) => "another type",
    }
}
