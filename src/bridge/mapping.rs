//! SCIM -> partner mapping: which email a SCIM user has at the partner, its first and last
//! names, and the group-name arithmetic of the membership engine (managed groups replaced,
//! unmanaged groups kept, compared case-insensitively as the partner does).

use std::collections::HashSet;

use crate::partner::ALL_USERS_GROUP;
use crate::scim::resource::UserView;
use crate::scim::ScimError;

/// The partner email of a SCIM user: its `userName` when that is an email address (Okta's
/// login, Entra's UPN), else its primary / work / first email. `None` when the user has no
/// email address at all: such a user is kept in SCIM but cannot exist at the partner, whose
/// users are keyed by email. A value that is meant as an email but unusable (control
/// characters, CR/LF) is a 400, before any partner call.
pub fn partner_email(view: &UserView) -> Result<Option<String>, ScimError> {
    let user_name = view.user_name.trim();
    if user_name.contains('@') {
        validate_email(user_name)?;
        return Ok(Some(user_name.to_owned()));
    }
    match view.primary_email().map(str::trim) {
        Some(e) if e.contains('@') => {
            validate_email(e)?;
            Ok(Some(e.to_owned()))
        }
        _ => Ok(None),
    }
}

fn looks_like_email(s: &str) -> bool {
    let s = s.trim();
    match s.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@'),
        None => false,
    }
}

/// An email usable as a partner key and as an HTTP header value: `local@domain`, visible
/// ASCII only (the partner client's rule), at most 254 characters.
pub fn validate_email(e: &str) -> Result<(), ScimError> {
    if e.len() > 254 {
        return Err(ScimError::invalid_value(
            "the email address is longer than 254 characters",
        ));
    }
    // The partner client's own rule for what can be sent as `HTTP-X-EMAIL`, so an address it
    // would refuse is a clean 400 here, before any site is called.
    if let Err(why) = crate::partner::wire::validate_email(e) {
        return Err(ScimError::invalid_value(format!(
            "the email address cannot be used at the partner: {why}"
        )));
    }
    if !looks_like_email(e) {
        return Err(ScimError::invalid_value(format!(
            "'{}' is not an email address",
            e.chars().take(100).collect::<String>()
        )));
    }
    Ok(())
}

/// A group name usable at the partner: not empty, no control characters, at most 255
/// characters.
pub fn validate_group_name(name: &str) -> Result<(), ScimError> {
    if name.trim().is_empty() {
        return Err(ScimError::invalid_value("displayName must not be empty"));
    }
    if name.chars().count() > 255 {
        return Err(ScimError::invalid_value(
            "displayName is longer than 255 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ScimError::invalid_value(
            "displayName contains control characters",
        ));
    }
    Ok(())
}

/// First and last name for the partner, never blank (the partner requires both):
/// `name.givenName` / `name.familyName`; a missing one is taken from `displayName` or
/// `name.formatted` split at the last space; what is still missing is the email's local part.
pub fn partner_names(view: &UserView, email: &str) -> (String, String) {
    let clean = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut first = clean(view.given_name.as_deref());
    let mut last = clean(view.family_name.as_deref());
    if first.is_none() || last.is_none() {
        let whole = clean(view.display_name.as_deref()).or(clean(view.formatted_name.as_deref()));
        if let Some(whole) = whole {
            let (f, l) = match whole.rsplit_once(' ') {
                Some((f, l)) => (clean(Some(f)), clean(Some(l))),
                None => (Some(whole.clone()), None),
            };
            if first.is_none() {
                first = f;
            }
            if last.is_none() {
                last = l;
            }
        }
    }
    let local = email.split('@').next().unwrap_or(email).to_owned();
    (
        first.unwrap_or_else(|| local.clone()),
        last.unwrap_or(local),
    )
}

/// The partner group list a user must end with: the groups it has that the bridge does not
/// manage (kept as they are, `All Users` included), then the managed groups it must be in.
/// `managed_all` holds every managed group name, lowercased.
pub fn converge_groups(
    current: &[String],
    managed_all: &HashSet<String>,
    desired: &[String],
) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(current.len() + desired.len());
    for g in current {
        let lc = g.to_lowercase();
        if !managed_all.contains(&lc) && seen.insert(lc) {
            out.push(g.clone());
        }
    }
    for g in desired {
        if seen.insert(g.to_lowercase()) {
            out.push(g.clone());
        }
    }
    out
}

/// True when two group lists hold the same names, ignoring order, case and `All Users`
/// (which the partner always keeps).
pub fn same_groups(a: &[String], b: &[String]) -> bool {
    let norm = |l: &[String]| -> HashSet<String> {
        l.iter()
            .map(|g| g.to_lowercase())
            .filter(|g| !g.eq_ignore_ascii_case(ALL_USERS_GROUP))
            .collect()
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(user_name: &str) -> UserView {
        UserView {
            user_name: user_name.into(),
            external_id: None,
            active: true,
            given_name: None,
            family_name: None,
            display_name: None,
            formatted_name: None,
            emails: vec![],
            manager_id: None,
        }
    }

    #[test]
    fn user_name_that_is_an_email_is_the_partner_email() {
        assert_eq!(
            partner_email(&view("Jane@Example.com")).unwrap().as_deref(),
            Some("Jane@Example.com")
        );
        assert_eq!(partner_email(&view("jane")).unwrap(), None);
        assert!(partner_email(&view("jane\r\n@x.io")).is_err());
    }

    #[test]
    fn email_with_crlf_is_rejected_before_any_partner_call() {
        assert!(validate_email("a@b.com\r\nX-Evil: 1").is_err());
        assert!(validate_email("a b@c.com").is_err());
    }

    #[test]
    fn names_fall_back_to_display_name_then_email() {
        let mut v = view("j@x.io");
        assert_eq!(partner_names(&v, "j@x.io"), ("j".into(), "j".into()));
        v.display_name = Some("Jane Q Doe".into());
        assert_eq!(partner_names(&v, "j@x.io"), ("Jane Q".into(), "Doe".into()));
        v.given_name = Some("Janet".into());
        assert_eq!(partner_names(&v, "j@x.io"), ("Janet".into(), "Doe".into()));
        v.display_name = None;
        assert_eq!(partner_names(&v, "j@x.io"), ("Janet".into(), "j".into()));
    }

    #[test]
    fn converge_keeps_unmanaged_and_replaces_managed() {
        let managed: HashSet<String> = ["finance", "sales"].iter().map(|s| s.to_string()).collect();
        let current = vec!["All Users".to_string(), "Finance".into(), "VendorUI".into()];
        let out = converge_groups(&current, &managed, &["Sales".to_string()]);
        assert_eq!(out, vec!["All Users", "VendorUI", "Sales"]);
        assert!(same_groups(&out, &["sales".into(), "vendorui".into()]));
    }
}
