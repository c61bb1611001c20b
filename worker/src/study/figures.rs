//! The report's figures as PNG (plotters, drawn into an RGB buffer and
//! written atomically): a heat map with its values written in ([`heatmap`])
//! and panels of a figure per metric side by side ([`panels`]): boxes per
//! category, or every value a dot with the median as a line. Text uses a
//! system TrueType font (DejaVu Sans, which `scripts/setup.sh` installs);
//! without one the figures have no text.
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::disentanglement::stats::quantile;

const FONTS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Whether a font for text is registered (once per process).
pub fn font() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        FONTS.iter().any(|p| {
            std::fs::read(p).ok().is_some_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
        })
    })
}

/// How a panel shows its values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A box per category: quartiles, median, whiskers to the extremes.
    Boxes,
    /// Every value a dot, the medians joined by a line.
    Dots,
}

/// One panel: values per category along x.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub categories: Vec<String>,
    pub values: Vec<Vec<f64>>,
}

/// Saves an RGB buffer as the PNG `path` (the error without the path,
/// which the caller's error names).
pub fn save(path: &Path, pixels: Vec<u8>, size: (u32, u32)) -> Result<(), String> {
    let grid = crate::images::Grid {
        width: size.0 as usize,
        height: size.1 as usize,
        channels: 3,
        pixels,
    };
    grid.save(path).map_err(|e| e.to_string())
}

/// Draws `panels` side by side (at most 4 a row) under `title` into `path`.
pub fn panels(path: &Path, title: &str, style: Style, panels: &[Panel]) -> Result<(), String> {
    let cols = panels.len().clamp(1, 4);
    let rows = panels.len().div_ceil(cols).max(1);
    // Room for each category's name under its box.
    let most = panels.iter().map(|p| p.categories.len()).max().unwrap_or(1);
    let width = (most as u32 * 90).max(420);
    let size = (cols as u32 * width, rows as u32 * 320 + 40);
    let mut pixels = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = match font() {
            true => root
                .titled(title, ("sans-serif", 22))
                .map_err(|e| e.to_string())?,
            false => root.margin(40, 0, 0, 0),
        };
        for (area, p) in root.split_evenly((rows, cols)).iter().zip(panels) {
            panel(area, style, p)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    save(path, pixels, size)
}

/// One panel of [`panels`].
fn panel(area: &DrawingArea<BitMapBackend, Shift>, style: Style, p: &Panel) -> Result<(), String> {
    let all: Vec<f64> = p
        .values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (y0, y1) = bounds(all.into_iter());
    let n = p.categories.len().max(1);
    let text = font();
    let mut builder = ChartBuilder::on(area);
    builder.margin(12);
    if text {
        builder
            .caption(&p.title, ("sans-serif", 16))
            .x_label_area_size(36)
            .y_label_area_size(56);
    }
    let mut chart = builder
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), y0..y1)
        .map_err(|e| e.to_string())?;
    if text {
        let label = |x: &f64| {
            let i = x.round();
            match (x - i).abs() < 1e-6 && i >= 0.0 {
                true => p.categories.get(i as usize).cloned().unwrap_or_default(),
                false => String::new(),
            }
        };
        chart
            .configure_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&label)
            .x_label_style(("sans-serif", 11))
            .x_desc(p.x_label.as_str())
            .disable_x_mesh()
            .draw()
            .map_err(|e| e.to_string())?;
    }
    let mut medians = Vec::new();
    for (i, vs) in p.values.iter().enumerate() {
        let vs: Vec<f64> = vs.iter().copied().filter(|v| v.is_finite()).collect();
        if !vs.is_empty() {
            medians.push((i as f64, quantile(&vs, 0.5)));
            category(&mut chart, style, i as f64, &vs)?;
        }
    }
    if style == Style::Dots && medians.len() > 1 {
        chart
            .draw_series(LineSeries::new(
                medians,
                RGBColor(214, 39, 40).stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The values `vs` of the category at `x`: a box, or a dot each.
fn category(chart: &mut Chart, style: Style, x: f64, vs: &[f64]) -> Result<(), String> {
    let blue = RGBColor(31, 119, 180);
    let q = |f| quantile(vs, f);
    match style {
        Style::Boxes => {
            drawn(chart.draw_series([Rectangle::new(
                [(x - 0.3, q(0.25)), (x + 0.3, q(0.75))],
                blue.mix(0.35).filled(),
            )]))?;
            for seg in [
                [(x - 0.3, q(0.5)), (x + 0.3, q(0.5))],
                [(x, q(0.0)), (x, q(0.25))],
                [(x, q(0.75)), (x, q(1.0))],
            ] {
                drawn(chart.draw_series([PathElement::new(seg.to_vec(), BLACK.stroke_width(2))]))?;
            }
        }
        Style::Dots => {
            let k = vs.len().max(2) as f64 - 1.0;
            let dots = vs.iter().enumerate().map(|(j, &v)| {
                Circle::new(
                    (x - 0.15 + 0.3 * j as f64 / k, v),
                    3,
                    blue.mix(0.7).filled(),
                )
            });
            drawn(chart.draw_series(dots))?;
        }
    }
    Ok(())
}

/// A drawing's result without what it returns.
fn drawn<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<(), String> {
    r.map(|_| ()).map_err(|e| e.to_string())
}

/// A range around the values with a margin (a single value gets ±10% of
/// itself, 0 gets ±1).
pub fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let pad = match (hi > lo, lo == 0.0) {
        (true, _) => (hi - lo) * 0.08,
        (false, false) => lo.abs() * 0.1,
        (false, true) => 1.0,
    };
    (lo - pad, hi + pad)
}

/// A colour for `v` in `[-1, 1]`: blue below 0, white at 0, red above
/// (NaN grey).
fn diverging(v: f64) -> RGBColor {
    if !v.is_finite() {
        return RGBColor(200, 200, 200);
    }
    let t = v.clamp(-1.0, 1.0);
    let mix = |a: u8, b: u8, f: f64| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    match t >= 0.0 {
        true => RGBColor(255, mix(255, 60, t), mix(255, 60, t)),
        false => RGBColor(mix(255, 60, -t), mix(255, 90, -t), 255),
    }
}

/// A heat map of `cells[row][col]` (in [-1, 1]; each written in its cell)
/// with row and column names, under `title`, into `path`.
pub fn heatmap(
    path: &Path,
    title: &str,
    rows: &[String],
    cols: &[String],
    cells: &[Vec<f64>],
) -> Result<(), String> {
    // Room for the longest names (about 8 pixels a character).
    let longest =
        |names: &[String]| names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as i32;
    let (left, top, cell) = (30 + 8 * longest(rows), 60 + 8 * longest(cols), 64i32);
    let size = (
        (left + cell * cols.len() as i32 + 20) as u32,
        (top + cell * rows.len() as i32 + 20) as u32,
    );
    let mut pixels = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let text = font();
        for (i, row) in cells.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let (x, y) = (left + cell * j as i32, top + cell * i as i32);
                drawn(root.draw(&Rectangle::new(
                    [(x, y), (x + cell - 2, y + cell - 2)],
                    diverging(v).filled(),
                )))?;
                if text && v.is_finite() {
                    drawn(root.draw(&Text::new(
                        format!("{v:.2}"),
                        (x + 12, y + 24),
                        ("sans-serif", 15),
                    )))?;
                }
            }
        }
        if text {
            drawn(root.draw(&Text::new(title.to_string(), (10, 10), ("sans-serif", 22))))?;
            for (i, r) in rows.iter().enumerate() {
                drawn(root.draw(&Text::new(
                    r.clone(),
                    (10, top + cell * i as i32 + 24),
                    ("sans-serif", 15),
                )))?;
            }
            let up = ("sans-serif", 15)
                .into_font()
                .transform(FontTransform::Rotate270);
            for (j, c) in cols.iter().enumerate() {
                drawn(root.draw(&Text::new(
                    c.clone(),
                    (left + cell * j as i32 + 24, top - 8),
                    up.clone(),
                )))?;
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    save(path, pixels, size)
}
