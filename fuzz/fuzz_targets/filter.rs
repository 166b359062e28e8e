//! Filters: arbitrary text through the parser; whatever parses is validated, evaluated against
//! a realistic User, planned for the index, and must survive printing and parsing again.

#![no_main]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scim_bridge::scim::filter::{parse_filter, FilterLimits};
use scim_bridge::scim::schema::USER_RESOURCE;
use serde_json::Value;

mod common;

static USER: OnceLock<Value> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let limits = FilterLimits::default();
    let Ok(filter) = parse_filter(input, &limits) else {
        return;
    };
    let user = USER.get_or_init(common::user);
    let valid = filter.validate(&USER_RESOURCE).is_ok();
    let _ = filter.matches(&USER_RESOURCE, user);
    if valid {
        let _ = filter.index_plan(&USER_RESOURCE);
    }

    // The printed form may be longer than the input (control characters become `\u00XX`) and
    // one level deeper (an Entra `.value` after an `or` value filter gains parentheses), so it
    // is parsed again with those two limits lifted.
    let relaxed = FilterLimits {
        max_len: usize::MAX,
        max_depth: limits.max_depth + 1,
    };
    let printed = filter.to_string();
    match parse_filter(&printed, &relaxed) {
        Ok(again) => assert_eq!(
            again, filter,
            "print-then-parse changed the filter\n input: {input:?}\nprinted: {printed:?}"
        ),
        Err(e) => panic!(
            "the printed filter does not parse: {}\n input: {input:?}\nprinted: {printed:?}",
            e.detail
        ),
    }
});
