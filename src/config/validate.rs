//! The checks of a loaded configuration that deserialization cannot make.

use super::*;

impl Config {
    /// Checks everything that deserialization cannot.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut err = |setting: String, message: &str| {
            errors.push(ConfigError {
                setting,
                message: message.to_owned(),
            })
        };
        if let Some(u) = &self.public_base_url {
            if !matches!(u.scheme(), "http" | "https") {
                err(
                    "public_base_url".into(),
                    "must be an http:// or https:// URL",
                );
            }
        }
        if let Some(u) = &self.store.url {
            let u = u.expose();
            if !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
            {
                err(
                    "store.url".into(),
                    "must start with sqlite: or postgres:// (the value is not shown: it may hold a password)",
                );
            }
        }
        if self.audit.retention_days > MAX_AUDIT_RETENTION_DAYS {
            err(
                "audit.retention_days".into(),
                &format!(
                    "must be at most {MAX_AUDIT_RETENTION_DAYS} days (0 keeps entries forever)"
                ),
            );
        }
        security::validate_http(&self.http, &mut err);
        security::validate_tokens("admin.bearer_tokens", &self.admin.bearer_tokens, &mut err);
        let mut seen = Seen::default();
        for (ti, t) in self.tenants.iter().enumerate() {
            validate_tenant(ti, t, &mut seen, &mut err);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// The tenant names and base paths seen so far: each must be unique, whatever its case.
#[derive(Default)]
struct Seen {
    names: std::collections::HashSet<String>,
    paths: std::collections::HashSet<String>,
}

/// Checks the `ti`th tenant: its name and base path, credentials, sites, inviting user and
/// protected emails.
fn validate_tenant(
    ti: usize,
    t: &TenantConfig,
    seen: &mut Seen,
    err: &mut impl FnMut(String, &str),
) {
    let at = |field: &str| format!("tenants[{ti}].{field}");
    if t.name.trim().is_empty() {
        err(at("name"), "must not be empty");
    } else if !seen.names.insert(t.name.to_ascii_lowercase()) {
        err(at("name"), "another tenant has the same name");
    }
    if !valid_base_path(&t.base_path) {
        err(
            at("base_path"),
            &format!(
                "must start with '/', not end with '/', and hold only letters, digits, '-', '_', \
                 '.' and '/', not {:?}",
                t.base_path
            ),
        );
    } else if !seen.paths.insert(t.base_path.to_ascii_lowercase()) {
        err(at("base_path"), "another tenant has the same base path");
    }
    if t.credentials.is_empty() {
        err(
            at("credentials"),
            "no credential configured: set bearer_token (SCIM_BRIDGE_BEARER_TOKEN) or add a token, Basic, JWT or OAuth credential",
        );
    }
    security::validate_tokens(
        &at("credentials.bearer_tokens"),
        &t.credentials.bearer_tokens,
        err,
    );
    security::validate_credentials(&at("credentials"), &t.credentials, err);
    if t.sites.is_empty() {
        err(at("sites"), "at least one partner site is required");
    }
    validate_sites(ti, &t.sites, err);
    if t.invited_by_email.trim().is_empty() {
        err(
            at("invited_by_email"),
            "required: an existing partner user that invites new users (SCIM_BRIDGE_INVITED_BY_EMAIL)",
        );
    } else if !t.invited_by_email.contains('@') || t.invited_by_email.chars().any(char::is_control)
    {
        err(
            at("invited_by_email"),
            &format!("must be an email address, not {:?}", t.invited_by_email),
        );
    }
    for (i, e) in t.protected_emails.iter().enumerate() {
        if !e.contains('@') || e.trim() != e || e.chars().any(char::is_control) {
            err(
                at(&format!("protected_emails[{i}]")),
                &format!("must be an email address, not {e:?}"),
            );
        }
    }
}

/// Checks the `ti`th tenant's partner sites: distinct usable names, an API key, an http(s)
/// base URL.
fn validate_sites(ti: usize, sites: &[SiteConfig], err: &mut impl FnMut(String, &str)) {
    let at = |field: &str| format!("tenants[{ti}].{field}");
    let mut site_names = std::collections::HashSet::new();
    for (si, s) in sites.iter().enumerate() {
        let sat = |f: &str| at(&format!("sites[{si}].{f}"));
        if s.site_name.trim().is_empty() {
            err(
                sat("site_name"),
                "must not be empty (SCIM_BRIDGE_SITE_NAME)",
            );
        } else if s.site_name.contains(':') || s.site_name.chars().any(char::is_control) {
            err(
                sat("site_name"),
                &format!(
                    "must not contain ':' or control characters, not {:?}",
                    s.site_name
                ),
            );
        } else if !site_names.insert(s.site_name.to_ascii_lowercase()) {
            err(sat("site_name"), "the same site is listed twice");
        }
        match &s.api_key {
            None => err(
                sat("api_key"),
                "missing (SCIM_BRIDGE_API_KEY or api_key_file)",
            ),
            Some(k) if k.is_empty() => err(sat("api_key"), "must not be empty"),
            Some(k) if k.expose().chars().any(|c| c.is_control()) => {
                err(sat("api_key"), "must not contain control characters")
            }
            _ => {}
        }
        if !matches!(s.base_url.scheme(), "http" | "https") {
            err(
                sat("base_url"),
                &format!("must be an http:// or https:// URL, not \"{}\"", s.base_url),
            );
        }
        validate_roles(s, &sat, err);
    }
}

/// The RBAC settings of a site: only on a site with `api = "roles"`, and usable there.
fn validate_roles(
    s: &SiteConfig,
    sat: &dyn Fn(&str) -> String,
    err: &mut impl FnMut(String, &str),
) {
    use crate::partner::rbac::{SiteApi, EVERYONE_ROLE};
    if s.api == SiteApi::Groups {
        if !s.role_map.is_empty() {
            err(
                sat("role_map"),
                "applies only to a site with api = \"roles\"",
            );
        }
        if s.role_template != crate::partner::rbac::RoleTemplate::default() {
            err(
                sat("role_template"),
                "applies only to a site with api = \"roles\"",
            );
        }
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for (group, role) in &s.role_map {
        if group.trim().is_empty() || role.trim().is_empty() {
            err(sat("role_map"), "group and role names must not be empty");
        }
        if !seen.insert(group.trim().to_lowercase()) {
            err(
                sat("role_map"),
                "a group is mapped twice (names match in any case)",
            );
        }
        if role
            .trim()
            .eq_ignore_ascii_case(crate::partner::rbac::ADMIN_ROLE)
            && !s.allow_admin_grant
        {
            err(
                sat("role_map"),
                "`Admin` makes its members site administrators; a group may map to it only where \
                 the site sets allow_admin_grant = true",
            );
        }
        if s.role_map
            .iter()
            .filter(|(_, v)| v.trim().eq_ignore_ascii_case(role.trim()))
            .count()
            > 1
        {
            err(
                sat("role_map"),
                "two groups map to the same role (names match in any case): a member who leaves \
                 one would keep the role through the other",
            );
        }
        if role.trim().eq_ignore_ascii_case(EVERYONE_ROLE) {
            err(
                sat("role_map"),
                "`Everyone` is every user's role; a SCIM group cannot map to it",
            );
        }
    }
    for p in &s.role_template.privileges {
        if p.object_type.trim().is_empty() || p.permissions.iter().any(|x| x.trim().is_empty()) {
            err(
                sat("role_template.privileges"),
                "each privilege needs an object_type and non-empty permission names",
            );
        }
    }
}
