//! PATCH attribute paths (RFC 7644 section 3.5.2, the `PATH` rule of figure 1 and section
//! 3.10): `attrPath / valuePath [subAttr]`, such as `name.givenName`, `emails[type eq
//! "work"].value`, `members[value eq "2819c223"]` and
//! `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`. Names are matched
//! case-insensitively when the path is resolved against a resource type.

use std::fmt;

use super::error::ScimError;
use super::filter::{
    closing_bracket, parse_value_filter, validate_value_filter, Filter, FilterLimits,
};
use super::schema::{is_attr_name, AttrRef, AttrType, AttributeDef, ResourceType};

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// A parsed PATCH path. `attr` carries a sub-attribute only when there is no filter; with a
/// filter, the sub-attribute after `]` is `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub attr: AttrRef,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

/// A path resolved against a resource type.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedPath<'p> {
    /// The extension URN whose object holds the attribute; `None` for core and common ones.
    pub extension: Option<&'static str>,
    pub attr: &'static AttributeDef,
    pub filter: Option<&'p Filter>,
    /// The sub-attribute, from `name.givenName` or from `emails[...].value`.
    pub sub: Option<&'static AttributeDef>,
}

impl Path {
    /// Parses a path. Malformed paths are `invalidPath`; a malformed value filter is
    /// `invalidFilter` (RFC 7644 table 9 lists it for PATCH path filters).
    pub fn parse(s: &str) -> Result<Path, ScimError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ScimError::invalid_path("the path is empty"));
        }
        if s.len() > MAX_PATH_LEN {
            return Err(ScimError::invalid_path(format!(
                "the path is {} bytes long; at most {MAX_PATH_LEN} are accepted",
                s.len()
            )));
        }
        let Some(open) = s.find('[') else {
            if s.contains(']') || s.contains('"') || s.contains(char::is_whitespace) {
                return Err(ScimError::invalid_path(format!(
                    "'{s}' is not an attribute path"
                )));
            }
            return Ok(Path {
                attr: AttrRef::parse(s)?,
                filter: None,
                sub: None,
            });
        };
        let Some(close) = closing_bracket(s, open) else {
            return Err(ScimError::invalid_path(format!(
                "the '[' at character {} of '{s}' is never closed by ']'",
                s[..open].chars().count() + 1
            )));
        };
        let attr = AttrRef::parse(&s[..open])?;
        if attr.name.is_empty() || attr.sub.is_some() {
            return Err(ScimError::invalid_path(format!(
                "a value filter must follow a multi-valued attribute, not '{}'",
                &s[..open]
            )));
        }
        let filter = parse_value_filter(&s[open + 1..close], &FilterLimits::default())?;
        let rest = &s[close + 1..];
        let sub = if rest.is_empty() {
            None
        } else {
            match rest.strip_prefix('.') {
                Some(name) if is_attr_name(name) => Some(name.to_owned()),
                _ => {
                    return Err(ScimError::invalid_path(format!(
                        "expected '.subAttribute' or the end of the path after ']', not '{rest}'"
                    )))
                }
            }
        };
        Ok(Path {
            attr,
            filter: Some(filter),
            sub,
        })
    }

    /// The sub-attribute name, from either spelling.
    pub fn sub_name(&self) -> Option<&str> {
        self.sub.as_deref().or(self.attr.sub.as_deref())
    }

    /// Resolves the path against `rt`: unknown attributes and sub-attributes are `invalidPath`,
    /// a filter on an attribute that is not multi-valued and complex is `invalidPath`, and a
    /// filter naming unknown sub-attributes is `invalidFilter`. A path that is only an
    /// extension URN does not resolve (callers handle it as the whole extension).
    pub fn resolve(&self, rt: &ResourceType) -> Result<ResolvedPath<'_>, ScimError> {
        let r = rt.resolve(&self.attr)?;
        let mut sub = r.sub;
        if let Some(f) = &self.filter {
            if r.attr.ty != AttrType::Complex || !r.attr.multi_valued {
                return Err(ScimError::invalid_path(format!(
                    "'{}' is not a multi-valued complex attribute; it cannot take a value filter",
                    r.attr.name
                )));
            }
            validate_value_filter(f, r.attr)?;
            if let Some(s) = &self.sub {
                sub = Some(r.attr.sub(s).ok_or_else(|| {
                    ScimError::invalid_path(format!(
                        "unknown sub-attribute '{s}' of '{}'",
                        r.attr.name
                    ))
                })?);
            }
        }
        Ok(ResolvedPath {
            extension: r.extension,
            attr: r.attr,
            filter: self.filter.as_ref(),
            sub,
        })
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(flt) = &self.filter {
            write!(f, "[{flt}]")?;
        }
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_RESOURCE, USER_RESOURCE};
    use crate::scim::ScimType;

    #[test]
    fn path_parses_plain_dotted_and_urn_qualified() {
        let p = Path::parse("name.givenName").unwrap();
        assert_eq!(p.attr.name, "name");
        assert_eq!(p.sub_name(), Some("givenName"));
        assert!(p.filter.is_none());
        let p = Path::parse(&format!("{ENTERPRISE_USER_SCHEMA}:manager")).unwrap();
        assert_eq!(p.attr.urn.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
        let r = p.resolve(&USER_RESOURCE).unwrap();
        assert_eq!(r.extension, Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!(r.attr.name, "manager");
    }

    #[test]
    fn path_parses_value_path_with_sub_attribute() {
        let p = Path::parse(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr.name, "emails");
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert_eq!(p.filter.as_ref().unwrap().to_string(), r#"type eq "work""#);
        let r = p.resolve(&USER_RESOURCE).unwrap();
        assert_eq!(r.sub.unwrap().name, "value");
    }

    #[test]
    fn path_value_filter_may_contain_brackets_in_strings() {
        let p = Path::parse(r#"members[value eq "a]b"]"#).unwrap();
        assert_eq!(p.filter.unwrap().to_string(), r#"value eq "a]b""#);
        assert!(p.sub.is_none());
        assert!(Path::parse(r#"members[value eq "x"]"#)
            .unwrap()
            .resolve(&GROUP_RESOURCE)
            .is_ok());
    }

    #[test]
    fn path_names_resolve_case_insensitively() {
        let p = Path::parse(r#"EMAILS[TYPE EQ "work"].VALUE"#).unwrap();
        let r = p.resolve(&USER_RESOURCE).unwrap();
        assert_eq!(r.attr.name, "emails");
        assert_eq!(r.sub.unwrap().name, "value");
    }

    #[test]
    fn path_errors_are_invalid_path() {
        for bad in [
            "",
            "emails[type eq \"work\"",
            "emails[type eq \"work\"]x",
            "emails[type eq \"work\"].",
            "name.givenName[type eq \"x\"]",
            "user name",
            "1abc",
        ] {
            let e = Path::parse(bad).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{bad}: {e}");
        }
        let e = Path::parse("nope")
            .unwrap()
            .resolve(&USER_RESOURCE)
            .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        let e = Path::parse("name[givenName eq \"x\"]")
            .unwrap()
            .resolve(&USER_RESOURCE)
            .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
    }

    #[test]
    fn path_with_malformed_filter_is_invalid_filter() {
        let e = Path::parse("emails[type eq]").unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
        let e = Path::parse("emails[nope eq \"x\"]")
            .unwrap()
            .resolve(&USER_RESOURCE)
            .unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
    }

    #[test]
    fn path_display_round_trips() {
        for s in [
            "name.givenName",
            r#"emails[type eq "work"].value"#,
            r#"members[value eq "x"]"#,
        ] {
            let p = Path::parse(s).unwrap();
            assert_eq!(Path::parse(&p.to_string()).unwrap(), p);
        }
    }
}
