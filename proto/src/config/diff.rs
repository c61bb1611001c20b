//! The first key where two resolved configs differ (what ranks compare).
/// The first dotted key (in sorted order) whose value differs between two
/// TOML documents, e.g. `model.beta`; `None` when they are equal.
pub fn first_difference(a: &str, b: &str) -> Option<String> {
    let parse = |t: &str| t.parse::<toml::Table>().unwrap_or_default();
    diff_tables(&parse(a), &parse(b), "")
}

pub(super) fn diff_tables(a: &toml::Table, b: &toml::Table, prefix: &str) -> Option<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                if let Some(d) = diff_tables(x, y, &key) {
                    return Some(d);
                }
            }
            (x, y) if x != y => return Some(key),
            _ => {}
        }
    }
    None
}
