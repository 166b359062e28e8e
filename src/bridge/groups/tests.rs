use super::*;
use proptest::prelude::*;

fn group(members: &[String]) -> Value {
    let mut g = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "g1",
        "displayName": "Sales",
    });
    if !members.is_empty() {
        g["members"] = Value::Array(members.iter().map(|m| json!({ "value": m })).collect());
    }
    g
}

fn request(ops: Vec<Value>) -> PatchRequest {
    PatchRequest::from_json(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops,
    }))
    .unwrap()
}

#[test]
fn named_members_of_entra_and_okta_forms() {
    let entra = request(vec![
        json!({"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]}),
        json!({"op": "Remove", "path": "members", "value": [{"value": "u3"}]}),
    ]);
    assert_eq!(
        named_members(&entra),
        Some(vec!["u1".into(), "u2".into(), "u3".into()])
    );
    let okta = request(vec![
        json!({"op": "remove", "path": "members[value eq \"u4\"]"}),
    ]);
    assert_eq!(named_members(&okta), Some(vec!["u4".into()]));
    // Anything else sees the whole group.
    for op in [
        json!({"op": "remove", "path": "members"}),
        json!({"op": "replace", "path": "members", "value": [{"value": "u1"}]}),
        json!({"op": "replace", "path": "displayName", "value": "X"}),
        json!({"op": "add", "value": {"members": [{"value": "u1"}]}}),
        json!({"op": "remove", "path": "members[display eq \"A\"]"}),
        json!({"op": "remove", "path": "members[value ne \"u1\"]"}),
        json!({"op": "remove", "path": "members[value eq \"u1\"].display"}),
        json!({"op": "add", "path": "members", "value": [{"display": "no id"}]}),
    ] {
        assert_eq!(named_members(&request(vec![op.clone()])), None, "{op}");
    }
}

fn op_strategy() -> impl Strategy<Value = Value> {
    let id = (0..8u8).prop_map(|i| format!("u{i}"));
    prop_oneof![
        prop::collection::vec(id.clone(), 1..4).prop_map(|ids| json!({
            "op": "add", "path": "members",
            "value": ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>(),
        })),
        prop::collection::vec(id.clone(), 1..4).prop_map(|ids| json!({
            "op": "remove", "path": "members",
            "value": ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>(),
        })),
        id.prop_map(|i| json!({"op": "remove", "path": format!("members[value eq \"{i}\"]")})),
    ]
}

proptest! {
    /// A PATCH that names its members gives the same outcome on the group with only the
    /// named members as on the whole group: success or the same error, the same members
    /// added and removed.
    #[test]
    fn named_members_view_is_equivalent(
        present in prop::collection::btree_set(0..8u8, 0..8),
        ops in prop::collection::vec(op_strategy(), 1..4),
    ) {
        let members: Vec<String> = present.iter().map(|i| format!("u{i}")).collect();
        let req = request(ops);
        let named = named_members(&req).expect("only named-member operations");
        let seen: Vec<String> =
            members.iter().filter(|m| named.contains(m)).cloned().collect();
        let full = apply_patch(&GROUP_RESOURCE, &group(&members), &req);
        let reduced = apply_patch(&GROUP_RESOURCE, &group(&seen), &req);
        match (full, reduced) {
            (Ok(f), Ok(r)) => {
                // The whole group may also see its members' order change (a member
                // removed, then added back at the end); the store keeps no order.
                let moved = f.summary.members_added.is_empty()
                    && f.summary.members_removed.is_empty();
                prop_assert!(f.changed == r.changed || (f.changed && moved));
                let sorted = |mut v: Vec<String>| { v.sort(); v };
                prop_assert_eq!(
                    sorted(f.summary.members_added),
                    sorted(r.summary.members_added)
                );
                prop_assert_eq!(
                    sorted(f.summary.members_removed),
                    sorted(r.summary.members_removed)
                );
            }
            (Err(f), Err(r)) => {
                prop_assert_eq!(f.status, r.status);
                prop_assert_eq!(f.scim_type, r.scim_type);
            }
            (f, r) => prop_assert!(false, "full {:?} vs reduced {:?}", f.is_ok(), r.is_ok()),
        }
    }
}
