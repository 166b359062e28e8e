//! Filters (RFC 7644 section 3.4.2.2): the parser for the full grammar (`eq ne co sw ew gt ge lt
//! le pr`, `and or not`, parentheses, value paths, URN-qualified attribute paths), the canonical
//! printer, validation against a resource type, the evaluator over canonical JSON resources, and
//! the index plan a store uses to avoid full scans.
//!
//! Besides the RFC grammar the parser accepts what Microsoft Entra ID sends (see
//! `scim-interop.md`, "Queries"): `emails[type eq "work"].value eq "a@x.io"` (a value path
//! followed by a sub-attribute and a comparison, read as
//! `emails[type eq "work" and value eq "a@x.io"]`), quoted booleans (`active eq "True"`) and
//! unquoted bare words as strings (`userName eq alice`).
//!
//! Nesting (parentheses, `not`, value paths) is checked against [`FilterLimits::max_depth`]
//! before the parser recurses, so no input can overflow the stack; the input length is checked
//! against [`FilterLimits::max_len`] first, which also bounds the length of `and`/`or` chains.

mod compare;
mod eval;
mod index;
mod lexer;
mod parser;
mod validate;

use std::fmt;

use serde_json::Value;

use super::error::ScimError;
use super::schema::{AttrRef, AttributeDef, ResourceType};

pub(crate) use compare::{as_bool, as_datetime, as_f64, as_text};
pub(crate) use eval::{get_ci, matches_element};
pub use index::{IndexPlan, IndexTerm, IndexedAttr};
pub use parser::parse_filter;
pub(crate) use parser::{closing_bracket, parse_value_filter};
pub(crate) use validate::validate_value_filter;

/// A comparison operator of RFC 7644 table 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// The canonical (lower-case) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator spelled `word`, case-insensitively.
    pub fn parse(word: &str) -> Option<CompareOp> {
        const ALL: [CompareOp; 9] = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        ALL.into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }

    /// `gt ge lt le`: undefined for booleans, binaries and complex values.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }

    /// `co sw ew`: substring operators, defined for text.
    pub fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed filter. Inside a [`Filter::ValuePath`] the attribute references are relative to
/// the complex attribute (`type`, `value`), without URN or sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Compare {
        attr: AttrRef,
        op: CompareOp,
        value: Value,
    },
    Present(AttrRef),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    ValuePath {
        attr: AttrRef,
        filter: Box<Filter>,
    },
}

/// Bounds on what the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Longest accepted input, in bytes.
    pub max_len: usize,
    /// Deepest accepted nesting of parentheses, `not` and value paths.
    pub max_depth: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self {
            max_len: 4096,
            max_depth: 32,
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn child(f: &mut fmt::Formatter<'_>, x: &Filter, parens: bool) -> fmt::Result {
            if parens {
                write!(f, "({x})")
            } else {
                write!(f, "{x}")
            }
        }
        match self {
            Filter::Compare { attr, op, value } => {
                let v = serde_json::to_string(value).map_err(|_| fmt::Error)?;
                write!(f, "{attr} {op} {v}")
            }
            Filter::Present(a) => write!(f, "{a} pr"),
            Filter::And(l, r) => {
                child(f, l, matches!(**l, Filter::Or(..)))?;
                f.write_str(" and ")?;
                child(f, r, matches!(**r, Filter::Or(..) | Filter::And(..)))
            }
            Filter::Or(l, r) => {
                child(f, l, false)?;
                f.write_str(" or ")?;
                child(f, r, matches!(**r, Filter::Or(..)))
            }
            Filter::Not(x) => write!(f, "not ({x})"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

/// Where attribute references are resolved: the resource, or the elements of a complex
/// attribute inside a value path.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Resource(&'a ResourceType),
    Element(&'static AttributeDef),
}

/// The attribute an attribute reference names in `scope`, and its sub-attribute if any.
fn resolve_in(
    scope: Scope<'_>,
    attr: &AttrRef,
) -> Result<
    (
        Option<&'static str>,
        &'static AttributeDef,
        Option<&'static AttributeDef>,
    ),
    ScimError,
> {
    match scope {
        Scope::Resource(rt) => {
            let r = rt
                .resolve(attr)
                .map_err(|e| ScimError::invalid_filter(e.detail))?;
            Ok((r.extension, r.attr, r.sub))
        }
        Scope::Element(parent) => match parent.sub(&attr.name) {
            Some(d) if attr.urn.is_none() && attr.sub.is_none() => Ok((None, d, None)),
            _ => Err(ScimError::invalid_filter(format!(
                "unknown sub-attribute '{attr}' of '{}'",
                parent.name
            ))),
        },
    }
}

#[cfg(test)]
mod tests;
