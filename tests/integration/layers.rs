//! The layering rules of `docs/architecture.md`, checked on the source itself: imports point
//! down only, no face imports another face, and no two modules import each other through any
//! path (0 circles). A new back-arrow or circle fails here, naming the import.
//!
//! What counts as an import: a `crate::a::b` or `super::a` path in code (comments and the
//! `#[cfg(test)] mod tests` of a file are not code that ships). A path is attributed to the
//! longest module it names. A module's own ancestors and descendants are not edges (a parent
//! declares its children; a child uses its parent's facade).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers from the bottom: a module may import a module of a lower layer, or its own
/// top-level module (where only circles are refused).
const LAYERS: &[&[&str]] = &[
    &["error", "model", "secret", "units", "platform"],
    &["pg", "storage", "keys", "schedule"],
    &["core"],
    &["config"],
    &["engine"],
    &["present"],
    &["cli", "tui", "api", "daemon", "demo"],
];

fn layer(top: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top))
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap_or(m)
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/engine/ops/mod.rs` → `engine::ops`; `src/lib.rs` → `` (the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The code of a file without comments and without its unit-test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `prefix` path in `code`, as its lowercase segments (`crate::core::repo::X` →
/// `[core, repo]`).
fn paths(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut segs = vec![];
        let mut s = rest;
        loop {
            let n = s
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(s.len());
            if n == 0 {
                break;
            }
            segs.push(s[..n].to_string());
            if !s[n..].starts_with("::") {
                break;
            }
            s = &s[n + 2..];
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

fn related(a: &str, b: &str) -> bool {
    a.is_empty()
        || b.is_empty()
        || a == b
        || a.starts_with(&format!("{b}::"))
        || b.starts_with(&format!("{a}::"))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = vec![];
    files(&src, &mut all);
    let modules: BTreeMap<String, PathBuf> = all
        .iter()
        .filter(|f| !f.ends_with("main.rs") && !f.ends_with("tui/tests.rs"))
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, f) in &modules {
        let text = code(&std::fs::read_to_string(f).expect("read"));
        let here: Vec<String> = if m.is_empty() {
            vec![]
        } else {
            m.split("::").map(str::to_string).collect()
        };
        // `super::` in `a/b.rs` (module a::b) is `a`; in `a/b/mod.rs` (module a::b) too.
        let parent = &here[..here.len().saturating_sub(1)];
        let mut found = paths(&text, "crate::");
        for p in paths(&text, "super::") {
            found.push(parent.iter().cloned().chain(p).collect());
        }
        for p in found {
            let target = (1..=p.len())
                .rev()
                .map(|k| p[..k].join("::"))
                .find(|c| modules.contains_key(c));
            if let Some(t) = target {
                if !related(m, &t) {
                    edges.entry(m.clone()).or_default().insert(t);
                }
            }
        }
    }
    edges
}

/// Strongly connected components with more than one module (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct S<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit(s: &mut S, v: &str) {
        s.index.insert(v.into(), s.next);
        s.low.insert(v.into(), s.next);
        s.next += 1;
        s.stack.push(v.into());
        s.on.insert(v.into());
        let ws: Vec<String> = s.edges.get(v).into_iter().flatten().cloned().collect();
        for w in ws {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let lw = s.low[&w];
                let lv = s.low.get_mut(v).expect("low");
                *lv = (*lv).min(lw);
            } else if s.on.contains(&w) {
                let iw = s.index[&w];
                let lv = s.low.get_mut(v).expect("low");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = vec![];
            while let Some(w) = s.stack.pop() {
                s.on.remove(&w);
                let done = w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = S {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on: BTreeSet::new(),
        next: 0,
        out: vec![],
    };
    let nodes: Vec<String> = edges.keys().cloned().collect();
    for v in nodes {
        if !s.index.contains_key(&v) {
            visit(&mut s, &v);
        }
    }
    s.out
}

#[test]
fn the_source_has_no_import_circles() {
    let edges = graph();
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 100,
        "the import graph was read"
    );
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "modules that import each other: {found:?}"
    );
}

#[test]
fn imports_point_down_and_no_face_imports_another() {
    let edges = graph();
    let mut wrong = vec![];
    for (a, bs) in &edges {
        for b in bs {
            let (ta, tb) = (top(a), top(b));
            if ta == tb {
                continue;
            }
            match (layer(ta), layer(tb)) {
                (Some(la), Some(lb)) if lb < la => {}
                (Some(_), Some(_)) => wrong.push(format!("{a} → {b}")),
                _ => wrong.push(format!("{a} → {b} (a module without a layer: add it)")),
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:#?}");
}

/// The checker itself sees a circle and a back-arrow (a test that cannot fail is no test).
#[test]
fn the_layer_check_catches_what_it_is_for() {
    let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    e.entry("core::a".into())
        .or_default()
        .insert("core::b".into());
    e.entry("core::b".into())
        .or_default()
        .insert("core::c".into());
    e.entry("core::c".into())
        .or_default()
        .insert("core::a".into());
    assert_eq!(circles(&e).len(), 1);
    assert!(layer("engine") > layer("core") && layer("cli") == layer("tui"));
    assert_eq!(
        paths("use crate::core::repo::Repository; x.super::y", "crate::"),
        vec![vec!["core".to_string(), "repo".to_string()]]
    );
}
