//! What a PATCH changed: the attributes whose value differs and the members added and removed.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::Obj;
use crate::scim::filter::{as_text, get_ci};
use crate::scim::schema::ResourceType;

/// What a PATCH changed; empty when nothing did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSummary {
    /// Top-level attributes whose value changed, canonical names; extension attributes as
    /// `urn:...:User:manager`.
    pub attributes: BTreeSet<String>,
    /// Member ids present after and not before, in their order in the new list.
    pub members_added: Vec<String>,
    /// Member ids present before and not after, in their order in the old list.
    pub members_removed: Vec<String>,
}

impl ChangeSummary {
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
            && self.members_added.is_empty()
            && self.members_removed.is_empty()
    }
}

fn member_ids(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|el| get_ci(el, "value").and_then(as_text))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn summarize(rt: &ResourceType, old: &Obj, new: &Obj) -> ChangeSummary {
    let mut attributes = BTreeSet::new();
    let keys: Vec<&String> = old
        .keys()
        .chain(new.keys().filter(|k| !old.contains_key(*k)))
        .collect();
    let empty = Map::new();
    for k in keys {
        if k.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(ext) = rt.extension(k) {
            let o = old.get(k).and_then(Value::as_object).unwrap_or(&empty);
            let n = new.get(k).and_then(Value::as_object).unwrap_or(&empty);
            for ik in o.keys().chain(n.keys().filter(|ik| !o.contains_key(*ik))) {
                if o.get(ik) != n.get(ik) {
                    let name = ext.attribute(ik).map_or(ik.as_str(), |a| a.name);
                    attributes.insert(format!("{}:{name}", ext.id));
                }
            }
        } else if old.get(k) != new.get(k) {
            let name = rt.core_attribute(k).map_or(k.as_str(), |a| a.name);
            attributes.insert(name.to_owned());
        }
    }
    let (mut members_added, mut members_removed) = (Vec::new(), Vec::new());
    if rt.core_attribute("members").is_some() {
        let before = member_ids(old.get("members"));
        let after = member_ids(new.get("members"));
        let before_set: HashSet<&String> = before.iter().collect();
        let after_set: HashSet<&String> = after.iter().collect();
        let mut seen = HashSet::new();
        for id in &after {
            if !before_set.contains(id) && seen.insert(id) {
                members_added.push(id.clone());
            }
        }
        for id in &before {
            if !after_set.contains(id) && seen.insert(id) {
                members_removed.push(id.clone());
            }
        }
    }
    ChangeSummary {
        attributes,
        members_added,
        members_removed,
    }
}
