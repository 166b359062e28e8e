//! The checks after a run: the intent, where the partner differs from it, overlapping writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::DeprovisionPolicy;
use crate::partner::emulator::{CallRecord, Emulator};
use crate::partner::PartnerUser;

use super::idp::Model;
use super::plan::Plan;
use super::{ALL_USERS, OWNER, VENDOR_GROUP};

/// A partner user as the intent wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Want {
    pub(super) first: String,
    pub(super) last: String,
    /// `None`: not checked (an inactive user's groups under `keep` are the engine's choice).
    pub(super) groups: Option<BTreeSet<String>>,
}

/// The partner users every site must hold (by lower-case email), and the managed group names
/// that must exist, the old names that must not.
pub(super) struct Expected {
    pub(super) users: BTreeMap<String, Want>,
    pub(super) groups: BTreeSet<String>,
    pub(super) old_groups: BTreeSet<String>,
}

pub(super) fn expected(m: &Model, plan: &Plan) -> Expected {
    let mut users = BTreeMap::new();
    for s in &m.users {
        let Some(id) = &s.id else { continue };
        let present = s.active || s.protected || plan.policy != DeprovisionPolicy::Remove;
        if !present {
            continue;
        }
        let managed: BTreeSet<String> = if s.active || plan.policy == DeprovisionPolicy::Keep {
            m.groups
                .iter()
                .filter(|g| g.id.is_some() && g.members.contains(id))
                .map(|g| g.name.clone())
                .collect()
        } else {
            BTreeSet::new()
        };
        let mut groups = managed;
        groups.insert(ALL_USERS.into());
        if s.vendor {
            groups.insert(VENDOR_GROUP.into());
        }
        if s.protected {
            groups.insert("Administrators".into());
        }
        // A protected account keeps the names it has at the partner (the tenant does not set
        // `allow_protected_changes`): its names are not part of the intent.
        let (first, last) = if s.protected {
            (String::new(), String::new())
        } else {
            (s.given.clone(), s.family.clone())
        };
        users.insert(
            s.email.to_lowercase(),
            Want {
                first,
                last,
                groups: Some(groups),
            },
        );
    }
    // The owner exists whatever happened to its SCIM user; without one (never created, or
    // deleted: deprovisioning strips a protected account) it has its unmanaged groups only.
    users.entry(OWNER.to_owned()).or_insert_with(|| Want {
        first: String::new(),
        last: String::new(),
        groups: Some([ALL_USERS.to_owned(), "Administrators".to_owned()].into()),
    });
    Expected {
        users,
        groups: m
            .groups
            .iter()
            .filter(|g| g.id.is_some())
            .map(|g| g.name.clone())
            .collect(),
        old_groups: m
            .groups
            .iter()
            .flat_map(|g| g.old_names.iter().cloned())
            .collect(),
    }
}

/// The v1 name of an RBAC site's role: its own, but `Everyone` and `Admin` as the v1 groups
/// they stand for (`All Users`, `Administrators`), so one intent serves both kinds of site.
fn as_v1_name(role: &str) -> String {
    match role {
        crate::partner::rbac::EVERYONE_ROLE => ALL_USERS.to_owned(),
        crate::partner::rbac::ADMIN_ROLE => "Administrators".to_owned(),
        other => other.to_owned(),
    }
}

/// The users of a site, an RBAC site's with its roles by (v1) name as groups.
fn site_users(emu: &Emulator, site: &str) -> Vec<PartnerUser> {
    if emu.site_kind(site) != Some(crate::partner::emulator::SiteKind::Rbac) {
        return emu.users(site);
    }
    let roles: HashMap<String, String> = emu
        .roles(site)
        .into_iter()
        .map(|r| (r.id, as_v1_name(&r.name)))
        .collect();
    emu.rbac_users(site)
        .into_iter()
        .map(|u| PartnerUser {
            email: u.email,
            first_name: u.first_name,
            last_name: u.last_name,
            groups: u
                .roles
                .iter()
                .filter_map(|id| roles.get(id).cloned())
                .collect(),
        })
        .collect()
}

/// The names of a site's groups (an RBAC site's roles, by v1 name).
fn site_group_names(emu: &Emulator, site: &str) -> BTreeSet<String> {
    if emu.site_kind(site) == Some(crate::partner::emulator::SiteKind::Rbac) {
        return emu
            .roles(site)
            .iter()
            .map(|r| as_v1_name(&r.name))
            .collect();
    }
    emu.groups(site).into_iter().map(|g| g.name).collect()
}

/// Where the partner differs from the intent (invariants 1 and 2).
pub(super) fn differences(emu: &Emulator, plan: &Plan, want: &Expected) -> Vec<String> {
    let mut out = Vec::new();
    for site in &plan.sites {
        let have: HashMap<String, PartnerUser> = site_users(emu, site)
            .into_iter()
            .map(|u| (u.email.to_lowercase(), u))
            .collect();
        for (email, w) in &want.users {
            let Some(p) = have.get(email) else {
                out.push(format!(
                    "invariant 1: {site}: {email} is missing (want {w:?})"
                ));
                continue;
            };
            if !w.first.is_empty() && (p.first_name != w.first || p.last_name != w.last) {
                out.push(format!(
                    "invariant 1: {site}: {email} is named {} {}, want {} {}",
                    p.first_name, p.last_name, w.first, w.last
                ));
            }
            if let Some(groups) = &w.groups {
                let got: BTreeSet<String> = p.groups.iter().cloned().collect();
                if &got != groups {
                    out.push(format!(
                        "invariant 1: {site}: {email} has groups {got:?}, want {groups:?}"
                    ));
                }
            }
        }
        for email in have.keys() {
            if !want.users.contains_key(email) {
                out.push(format!(
                    "invariant 2: {site}: {email} exists at the partner; the IdP deleted, \
                     deactivated (remove) or renamed it"
                ));
            }
        }
        let names = site_group_names(emu, site);
        for g in want.groups.difference(&names) {
            out.push(format!("invariant 1: {site}: managed group {g} is missing"));
        }
        for g in want.old_groups.intersection(&names) {
            if !want.groups.contains(g) {
                out.push(format!(
                    "invariant 1: {site}: group {g} still exists under its old name"
                ));
            }
        }
    }
    out
}

/// Invariant 3: no two user writes of one (site, email) in flight at once. Returns how many
/// writes were checked and the overlaps.
pub(super) fn overlapping_user_writes(log: &[CallRecord]) -> (usize, Vec<String>) {
    let mut by_user: HashMap<(String, String), Vec<&CallRecord>> = HashMap::new();
    for r in log.iter().filter(|r| r.call.is_user_write()) {
        let email = r.email.clone().unwrap_or_default().to_lowercase();
        by_user.entry((r.site.clone(), email)).or_default().push(r);
    }
    let (mut n, mut out) = (0, Vec::new());
    for ((site, email), mut calls) in by_user {
        n += calls.len();
        calls.sort_by_key(|r| r.started_us);
        for pair in calls.windows(2) {
            if pair[1].started_us < pair[0].finished_us {
                out.push(format!(
                    "invariant 3: {site}: overlapping writes of {email}: {:?} {} [{}..{}] and \
                     {:?} {} [{}..{}] (us)",
                    pair[0].call,
                    pair[0].status,
                    pair[0].started_us,
                    pair[0].finished_us,
                    pair[1].call,
                    pair[1].status,
                    pair[1].started_us,
                    pair[1].finished_us,
                ));
            }
        }
    }
    (n, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partner::CallKind;

    #[test]
    fn overlapping_writes_of_one_user_are_found() {
        let rec = |seq, call, started_us, finished_us| CallRecord {
            seq,
            site: "alpha".into(),
            call,
            test_mode: false,
            email: Some("a@x.io".into()),
            group: None,
            status: 200,
            started_us,
            finished_us,
        };
        let log = vec![
            rec(1, CallKind::CreateUser, 0, 10),
            rec(2, CallKind::UpdateUser, 10, 20),
        ];
        assert!(overlapping_user_writes(&log).1.is_empty());
        let log = vec![
            rec(1, CallKind::CreateUser, 0, 10),
            rec(2, CallKind::UpdateUser, 5, 20),
        ];
        assert_eq!(overlapping_user_writes(&log).1.len(), 1);
    }
}
