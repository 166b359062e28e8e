//! Schema tests: attribute references, resolution, text checks and value coercion.

use super::*;
use crate::scim::ScimType;
use serde_json::json;

#[test]
fn attr_ref_splits_urn_at_known_schema() {
    let r = AttrRef::parse("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName").unwrap();
    assert_eq!(r.urn.as_deref(), Some(USER_SCHEMA));
    assert_eq!(r.name, "name");
    assert_eq!(r.sub.as_deref(), Some("givenName"));
    let r = AttrRef::parse(ENTERPRISE_USER_SCHEMA).unwrap();
    assert_eq!(r.name, "");
    let r = AttrRef::parse(&format!("{ENTERPRISE_USER_SCHEMA}:manager")).unwrap();
    assert_eq!(r.urn.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
    assert_eq!(r.name, "manager");
}

#[test]
fn resolve_is_case_insensitive_and_finds_extension_attributes_unqualified() {
    let r = USER_RESOURCE
        .resolve(&AttrRef::parse("EMAILS.VALUE").unwrap())
        .unwrap();
    assert_eq!(r.attr.name, "emails");
    assert_eq!(r.leaf().name, "value");
    let r = USER_RESOURCE
        .resolve(&AttrRef::parse("manager").unwrap())
        .unwrap();
    assert_eq!(r.extension, Some(ENTERPRISE_USER_SCHEMA));
    assert!(USER_RESOURCE
        .resolve(&AttrRef::parse("nope").unwrap())
        .is_err());
}

#[test]
fn coerce_accepts_boolean_strings() {
    let active = USER.attribute("active").unwrap();
    assert_eq!(coerce(active, json!("False")).unwrap(), Some(json!(false)));
    assert_eq!(coerce(active, json!("TRUE")).unwrap(), Some(json!(true)));
    assert!(coerce(active, json!("maybe")).is_err());
}

#[test]
fn coerce_treats_null_and_empty_as_unassigned() {
    let emails = USER.attribute("emails").unwrap();
    assert_eq!(coerce(emails, json!(null)).unwrap(), None);
    assert_eq!(coerce(emails, json!([])).unwrap(), None);
    assert_eq!(coerce(emails, json!([null])).unwrap(), None);
}

#[test]
fn coerce_manager_shapes_all_become_objects() {
    let m = ENTERPRISE_USER.attribute("manager").unwrap();
    let want = Some(json!({"value": "42"}));
    assert_eq!(coerce(m, json!("42")).unwrap(), want);
    assert_eq!(coerce(m, json!(["42"])).unwrap(), want);
    assert_eq!(coerce(m, json!([{"value": "42"}])).unwrap(), want);
    assert_eq!(
        coerce(m, json!({"VALUE": "42", "$ref": null})).unwrap(),
        want
    );
}

/// Control characters of every kind this module refuses, with a name for messages.
pub(crate) const FORBIDDEN: &[(&str, &str)] = &[
    ("CR LF", "a\r\nb"),
    ("LF", "a\nb"),
    ("CR", "a\rb"),
    ("NUL", "a\u{0}b"),
    ("TAB", "a\tb"),
    ("ESC", "a\u{1b}[31mb"),
    ("DEL", "a\u{7f}b"),
    ("NEL (C1)", "a\u{85}b"),
    ("CSI (C1)", "a\u{9b}b"),
    ("LINE SEPARATOR", "a\u{2028}b"),
    ("PARAGRAPH SEPARATOR", "a\u{2029}b"),
    ("a trailing LF", "a@x.io\n"),
];

#[test]
fn forbidden_characters_are_the_controls_and_the_unicode_line_separators() {
    for c in (0u32..0x20).chain(0x7f..0xa0).chain([0x2028, 0x2029]) {
        let c = char::from_u32(c).unwrap();
        assert!(is_forbidden_char(c), "U+{:04X}", u32::from(c));
    }
    // Text of real names stays: accents, emoji with joiners, right-to-left marks and
    // overrides, non-breaking and ideographic spaces.
    for ok in [
        "Zoë",
        "🦀👩🏽‍💻",
        "שלום \u{202E}עולם",
        "\u{200F}RTL\u{200E}",
        "a\u{a0}b",
        "a\u{3000}b",
    ] {
        assert!(check_text("x", ok).is_ok(), "{ok:?}");
    }
}

#[test]
fn a_control_character_in_a_string_attribute_is_invalid_value_naming_the_path() {
    let emails = USER.attribute("emails").unwrap();
    let external_id = COMMON_ATTRIBUTES
        .iter()
        .find(|a| a.name == "externalId")
        .unwrap();
    for (what, bad) in FORBIDDEN {
        let e = coerce(emails, json!([{"value": bad, "type": "work"}])).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{what}");
        assert!(e.detail.contains("'emails.value'"), "{what}: {}", e.detail);
        // The detail names the code point, never the value.
        assert!(!e.detail.contains(bad), "{what}: {}", e.detail);
        let e = coerce_at(external_id, json!(bad), "externalId").unwrap_err();
        assert!(e.detail.contains("'externalId'"), "{what}: {}", e.detail);
        // Unknown sub-attributes are kept as sent, but not with control characters, in
        // their values or their names.
        let e = coerce(
            emails,
            json!([{"value": "a@x.io", "note": {"deep": [bad]}}]),
        )
        .unwrap_err();
        assert!(
            e.detail.contains("'emails.note.deep'"),
            "{what}: {}",
            e.detail
        );
        let e = coerce(emails, json!([{"value": "a@x.io", (*bad): 1}])).unwrap_err();
        assert!(e.detail.contains("'emails'"), "{what}: {}", e.detail);
    }
    // The manager's bare id is checked like the object form.
    let m = ENTERPRISE_USER.attribute("manager").unwrap();
    let e = coerce_at(m, json!("4\r\n2"), "manager").unwrap_err();
    assert!(e.detail.contains("'manager.value'"), "{}", e.detail);
}

#[test]
fn string_attributes_take_only_strings() {
    let display = USER.attribute("displayName").unwrap();
    let emails = USER.attribute("emails").unwrap();
    let external_id = COMMON_ATTRIBUTES
        .iter()
        .find(|a| a.name == "externalId")
        .unwrap();
    for wrong in [
        json!(1e40),
        json!(42),
        json!(-1.5),
        json!(true),
        json!({"a": "b"}),
    ] {
        let e = coerce(external_id, wrong.clone()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong}");
        assert!(
            e.detail.contains("'externalId' must be a string"),
            "{}",
            e.detail
        );
        assert!(coerce(display, wrong.clone()).is_err(), "{wrong}");
        let e = coerce(emails, json!([{"value": wrong.clone()}])).unwrap_err();
        assert!(
            e.detail.contains("'emails.value' must be a string"),
            "{}",
            e.detail
        );
    }
    // An array for a single-valued string stays refused (apart from one element, a shape
    // the IdPs use for any single value).
    assert!(coerce(display, json!(["a", "b"])).is_err());
    assert!(coerce(display, json!([7])).is_err());
    assert_eq!(coerce(display, json!(["a"])).unwrap(), Some(json!("a")));
}

#[test]
fn booleans_take_booleans_and_entra_strings_only() {
    let active = USER.attribute("active").unwrap();
    for ok in [json!(true), json!("True"), json!("false"), json!(" FALSE ")] {
        assert!(coerce(active, ok.clone()).is_ok(), "{ok}");
    }
    for wrong in [
        json!(1),
        json!(0),
        json!("1"),
        json!("yes"),
        json!({"v": true}),
    ] {
        let e = coerce(active, wrong.clone()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong}");
        assert!(
            e.detail.contains("'active' must be a boolean"),
            "{}",
            e.detail
        );
    }
    let emails = USER.attribute("emails").unwrap();
    let e = coerce(emails, json!([{"value": "a@x.io", "primary": 1}])).unwrap_err();
    assert!(e.detail.contains("'emails.primary'"), "{}", e.detail);
}

#[test]
fn complex_attributes_refuse_scalars_except_the_bare_manager_id() {
    let emails = USER.attribute("emails").unwrap();
    let members = GROUP.attribute("members").unwrap();
    let name = USER.attribute("name").unwrap();
    for (def, wrong) in [
        (emails, json!("a@x.io")),
        (emails, json!(["a@x.io"])),
        (emails, json!([7])),
        (emails, json!([{"value": "a@x.io"}, "b@x.io"])),
        (members, json!(["2819c223"])),
        (members, json!(42)),
        (name, json!("Barbara Jensen")),
        (name, json!(true)),
    ] {
        let e = coerce(def, wrong.clone()).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{wrong}");
        assert!(
            e.detail.contains(&format!("'{}'", def.name)),
            "{}",
            e.detail
        );
    }
    // One object for a multi-valued attribute is still the one-element array.
    assert_eq!(
        coerce(emails, json!({"value": "a@x.io"})).unwrap(),
        Some(json!([{"value": "a@x.io"}]))
    );
    // The manager as a bare id is the IdPs' dialect; as a bare number it is not an id.
    let m = ENTERPRISE_USER.attribute("manager").unwrap();
    assert_eq!(
        coerce(m, json!("42")).unwrap(),
        Some(json!({"value": "42"}))
    );
    assert!(coerce(m, json!(42)).is_err());
}

#[test]
fn numbers_are_not_coerced_from_strings() {
    const COUNT: AttributeDef = AttributeDef::new("count", AttrType::Integer, "");
    const RATIO: AttributeDef = AttributeDef::new("ratio", AttrType::Decimal, "");
    assert_eq!(coerce(&COUNT, json!(3)).unwrap(), Some(json!(3)));
    assert!(coerce(&COUNT, json!("3")).is_err());
    assert!(coerce(&COUNT, json!(3.5)).is_err());
    assert_eq!(coerce(&RATIO, json!(1e40)).unwrap(), Some(json!(1e40)));
    assert!(coerce(&RATIO, json!("0.5")).is_err());
}
