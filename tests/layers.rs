//! The architecture, checked: drawn from the code's own `use crate::…`,
//! `use super::…` and `crate::…` paths, no two source files of the worker,
//! the launcher or proto import each other in a circle (inside a folder
//! too), and no file imports from a layer above its own, as
//! `docs/architecture.md`'s layer table assigns them. Test modules
//! (`#[cfg(test)]`) are not part of the architecture and are left out.
//! `VAE_LAYERS_ROOT` points the check at another checkout (to show it fail).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    std::env::var_os("VAE_LAYERS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// Every `.rs` file under `dir`, as its module path (`a::b`; `""` for the
/// crate root) → the file.
fn modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().with_extension("");
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
            // main.rs is the binary's root, beside lib.rs: its own node.
            let name = if path.ends_with("main.rs") && parts.is_empty() {
                "<main>".to_string()
            } else {
                parts.join("::")
            };
            out.insert(name, path);
        }
    }
    out
}

/// The code of a file without comments, string literals' contents and
/// `#[cfg(test)]` items.
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in text.lines() {
        let l = line.split("//").next().unwrap_or("");
        let trimmed = l.trim();
        if skip_depth.is_none() && trimmed.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = l.matches('{').count() as i32;
        let closes = l.matches('}').count() as i32;
        if pending_test && !trimmed.is_empty() {
            pending_test = false;
            if opens > closes {
                skip_depth = Some(depth);
            }
            depth += opens - closes;
            continue;
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// The module paths a file's code names: `crate::a::b`, `super::x` (as
/// absolute paths), each item of a `use … {a, b::c}` group separately.
fn paths(module: &str, is_dir_module: bool, code: &str) -> Vec<Vec<String>> {
    let here: Vec<String> = if module.is_empty() || module == "<main>" {
        vec![]
    } else {
        module.split("::").map(String::from).collect()
    };
    // `super` of a file `a/b.rs` (module a::b) is `a`; of `a/mod.rs` (a) is the root.
    let parent: Vec<String> = here[..here.len().saturating_sub(1)].to_vec();
    let _ = is_dir_module;
    let mut out = Vec::new();
    let flat = code.replace('\n', " ");
    for start in ["crate::", "super::"] {
        let mut at = 0;
        while let Some(i) = flat[at..].find(start) {
            let i = at + i;
            at = i + start.len();
            let before = flat[..i].chars().last().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == ':' {
                continue;
            }
            let base = if start == "crate::" {
                vec![]
            } else {
                parent.clone()
            };
            for p in expand(&flat[at..]) {
                let mut full = base.clone();
                let mut p = p;
                // `super::super::x`
                while p.first().map(String::as_str) == Some("super") {
                    p.remove(0);
                    full.pop();
                }
                full.extend(p);
                out.push(full);
            }
        }
    }
    out
}

/// The paths of a `use` tree starting at `s` (`a::b::{c, d::e}`, `a::B`).
fn expand(s: &str) -> Vec<Vec<String>> {
    let mut prefix = Vec::new();
    let mut rest = s;
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            if let Some(inner) = rest.strip_prefix('{') {
                let mut depth = 1;
                let mut end = 0;
                for (k, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = k;
                        break;
                    }
                }
                let mut out = Vec::new();
                let mut d = 0;
                let mut item = String::new();
                for c in inner[..end].chars() {
                    match c {
                        '{' => d += 1,
                        '}' => d -= 1,
                        _ => {}
                    }
                    if c == ',' && d == 0 {
                        out.push(std::mem::take(&mut item));
                    } else {
                        item.push(c);
                    }
                }
                out.push(item);
                return out
                    .iter()
                    .flat_map(|i| expand(i.trim()))
                    .map(|mut p| {
                        let mut full = prefix.clone();
                        full.append(&mut p);
                        full
                    })
                    .collect();
            }
            return vec![prefix];
        }
        rest = &rest[ident.len()..];
        prefix.push(ident);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return vec![prefix],
        }
    }
}

/// The file a path lands in: its longest prefix that is a module.
fn target(path: &[String], mods: &BTreeMap<String, PathBuf>) -> Option<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| mods.contains_key(m))
}

/// What each folder's `mod.rs` (and `lib.rs`) re-exports from its parts:
/// (folder module, item name) → the full path of the item it re-exports.
fn reexports(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<(String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    for (m, path) in mods {
        if !(path.ends_with("mod.rs") || path.ends_with("lib.rs")) {
            continue;
        }
        let here: Vec<String> = m
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let flat = code(&std::fs::read_to_string(path).unwrap()).replace('\n', " ");
        for stmt in flat.split(';') {
            let Some(tree) = stmt.trim().strip_prefix("pub use ") else {
                continue;
            };
            for p in expand(tree.trim()) {
                let Some(item) = p.last() else { continue };
                let mut full = here.clone();
                full.extend(p.iter().cloned());
                if mods.contains_key(&full[..here.len() + 1].join("::")) {
                    out.insert((m.clone(), item.clone()), full);
                }
            }
        }
    }
    out
}

/// The file a path lands in, seen through `mod.rs` re-exports: a path that
/// names `folder::Item` lands in the part of the folder that defines `Item`.
fn resolve(
    path: &[String],
    mods: &BTreeMap<String, PathBuf>,
    re: &BTreeMap<(String, String), Vec<String>>,
) -> Option<String> {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let t = target(&path, mods)?;
        let n = t.split("::").filter(|s| !s.is_empty()).count();
        match path
            .get(n)
            .and_then(|item| re.get(&(t.clone(), item.clone())))
        {
            Some(full) => {
                let mut next = full.clone();
                next.extend(path[n + 1..].iter().cloned());
                path = next;
            }
            None => return Some(t),
        }
    }
    target(&path, mods)
}

/// The import graph of one crate: file module → the modules it imports
/// (through re-exports, to the part that defines the item).
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let re = reexports(&mods);
    let mut g = BTreeMap::new();
    for (m, path) in &mods {
        let text = std::fs::read_to_string(path).unwrap();
        let dir_module = path.ends_with("mod.rs") || path.ends_with("lib.rs");
        let mut to = BTreeSet::new();
        for p in paths(m, dir_module, &code(&text)) {
            if let Some(t) = resolve(&p, &mods, &re) {
                if &t != m && !(t.is_empty() && p.len() <= 1) {
                    to.insert(t);
                }
            }
        }
        g.insert(m.clone(), to);
    }
    g
}

/// The strongly connected components of more than one module (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// `docs/architecture.md`'s layer table for `krate`: rows
/// `| krate | N | name | module, module, … |`; top-level module → layer.
fn layers(krate: &str) -> BTreeMap<String, u32> {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 6 || cells[1] != format!("`{krate}`") {
            continue;
        }
        let Ok(n) = cells[2].parse::<u32>() else {
            continue;
        };
        for m in cells[4].split(',') {
            let m = m.trim().trim_matches('`').trim_end_matches('/');
            let m = m.trim_end_matches(".rs");
            if !m.is_empty() {
                out.insert(m.to_string(), n);
            }
        }
    }
    out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

/// Each crate's circles and imports up a layer, as lines.
fn problems() -> Vec<String> {
    let mut out = Vec::new();
    for krate in ["worker", "launcher", "proto"] {
        let g = graph(&root().join(krate).join("src"));
        for c in circles(&g) {
            out.push(format!(
                "{krate}: modules importing each other in a circle: {}",
                c.join(", ")
            ));
        }
        let layer = layers(krate);
        for (from, tos) in &g {
            let (f, fname) = (top(from), from.as_str());
            if f.is_empty() || f == "<main>" {
                continue;
            }
            let Some(lf) = layer.get(f) else {
                out.push(format!(
                    "{krate}: module `{fname}` has no layer in docs/architecture.md"
                ));
                continue;
            };
            for to in tos {
                let t = top(to);
                if let Some(lt) = layer.get(t) {
                    if lt > lf {
                        out.push(format!(
                            "{krate}: `{fname}` (layer {lf}) imports `{to}` (layer {lt}), a layer above it"
                        ));
                    }
                }
            }
        }
    }
    out
}

/// The lines of every `mod.rs` that do more than name its parts and
/// re-export them (docs, `mod`, `pub use`, attributes).
fn busy_mod_files() -> Vec<String> {
    let mut out = Vec::new();
    for krate in ["worker", "launcher", "proto"] {
        for path in modules(&root().join(krate).join("src")).values() {
            if !path.ends_with("mod.rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for line in text.lines().map(str::trim) {
                let plain = line.is_empty()
                    || line.starts_with("//")
                    || line.starts_with("#[")
                    || ["pub mod ", "mod ", "pub use ", "pub(crate) use "]
                        .iter()
                        .any(|p| line.starts_with(p))
                    || line.ends_with(',')
                    || line.ends_with("};")
                    || line.ends_with(';') && !line.contains('(');
                if !plain {
                    out.push(format!("{}: `{line}`", path.display()));
                }
            }
        }
    }
    out
}

#[test]
fn every_mod_rs_only_names_its_parts() {
    let busy = busy_mod_files();
    assert!(busy.is_empty(), "{}", busy.join("\n"));
}

#[test]
fn no_import_circles_and_no_imports_up_a_layer() {
    let p = problems();
    assert!(p.is_empty(), "{}", p.join("\n"));
}

#[test]
fn the_check_sees_a_circle_and_an_import_up() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    g.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
    let code = code("use super::{x, y::Z};\nfn f() { crate::m::n(); }\n#[cfg(test)]\nmod tests {\n    use crate::q;\n}\n");
    let ps = paths("p::r", false, &code);
    assert!(ps.contains(&vec!["p".into(), "x".into()]), "{ps:?}");
    assert!(
        ps.contains(&vec!["p".into(), "y".into(), "Z".into()]),
        "{ps:?}"
    );
    assert!(ps.contains(&vec!["m".into(), "n".into()]), "{ps:?}");
    assert!(
        !ps.iter().any(|p| p.first().is_some_and(|s| s == "q")),
        "{ps:?}"
    );
}
