//! RBAC sites: the partner's "User and Role Management API" (section 4.2 "Contract" of
//! `partner-api.md`), beside the v1 sites of section 2.
//!
//! - [`state`]: the users and roles of one RBAC site and its ten calls as pure operations.
//! - [`router`]: those calls over HTTP (`/api/v2/users[/<id>]`, `/api/v1/roles[/<id>]`), with
//!   the same authentication, `test_mode`, call log, counters, switches and faults as v1 calls,
//!   and the 404 each kind of site answers on the other kind's paths.
//!
//! Here too: the in-process accessors tests use to read and seed an RBAC site, and the body of
//! `GET /_emulator/sites/{site}` for one.

pub mod router;
pub mod state;

use std::sync::Mutex;

use serde_json::{json, Value};

use self::state::RbacState;
use super::{lock, Emulator};
use crate::partner::{PartnerRole, PartnerUserV2};

impl Emulator {
    /// An RBAC site's users and roles; `None` for an unknown or v1 site.
    fn rbac_state(&self, site: &str) -> Option<&Mutex<RbacState>> {
        self.site(site).and_then(|site| site.rbac.as_ref())
    }

    /// An RBAC site's users, ordered by email (case-insensitively). Empty for an unknown or v1
    /// site.
    pub fn rbac_users(&self, site: &str) -> Vec<PartnerUserV2> {
        self.rbac_state(site)
            .map(|state| lock(state).users())
            .unwrap_or_default()
    }

    /// One user of an RBAC site, by id.
    pub fn rbac_user(&self, site: &str, id: &str) -> Option<PartnerUserV2> {
        self.rbac_state(site)
            .and_then(|state| lock(state).user(id).cloned())
    }

    /// One user of an RBAC site, by email matched case-insensitively.
    pub fn rbac_user_by_email(&self, site: &str, email: &str) -> Option<PartnerUserV2> {
        self.rbac_state(site)
            .and_then(|state| lock(state).user_by_email(email).cloned())
    }

    /// An RBAC site's roles, ordered by name (case-insensitively). Empty for an unknown or v1
    /// site.
    pub fn roles(&self, site: &str) -> Vec<PartnerRole> {
        self.rbac_state(site)
            .map(|state| lock(state).roles())
            .unwrap_or_default()
    }

    /// One role of an RBAC site, by id.
    pub fn role(&self, site: &str, id: &str) -> Option<PartnerRole> {
        self.rbac_state(site)
            .and_then(|state| lock(state).role(id).cloned())
    }

    /// One role of an RBAC site, by name matched case-insensitively.
    pub fn role_by_name(&self, site: &str, name: &str) -> Option<PartnerRole> {
        self.rbac_state(site)
            .and_then(|state| lock(state).role_by_name(name).cloned())
    }

    /// Leaves the user of `email` out of the next `readings` complete readings of an RBAC
    /// site's user list (`GET /api/v2/users` followed to its last page), as a cursor listing
    /// read while users are added or removed can (test seeding). False for an unknown or v1
    /// site.
    pub fn skip_rbac_user_in_listings(&self, site: &str, email: &str, readings: u32) -> bool {
        self.rbac_state(site)
            .map(|state| lock(state).skip_in_listings(email, readings))
            .is_some()
    }

    /// Removes a user of an RBAC site by id without a call (test seeding: a delete in the
    /// site's UI). False for an unknown site or user.
    pub fn remove_rbac_user(&self, site: &str, id: &str) -> bool {
        self.rbac_state(site)
            .is_some_and(|state| lock(state).delete_user(id, false).is_ok())
    }

    /// Inserts or replaces (by id) a user of an RBAC site without a call (test seeding);
    /// `Everyone` is added to its roles when missing; role ids are not checked. False for an
    /// unknown or v1 site, or when another user has the email (in any case).
    pub fn insert_rbac_user(&self, site: &str, user: PartnerUserV2) -> bool {
        self.rbac_state(site)
            .is_some_and(|state| lock(state).put_user(user))
    }

    /// Inserts or replaces (by id) a role of an RBAC site without a call (test seeding). False
    /// for an unknown or v1 site, or when another role has the name (in any case).
    pub fn insert_role(&self, site: &str, role: PartnerRole) -> bool {
        self.rbac_state(site)
            .is_some_and(|state| lock(state).put_role(role))
    }
}

/// The admin API's view of an RBAC site (`GET /_emulator/sites/{site}`): its kind, users,
/// roles, faults and switches. `None` for an unknown or v1 site.
pub(crate) fn admin_site(em: &Emulator, site: &str) -> Option<Value> {
    let state = em.rbac_state(site)?;
    let (users, roles) = {
        let state = lock(state);
        (state.users(), state.roles())
    };
    Some(json!({
        "name": site,
        "kind": super::SiteKind::Rbac,
        "users": users,
        "roles": roles,
        "faults": em.faults(site)?,
        "switches": em.switches(site)?,
    }))
}
