//! The report's page: a static `index.html` (no script, nothing fetched
//! from the network) that shows each study's figures and the table of its
//! models, one row per model.
use std::fmt::Write as _;

use super::table::Study;

/// One study's part of the page: its figures (file, caption).
pub struct Section<'a> {
    pub study: &'a Study,
    pub figures: Vec<(String, String)>,
}

/// Text as HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page.
pub fn page(sections: &[Section]) -> String {
    let mut h = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>vaedp study report</title>\n<style>body{font-family:sans-serif;margin:2em}img{max-width:100%;border:1px solid #ccc}figure{margin:1em 0}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child,th:first-child{text-align:left}</style>\n</head><body>\n<h1>Study report</h1>\n",
    );
    for s in sections {
        let st = s.study;
        let finished = st.finished().count();
        let _ = write!(
            h,
            "<section>\n<h2>{}</h2>\n<p>{} models ({finished} finished) from <code>{}</code></p>\n",
            escape(&st.label),
            st.models.len(),
            escape(&st.run.display().to_string())
        );
        for (file, caption) in &s.figures {
            let _ = writeln!(
                h,
                "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>",
                escape(file),
                escape(caption),
                escape(caption)
            );
        }
        h.push_str(&table(st));
        h.push_str("</section>\n");
    }
    h.push_str("</body></html>\n");
    h
}

/// The table of a study's models.
fn table(st: &Study) -> String {
    let mut h = format!(
        "<table class=\"models\" data-study=\"{}\">\n<thead><tr><th>point</th><th>method</th>",
        escape(&st.label)
    );
    for k in st
        .keys
        .iter()
        .chain(std::iter::once(&"status".to_string()))
        .chain(&st.figures)
    {
        let _ = write!(h, "<th>{}</th>", escape(k));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for m in &st.models {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td>",
            escape(&m.point),
            escape(&m.method)
        );
        for k in &st.keys {
            let _ = write!(
                h,
                "<td>{}</td>",
                escape(m.values.get(k).map_or("", String::as_str))
            );
        }
        let _ = write!(h, "<td>{}</td>", escape(&m.status));
        for f in &st.figures {
            let v = m
                .figures
                .get(f)
                .map_or(String::new(), |v| format!("{v:.4}"));
            let _ = write!(h, "<td>{v}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    h
}
