//! The layout the design describes (DESIGN.md, "Layout"), checked from the code itself: the
//! crates depend only on layers below their own, and within every crate no module imports
//! back a module that imports it (shared types live in a module of their own).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layer of each library crate: a crate may depend only on crates of lower layers.
fn layer(krate: &str) -> Option<u8> {
    Some(match krate {
        "eeg-dsp" | "eeg-edf" | "eeg-kafka" => 0,
        "eeg-schema" => 1,
        "eeg-session" => 2,
        "eeg-ingest" | "eeg-redis" | "eeg-offline" | "eeg-lsl" => 3,
        _ => return None,
    })
}

/// The workspace's library crates: name and directory.
fn crates() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let toml: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
        let name = toml["package"]["name"].as_str().unwrap().to_string();
        out.push((name, dir));
    }
    out.sort();
    out
}

#[test]
fn crates_depend_only_on_lower_layers() {
    let mut seen = 0;
    for (name, dir) in crates() {
        let own = layer(&name)
            .unwrap_or_else(|| panic!("{name}: no layer; add it to DESIGN.md's layout and here"));
        let toml: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let deps = toml.get("dependencies").and_then(|d| d.as_table());
        for dep in deps.into_iter().flat_map(|d| d.keys()) {
            if let Some(l) = layer(dep) {
                assert!(
                    l < own,
                    "{name} (layer {own}) depends on {dep} (layer {l}): dependencies point down"
                );
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 6,
        "only {seen} dependencies between the crates found"
    );
}

/// A crate's modules, by path (`raw::fast`), with the modules each refers to by a
/// `crate::`, `super::` or `self::` path outside its unit tests. A path to an item of the
/// crate root (`crate::BadInput`) counts as a reference to the root module, named "".
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let module_of = |file: &Path| -> String {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("lib" | "main" | "mod")
        ) {
            parts.pop();
        }
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    // Names a module re-exports (`pub use a::X;`) stand for the module that defines them.
    let mut reexports: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        let text = std::fs::read_to_string(file).unwrap();
        let mut statement = String::new();
        for line in text.lines() {
            let line = line.trim();
            if statement.is_empty() && !line.starts_with("pub use ") {
                continue;
            }
            statement.push_str(line);
            if !line.ends_with(';') {
                continue;
            }
            let tail = statement
                .trim_start_matches("pub use ")
                .trim_start_matches("self::");
            let tail = tail.strip_prefix("crate::").unwrap_or(tail);
            for path in paths_after(tail) {
                let target = resolve(&me, &path, &modules);
                if let (Some(name), false) = (path.last(), target == me) {
                    reexports
                        .entry(me.clone())
                        .or_default()
                        .insert(name.clone(), target);
                }
            }
            statement.clear();
        }
    }
    // Exported macros are named from the crate root (`crate::m!`) wherever they are
    // defined: such a name stands for the module that defines the macro.
    let mut macros: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices("macro_rules! ") {
            let name: String = text[i + "macro_rules! ".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            macros.insert(name, module_of(file));
        }
    }
    let resolve = |base: &str, path: &[String]| -> String {
        let target = resolve(base, path, &modules);
        // `target::Name`, where `target` re-exports `Name` from a module of its own.
        let named = path
            .get(base_len(&target) - base_len(base))
            .and_then(|name| reexports.get(&target)?.get(name));
        named.cloned().unwrap_or(target)
    };
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(file);
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests may use anything; they are not part of the module's design.
        let code = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text,
        };
        let mut refs = BTreeSet::new();
        for raw in code.lines() {
            let line = raw.trim_start();
            if line.starts_with("//") {
                continue;
            }
            // `super::` and `self::` inside an inline module (`mod avx2 { ... }`) are
            // relative to it: only the file's own top-level `use` lines are read for them.
            let top_level = raw.len() == line.len();
            for (prefix, base) in [
                ("crate::", String::new()),
                ("super::", parent(&me)),
                ("self::", me.clone()),
            ] {
                if prefix != "crate::" && !top_level {
                    continue;
                }
                for (i, _) in line.match_indices(prefix) {
                    // `other_crate::` paths end in another crate's name.
                    let before = line[..i].chars().next_back();
                    // `$crate::` in a macro's body is resolved where the macro is used.
                    if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                        continue;
                    }
                    let tail = &line[i + prefix.len()..];
                    let name: String = tail
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if tail[name.len()..].starts_with('!') {
                        if let Some(m) = macros.get(&name).filter(|m| **m != me) {
                            refs.insert(m.clone());
                        }
                        continue;
                    }
                    for path in paths_after(tail) {
                        let target = resolve(&base, &path);
                        if target != me && !me.starts_with(&format!("{target}::")) {
                            refs.insert(target);
                        }
                    }
                }
            }
        }
        graph.insert(me, refs);
    }
    // A parent declares its child modules: `mod x;` is a reference too.
    for m in &modules {
        if !m.is_empty() {
            graph.get_mut(&parent(m)).unwrap().insert(m.clone());
        }
    }
    graph
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The number of segments of a module path ("" has none).
fn base_len(module: &str) -> usize {
    module.split("::").filter(|s| !s.is_empty()).count()
}

fn parent(module: &str) -> String {
    module.rsplit_once("::").map_or("", |(p, _)| p).to_string()
}

/// The paths a `use`-like tail names: `a::b::C` or `{a::b, c, d::{e, f}}`.
fn paths_after(tail: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    if let Some(inner) = tail.strip_prefix('{') {
        let mut depth = 0;
        let mut end = inner.len();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let mut out = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        let body = &inner[..end];
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    out.extend(paths_after(body[start..i].trim()));
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.extend(paths_after(body[start..].trim()));
        return out;
    }
    let mut path = Vec::new();
    let mut rest = tail;
    loop {
        let id = ident(rest);
        if id.is_empty() {
            break;
        }
        rest = &rest[id.len()..];
        path.push(id);
        match rest.strip_prefix("::") {
            Some(r) if r.starts_with('{') => {
                return paths_after(r)
                    .into_iter()
                    .map(|p| path.iter().cloned().chain(p).collect())
                    .collect();
            }
            Some(r) => rest = r,
            None => break,
        }
    }
    vec![path]
}

/// The longest module named by `base::path`; the base itself when no segment is a module.
fn resolve(base: &str, path: &[String], modules: &BTreeSet<String>) -> String {
    let mut best = base.to_string();
    let mut current = base.to_string();
    for seg in path {
        current = if current.is_empty() {
            seg.clone()
        } else {
            format!("{current}::{seg}")
        };
        if modules.contains(&current) {
            best = current.clone();
        } else {
            break;
        }
    }
    best
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(c) = visit(m, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn show(cycle: &[String]) -> String {
    cycle
        .iter()
        .map(|m| if m.is_empty() { "(root)" } else { m })
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[test]
fn no_module_imports_back_a_module_that_imports_it() {
    let mut sources = vec![("eeg-pipeline".to_string(), root().join("src"))];
    sources.extend(crates().into_iter().map(|(n, d)| (n, d.join("src"))));
    let mut cycles = Vec::new();
    for (name, src) in sources {
        if let Some(cycle) = find_cycle(&module_graph(&src)) {
            cycles.push(format!("{name}: {}", show(&cycle)));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_checker_finds_a_cycle_through_the_root_and_through_braces() {
    let modules: BTreeSet<String> = ["", "a", "b", "b::c"].map(String::from).into();
    assert_eq!(resolve("", &["a".into(), "X".into()], &modules), "a");
    assert_eq!(resolve("", &["Args".into()], &modules), "");
    assert_eq!(resolve("b", &["c".into(), "f".into()], &modules), "b::c");
    let paths = paths_after("{Args, a::{X, Y}, b::c::f};");
    assert_eq!(
        paths,
        vec![
            vec!["Args".to_string()],
            vec!["a".into(), "X".into()],
            vec!["a".into(), "Y".into()],
            vec!["b".into(), "c".into(), "f".into()]
        ]
    );
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.insert("".into(), ["a".to_string()].into());
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), BTreeSet::new());
    assert_eq!(find_cycle(&graph), None);
    graph.get_mut("b").unwrap().insert(String::new());
    assert_eq!(
        show(&find_cycle(&graph).unwrap()),
        "(root) -> a -> b -> (root)"
    );
}
