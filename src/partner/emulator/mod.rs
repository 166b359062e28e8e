//! The partner emulator (section 2 of `partner-api.md`).

pub mod faults;
