//! One IdP connection's operations: set-up, user changes, group renames, membership PATCHes.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::config::DeprovisionPolicy;

use super::idp::{group_name, patch, slot_email, user_body, Idp};
use super::plan::{Plan, Shape};
use super::GROUP_SCHEMA;

/// One IdP connection: owns users `u % connections == c`, groups `g % connections == c` and
/// pairs `(g + u) % connections == c`; sends one request at a time.
pub(super) async fn connection(idp: Arc<Idp>, plan: Arc<Plan>, c: usize, seed: u64) {
    let mut rng =
        SmallRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(c as u64 + 1)));
    let cn = plan.connections;
    let entra_of = |rng: &mut SmallRng| match plan.shape {
        Shape::Okta => false,
        Shape::Entra => true,
        Shape::Mixed => rng.random_bool(0.5),
    };
    let my_users: Vec<usize> = (c..plan.users).step_by(cn).collect();
    let my_groups: Vec<usize> = (c..plan.groups).step_by(cn).collect();

    // Set-up: this connection's groups, then its users.
    for &g in &my_groups {
        let name = group_name(g, 0);
        let entra = entra_of(&mut rng);
        let body = if entra {
            json!({"schemas": [GROUP_SCHEMA], "displayName": name, "externalId": format!("g{g}")})
        } else {
            json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []})
        };
        if let Some(id) = idp
            .create(&mut rng, "Groups", &body, "displayName", &name)
            .await
        {
            if let Ok(mut m) = idp.model.lock() {
                m.groups[g].id = Some(id);
                m.acknowledged += 1;
            }
        }
    }
    for &u in &my_users {
        let entra = entra_of(&mut rng);
        create_user(&idp, &mut rng, u, entra, seed).await;
    }

    for _ in 0..plan.ops_per_connection {
        let entra = entra_of(&mut rng);
        let roll = rng.random_range(0..100);
        if roll < 45 {
            membership(&idp, &plan, &mut rng, c, entra).await;
            continue;
        }
        if roll < 52 && !my_groups.is_empty() {
            let g = my_groups[rng.random_range(0..my_groups.len())];
            rename_group(&idp, &mut rng, g, entra).await;
            continue;
        }
        if my_users.is_empty() {
            continue;
        }
        let u = my_users[rng.random_range(0..my_users.len())];
        let slot = match idp.model.lock() {
            Ok(m) => m.users[u].clone(),
            Err(_) => return,
        };
        let Some(id) = slot.id.clone() else {
            // Deleted (or its create failed): create it again, half the time under its old
            // email (a rehire; the tombstone must not take the new user with it).
            let reuse = rng.random_bool(0.5);
            if !reuse {
                if let Ok(mut m) = idp.model.lock() {
                    let s = &mut m.users[u];
                    if !s.protected {
                        s.version += 1;
                        s.email = slot_email(seed, u, s.version);
                    }
                }
            }
            create_user(&idp, &mut rng, u, entra, seed).await;
            continue;
        };
        let path = format!("/Users/{id}");
        // Without attribute updates: deactivations, reactivations and deletes only.
        let low = if plan.attribute_updates { 0 } else { 45 };
        match rng.random_range(low..100) {
            // Names.
            0..=29 => {
                let given = format!("Given{}", rng.random_range(0..1000));
                let family = format!("Family{}", rng.random_range(0..1000));
                let (method, body) = if entra {
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
                        user_body(&slot.email, &given, &family, slot.active, false),
                    )
                };
                if let Some((st, amb)) = idp
                    .change(&mut rng, method, &path, Some(&body), "name update")
                    .await
                {
                    idp.note(
                        u,
                        format!(
                            "c{c} names {given} {family} -> {st} retried {amb} ({})",
                            if entra { "entra" } else { "okta" }
                        ),
                    );
                    if let Ok(mut m) = idp.model.lock() {
                        m.users[u].given = given;
                        m.users[u].family = family;
                        m.acknowledged += 1;
                    }
                }
            }
            // Email (userName) change.
            30..=44 if !slot.protected => {
                // A fresh email for every attempt, kept even when the change is refused (the
                // partner may hold it anyway): a later re-create never reuses it by accident.
                let email = slot_email(seed, u, slot.version + 1);
                if let Ok(mut m) = idp.model.lock() {
                    m.users[u].version += 1;
                }
                let (method, body) = if entra {
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
                        user_body(&email, &slot.given, &slot.family, slot.active, false),
                    )
                };
                if let Some((st, amb)) = idp
                    .change(&mut rng, method, &path, Some(&body), "email change")
                    .await
                {
                    idp.note(
                        u,
                        format!(
                            "c{c} email {} -> {email} -> {st} retried {amb} ({})",
                            slot.email,
                            if entra { "entra" } else { "okta" }
                        ),
                    );
                    if let Ok(mut m) = idp.model.lock() {
                        let s = &mut m.users[u];
                        s.email = email.clone();
                        s.emails_used.insert(email);
                        m.acknowledged += 1;
                    }
                }
            }
            // Deactivate / reactivate.
            45..=79 => {
                let to = !slot.active;
                let body = if entra {
                    patch(json!([{"op": "Replace", "path": "active",
                                  "value": if to { "True" } else { "False" }}]))
                } else {
                    patch(json!([{"op": "replace", "value": {"active": to}}]))
                };
                let what = if to { "reactivation" } else { "deactivation" };
                if let Some((st, amb)) = idp
                    .change(&mut rng, reqwest::Method::PATCH, &path, Some(&body), what)
                    .await
                {
                    idp.note(
                        u,
                        format!(
                            "c{c} {what} of {} -> {st} retried {amb} ({})",
                            slot.email,
                            if entra { "entra" } else { "okta" }
                        ),
                    );
                    if let Ok(mut m) = idp.model.lock() {
                        let s = &mut m.users[u];
                        s.active = to;
                        if !to && plan.policy == DeprovisionPolicy::Remove && !s.protected {
                            s.vendor = false;
                        }
                        m.acknowledged += 1;
                    }
                }
            }
            // Delete.
            _ => {
                if let Some((st, amb)) = idp
                    .change(&mut rng, reqwest::Method::DELETE, &path, None, "delete")
                    .await
                {
                    idp.note(
                        u,
                        format!("c{c} delete {id} ({}) -> {st} retried {amb}", slot.email),
                    );
                    if let Ok(mut m) = idp.model.lock() {
                        let s = &mut m.users[u];
                        s.id = None;
                        if !s.protected {
                            s.vendor = false;
                        }
                        m.acknowledged += 1;
                    }
                }
            }
        }
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
