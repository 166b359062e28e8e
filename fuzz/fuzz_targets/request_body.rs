//! POST/PUT bodies: arbitrary JSON canonicalized as a User and as a Group; what is accepted
//! is projected with a few `attributes` / `excludedAttributes` settings.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scim_bridge::scim::projection::Projection;
use scim_bridge::scim::resource::{canonicalize, InputMode};
use scim_bridge::scim::schema::{GROUP_RESOURCE, USER_RESOURCE};
use serde_json::Value;

static PROJECTIONS: OnceLock<Vec<Projection>> = OnceLock::new();

const PARAMS: &[(Option<&str>, Option<&str>)] = &[
    (None, None),
    (Some("userName,emails.value,name.givenName"), None),
    (None, Some("members,name.familyName,emails")),
    (
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"),
        None,
    ),
    (
        None,
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager,meta"),
    ),
    (Some("displayName,members.value,unknownThing"), Some("id")),
];

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let projections = PROJECTIONS.get_or_init(|| {
        PARAMS
            .iter()
            .map(|(a, e)| Projection::parse(*a, *e).expect("fixed projection"))
            .collect()
    });
    for rt in [&USER_RESOURCE, &GROUP_RESOURCE] {
        for mode in [InputMode::Create, InputMode::Replace] {
            let Ok(resource) = canonicalize(rt, body.clone(), mode) else {
                continue;
            };
            for p in projections {
                let _ = p.apply(rt, &resource);
            }
        }
    }
});
