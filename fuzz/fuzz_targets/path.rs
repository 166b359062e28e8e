//! PATCH paths: arbitrary text through `Path::parse`, then resolved against the User schema.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use libfuzzer_sys::fuzz_target;
use scim_bridge::scim::path::Path;
use scim_bridge::scim::schema::USER_RESOURCE;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = Path::parse(input) else {
        return;
    };
    let _ = path.sub_name();
    let _ = path.resolve(&USER_RESOURCE);
    let _ = path.to_string();
});
