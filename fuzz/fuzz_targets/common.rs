//! Fixed resources the fuzz targets run against: a realistic User (core and enterprise
//! attributes, several multi-valued ones) and a Group with a few members, both canonical and
//! carrying server attributes, as the store would hand them to the PATCH engine or a filter.

#![allow(dead_code)]

use scim_bridge::scim::resource::{canonicalize, with_server_attributes, InputMode, Meta};
use scim_bridge::scim::schema::{GROUP_RESOURCE, USER_RESOURCE};
use serde_json::{json, Value};

fn meta(resource_type: &str, endpoint: &str, id: &str) -> Meta {
    Meta {
        resource_type: resource_type.into(),
        created: time::OffsetDateTime::from_unix_timestamp(1_704_164_645).expect("time"),
        last_modified: time::OffsetDateTime::from_unix_timestamp(1_714_979_289).expect("time"),
        location: format!("https://scim.example.com/scim/v2/{endpoint}/{id}"),
        version: 7,
    }
}

pub fn user() -> Value {
    let body = json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "externalId": "00u1a2b3c4d5e6f7g8h9",
        "userName": "bjensen@example.com",
        "name": {
            "formatted": "Ms. Barbara J Jensen, III",
            "familyName": "Jensen",
            "givenName": "Barbara",
            "middleName": "Jane",
            "honorificPrefix": "Ms.",
            "honorificSuffix": "III"
        },
        "displayName": "Babs Jensen",
        "nickName": "Babs",
        "title": "Tour Guide",
        "userType": "Employee",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/Los_Angeles",
        "active": true,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": true},
            {"value": "babs@jensen.org", "type": "home"}
        ],
        "phoneNumbers": [
            {"value": "555-555-5555", "type": "work"},
            {"value": "555-555-4444", "type": "mobile"}
        ],
        "addresses": [{
            "type": "work",
            "streetAddress": "100 Universal City Plaza",
            "locality": "Hollywood",
            "region": "CA",
            "postalCode": "91608",
            "country": "USA",
            "primary": true
        }],
        "roles": [{"value": "analyst", "primary": true}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "costCenter": "4130",
            "organization": "Universal Studios",
            "division": "Theme Park",
            "department": "Tour Operations",
            "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}
        }
    });
    let id = "2819c223-7f76-453a-919d-413861904646";
    let canonical = canonicalize(&USER_RESOURCE, body, InputMode::Create).expect("fixture user");
    with_server_attributes(canonical, id, &meta("User", "Users", id))
}

pub fn group() -> Value {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "externalId": "00g1a2b3c4",
        "displayName": "Tour Guides",
        "members": [
            {"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen"},
            {"value": "902c246b-6245-4190-8e05-00816be7344a", "display": "Mandy Pepperidge"},
            {"value": "26118915-6090-4610-87e4-49d8ca9f808d"}
        ]
    });
    let id = "e9e30dba-f08f-4109-8486-d5c6a331660a";
    let canonical = canonicalize(&GROUP_RESOURCE, body, InputMode::Create).expect("fixture group");
    with_server_attributes(canonical, id, &meta("Group", "Groups", id))
}
