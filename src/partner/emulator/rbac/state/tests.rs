//! Unit tests of the RBAC state: the default roles, paging, roles kept and removed, and every
//! error status of section 4.2 of `partner-api.md`.

use super::*;
use serde_json::json;

const OWNER: &str = "owner@acme.example.com";

fn user_of(reply: RbacReply) -> PartnerUserV2 {
    match reply {
        RbacReply::User(u) => u,
        other => panic!("expected a user, got {other:?}"),
    }
}

fn role_of(reply: RbacReply) -> PartnerRole {
    match reply {
        RbacReply::Role(r) => r,
        other => panic!("expected a role, got {other:?}"),
    }
}

fn page_of(reply: RbacReply) -> (Vec<PartnerUserV2>, Option<String>) {
    match reply {
        RbacReply::UserPage {
            users,
            next_page_start,
        } => (users, next_page_start),
        other => panic!("expected a page, got {other:?}"),
    }
}

fn status(result: Result<RbacReply, ApiError>) -> u16 {
    result.unwrap_err().status.as_u16()
}

fn id_of(s: &RbacState, name: &str) -> String {
    s.role_by_name(name).unwrap().id.clone()
}

fn new_user(email: &str, roles: Value) -> Value {
    json!({"email": email, "first_name": "F", "last_name": "L", "roles": roles,
           "invited_by_email": OWNER})
}

fn with_role(name: &str) -> (RbacState, String) {
    let mut s = RbacState::new(OWNER);
    let role = role_of(s.create_role(&json!({"name": name}), false).unwrap());
    (s, role.id)
}

#[test]
fn new_site_has_the_default_roles_and_the_owner() {
    let s = RbacState::new(OWNER);
    let names: Vec<String> = s.roles().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        vec!["Admin", "Analyst", "Business User", "Everyone", "Read"]
    );
    let owner = s.user_by_email("OWNER@acme.example.com").unwrap();
    assert_eq!(owner.roles, vec![id_of(&s, "Admin"), id_of(&s, "Everyone")]);
    assert_eq!(s.user(&owner.id).unwrap().email, OWNER);
    let ids: BTreeSet<String> = s.roles().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
}

#[test]
fn two_sites_have_different_ids() {
    let (a, b) = (RbacState::new(OWNER), RbacState::new(OWNER));
    assert_ne!(id_of(&a, "Everyone"), id_of(&b, "Everyone"));
}

#[test]
fn create_user_adds_everyone_once_and_dedupes() {
    let mut s = RbacState::new(OWNER);
    let read = id_of(&s, "Read");
    let everyone = id_of(&s, "Everyone");
    let u = user_of(
        s.create_user(&new_user("A@x.io", json!([read, read])), false)
            .unwrap(),
    );
    assert_eq!(u.roles, vec![read.clone(), everyone.clone()]);
    assert_eq!(s.user_by_email("a@X.IO").unwrap().email, "A@x.io");
    let u2 = user_of(
        s.create_user(&new_user("b@x.io", json!([everyone, read])), false)
            .unwrap(),
    );
    assert_eq!(u2.roles, vec![everyone, read]);
    assert_ne!(u.id, u2.id);
}

#[test]
fn update_user_replaces_roles_keeping_everyone_or_merges_by_switch() {
    let mut s = RbacState::new(OWNER);
    let (read, analyst, everyone) = (
        id_of(&s, "Read"),
        id_of(&s, "Analyst"),
        id_of(&s, "Everyone"),
    );
    let id = user_of(
        s.create_user(&new_user("u@x.io", json!([read])), false)
            .unwrap(),
    )
    .id;
    let replaced = user_of(
        s.update_user(
            &id,
            &json!({"roles": [analyst]}),
            &Switches::default(),
            false,
        )
        .unwrap(),
    );
    assert_eq!(replaced.roles, vec![analyst.clone(), everyone.clone()]);
    let emptied = user_of(
        s.update_user(&id, &json!({"roles": []}), &Switches::default(), false)
            .unwrap(),
    );
    assert_eq!(emptied.roles, vec![everyone.clone()]);
    let merge = Switches {
        groups_merge: true,
        ..Switches::default()
    };
    s.update_user(
        &id,
        &json!({"roles": [analyst]}),
        &Switches::default(),
        false,
    )
    .unwrap();
    let merged = user_of(
        s.update_user(&id, &json!({"roles": [read]}), &merge, false)
            .unwrap(),
    );
    assert_eq!(merged.roles, vec![analyst, everyone, read]);
}

#[test]
fn update_user_changes_names_and_email() {
    let mut s = RbacState::new(OWNER);
    let id = user_of(
        s.create_user(&new_user("u@x.io", json!([])), false)
            .unwrap(),
    )
    .id;
    let u = user_of(
        s.update_user(
            &id,
            &json!({"first_name": "N", "email": "v@x.io"}),
            &Switches::default(),
            false,
        )
        .unwrap(),
    );
    assert_eq!((u.first_name.as_str(), u.last_name.as_str()), ("N", "L"));
    assert!(s.user_by_email("u@x.io").is_none());
    assert_eq!(s.user_by_email("V@x.io").unwrap().id, id);
    let refuse = Switches {
        refuse_email_change: true,
        ..Switches::default()
    };
    assert_eq!(
        status(s.update_user(&id, &json!({"email": "w@x.io"}), &refuse, true)),
        400
    );
    // the same email in another case is no change
    assert!(s
        .update_user(&id, &json!({"email": "V@X.IO"}), &refuse, false)
        .is_ok());
}

#[test]
fn users_page_by_hundred_in_email_order() {
    let mut s = RbacState::new(OWNER);
    for i in 0..250 {
        s.create_user(&new_user(&format!("u{i:03}@x.io"), json!([])), false)
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let (users, next) = page_of(s.list_users(cursor.as_deref(), true).unwrap());
        pages += 1;
        assert!(users.len() <= PAGE_SIZE);
        seen.extend(users.into_iter().map(|u| u.email));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 251);
    let mut sorted = seen.clone();
    sorted.sort_by_key(|e| e.to_lowercase());
    assert_eq!(seen, sorted);
    // unpaged: everything at once
    let (all, next) = page_of(s.list_users(None, false).unwrap());
    assert_eq!((all.len(), next), (251, None));
}

#[test]
fn a_cursor_survives_the_deletion_of_the_user_it_starts_at() {
    let mut s = RbacState::new(OWNER);
    for i in 0..150 {
        s.create_user(&new_user(&format!("u{i:03}@x.io"), json!([])), false)
            .unwrap();
    }
    let (first, next) = page_of(s.list_users(None, true).unwrap());
    let next = next.unwrap();
    let start = s.user_by_email("u099@x.io").unwrap().id.clone();
    assert_eq!(first.last().unwrap().email, "u098@x.io");
    s.delete_user(&start, false).unwrap();
    let (second, end) = page_of(s.list_users(Some(&next), true).unwrap());
    assert_eq!(second.first().unwrap().email, "u100@x.io");
    assert_eq!((second.len(), end), (50, None));
}

#[test]
fn bad_cursors_are_400() {
    let mut s = RbacState::new(OWNER);
    for cursor in ["", "zz", "abc", "ff"] {
        assert_eq!(status(s.list_users(Some(cursor), true)), 400, "{cursor}");
    }
    let (users, next) = page_of(s.list_users(Some(&encode_cursor("a")), true).unwrap());
    assert_eq!((users.len(), next), (1, None));
}

#[test]
fn role_names_are_unique_in_any_case() {
    let (mut s, id) = with_role("Sales");
    assert_eq!(status(s.create_role(&json!({"name": "SALES"}), true)), 409);
    assert_eq!(
        status(s.create_role(&json!({"name": "everyone"}), true)),
        409
    );
    let (_, other) = {
        let r = role_of(s.create_role(&json!({"name": "Ops"}), false).unwrap());
        (r.name, r.id)
    };
    assert_eq!(
        status(s.update_role(&other, &json!({"name": "sales"}), true)),
        409
    );
    // a change of case of its own name is no conflict
    let r = role_of(
        s.update_role(&id, &json!({"name": "SALES"}), false)
            .unwrap(),
    );
    assert_eq!(r.name, "SALES");
    assert_eq!(s.role_by_name("sales").unwrap().id, id);
}

#[test]
fn create_and_update_role_keep_grants() {
    let mut s = RbacState::new(OWNER);
    let body = json!({"name": "Viewers", "description": "d", "created_by_email": OWNER,
        "privileges": [{"object_type": "Dashboard", "permissions": ["read_dashboards"]}],
        "permissions": [{"object_type": "Dashboard", "object_id": "42",
                         "permissions": ["download_pdf"]}]});
    let r = role_of(s.create_role(&body, false).unwrap());
    assert_eq!(r.privileges[0].permissions, vec!["read_dashboards"]);
    assert_eq!(r.permissions[0].object_id, "42");
    let updated = role_of(
        s.update_role(
            &r.id,
            &json!({"privileges": [], "updated_by_email": OWNER}),
            false,
        )
        .unwrap(),
    );
    assert!(updated.privileges.is_empty());
    assert_eq!(updated.permissions, r.permissions);
    assert_eq!(updated.description, "d");
}

#[test]
fn bad_privileges_are_400() {
    let mut s = RbacState::new(OWNER);
    for bad in [
        json!({"name": "R", "privileges": "all"}),
        json!({"name": "R", "privileges": [1]}),
        json!({"name": "R", "privileges": [{"permissions": ["read_dashboards"]}]}),
        json!({"name": "R", "privileges": [{"object_type": "Dashboard"}]}),
        json!({"name": "R", "privileges": [{"object_type": "Dashboard", "permissions": [""]}]}),
        json!({"name": "R", "permissions": [{"object_type": "Dashboard", "permissions": []}]}),
        json!({"name": "R", "created_by_email": "nobody@x.io"}),
        json!({"description": "no name"}),
        json!({"name": "  "}),
    ] {
        assert_eq!(status(s.create_role(&bad, true)), 400, "{bad}");
    }
}

#[test]
fn builtins_cannot_be_renamed_or_deleted_but_can_change_grants() {
    let mut s = RbacState::new(OWNER);
    for name in DEFAULT_ROLES {
        let id = id_of(&s, name);
        assert_eq!(
            status(s.update_role(&id, &json!({"name": "Other"}), true)),
            403
        );
        assert_eq!(status(s.delete_role(&id, false)), 403);
    }
    let read = id_of(&s, "Read");
    assert_eq!(
        status(s.update_role(&read, &json!({"name": "read"}), true)),
        403
    );
    let r = role_of(
        s.update_role(&read, &json!({"name": "Read", "description": "x"}), false)
            .unwrap(),
    );
    assert_eq!((r.name.as_str(), r.description.as_str()), ("Read", "x"));
}

#[test]
fn deleting_a_role_removes_it_from_every_user() {
    let (mut s, sales) = with_role("Sales");
    let everyone = id_of(&s, "Everyone");
    let id = user_of(
        s.create_user(&new_user("u@x.io", json!([sales])), false)
            .unwrap(),
    )
    .id;
    s.delete_role(&sales, false).unwrap();
    assert!(s.role(&sales).is_none());
    assert!(s.role_by_name("sales").is_none());
    assert_eq!(s.user(&id).unwrap().roles, vec![everyone]);
    assert_eq!(status(s.get_role(&sales)), 404);
}

#[test]
fn test_mode_changes_nothing() {
    let (mut s, sales) = with_role("Sales");
    let owner = s.user_by_email(OWNER).unwrap().id.clone();
    let before = (s.users(), s.roles());
    s.create_user(&new_user("n@x.io", json!([sales])), true)
        .unwrap();
    s.update_user(
        &owner,
        &json!({"first_name": "X", "roles": [], "email": "o@x.io"}),
        &Switches::default(),
        true,
    )
    .unwrap();
    s.delete_user(&owner, true).unwrap();
    s.create_role(&json!({"name": "New"}), true).unwrap();
    s.update_role(
        &sales,
        &json!({"name": "Renamed", "description": "x"}),
        true,
    )
    .unwrap();
    s.delete_role(&sales, true).unwrap();
    assert_eq!(before, (s.users(), s.roles()));
}

#[test]
fn errors_have_the_contract_statuses() {
    let mut s = RbacState::new(OWNER);
    let sw = Switches::default();
    let owner = s.user_by_email(OWNER).unwrap().id.clone();
    let other = user_of(
        s.create_user(&new_user("b@x.io", json!([])), false)
            .unwrap(),
    )
    .id;
    assert_eq!(status(s.get_user("nope")), 404);
    assert_eq!(
        status(s.create_user(&json!({"email": "a@x.io"}), true)),
        400
    );
    assert_eq!(
        status(s.create_user(&new_user("a@x.io", json!(["no-such-role"])), true)),
        400
    );
    assert_eq!(
        status(s.create_user(&new_user("a@x.io", json!("Read")), true)),
        400
    );
    let mut body = new_user("a@x.io", json!([]));
    body["invited_by_email"] = json!("nobody@x.io");
    assert_eq!(status(s.create_user(&body, true)), 400);
    assert_eq!(
        status(s.create_user(&new_user("OWNER@acme.example.com", json!([])), true)),
        409
    );
    assert_eq!(
        status(s.update_user(&owner, &json!({"roles": ["no-such-role"]}), &sw, true)),
        400
    );
    assert_eq!(status(s.update_user("nope", &json!({}), &sw, true)), 404);
    assert_eq!(
        status(s.update_user(
            &other,
            &json!({"email": "Owner@acme.example.com"}),
            &sw,
            true
        )),
        409
    );
    assert_eq!(status(s.update_user(&owner, &json!([1]), &sw, true)), 400);
    assert_eq!(status(s.delete_user("nope", true)), 404);
    assert_eq!(status(s.get_role("nope")), 404);
    assert_eq!(status(s.update_role("nope", &json!({}), true)), 404);
    assert_eq!(status(s.delete_role("nope", true)), 404);
}

#[test]
fn seeding_refuses_duplicate_emails_and_names() {
    let mut s = RbacState::new(OWNER);
    let everyone = id_of(&s, "Everyone");
    let seeded = PartnerUserV2 {
        id: "u-1".into(),
        email: "s@x.io".into(),
        first_name: "S".into(),
        last_name: "T".into(),
        roles: vec![],
    };
    assert!(s.put_user(seeded.clone()));
    assert_eq!(s.user("u-1").unwrap().roles, vec![everyone]);
    assert!(!s.put_user(PartnerUserV2 {
        id: "u-2".into(),
        email: "S@X.IO".into(),
        ..seeded.clone()
    }));
    // replacing by id may change the email
    assert!(s.put_user(PartnerUserV2 {
        email: "t@x.io".into(),
        ..seeded
    }));
    assert!(s.user_by_email("s@x.io").is_none());
    let role = PartnerRole {
        id: "r-1".into(),
        name: "Seeded".into(),
        description: String::new(),
        privileges: vec![],
        permissions: vec![],
    };
    assert!(s.put_role(role.clone()));
    assert!(!s.put_role(PartnerRole {
        id: "r-2".into(),
        name: "SEEDED".into(),
        ..role
    }));
    assert_eq!(s.role_by_name("seeded").unwrap().id, "r-1");
}
