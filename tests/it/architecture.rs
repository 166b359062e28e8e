//! The layers' arrows (DESIGN.md, module map): which top-level modules of the crate each layer
//! may not reach. The source is scanned for `crate::` paths in code (comments aside), grouped
//! imports (`use crate::{a, b::c}`) included, so an arrow the wrong way fails here before a
//! reviewer has to notice it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// (layer, modules it may not use). `scim` may use nothing of the crate but itself; the leaves
/// (`clock`, `lenient`, `secret`) nothing but leaves. No cycles: configuration and telemetry
/// sit below the bridge, and the harnesses do not borrow from the command line.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("http", &["store", "partner"]),
    ("partner", &["bridge", "http", "store"]),
    ("store", &["bridge", "http", "partner"]),
    ("config", &["bridge", "store", "cli", "telemetry"]),
    ("telemetry", &["bridge", "http", "cli"]),
    ("bench", &["cli"]),
    ("soak", &["cli"]),
];

/// Modules that use no other module of the crate but these.
const LEAVES: &[&str] = &["clock", "lenient", "secret"];

/// The crate's top-level modules a source text uses through `crate::` paths.
fn crate_modules_used(source: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `scim_bridge::crate::` never occurs; skip words ending in "crate" (`subcrate::`).
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest_trim = rest.trim_start();
            if let Some(group) = rest_trim.strip_prefix('{') {
                let mut depth = 0usize;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            push_first_segment(&mut used, &item);
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        item.push(c);
                    }
                }
                push_first_segment(&mut used, &item);
            } else {
                push_first_segment(&mut used, rest_trim);
            }
        }
    }
    used
}

fn push_first_segment(used: &mut BTreeSet<String>, path: &str) {
    let name: String = path
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !name.is_empty() && name != "self" {
        used.insert(name);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files of a top-level module: `src/NAME.rs` and everything under `src/NAME/`.
fn layer_files(name: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        files.push(file);
    }
    let dir = src.join(name);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    assert!(!files.is_empty(), "no module {name} under src/");
    files
}

fn violations(layer: &str, forbidden: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for file in layer_files(layer) {
        let source = std::fs::read_to_string(&file).unwrap();
        for module in crate_modules_used(&source) {
            if forbidden(&module) {
                found.push(format!("{} uses crate::{module}", file.display()));
            }
        }
    }
    found
}

#[test]
fn the_scanner_sees_plain_grouped_and_nested_paths_but_not_comments() {
    let used = crate_modules_used(
        "use crate::store::Store;\n\
         use crate::{bridge::Bridge, partner::{wire, record}, self};\n\
         let x = crate::http::server::serve(); // crate::config is only mentioned\n\
         /// [`crate::telemetry`] in a doc comment\n",
    );
    let used: Vec<_> = used.iter().map(String::as_str).collect();
    assert_eq!(used, ["bridge", "http", "partner", "store"]);
}

#[test]
fn each_layer_reaches_only_what_it_may() {
    let mut found = Vec::new();
    for (layer, forbidden) in FORBIDDEN {
        found.extend(violations(layer, &|m| forbidden.contains(&m)));
    }
    // The SCIM model is pure: serde types, filter, PATCH; nothing of the crate around it.
    found.extend(violations("scim", &|m| m != "scim"));
    for leaf in LEAVES {
        found.extend(violations(leaf, &|m| !LEAVES.contains(&m)));
    }
    assert!(
        found.is_empty(),
        "arrows the wrong way:\n{}",
        found.join("\n")
    );
}
