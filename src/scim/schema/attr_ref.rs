//! Attribute references (`[urn:]name[.sub]`) as clients write them, and what they resolve to.

use super::{AttributeDef, ALL_SCHEMAS};
use crate::scim::error::ScimError;

/// An attribute reference as written in `attributes`, `sortBy`, filters and PATCH paths:
/// `[urn:...:]name[.sub]`. Names keep the spelling given; resolution is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrRef {
    /// The schema URN, when the reference was qualified.
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrRef {
    /// Parses `[urn:...:]name[.sub]`. The URN is split off at the last `:` (attribute names
    /// never contain one; URNs may contain `.`, as in `2.0`). Known schema URNs are matched
    /// first, so a reference that is exactly an extension URN yields `name == ""`.
    pub fn parse(s: &str) -> Result<AttrRef, ScimError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ScimError::invalid_path("empty attribute name"));
        }
        let (urn, rest) =
            if s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) && s.len() > 4 {
                if let Some(schema) = ALL_SCHEMAS.iter().find(|sc| {
                    s.get(..sc.id.len())
                        .is_some_and(|p| p.eq_ignore_ascii_case(sc.id))
                }) {
                    let rest = &s[schema.id.len()..];
                    if rest.is_empty() {
                        return Ok(AttrRef {
                            urn: Some(schema.id.to_owned()),
                            name: String::new(),
                            sub: None,
                        });
                    }
                    match rest.strip_prefix(':') {
                        Some(r) => (Some(schema.id.to_owned()), r),
                        None => match s.rfind(':') {
                            Some(i) => (Some(s[..i].to_owned()), &s[i + 1..]),
                            None => (None, s),
                        },
                    }
                } else {
                    match s.rfind(':') {
                        Some(i) => (Some(s[..i].to_owned()), &s[i + 1..]),
                        None => (None, s),
                    }
                }
            } else {
                (None, s)
            };
        let (name, sub) = match rest.split_once('.') {
            Some((n, sub)) => (n, Some(sub)),
            None => (rest, None),
        };
        if !is_attr_name(name) || sub.is_some_and(|x| !is_attr_name(x)) {
            return Err(ScimError::invalid_path(format!(
                "'{s}' is not a valid attribute name"
            )));
        }
        Ok(AttrRef {
            urn,
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for AttrRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.urn {
            f.write_str(u)?;
            if !self.name.is_empty() {
                f.write_str(":")?;
            }
        }
        f.write_str(&self.name)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// RFC 7644 ATTRNAME: ALPHA *(nameChar), nameChar = "-" / "_" / DIGIT / ALPHA; plus `$ref`.
pub fn is_attr_name(s: &str) -> bool {
    if s == "$ref" {
        return true;
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An attribute reference resolved against a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// The extension URN whose object holds the attribute; `None` for core and common ones.
    pub extension: Option<&'static str>,
    pub attr: &'static AttributeDef,
    pub sub: Option<&'static AttributeDef>,
}

impl Resolved {
    /// The definition the reference ends at (the sub-attribute when there is one).
    pub fn leaf(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.attr)
    }
}
