//! The modules of `shared/src` import one another one way: no cycle, read from their
//! `use crate::…` and `super::…` paths and every other `crate::a::b` path in their code (their
//! `#[cfg(test)] mod tests` and comments left out), as `shared/tools/modcycles.py` reads them.
//! A new cycle fails the test, naming its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of the crate at `src`, by path (`routes::fanout`; `lib.rs` is `crate`), with
/// its source.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, src: &Path, found: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, src, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(src).unwrap().with_extension("");
                let mut name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("::");
                if let Some(parent) = name.strip_suffix("::mod") {
                    name = parent.to_owned();
                }
                if name == "lib" || name == "main" {
                    name = "crate".to_owned();
                }
                found.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut found = BTreeMap::new();
    walk(src, src, &mut found);
    found
}

/// The code of a module as the check reads it: before its `#[cfg(test)] mod tests`, without
/// comment lines, `super::` spelled out from the crate.
fn code(module: &str, source: &str) -> String {
    let mut text = source;
    for (at, _) in source.match_indices("#[cfg(test)]") {
        let rest = source[at + "#[cfg(test)]".len()..].trim_start();
        let rest = rest
            .strip_prefix("#[allow(")
            .and_then(|r| r.split_once(")]"))
            .map_or(rest, |(_, r)| r.trim_start());
        if rest.starts_with("mod tests") {
            text = &source[..at];
            break;
        }
    }
    let parent = module.rsplit_once("::").map(|(parent, _)| parent);
    let spelled = match parent {
        Some(parent) => format!("crate::{parent}::"),
        None => "crate::".to_owned(),
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| line.replace("super::", &spelled))
        .collect::<Vec<_>>()
        .join("\n")
}

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The paths after each `crate::` in `code`; a `{…}` group (nested or not) gives one path per
/// item.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        expand("", &code[at + "crate::".len()..], &mut paths);
    }
    paths
}

/// Reads one path (or group) at the start of `text`, after `base`, into `paths`; returns how
/// many bytes it took.
fn expand(base: &str, text: &str, paths: &mut Vec<String>) -> usize {
    let end = text.find(|c: char| !path_char(c)).unwrap_or(text.len());
    let head = text[..end].trim_end_matches(':');
    let path = match (base.is_empty(), head.is_empty()) {
        (true, _) => head.to_owned(),
        (false, true) => base.to_owned(),
        (false, false) => format!("{base}::{head}"),
    };
    if !text[end..].starts_with('{') {
        paths.push(path);
        return end;
    }
    // A group: its items, each a path or a group of its own, up to the matching brace.
    let mut at = end + 1;
    loop {
        let rest = &text[at..];
        at += rest.len() - rest.trim_start_matches([' ', '\n', '\t', ',']).len();
        match text[at..].chars().next() {
            None => return at,
            Some('}') => return at + 1,
            Some(_) => {
                let took = expand(&path, &text[at..], paths);
                // Past anything after the item (`as name`) up to its end.
                let after = &text[at + took..];
                at += took + after.find([',', '}']).unwrap_or(after.len());
            }
        }
    }
}

/// Who imports whom.
fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let resolve = |path: &str| -> Option<String> {
        let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        while !parts.is_empty() {
            let name = parts.join("::");
            if modules.contains_key(&name) {
                return Some(name);
            }
            parts.pop();
        }
        None
    };
    modules
        .iter()
        .map(|(module, source)| {
            let targets = crate_paths(&code(module, source))
                .iter()
                .filter_map(|path| resolve(path))
                .filter(|target| target != module && target != "crate")
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

/// The import cycles: each group of modules that reach one another (more than one module).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reaches = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = vec![from];
        while let Some(m) = todo.pop() {
            for next in edges.get(m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next);
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|m| (m, reaches(m))).collect();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for module in edges.keys() {
        if groups.iter().any(|g| g.contains(module)) || !reach[module].contains(module) {
            continue;
        }
        let group: Vec<String> = reach[module]
            .iter()
            .filter(|other| reach[other].contains(module))
            .cloned()
            .collect();
        if group.len() > 1 {
            groups.push(group);
        }
    }
    groups
}

#[test]
fn the_shared_crates_modules_import_one_another_one_way() {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/src"));
    let modules = modules(src);
    assert!(modules.len() > 50, "read only {} modules", modules.len());
    let found = cycles(&edges(&modules));
    assert!(
        found.is_empty(),
        "import cycles between modules of shared/src (move the names that cause them to a \
         module both can use):\n{}",
        found
            .iter()
            .map(|group| group.join(" <-> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_cycle_check_finds_a_planted_cycle_through_use_groups_super_and_inline_paths() {
    let planted: BTreeMap<String, String> = [
        ("crate", "pub mod routes;"),
        ("routes", "pub mod fanout;\npub mod presence;"),
        // A grouped use, and `super::` from a child.
        (
            "routes::fanout",
            "use crate::{domain::Shard, routes::{presence::left}};",
        ),
        ("routes::presence", "use super::fanout::Ports;"),
        // An inline path, a comment and a test module that do not count.
        (
            "domain",
            "// crate::store::Store\nfn f() { crate::store::x(); }\n#[cfg(test)]\nmod tests { use crate::routes::fanout; }",
        ),
        ("store", "use crate::domain::Shard;"),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_owned(), s.to_owned()))
    .collect();
    assert_eq!(
        cycles(&edges(&planted)),
        [
            vec!["domain".to_owned(), "store".to_owned()],
            vec!["routes::fanout".to_owned(), "routes::presence".to_owned()],
        ]
    );
}
