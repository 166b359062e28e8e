use super::*;
use crate::scim::schema::{GROUP_RESOURCE, GROUP_SCHEMA, USER_RESOURCE, USER_SCHEMA};
use crate::scim::ScimType;
use time::macros::datetime;

fn user(body: Value) -> Value {
    canonicalize(&USER_RESOURCE, body, InputMode::Create).unwrap()
}

fn user_err(body: Value) -> ScimError {
    canonicalize(&USER_RESOURCE, body, InputMode::Create).unwrap_err()
}

#[test]
fn read_only_input_is_ignored() {
    let v = user(json!({
        "schemas": [USER_SCHEMA],
        "id": "client-chosen",
        "userName": "a@x.io",
        "meta": {"resourceType": "User", "created": "not a date"},
        "groups": [{"value": "g1", "display": "Admins"}],
    }));
    assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "a@x.io"}));
    let v = canonicalize(
        &USER_RESOURCE,
        json!({"ID": "x", "Meta": {}, "GROUPS": [], "userName": "a"}),
        InputMode::Replace,
    )
    .unwrap();
    assert!(v.get("ID").is_none() && v.get("id").is_none() && v.get("groups").is_none());
}

#[test]
fn password_is_accepted_reported_and_never_kept() {
    let c = canonicalize_input(
        &USER_RESOURCE,
        json!({"userName": "a", "password": "1mz050nq"}),
        InputMode::Create,
    )
    .unwrap();
    assert!(c.password_given);
    assert!(c.resource.get("password").is_none());
    assert!(!c.resource.to_string().contains("1mz050nq"));
    let c = canonicalize_input(
        &USER_RESOURCE,
        json!({"userName": "a", "password": null}),
        InputMode::Create,
    )
    .unwrap();
    assert!(!c.password_given);
}

#[test]
fn null_empty_array_and_absence_all_mean_unassigned() {
    let v = user(json!({
        "userName": "a",
        "addresses": null,
        "phoneNumbers": null,
        "preferredLanguage": null,
        "roles": [],
        "name": {"givenName": null},
        "emails": [null],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": null},
    }));
    assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "a"}));
}

#[test]
fn unknown_schema_uris_are_tolerated() {
    let v = canonicalize(
            &GROUP_RESOURCE,
            json!({
                "schemas": [GROUP_SCHEMA, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "displayName": "Finance",
            }),
            InputMode::Create,
        )
        .unwrap();
    assert_eq!(v["schemas"], json!([GROUP_SCHEMA]));
    // A body with no `schemas` at all is accepted too.
    assert_eq!(
        user(json!({"userName": "a"}))["schemas"],
        json!([USER_SCHEMA])
    );
}

#[test]
fn booleans_sent_as_strings_are_returned_as_json_booleans() {
    let v = user(json!({
        "userName": "a",
        "active": "False",
        "emails": [{"value": "a@x.io", "primary": "True"}],
    }));
    assert_eq!(v["active"], json!(false));
    assert_eq!(v["emails"][0]["primary"], json!(true));
    assert_eq!(
        user_err(json!({"userName": "a", "active": "yes"})).status,
        400
    );
}

#[test]
fn attribute_names_take_canonical_case_including_urn_qualified_keys() {
    let v = user(json!({
        "USERNAME": "a",
        "Name": {"GIVENNAME": "Al"},
        "emails": {"Value": "a@x.io", "TYPE": "work"},
        "urn:ietf:params:scim:schemas:core:2.0:User:displayName": "Al A",
        "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:Department": "Ops",
    }));
    assert_eq!(
        v,
        json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "userName": "a",
            "name": {"givenName": "Al"},
            "emails": [{"value": "a@x.io", "type": "work"}],
            "displayName": "Al A",
            ENTERPRISE_USER_SCHEMA: {"department": "Ops"},
        })
    );
}

#[test]
fn more_than_one_primary_is_invalid_value() {
    let e = user_err(json!({
        "userName": "a",
        "emails": [
            {"value": "a@x.io", "primary": true},
            {"value": "b@x.io", "primary": "true"}
        ],
    }));
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
    assert!(e.detail.contains("emails"));
    // One primary (and any number of `primary: false`) is fine.
    user(json!({
        "userName": "a",
        "emails": [{"value": "a@x.io", "primary": true}, {"value": "b", "primary": false}],
    }));
}

#[test]
fn missing_or_empty_user_name_is_invalid_value_naming_it() {
    for body in [
        json!({"displayName": "x"}),
        json!({"userName": ""}),
        json!({"userName": "  "}),
        json!({"userName": null}),
    ] {
        let e = user_err(body);
        assert_eq!(e.status, 400);
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
        assert!(e.detail.contains("userName"), "{}", e.detail);
    }
    let e = canonicalize(&GROUP_RESOURCE, json!({"members": []}), InputMode::Replace).unwrap_err();
    assert!(e.detail.contains("displayName"));
}

#[test]
fn manager_in_every_shape_is_stored_as_an_object() {
    let want = json!({"value": "m1"});
    for manager in [
        json!("m1"),
        json!(["m1"]),
        json!({"value": "m1"}),
        json!([{"value": "m1", "$ref": null}]),
    ] {
        let v = user(json!({
            "userName": "a",
            ENTERPRISE_USER_SCHEMA: {"manager": manager.clone()},
        }));
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], want, "{manager}");
        let v = user(
            json!({"userName": "a", format!("{ENTERPRISE_USER_SCHEMA}:manager"): manager.clone()}),
        );
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], want, "{manager}");
        let v = user(json!({"userName": "a", "manager": manager.clone()}));
        assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], want, "{manager}");
    }
}

#[test]
fn entra_null_ref_in_members_is_dropped() {
    let v = canonicalize(
            &GROUP_RESOURCE,
            json!({
                "displayName": "G",
                "members": [{"$ref": null, "value": "u1"}, {"$ref": null, "value": "u2", "display": "Two"}],
            }),
            InputMode::Create,
        )
        .unwrap();
    assert_eq!(
        v["members"],
        json!([{"value": "u1"}, {"value": "u2", "display": "Two"}])
    );
}

#[test]
fn unknown_extension_attributes_and_unknown_urn_objects_are_kept() {
    let v = user(json!({
        "userName": "a",
        ENTERPRISE_USER_SCHEMA: {"department": "Ops", "badgeColour": "green"},
        "urn:example:params:scim:schemas:extension:acme:2.0:User": {"tier": "gold"},
        "favouriteColour": "blue",
    }));
    assert_eq!(v[ENTERPRISE_USER_SCHEMA]["badgeColour"], "green");
    assert_eq!(
        v["urn:example:params:scim:schemas:extension:acme:2.0:User"],
        json!({"tier": "gold"})
    );
    assert!(v["schemas"].as_array().unwrap().contains(&json!(
        "urn:example:params:scim:schemas:extension:acme:2.0:User"
    )));
    // Unknown plain attributes, and qualified attributes of unknown schemas, are dropped.
    assert!(v.get("favouriteColour").is_none());
    let v = user(json!({
        "userName": "a",
        "urn:example:params:scim:schemas:extension:acme:2.0:User:tier": "gold",
        "urn:example:empty": {},
        "urn:ietf:params:scim:schemas:core:2.0:Group:displayName": "G",
    }));
    assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "a"}));
}

/// Found by the `request_body` fuzz target: a key with a multi-byte character across its
/// fourth byte panicked the `urn:` prefix check (a byte slice inside a character).
#[test]
fn keys_with_multi_byte_characters_near_the_start_do_not_panic() {
    let v = user(json!({
        "userName": "a",
        "}rn\u{18b}prise22.0:UfDser": {"manager": null},
        "urn\u{e9}:x": "y",
        "a\u{e9}\u{e9}": 1,
    }));
    assert_eq!(v, json!({"schemas": [USER_SCHEMA], "userName": "a"}));
    let e = user_err(json!({
        "title": "Data Analyst",
        "roles": [],
        "}rn\u{18b}prise22.0:UfDser": {"manager": null}
    }));
    assert_eq!(e.scim_type, Some(ScimType::InvalidValue));
}

#[test]
fn non_object_bodies_and_extensions_are_rejected() {
    assert_eq!(
        user_err(json!(["userName"])).scim_type,
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        user_err(json!({"userName": "a", ENTERPRISE_USER_SCHEMA: "x"})).scim_type,
        Some(ScimType::InvalidValue)
    );
}

/// The RFC example with its two `addresses.formatted` on one line: the bridge refuses the
/// example's newlines (see `rfc_full_user_with_newlines_in_formatted_addresses_is_refused`).
fn one_line_addresses(mut u: Value) -> Value {
    for a in u["addresses"].as_array_mut().unwrap() {
        let f = a["formatted"].as_str().unwrap().replace('\n', ", ");
        a["formatted"] = json!(f);
    }
    u
}

#[test]
fn rfc_full_user_with_newlines_in_formatted_addresses_is_accepted() {
    // RFC 7643 writes `addresses.formatted` over several lines (its example user, section
    // 8.2): line breaks are kept in the postal address's free text, and only there.
    let v = user(examples::full_user());
    assert_eq!(
        v["addresses"][0]["formatted"],
        "100 Universal City Plaza\nHollywood, CA 91608 USA"
    );
    let mut u = examples::full_user();
    u["addresses"][0]["streetAddress"] = json!("100 Universal City Plaza\r\nBuilding 2");
    assert!(canonicalize(&USER_RESOURCE, u, InputMode::Create).is_ok());
    // Other control characters stay refused there, and line breaks everywhere else.
    let mut u = examples::full_user();
    u["addresses"][0]["formatted"] = json!("100 Universal\u{0}City Plaza");
    let e = user_err(u);
    assert!(e.detail.contains("U+0000"), "{}", e.detail);
    let mut u = examples::full_user();
    u["addresses"][0]["locality"] = json!("Holly\nwood");
    let e = user_err(u);
    assert!(e.detail.contains("'addresses.locality'"), "{}", e.detail);
}

#[test]
fn rfc_full_user_canonicalizes_without_read_only_or_password() {
    let v = user(one_line_addresses(examples::full_user()));
    let mut want = one_line_addresses(examples::full_user());
    let o = want.as_object_mut().unwrap();
    for k in ["id", "meta", "groups", "password"] {
        o.remove(k);
    }
    assert_eq!(v, want);
    // Canonical form is a fixed point.
    assert_eq!(user(v.clone()), v);
}

#[test]
fn rfc_full_user_round_trips_through_the_typed_model() {
    let typed: User = serde_json::from_value(examples::full_user()).unwrap();
    assert_eq!(typed.password.as_deref(), Some("t1meMa$heen"));
    assert_eq!(typed.emails[0].primary, Some(true));
    let mut want = examples::full_user();
    want.as_object_mut().unwrap().remove("password");
    assert_eq!(serde_json::to_value(&typed).unwrap(), want);
}

#[test]
fn rfc_enterprise_user_round_trips_with_manager_object() {
    let typed: User = serde_json::from_value(examples::enterprise_user()).unwrap();
    let ent = typed.enterprise.as_ref().unwrap();
    assert_eq!(
        ent.manager.as_ref().unwrap().display_name.as_deref(),
        Some("John Smith")
    );
    let mut want = examples::enterprise_user();
    want.as_object_mut().unwrap().remove("password");
    assert_eq!(serde_json::to_value(&typed).unwrap(), want);
    let v = user(one_line_addresses(examples::enterprise_user()));
    let view = UserView::from_resource(&v).unwrap();
    assert_eq!(
        view.manager_id.as_deref(),
        Some("26118915-6090-4610-87e4-49d8ca9f808d")
    );
}

#[test]
fn rfc_group_round_trips_and_canonicalizes() {
    let typed: Group = serde_json::from_value(examples::group()).unwrap();
    assert_eq!(typed.members.len(), 2);
    assert_eq!(serde_json::to_value(&typed).unwrap(), examples::group());
    let v = canonicalize(&GROUP_RESOURCE, examples::group(), InputMode::Replace).unwrap();
    assert!(v.get("id").is_none() && v.get("meta").is_none());
    let view = GroupView::from_resource(&v).unwrap();
    assert_eq!(view.display_name, "Tour Guides");
    assert_eq!(
        view.member_ids,
        [
            "2819c223-7f76-453a-919d-413861904646",
            "902c246b-6245-4190-8e05-00816be7344a"
        ]
    );
}

#[test]
fn typed_user_accepts_idp_quirks() {
    let u: User = serde_json::from_value(json!({
        "userName": "a",
        "active": "False",
        "addresses": null,
        "emails": {"value": "a@x.io", "primary": "true"},
        ENTERPRISE_USER_SCHEMA: {"manager": ["m1"], "badge": 7},
        "urn:example:ext": {"k": "v"},
    }))
    .unwrap();
    assert_eq!(u.active, Some(false));
    assert_eq!(u.emails[0].primary, Some(true));
    let ent = u.enterprise.as_ref().unwrap();
    assert_eq!(ent.manager.as_ref().unwrap().value.as_deref(), Some("m1"));
    let v = serde_json::to_value(&u).unwrap();
    assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], json!({"value": "m1"}));
    assert_eq!(v[ENTERPRISE_USER_SCHEMA]["badge"], 7);
    assert_eq!(v["urn:example:ext"], json!({"k": "v"}));
    let bare: User =
        serde_json::from_value(json!({"userName": "a", ENTERPRISE_USER_SCHEMA: {"manager": "m2"}}))
            .unwrap();
    assert_eq!(
        bare.enterprise.unwrap().manager.unwrap().value.as_deref(),
        Some("m2")
    );
}

#[test]
fn server_attributes_are_set_in_order() {
    let meta = Meta {
        resource_type: "User".into(),
        created: datetime!(2024-01-02 03:04:05 UTC),
        last_modified: datetime!(2024-01-02 05:04:05 +02:00),
        location: Meta::location_for("https://h/scim/v2/", &USER_RESOURCE, "u1"),
        version: 3,
    };
    let v = with_server_attributes(
        json!({"schemas": [USER_SCHEMA], "userName": "a", "id": "old", "meta": {}}),
        "u1",
        &meta,
    );
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["schemas", "id", "userName", "meta"]);
    assert_eq!(v["id"], "u1");
    assert_eq!(
        v["meta"],
        json!({
            "resourceType": "User",
            "created": "2024-01-02T03:04:05Z",
            "lastModified": "2024-01-02T03:04:05Z",
            "location": "https://h/scim/v2/Users/u1",
            "version": "W/\"3\"",
        })
    );
}

/// For every attribute and sub-attribute of `rt` whose type is text (string, reference,
/// binary) and that a client may write: its path and a valid body holding `bad` there.
fn text_leaves(rt: &ResourceType, bad: &Value) -> Vec<(String, Value)> {
    use crate::scim::schema::COMMON_ATTRIBUTES;
    let base = if rt.name == "User" {
        json!({"userName": "base@x.io"})
    } else {
        json!({"displayName": "G"})
    };
    let is_text =
        |t: AttrType| matches!(t, AttrType::String | AttrType::Reference | AttrType::Binary);
    let mut groups: Vec<(Option<&SchemaDef>, &[AttributeDef])> =
        vec![(None, rt.schema.attributes), (None, COMMON_ATTRIBUTES)];
    groups.extend(rt.extensions.iter().map(|e| (Some(*e), e.attributes)));
    let mut out = Vec::new();
    for (ext, attrs) in groups {
        for def in attrs
            .iter()
            .filter(|d| d.mutability != Mutability::ReadOnly)
        {
            let at = ext.map_or(def.name.to_owned(), |e| format!("{}:{}", e.id, def.name));
            let place = |v: Value| {
                let mut b = base.clone();
                match ext {
                    None => b[def.name] = v,
                    Some(e) => b[e.id] = json!({def.name: v}),
                }
                b
            };
            if def.ty == AttrType::Complex {
                for sd in def.sub_attributes.iter().filter(|sd| is_text(sd.ty)) {
                    let el = json!({sd.name: bad});
                    let v = if def.multi_valued { json!([el]) } else { el };
                    out.push((format!("{at}.{}", sd.name), place(v)));
                }
            } else if is_text(def.ty) {
                out.push((at, place(bad.clone())));
            }
        }
    }
    out
}

#[test]
fn a_control_character_in_any_text_attribute_is_refused_naming_it() {
    for (rt, least) in [(&USER_RESOURCE, 40), (&GROUP_RESOURCE, 5)] {
        for (what, bad) in crate::scim::schema::tests::FORBIDDEN {
            let cases = text_leaves(rt, &json!(bad));
            assert!(
                cases.len() >= least,
                "{} cases for {}",
                cases.len(),
                rt.name
            );
            for (at, body) in cases {
                for mode in [InputMode::Create, InputMode::Replace] {
                    if crate::scim::schema::multi_line(&at)
                        && crate::scim::schema::only_line_breaks(bad)
                    {
                        // The postal address's free text keeps its line breaks.
                        assert!(
                            canonicalize(rt, body.clone(), mode).is_ok(),
                            "{what} at {at}"
                        );
                        continue;
                    }
                    let e = canonicalize(rt, body.clone(), mode).unwrap_err();
                    assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{what} at {at}");
                    assert!(
                        e.detail.contains(&format!("'{at}'")),
                        "{what} at {at}: {}",
                        e.detail
                    );
                }
            }
        }
    }
}

#[test]
fn a_number_boolean_or_object_for_any_text_attribute_is_refused_naming_it() {
    for rt in [&USER_RESOURCE, &GROUP_RESOURCE] {
        for wrong in [json!(1e40), json!(7), json!(false), json!({"k": "v"})] {
            for (at, body) in text_leaves(rt, &wrong) {
                let e = canonicalize(rt, body, InputMode::Create).unwrap_err();
                assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong} at {at}");
                assert!(
                    e.detail.contains(&format!("'{at}' must be a string")),
                    "{wrong} at {at}: {}",
                    e.detail
                );
            }
        }
    }
    // The two cases of the issue.
    let e = user_err(json!({"userName": "a", "externalId": 1e40}));
    assert!(e.detail.contains("'externalId'"), "{}", e.detail);
    let e = user_err(json!({"userName": "a", "emails": [{"value": 42}]}));
    assert!(e.detail.contains("'emails.value'"), "{}", e.detail);
}

#[test]
fn the_idp_dialects_still_canonicalize() {
    // Entra: string booleans, nulls, an empty array, the Microsoft schema URI, `$ref: null`.
    let v = user(json!({
        "userName": "a@x.io",
        "active": "False",
        "emails": [{"value": "a@x.io", "primary": "True", "type": "work"}],
        "addresses": null,
        "roles": [],
        ENTERPRISE_USER_SCHEMA: {"manager": "m1", "employeeNumber": "20481"},
    }));
    assert_eq!(v["active"], json!(false));
    assert_eq!(v["emails"][0]["primary"], json!(true));
    assert_eq!(v[ENTERPRISE_USER_SCHEMA]["manager"], json!({"value": "m1"}));
    let g = canonicalize(
        &GROUP_RESOURCE,
        json!({"displayName": "G", "members": [{"$ref": null, "value": "u1"}]}),
        InputMode::Create,
    )
    .unwrap();
    assert_eq!(g["members"], json!([{"value": "u1"}]));
}

#[test]
fn unknown_attributes_keep_their_types_but_not_control_characters() {
    // Types: unknown attributes are not checked (the schema says nothing of them), as before.
    let v = user(json!({
        "userName": "a",
        "favouriteNumber": 7,
        ENTERPRISE_USER_SCHEMA: {"badge": 7, "tags": ["a", 1]},
        "urn:example:ext:2.0:User": {"tier": 3},
        "emails": [{"value": "a@x.io", "verified": 1}],
    }));
    assert!(v.get("favouriteNumber").is_none());
    assert_eq!(v[ENTERPRISE_USER_SCHEMA]["badge"], 7);
    assert_eq!(v["urn:example:ext:2.0:User"]["tier"], 3);
    assert_eq!(v["emails"][0]["verified"], 1);
    // Text: what is kept must hold no control character, in values or names.
    for (body, at) in [
        (
            json!({ENTERPRISE_USER_SCHEMA: {"badge": "a\r\nb"}}),
            format!("'{ENTERPRISE_USER_SCHEMA}:badge'"),
        ),
        (
            json!({ENTERPRISE_USER_SCHEMA: {"tags": ["ok", "a\u{0}"]}}),
            format!("'{ENTERPRISE_USER_SCHEMA}:tags'"),
        ),
        (
            json!({"urn:example:ext:2.0:User": {"tier": {"name": "x\ny"}}}),
            "'urn:example:ext:2.0:User.tier.name'".to_owned(),
        ),
        (
            json!({"urn:example:ext:2.0:User": {"ti\ner": "gold"}}),
            "'urn:example:ext:2.0:User'".to_owned(),
        ),
        (
            json!({"urn:example:ext\n:2.0:User": {"tier": "gold"}}),
            "'the resource'".to_owned(),
        ),
        (
            json!({"emails": [{"value": "a@x.io", "note": "x\ty"}]}),
            "'emails.note'".to_owned(),
        ),
    ] {
        let mut body = body;
        body["userName"] = json!("a");
        let e = user_err(body.clone());
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{body}");
        assert!(e.detail.contains(&at), "{body}: {}", e.detail);
    }
    // An unknown plain attribute is dropped, as before, whatever it holds.
    let v = user(json!({"userName": "a", "favouriteColour": "blue\r\n"}));
    assert!(v.get("favouriteColour").is_none());
}

/// Every string and object key in `v`.
fn texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| texts(i, out)),
        Value::Object(o) => {
            for (k, child) in o {
                out.push(k.clone());
                texts(child, out);
            }
        }
        _ => {}
    }
}

/// A JSON value built from known and unknown names and strings that may hold controls.
fn body_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let text = "[a-z@.\r\n\t\u{0}\u{1b}\u{7f}\u{85}\u{2028} éש]{0,8}";
    let key = prop_oneof![
        Just("value".to_owned()),
        Just("type".to_owned()),
        Just("givenName".to_owned()),
        Just("primary".to_owned()),
        Just("department".to_owned()),
        Just("manager".to_owned()),
        text.prop_map(|s| s),
    ];
    let leaf = prop_oneof![
        text.prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    /// Whatever is accepted holds no control character, in any value or name.
    #[test]
    fn an_accepted_body_holds_no_control_character(
        fields in proptest::collection::vec(
            (
                proptest::prop_oneof![
                    proptest::strategy::Just("userName"),
                    proptest::strategy::Just("displayName"),
                    proptest::strategy::Just("externalId"),
                    proptest::strategy::Just("name"),
                    proptest::strategy::Just("emails"),
                    proptest::strategy::Just("addresses"),
                    proptest::strategy::Just("members"),
                    proptest::strategy::Just("active"),
                    proptest::strategy::Just(ENTERPRISE_USER_SCHEMA),
                    proptest::strategy::Just("urn:example:ext:2.0:User"),
                    proptest::strategy::Just("nick"),
                ],
                body_value(),
            ),
            0..6,
        )
    ) {
        let mut body = Map::new();
        body.insert("userName".into(), json!("a@x.io"));
        body.insert("displayName".into(), json!("G"));
        for (k, v) in fields {
            body.insert(k.to_owned(), v);
        }
        for rt in [&USER_RESOURCE, &GROUP_RESOURCE] {
            if let Ok(v) = canonicalize(rt, Value::Object(body.clone()), InputMode::Create) {
                let mut all = Vec::new();
                texts(&v, &mut all);
                for t in all {
                    proptest::prop_assert!(
                        !t.chars().any(crate::scim::schema::is_forbidden_char),
                        "{:?} kept in {}", t, v
                    );
                }
            }
        }
    }
}

#[test]
fn user_view_defaults_and_primary_email_choice() {
    let v = UserView::from_resource(&json!({"userName": "a"})).unwrap();
    assert!(v.active);
    assert_eq!(v.primary_email(), None);
    let v = UserView::from_resource(&json!({
        "userName": "a",
        "active": false,
        "emails": [{"value": "h@x", "type": "home"}, {"value": "w@x", "type": "Work"}],
    }))
    .unwrap();
    assert!(!v.active);
    assert_eq!(v.primary_email(), Some("w@x"));
    let v = UserView::from_resource(&json!({
            "userName": "a",
            "emails": [{"value": "h@x", "type": "home"}, {"value": "w@x", "type": "work"}, {"value": "p@x", "primary": true}],
        }))
        .unwrap();
    assert_eq!(v.primary_email(), Some("p@x"));
    let v =
        UserView::from_resource(&json!({"userName": "a", "emails": [{"value": "o@x"}]})).unwrap();
    assert_eq!(v.primary_email(), Some("o@x"));
    assert!(UserView::from_resource(&json!({"displayName": "a"})).is_err());
}
