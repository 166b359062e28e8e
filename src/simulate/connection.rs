//! One IdP connection's operations: set-up, user changes, group renames, membership PATCHes.

use std::ops::ControlFlow;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::config::DeprovisionPolicy;

use super::idp::{group_name, patch, slot_email, user_body, Idp, Slot};
use super::plan::{Plan, Shape};
use super::GROUP_SCHEMA;

/// One IdP connection: owns users `u % connections == c`, groups `g % connections == c` and
/// pairs `(g + u) % connections == c`; sends one request at a time.
pub(super) async fn connection(idp: Arc<Idp>, plan: Arc<Plan>, c: usize, seed: u64) {
    let cn = plan.connections;
    let mut conn = Conn {
        rng: SmallRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(c as u64 + 1))),
        my_users: (c..plan.users).step_by(cn).collect(),
        my_groups: (c..plan.groups).step_by(cn).collect(),
        idp,
        plan,
        c,
        seed,
    };
    conn.set_up().await;
    for _ in 0..conn.plan.ops_per_connection {
        if conn.step().await.is_break() {
            return;
        }
    }
}

/// One connection's state: its random choices and the users and groups it owns.
struct Conn {
    idp: Arc<Idp>,
    plan: Arc<Plan>,
    c: usize,
    seed: u64,
    rng: SmallRng,
    my_users: Vec<usize>,
    my_groups: Vec<usize>,
}

/// A user change's context: the slot as it was read, its SCIM path, and the IdP's shape.
struct Target {
    u: usize,
    slot: Slot,
    id: String,
    path: String,
    entra: bool,
}

impl Conn {
    /// Whether the next request is Entra-shaped (else Okta-shaped), by the plan's shape.
    fn entra(&mut self) -> bool {
        match self.plan.shape {
            Shape::Okta => false,
            Shape::Entra => true,
            Shape::Mixed => self.rng.random_bool(0.5),
        }
    }

    /// Set-up: this connection's groups, then its users.
    async fn set_up(&mut self) {
        for g in self.my_groups.clone() {
            let name = group_name(g, 0);
            let entra = self.entra();
            let body = if entra {
                json!({"schemas": [GROUP_SCHEMA], "displayName": name, "externalId": format!("g{g}")})
            } else {
                json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []})
            };
            if let Some(id) = self
                .idp
                .create(&mut self.rng, "Groups", &body, "displayName", &name)
                .await
            {
                if let Ok(mut m) = self.idp.model.lock() {
                    m.groups[g].id = Some(id);
                    m.acknowledged += 1;
                }
            }
        }
        for u in self.my_users.clone() {
            let entra = self.entra();
            create_user(&self.idp, &mut self.rng, u, entra, self.seed).await;
        }
    }

    /// One operation: a membership PATCH, a group rename, or a change to one of its users;
    /// `Break` when the model's lock is poisoned.
    async fn step(&mut self) -> ControlFlow<()> {
        let entra = self.entra();
        let roll = self.rng.random_range(0..100);
        if roll < 45 {
            membership(&self.idp, &self.plan, &mut self.rng, self.c, entra).await;
            return ControlFlow::Continue(());
        }
        if roll < 52 && !self.my_groups.is_empty() {
            let g = self.my_groups[self.rng.random_range(0..self.my_groups.len())];
            rename_group(&self.idp, &mut self.rng, g, entra).await;
            return ControlFlow::Continue(());
        }
        if self.my_users.is_empty() {
            return ControlFlow::Continue(());
        }
        let u = self.my_users[self.rng.random_range(0..self.my_users.len())];
        let slot = match self.idp.model.lock() {
            Ok(m) => m.users[u].clone(),
            Err(_) => return ControlFlow::Break(()),
        };
        let Some(id) = slot.id.clone() else {
            self.recreate(u, entra).await;
            return ControlFlow::Continue(());
        };
        let t = Target {
            u,
            path: format!("/Users/{id}"),
            slot,
            id,
            entra,
        };
        // Without attribute updates: deactivations, reactivations and deletes only.
        let low = if self.plan.attribute_updates { 0 } else { 45 };
        match self.rng.random_range(low..100) {
            0..=29 => self.change_names(&t).await,
            30..=44 if !t.slot.protected => self.change_email(&t).await,
            45..=79 => self.toggle_active(&t).await,
            _ => self.delete(&t).await,
        }
        ControlFlow::Continue(())
    }

    /// Deleted (or its create failed): create it again, half the time under its old email (a
    /// rehire; the tombstone must not take the new user with it).
    async fn recreate(&mut self, u: usize, entra: bool) {
        let reuse = self.rng.random_bool(0.5);
        if !reuse {
            if let Ok(mut m) = self.idp.model.lock() {
                let s = &mut m.users[u];
                if !s.protected {
                    s.version += 1;
                    s.email = slot_email(self.seed, u, s.version);
                }
            }
        }
        create_user(&self.idp, &mut self.rng, u, entra, self.seed).await;
    }

    /// New given and family names: Entra PATCHes them, Okta PUTs the whole user.
    async fn change_names(&mut self, t: &Target) {
        let given = format!("Given{}", self.rng.random_range(0..1000));
        let family = format!("Family{}", self.rng.random_range(0..1000));
        let (method, body) = if t.entra {
            (
                reqwest::Method::PATCH,
                patch(json!([
                    {"op": "Replace", "path": "displayName", "value": format!("{given} {family}")},
                    {"op": "Replace", "path": "name.givenName", "value": given},
                    {"op": "Replace", "path": "name.familyName", "value": family},
                ])),
            )
        } else {
            (
                reqwest::Method::PUT,
                user_body(&t.slot.email, &given, &family, t.slot.active, false),
            )
        };
        if let Some((st, amb)) = self
            .idp
            .change(&mut self.rng, method, &t.path, Some(&body), "name update")
            .await
        {
            self.idp.note(
                t.u,
                format!(
                    "c{} names {given} {family} -> {st} retried {amb} ({})",
                    self.c,
                    shape_name(t.entra)
                ),
            );
            if let Ok(mut m) = self.idp.model.lock() {
                m.users[t.u].given = given;
                m.users[t.u].family = family;
                m.acknowledged += 1;
            }
        }
    }

    /// An email (userName) change.
    async fn change_email(&mut self, t: &Target) {
        let u = t.u;
        // A fresh email for every attempt, kept even when the change is refused (the
        // partner may hold it anyway): a later re-create never reuses it by accident.
        let email = slot_email(self.seed, u, t.slot.version + 1);
        if let Ok(mut m) = self.idp.model.lock() {
            m.users[u].version += 1;
        }
        let (method, body) = if t.entra {
            (
                reqwest::Method::PATCH,
                patch(json!([
                    {"op": "Replace", "path": "userName", "value": email},
                    {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": email},
                ])),
            )
        } else {
            (
                reqwest::Method::PUT,
                user_body(&email, &t.slot.given, &t.slot.family, t.slot.active, false),
            )
        };
        if let Some((st, amb)) = self
            .idp
            .change(&mut self.rng, method, &t.path, Some(&body), "email change")
            .await
        {
            self.idp.note(
                u,
                format!(
                    "c{} email {} -> {email} -> {st} retried {amb} ({})",
                    self.c,
                    t.slot.email,
                    shape_name(t.entra)
                ),
            );
            if let Ok(mut m) = self.idp.model.lock() {
                let s = &mut m.users[u];
                s.email = email.clone();
                s.emails_used.insert(email);
                m.acknowledged += 1;
            }
        }
    }

    /// Deactivates the user, or reactivates it when inactive (Entra's string values, Okta's
    /// object value).
    async fn toggle_active(&mut self, t: &Target) {
        let to = !t.slot.active;
        let body = if t.entra {
            patch(json!([{"op": "Replace", "path": "active",
                          "value": if to { "True" } else { "False" }}]))
        } else {
            patch(json!([{"op": "replace", "value": {"active": to}}]))
        };
        let what = if to { "reactivation" } else { "deactivation" };
        if let Some((st, amb)) = self
            .idp
            .change(
                &mut self.rng,
                reqwest::Method::PATCH,
                &t.path,
                Some(&body),
                what,
            )
            .await
        {
            self.idp.note(
                t.u,
                format!(
                    "c{} {what} of {} -> {st} retried {amb} ({})",
                    self.c,
                    t.slot.email,
                    shape_name(t.entra)
                ),
            );
            if let Ok(mut m) = self.idp.model.lock() {
                let s = &mut m.users[t.u];
                s.active = to;
                if !to && self.plan.policy == DeprovisionPolicy::Remove && !s.protected {
                    s.vendor = false;
                }
                m.acknowledged += 1;
            }
        }
    }

    /// Deletes the user.
    async fn delete(&mut self, t: &Target) {
        if let Some((st, amb)) = self
            .idp
            .change(
                &mut self.rng,
                reqwest::Method::DELETE,
                &t.path,
                None,
                "delete",
            )
            .await
        {
            self.idp.note(
                t.u,
                format!(
                    "c{} delete {} ({}) -> {st} retried {amb}",
                    self.c, t.id, t.slot.email
                ),
            );
            if let Ok(mut m) = self.idp.model.lock() {
                let s = &mut m.users[t.u];
                s.id = None;
                if !s.protected {
                    s.vendor = false;
                }
                m.acknowledged += 1;
            }
        }
    }
}

/// The IdP a request's shape imitates, for the history.
fn shape_name(entra: bool) -> &'static str {
    if entra {
        "entra"
    } else {
        "okta"
    }
}

pub(super) async fn create_user(idp: &Idp, rng: &mut SmallRng, u: usize, entra: bool, _seed: u64) {
    let slot = match idp.model.lock() {
        Ok(m) => m.users[u].clone(),
        Err(_) => return,
    };
    let body = user_body(&slot.email, &slot.given, &slot.family, true, entra);
    if let Some(id) = idp
        .create(rng, "Users", &body, "userName", &slot.email)
        .await
    {
        idp.note(u, format!("create {} -> {id}", slot.email));
        if let Ok(mut m) = idp.model.lock() {
            let s = &mut m.users[u];
            s.id = Some(id);
            s.active = true;
            s.emails_used.insert(slot.email.clone());
            m.acknowledged += 1;
        }
    }
}

pub(super) async fn rename_group(idp: &Idp, rng: &mut SmallRng, g: usize, entra: bool) {
    let (id, old, version) = match idp.model.lock() {
        Ok(m) => {
            let gm = &m.groups[g];
            (
                gm.id.clone(),
                gm.name.clone(),
                gm.old_names.len() as u32 + 1,
            )
        }
        Err(_) => return,
    };
    let Some(id) = id else { return };
    let name = group_name(g, version);
    let body = if entra {
        patch(json!([{"op": "Replace", "path": "displayName", "value": name}]))
    } else {
        patch(json!([{"op": "replace", "value": {"id": id, "displayName": name}}]))
    };
    if idp
        .change(
            rng,
            reqwest::Method::PATCH,
            &format!("/Groups/{id}"),
            Some(&body),
            "group rename",
        )
        .await
        .is_some()
    {
        if let Ok(mut m) = idp.model.lock() {
            let gm = &mut m.groups[g];
            gm.old_names.insert(old);
            gm.name = name;
            m.acknowledged += 1;
        }
    }
}

/// A membership PATCH on a random group: adds and removes among this connection's pairs.
pub(super) async fn membership(idp: &Idp, plan: &Plan, rng: &mut SmallRng, c: usize, entra: bool) {
    let g = rng.random_range(0..plan.groups);
    let cn = plan.connections;
    let (gid, add, remove) = {
        let Ok(m) = idp.model.lock() else { return };
        let Some(gid) = m.groups[g].id.clone() else {
            return;
        };
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for u in (0..plan.users).filter(|u| (g + u) % cn == c) {
            let Some(id) = m.users[u].id.clone() else {
                continue;
            };
            let member = m.groups[g].members.contains(&id);
            if !member && rng.random_bool(0.5) {
                add.push(id);
            } else if member && rng.random_bool(0.35) {
                remove.push(id);
            }
        }
        (gid, add, remove)
    };
    if add.is_empty() && remove.is_empty() {
        return;
    }
    let mut ops = Vec::new();
    if !add.is_empty() {
        let values: Vec<Value> = add.iter().map(|i| json!({"value": i})).collect();
        ops.push(
            json!({"op": if entra { "Add" } else { "add" }, "path": "members", "value": values}),
        );
    }
    if entra {
        if !remove.is_empty() {
            let values: Vec<Value> = remove.iter().map(|i| json!({"value": i})).collect();
            ops.push(json!({"op": "Remove", "path": "members", "value": values}));
        }
    } else {
        for i in &remove {
            ops.push(json!({"op": "remove", "path": format!("members[value eq \"{i}\"]")}));
        }
    }
    if idp
        .change(
            rng,
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(&patch(Value::Array(ops))),
            "membership change",
        )
        .await
        .is_some()
    {
        if let Ok(mut m) = idp.model.lock() {
            let gm = &mut m.groups[g];
            gm.members.extend(add);
            for r in remove {
                gm.members.remove(&r);
            }
            m.acknowledged += 1;
        }
    }
}
