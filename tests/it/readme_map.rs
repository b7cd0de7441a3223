//! The README's "where things live" table cannot go stale: every path in its "where" column
//! exists, and every item named there (`name`, `Type::name`) is defined in one of the row's
//! files (or, for a row that names a folder, in a file under it).

use std::path::{Path, PathBuf};

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The rows of the table after "Where things live:": `(what, where)`.
fn rows(readme: &str) -> Vec<(String, String)> {
    let start = readme
        .find("Where things live:")
        .expect("the README has a \"Where things live:\" table");
    readme[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        // The header and its separator.
        .skip(2)
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            match cells.as_slice() {
                [what, place] => Some(((*what).trim().to_owned(), (*place).trim().to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// The `code spans` of a cell.
fn spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Every file at `path`, or under it when it is a folder.
fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            found.extend(files(&entry.path()));
        }
    }
    found
}

/// Whether `source` defines `name` (a function, type, trait, module, constant or static).
fn defines(source: &str, name: &str) -> bool {
    [
        "fn", "struct", "enum", "trait", "mod", "const", "type", "static",
    ]
    .iter()
    .any(|keyword| {
        let needle = format!("{keyword} {name}");
        source.match_indices(&needle).any(|(at, _)| {
            let before = source[..at].chars().next_back();
            let after = source[at + needle.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

/// What is wrong with one row's "where" cell, read against the tree at `root`.
fn problems(root: &Path, place: &str) -> Vec<String> {
    let (paths, items): (Vec<&str>, Vec<&str>) = spans(place)
        .into_iter()
        .partition(|span| span.contains('/'));
    let mut wrong = Vec::new();
    let mut sources = Vec::new();
    for path in &paths {
        let full = root.join(path);
        if full.exists() {
            sources.extend(files(&full));
        } else {
            wrong.push(format!("{path} does not exist"));
        }
    }
    let texts: Vec<(PathBuf, String)> = sources
        .into_iter()
        .filter(|file| file.extension().is_some_and(|e| e == "rs"))
        .filter_map(|file| std::fs::read_to_string(&file).ok().map(|text| (file, text)))
        .collect();
    for item in items {
        let name = item.rsplit("::").next().unwrap_or(item);
        // `marquee::lambda::deadline` names a module: its file will do.
        let module_file = texts.iter().any(|(file, _)| {
            file.file_stem().is_some_and(|stem| stem == name)
                || file.ends_with(format!("{name}/mod.rs"))
        });
        if !module_file && !texts.iter().any(|(_, text)| defines(text, name)) {
            wrong.push(format!(
                "{item} is not defined in {}",
                if paths.is_empty() {
                    "the row (it names no file)".to_owned()
                } else {
                    paths.join(", ")
                }
            ));
        }
    }
    wrong
}

#[test]
fn every_path_in_the_readme_map_exists_and_every_item_is_defined_where_it_says() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let rows = rows(&readme);
    assert!(
        rows.len() > 30,
        "the table was not read: {} rows",
        rows.len()
    );
    let wrong: Vec<String> = rows
        .iter()
        .flat_map(|(what, place)| {
            problems(workspace(), place)
                .into_iter()
                .map(move |problem| format!("\"{what}\": {problem}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "the README's map is stale:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_map_check_catches_a_missing_file_an_undefined_item_and_an_item_without_a_file() {
    let root = workspace();
    assert!(problems(root, "`clean_up_if_gone` in `shared/src/routes/fanout.rs`").is_empty());
    assert!(problems(root, "`Shard::of` in `shared/src/domain.rs`").is_empty());
    assert!(problems(root, "`marquee::lambda::deadline` in `shared/src/lambda/`").is_empty());
    assert_eq!(
        problems(root, "`remove_gone` in `shared/src/routes/fanout.rs`"),
        ["remove_gone is not defined in shared/src/routes/fanout.rs"]
    );
    assert_eq!(
        problems(root, "`shared/src/routes/nowhere.rs`"),
        ["shared/src/routes/nowhere.rs does not exist"]
    );
    assert_eq!(
        problems(root, "`Store::spend`"),
        ["Store::spend is not defined in the row (it names no file)"]
    );
    // A name that only starts like a definition is not one.
    assert!(!defines(
        "fn clean_up_if_gone_later() {}",
        "clean_up_if_gone"
    ));
    assert!(defines(
        "pub(crate) async fn clean_up_if_gone<S>() {}",
        "clean_up_if_gone"
    ));
}
