use super::*;
use crate::partner::Access;

fn row(groups: Option<&[&str]>) -> ImportRow {
    ImportRow {
        line: 2,
        email: "ann@example.com".into(),
        first_name: "Ann".into(),
        last_name: "Lee".into(),
        groups: groups.map(|g| g.iter().map(|s| (*s).to_owned()).collect()),
    }
}

fn site_groups() -> Vec<PartnerGroup> {
    ["All Users", "Administrators", "Analysts", "Sales"]
        .into_iter()
        .map(|n| PartnerGroup {
            name: n.into(),
            access: Access::Sql,
        })
        .collect()
}

fn user(groups: &[&str]) -> PartnerUser {
    PartnerUser {
        email: "Ann@example.com".into(),
        first_name: "Ann".into(),
        last_name: "Lee".into(),
        groups: groups.iter().map(|s| (*s).to_owned()).collect(),
    }
}

#[test]
fn a_new_user_is_created_with_the_sites_spelling_of_its_groups() {
    let Plan::Create(new) = plan_upsert(
        &row(Some(&["analysts"])),
        None,
        &site_groups(),
        "owner@example.com",
        false,
    ) else {
        unreachable!("expected a create")
    };
    assert_eq!(new.groups, ["Analysts"]);
    assert_eq!(new.invited_by_email, "owner@example.com");
}

#[test]
fn an_unknown_group_fails_the_row_without_a_call() {
    let plan = plan_upsert(
        &row(Some(&["Nope"])),
        None,
        &site_groups(),
        "o@e.com",
        false,
    );
    assert!(
        matches!(plan, Plan::Done(Outcome::Failed(ref m)) if m.contains("'Nope'")),
        "unexpected plan"
    );
}

#[test]
fn groups_are_added_by_default_and_replaced_on_request() {
    let existing = user(&["All Users", "Administrators"]);
    let Plan::Update(update, fields) = plan_upsert(
        &row(Some(&["Sales"])),
        Some(&existing),
        &site_groups(),
        "o@e.com",
        false,
    ) else {
        unreachable!("expected an update")
    };
    assert_eq!(fields, ["groups"]);
    assert_eq!(
        update.groups.unwrap(),
        ["All Users", "Administrators", "Sales"]
    );
    let Plan::Update(update, _) = plan_upsert(
        &row(Some(&["Sales"])),
        Some(&existing),
        &site_groups(),
        "o@e.com",
        true,
    ) else {
        unreachable!("expected an update")
    };
    assert_eq!(update.groups.unwrap(), ["All Users", "Sales"]);
}

#[test]
fn a_user_as_the_row_says_is_unchanged_and_no_groups_column_leaves_groups_alone() {
    let existing = user(&["All Users", "Sales"]);
    for groups in [Some(&["sales"][..]), None] {
        let plan = plan_upsert(
            &row(groups),
            Some(&existing),
            &site_groups(),
            "o@e.com",
            false,
        );
        assert!(matches!(plan, Plan::Done(Outcome::Unchanged)));
    }
    let mut renamed = row(None);
    renamed.last_name = "Lee-Ray".into();
    let Plan::Update(update, fields) =
        plan_upsert(&renamed, Some(&existing), &site_groups(), "o@e.com", false)
    else {
        unreachable!("expected an update")
    };
    assert_eq!(fields, ["last_name"]);
    assert_eq!(update.groups, None);
    assert_eq!(update.first_name, None);
}
