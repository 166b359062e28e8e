//! Micro-benchmarks of the protocol core: filter parsing, filter evaluation over many users,
//! and PATCH application on the shapes Okta and Entra send. Run with `cargo bench --bench scim`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use scim_bridge::scim::filter::{parse_filter, FilterLimits};
use scim_bridge::scim::patch::{apply_patch, PatchRequest};
use scim_bridge::scim::resource::{canonicalize, InputMode};
use scim_bridge::scim::schema::{GROUP_RESOURCE, USER_RESOURCE};
use serde_json::{json, Value};

const SIMPLE: &str = r#"userName eq "x""#;
const ENTRA_VALUE_PATH: &str = r#"emails[type eq "work"].value eq "jane.doe@example.com""#;
const COMPLEX: &str = r#"userName sw "j" and (emails[type eq "work" and value co "@example.com"] or emails.value ew "@example.org") and active eq true and not (title eq "Contractor") and name.familyName pr and (locale eq "en-US" or locale eq "de-DE") and urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department ne "Sales" and meta.lastModified gt "2024-01-01T00:00:00Z""#;
const EVAL: &str = r#"emails[type eq "work" and value co "@example.com"] and active eq true"#;

fn user_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

/// A canonical user; a quarter are inactive, a third have their work address elsewhere.
fn user(i: usize) -> Value {
    let domain = if i % 3 == 0 {
        "example.org"
    } else {
        "example.com"
    };
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": user_id(i),
        "externalId": format!("00u{i:08}"),
        "userName": format!("user{i}@{domain}"),
        "name": {"givenName": format!("Given{i}"), "familyName": format!("Family{i}")},
        "displayName": format!("Given{i} Family{i}"),
        "emails": [
            {"value": format!("user{i}@home.example.net"), "type": "home"},
            {"value": format!("user{i}@{domain}"), "type": "work", "primary": true}
        ],
        "locale": "en-US",
        "active": i % 4 != 0
    });
    canonicalize(&USER_RESOURCE, body, InputMode::Create).expect("user")
}

fn group(members: usize) -> Value {
    let members: Vec<Value> = (0..members).map(|i| json!({"value": user_id(i)})).collect();
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Everyone",
        "members": members
    });
    canonicalize(&GROUP_RESOURCE, body, InputMode::Create).expect("group")
}

fn patch(body: Value) -> PatchRequest {
    PatchRequest::from_json(&body).expect("patch body")
}

fn filter_parse(c: &mut Criterion) {
    let limits = FilterLimits::default();
    let mut g = c.benchmark_group("filter_parse");
    for (name, text) in [
        ("simple", SIMPLE),
        ("entra_value_path", ENTRA_VALUE_PATH),
        ("complex_10_clauses", COMPLEX),
    ] {
        parse_filter(text, &limits).expect(name);
        g.bench_function(name, |b| b.iter(|| parse_filter(black_box(text), &limits)));
    }
    g.finish();
}

fn filter_eval(c: &mut Criterion) {
    let users: Vec<Value> = (0..10_000).map(user).collect();
    let filter = parse_filter(EVAL, &FilterLimits::default()).expect("filter");
    filter.validate(&USER_RESOURCE).expect("valid filter");
    let hits = users
        .iter()
        .filter(|u| filter.matches(&USER_RESOURCE, u))
        .count();
    assert_eq!(
        hits, 5_000,
        "half the users are active with a work address at example.com"
    );
    c.bench_function("filter_eval/10k_users", |b| {
        b.iter(|| {
            black_box(&users)
                .iter()
                .filter(|u| filter.matches(&USER_RESOURCE, u))
                .count()
        })
    });
}

fn patch_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("patch_apply");

    let group_1000 = group(1_000);
    let new_members: Vec<Value> = (1_000..1_100)
        .map(|i| json!({"$ref": null, "value": user_id(i)}))
        .collect();
    let add = patch(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": new_members}]
    }));
    let out = apply_patch(&GROUP_RESOURCE, &group_1000, &add).expect("add members");
    assert_eq!(out.summary.members_added.len(), 100);
    g.bench_function("entra_add_100_members_to_1000", |b| {
        b.iter(|| apply_patch(&GROUP_RESOURCE, black_box(&group_1000), &add))
    });

    let jane = user(1);
    let replace = patch(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {
            "userName": "jane.doe@example.com",
            "name": {"givenName": "Janet", "middleName": "Q", "familyName": "Doe"},
            "emails": [{"primary": true, "value": "jane.doe@example.com", "type": "work"}],
            "displayName": "Janet Doe",
            "locale": "en-US",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "active": true
        }}]
    }));
    let out = apply_patch(&USER_RESOURCE, &jane, &replace).expect("replace user");
    assert!(out.changed);
    g.bench_function("okta_replace_user_no_path", |b| {
        b.iter(|| apply_patch(&USER_RESOURCE, black_box(&jane), &replace))
    });

    let group_5000 = group(5_000);
    let remove = patch(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", user_id(2_500))}]
    }));
    let out = apply_patch(&GROUP_RESOURCE, &group_5000, &remove).expect("remove member");
    assert_eq!(out.summary.members_removed, vec![user_id(2_500)]);
    g.bench_function("remove_1_member_of_5000", |b| {
        b.iter(|| apply_patch(&GROUP_RESOURCE, black_box(&group_5000), &remove))
    });

    g.finish();
}

criterion_group!(benches, filter_parse, filter_eval, patch_apply);
criterion_main!(benches);
