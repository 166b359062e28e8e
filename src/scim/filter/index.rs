//! The index plan: the equalities of a filter a store can answer by index, and the residual
//! the evaluator must still check.

use serde_json::Value;

use super::{CompareOp, Filter};
use crate::scim::schema::{AttrRef, ResourceType, GROUP_SCHEMA, USER_SCHEMA};

impl Filter {
    /// Splits the filter into equalities a store can answer by index and a residual the
    /// evaluator must still check. Call [`Filter::validate`] first.
    pub fn index_plan(&self, rt: &ResourceType) -> IndexPlan {
        let mut conjuncts = Vec::new();
        flatten_and(self, &mut conjuncts);
        let mut terms = Vec::new();
        let mut residual: Option<Filter> = None;
        for c in conjuncts {
            let keep = match index_term(c, rt) {
                Some((term, exact)) => {
                    terms.push(term);
                    !exact
                }
                None => true,
            };
            if keep {
                residual = Some(match residual {
                    None => c.clone(),
                    Some(r) => Filter::And(Box::new(r), Box::new(c.clone())),
                });
            }
        }
        IndexPlan { terms, residual }
    }
}

/// An attribute the store indexes for equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexedAttr {
    Id,
    UserName,
    ExternalId,
    DisplayName,
    EmailValue,
    MemberValue,
}

impl IndexedAttr {
    /// Whether the store must compare this attribute case-sensitively for the term to answer
    /// the filter exactly (`id`, `externalId`, member ids); the others compare
    /// case-insensitively (`userName`, group `displayName`, email addresses).
    pub fn case_exact(self) -> bool {
        matches!(
            self,
            IndexedAttr::Id | IndexedAttr::ExternalId | IndexedAttr::MemberValue
        )
    }
}

/// `attr = value`, compared as [`IndexedAttr::case_exact`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexTerm {
    pub attr: IndexedAttr,
    pub value: String,
}

/// How to answer a filter: the conjunction of `terms` narrows the candidates by index (empty:
/// full scan); `residual` is what the evaluator must still check on each candidate (`None`:
/// the terms answer the filter exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPlan {
    pub terms: Vec<IndexTerm>,
    pub residual: Option<Filter>,
}

fn flatten_and<'f>(f: &'f Filter, out: &mut Vec<&'f Filter>) {
    match f {
        Filter::And(l, r) => {
            flatten_and(l, out);
            flatten_and(r, out);
        }
        other => out.push(other),
    }
}

fn indexed(rt: &ResourceType, attr: &AttrRef) -> Option<IndexedAttr> {
    let r = rt.resolve(attr).ok()?;
    if r.extension.is_some() {
        return None;
    }
    let sub = r.sub.map(|s| s.name);
    let is_user = rt.schema.id == USER_SCHEMA;
    let is_group = rt.schema.id == GROUP_SCHEMA;
    match (r.attr.name, sub) {
        ("id", None) => Some(IndexedAttr::Id),
        ("externalId", None) => Some(IndexedAttr::ExternalId),
        ("userName", None) if is_user => Some(IndexedAttr::UserName),
        ("displayName", None) if is_group => Some(IndexedAttr::DisplayName),
        ("emails", None | Some("value")) if is_user => Some(IndexedAttr::EmailValue),
        ("members", None | Some("value")) if is_group => Some(IndexedAttr::MemberValue),
        _ => None,
    }
}

fn eq_text(op: CompareOp, value: &Value) -> Option<String> {
    if op != CompareOp::Eq {
        return None;
    }
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The index term a conjunct gives, and whether the term answers the conjunct exactly.
fn index_term(c: &Filter, rt: &ResourceType) -> Option<(IndexTerm, bool)> {
    match c {
        Filter::Compare { attr, op, value } => {
            let ia = indexed(rt, attr)?;
            let v = eq_text(*op, value)?;
            Some((IndexTerm { attr: ia, value: v }, true))
        }
        Filter::ValuePath { attr, filter } if attr.sub.is_none() => {
            let ia = indexed(rt, attr)?;
            if !matches!(ia, IndexedAttr::EmailValue | IndexedAttr::MemberValue) {
                return None;
            }
            let mut inner = Vec::new();
            flatten_and(filter, &mut inner);
            let only = inner.len() == 1;
            inner.into_iter().find_map(|f| match f {
                Filter::Compare { attr: a, op, value }
                    if a.urn.is_none()
                        && a.sub.is_none()
                        && a.name.eq_ignore_ascii_case("value") =>
                {
                    eq_text(*op, value).map(|v| (IndexTerm { attr: ia, value: v }, only))
                }
                _ => None,
            })
        }
        _ => None,
    }
}
