//! Each module of the detector depends one way: no module reaches back into
//! one that uses it (a parent and its own children aside), so each can be
//! read, tested and changed from the bottom up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`sigma::engine`) → the source text outside its tests.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut name = rel.to_string_lossy().replace('/', "::");
            if name == "lib" {
                name.clear();
            } else if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            out.insert(name, text);
        }
    }
    out
}

fn parent(m: &str) -> &str {
    m.rsplit_once("::").map_or("", |(p, _)| p)
}

/// The modules a source names through `crate::` and `super::` paths.
fn references(m: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut add = |path: String| {
        // The longest known module the path starts with.
        let mut p = path.as_str();
        loop {
            if known.contains(p) {
                if p != m && !p.is_empty() {
                    refs.insert(p.to_string());
                }
                return;
            }
            match p.rsplit_once("::") {
                Some((head, _)) => p = head,
                None => return,
            }
        }
    };
    let ident =
        |s: &str| s.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':').collect::<String>();
    for part in text.split("crate::").skip(1) {
        add(ident(part).trim_end_matches(':').to_string());
    }
    let base = parent(m);
    let under = |x: &str| if base.is_empty() { x.to_string() } else { format!("{base}::{x}") };
    for part in text.split("super::").skip(1) {
        if let Some(list) = part.strip_prefix('{') {
            for item in list.split('}').next().unwrap_or("").split(',') {
                add(under(&ident(item.trim())));
            }
        } else {
            add(under(ident(part).trim_end_matches(':')));
        }
    }
    refs
}

#[test]
fn modules_depend_one_way() {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    assert!(known.contains("sigma::engine") && known.contains("models::iot"), "{known:?}");
    // A module and its parent may use each other (a parent declares its
    // children; children share the parent's helpers); any other edge back is
    // a loop.
    let edges: BTreeMap<&str, BTreeSet<String>> = mods
        .iter()
        .map(|(m, text)| {
            let refs = references(m, text, &known)
                .into_iter()
                .filter(|r| parent(r) != m.as_str() && r.as_str() != parent(m))
                .collect();
            (m.as_str(), refs)
        })
        .collect();
    fn reach(from: &str, to: &str, edges: &BTreeMap<&str, BTreeSet<String>>, seen: &mut BTreeSet<String>) -> bool {
        edges.get(from).into_iter().flatten().any(|n| n == to || (seen.insert(n.clone()) && reach(n, to, edges, seen)))
    }
    let mut loops = Vec::new();
    for (m, refs) in &edges {
        for r in refs {
            if reach(r, m, &edges, &mut BTreeSet::new()) {
                loops.push(format!("{m} -> {r} -> ... -> {m}"));
            }
        }
    }
    assert!(loops.is_empty(), "module loops: {loops:#?}");
}
