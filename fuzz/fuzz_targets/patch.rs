//! PATCH: arbitrary JSON read as a PatchOp body and applied to a fixed User and a fixed Group.
//! A failed PATCH must leave the resource as it was; a successful one is applied once more to
//! its own result (IdPs retry), which must not panic either.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scim_bridge::scim::patch::{apply_patch, PatchRequest};
use scim_bridge::scim::schema::{ResourceType, GROUP_RESOURCE, USER_RESOURCE};
use serde_json::Value;

mod common;

static FIXTURES: OnceLock<[(Value, Value); 2]> = OnceLock::new();

fn run(rt: &ResourceType, resource: &Value, pristine: &Value, request: &PatchRequest) {
    match apply_patch(rt, resource, request) {
        Ok(outcome) => {
            assert_eq!(resource, pristine, "apply_patch changed its input");
            let _ = apply_patch(rt, &outcome.resource, request);
        }
        Err(_) => assert_eq!(resource, pristine, "a failed PATCH changed its input"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(request) = PatchRequest::from_json(&body) else {
        return;
    };
    let [(user, user_copy), (group, group_copy)] = FIXTURES.get_or_init(|| {
        let (u, g) = (common::user(), common::group());
        [(u.clone(), u), (g.clone(), g)]
    });
    run(&USER_RESOURCE, user, user_copy, &request);
    run(&GROUP_RESOURCE, group, group_copy, &request);
});
