//! The library's layers, checked on its source: each module uses only the
//! floors below its own (docs/development.md, "Layers"). A `use` that runs
//! up, or sideways into another module of the same floor, fails here with
//! the file and line, before it can become a circle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

/// The floors, from the bottom: a module may use modules of lower floors.
const FLOORS: &[(&str, u8)] = &[
    ("model", 1),
    ("trust", 1),
    ("hashing", 2),
    ("ports", 2),
    ("store", 2),
    ("adapters", 3),
    ("config", 3),
    ("usecases", 4),
    ("testing", 4),
    ("system", 5),
];

fn floor(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::X` names the code of `text` uses, with their line numbers:
/// comments and test modules left out (tests may use the fakes).
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|(_, next)| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push((n + 1, name));
        }
    }
    found
}

#[test]
fn no_module_uses_one_on_its_own_floor_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        // lib.rs declares the modules; tests.rs files are test modules.
        if module == "lib" || file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let own = floor(&module)
            .unwrap_or_else(|| panic!("{}: module {module} has no floor", relative.display()));
        for (line, used) in uses(&fs::read_to_string(file).unwrap()) {
            checked += 1;
            if used == module {
                continue;
            }
            match floor(&used) {
                Some(theirs) if theirs < own => {}
                Some(theirs) => wrong.push(format!(
                    "{}:{line}: {module} (floor {own}) uses {used} (floor {theirs})",
                    relative.display()
                )),
                None => wrong.push(format!(
                    "{}:{line}: {used} is not a module with a floor",
                    relative.display()
                )),
            }
        }
    }
    assert!(checked > 100, "the scan found only {checked} uses");
    assert!(
        wrong.is_empty(),
        "uses that run up or sideways:\n{}",
        wrong.join("\n")
    );
}
