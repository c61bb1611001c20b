//! A sweep's plots (`plotters`): one PNG per final figure against the
//! first swept key other than the seed and the method (its values, or
//! their positions when they are not numbers; a log axis when positive
//! values span a factor of 10 or more), one line per combination of the
//! other swept keys. Seeds are aggregated: each x of a line is the mean
//! over its seeds with a bar from the lowest to the highest and every seed
//! a small dot. The legend sits beside the plot, clear of the data, and a
//! constant figure gets an axis around its value. Text uses a system
//! TrueType font (DejaVu Sans, which `scripts/setup.sh` installs); without
//! one the plot has no text.
use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::point::PointResult;
use crate::study::figures::{bounds, font, save};

/// The key of the seeds, aggregated over.
const SEED: &str = "train.seed";

/// One x of a line: the mean over its seeds, their lowest and highest, each.
#[derive(Clone, Debug, PartialEq)]
pub struct Mean {
    pub x: f64,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    pub seeds: Vec<f64>,
}

/// What a plot shows: the x key, whether x is on a log axis (then the
/// `x` of each [`Mean`] is its log10), and each line by its label.
#[derive(Debug)]
pub struct Plot {
    pub x_key: String,
    pub log_x: bool,
    /// The key's values in order when they are not numbers (x is the position).
    pub x_names: Option<Vec<String>>,
    pub lines: BTreeMap<String, Vec<Mean>>,
}

/// The plot of `figure`: seeds aggregated, `None` when no point has it.
pub fn plot(keys: &[String], figure: &str, rows: &[PointResult]) -> Option<Plot> {
    let aggregated = keys.len() > 1 && keys.iter().any(|k| k == SEED);
    let x_key = keys
        .iter()
        .find(|k| !(aggregated && k.as_str() == SEED) && k.as_str() != "method")
        .or(keys.first())
        .cloned()
        .unwrap_or_else(|| "point".into());
    let (x, log_x, x_names) = xs(&x_key, rows);
    let mut groups: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for (r, &xi) in rows.iter().zip(&x) {
        let Some(&y) = r.figures.get(figure) else {
            continue;
        };
        let label = keys
            .iter()
            .filter(|k| **k != x_key && !(aggregated && k.as_str() == SEED))
            .map(|k| format!("{k}={}", r.values.get(k).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join(",");
        let at = groups.entry(label).or_default();
        at.entry(xi.to_bits()).or_default().push(y);
    }
    let lines: BTreeMap<String, Vec<Mean>> = groups
        .into_iter()
        .map(|(label, at)| {
            let mut means: Vec<Mean> = at
                .into_iter()
                .map(|(x, seeds)| Mean {
                    x: f64::from_bits(x),
                    mean: seeds.iter().sum::<f64>() / seeds.len() as f64,
                    lo: seeds.iter().copied().fold(f64::INFINITY, f64::min),
                    hi: seeds.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    seeds,
                })
                .collect();
            means.sort_by(|a, b| a.x.total_cmp(&b.x));
            (label, means)
        })
        .collect();
    (!lines.is_empty()).then_some(Plot {
        x_key,
        log_x,
        x_names,
        lines,
    })
}

/// The x coordinate of each row: `key`'s value when every one is a number
/// (its log10 when all are positive and span a factor of 10 or more: the
/// second result), else its position among the key's values (the third).
fn xs(key: &str, rows: &[PointResult]) -> (Vec<f64>, bool, Option<Vec<String>>) {
    let vals: Vec<&str> = rows
        .iter()
        .map(|r| r.values.get(key).map_or("", String::as_str))
        .collect();
    let nums: Option<Vec<f64>> = vals.iter().map(|v| v.parse().ok()).collect();
    match nums {
        Some(n) if !n.is_empty() => {
            let (lo, hi) = n
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            match lo > 0.0 && hi / lo >= 10.0 {
                true => (n.iter().map(|v| v.log10()).collect(), true, None),
                false => (n, false, None),
            }
        }
        _ => {
            let mut distinct: Vec<&str> = Vec::new();
            for v in &vals {
                if !distinct.contains(v) {
                    distinct.push(v);
                }
            }
            let at = |v: &&str| distinct.iter().position(|d| d == v).unwrap_or(0) as f64;
            let names = distinct.iter().map(|d| d.to_string()).collect();
            (vals.iter().map(at).collect(), false, Some(names))
        }
    }
}

/// The plots' size in pixels, and the width of the legend beside the plot.
const SIZE: (u32, u32) = (960, 500);
const LEGEND: u32 = 260;

/// Plots `figure` into the PNG `path` (drawn into an RGB buffer, written
/// atomically); nothing when no point has it.
pub fn figure(
    path: &Path,
    keys: &[String],
    figure: &str,
    rows: &[PointResult],
) -> Result<(), String> {
    let Some(p) = plot(keys, figure, rows) else {
        return Ok(());
    };
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    draw(&mut pixels, figure, &p)?;
    save(path, pixels, SIZE)
}

/// `v`'s text on an axis: `10^v` on a log axis.
fn tick(v: f64, log: bool) -> String {
    let v = if log { 10f64.powf(v) } else { v };
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    match (v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-3), s) {
        (true, _) => format!("{v:.0e}"),
        (false, "-0") => "0".into(),
        (false, s) => s.into(),
    }
}

/// Draws `p` into `pixels`: the plot on the left, the legend on the right.
fn draw(pixels: &mut [u8], figure: &str, p: &Plot) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let all = || p.lines.values().flatten();
    let (x0, x1) = bounds(all().map(|m| m.x));
    let (y0, y1) = bounds(all().flat_map(|m| m.seeds.iter().copied()));
    let root = BitMapBackend::with_buffer(pixels, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let text = font();
    let labelled = text && p.lines.len() > 1;
    let (area, legend) = root.split_horizontally(SIZE.0 - if labelled { LEGEND } else { 0 });
    let mut builder = ChartBuilder::on(&area);
    builder.margin(20);
    if text {
        builder
            .caption(
                format!("{figure} (mean over seeds, bar: lowest to highest)"),
                ("sans-serif", 20),
            )
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    // Ticks at the swept values themselves.
    let mut at: Vec<f64> = all().map(|m| m.x).collect();
    at.sort_by(f64::total_cmp);
    at.dedup();
    let mut chart = builder
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|x| e(&x))?;
    if text {
        let x_desc = format!("{}{}", p.x_key, if p.log_x { " (log)" } else { "" });
        let x_text = |v: &f64| match &p.x_names {
            Some(names) => names.get(v.round() as usize).cloned().unwrap_or_default(),
            None => tick(*v, p.log_x),
        };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(figure)
            .x_labels(0)
            .y_label_formatter(&|v| tick(*v, false))
            .draw()
            .map_err(|x| e(&x))?;
        let style = ("sans-serif", 14)
            .into_text_style(&root)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for v in &at {
            let (px, py) = chart.backend_coord(&(*v, y0));
            root.draw(&Text::new(x_text(v), (px, py + 6), style.clone()))
                .map_err(|x| e(&x))?;
        }
    }
    for (i, means) in p.lines.values().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line = means.iter().map(|m| (m.x, m.mean));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(|x| e(&x))?;
        let bars = means
            .iter()
            .map(|m| PathElement::new([(m.x, m.lo), (m.x, m.hi)], color.stroke_width(2)));
        chart.draw_series(bars).map_err(|x| e(&x))?;
        let dots = means.iter().flat_map(|m| {
            m.seeds
                .iter()
                .map(move |&y| Circle::new((m.x, y), 2, color.mix(0.5).filled()))
        });
        chart.draw_series(dots).map_err(|x| e(&x))?;
    }
    if labelled {
        draw_legend(&legend, p.lines.keys()).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// Each line's colour and label, one under the other, in `area` (beside the plot).
fn draw_legend<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    labels: impl Iterator<Item = &'a String>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (i, label) in labels.enumerate() {
        let y = 40 + 22 * i as i32;
        let color = Palette99::pick(i).to_rgba();
        area.draw(&PathElement::new([(8, y), (32, y)], color.stroke_width(3)))?;
        area.draw(&Text::new(label.clone(), (38, y - 8), ("sans-serif", 14)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(beta: &str, seed: &str, tc: &str, loss: f64) -> PointResult {
        PointResult {
            index: 0,
            name: String::new(),
            values: BTreeMap::from([
                ("model.beta".into(), beta.into()),
                ("train.seed".into(), seed.into()),
                ("model.tc_weight".into(), tc.into()),
            ]),
            figures: BTreeMap::from([("test_loss".into(), loss)]),
        }
    }

    #[test]
    fn seeds_are_a_mean_with_its_spread_and_powers_a_log_axis() {
        let keys: Vec<String> = ["train.seed", "model.beta", "model.tc_weight"]
            .map(String::from)
            .to_vec();
        let mut rows = Vec::new();
        for (beta, base) in [("1", 10.0), ("4", 20.0), ("16", 40.0)] {
            for (seed, d) in [("1", -1.0), ("2", 0.0), ("3", 4.0)] {
                rows.push(row(beta, seed, "2", base + d));
            }
        }
        let p = plot(&keys, "test_loss", &rows).unwrap();
        assert_eq!(p.x_key, "model.beta");
        assert!(p.log_x);
        let line = &p.lines["model.tc_weight=2"];
        assert_eq!(line.len(), 3);
        assert!((line[1].x - 4f64.log10()).abs() < 1e-12);
        assert_eq!((line[1].mean, line[1].lo, line[1].hi), (21.0, 19.0, 24.0));
        assert_eq!(line[1].seeds.len(), 3);
        // Values within a factor of 10: a linear axis.
        let few: Vec<PointResult> = rows
            .into_iter()
            .filter(|r| r.values["model.beta"] != "16")
            .collect();
        assert!(!plot(&keys, "test_loss", &few).unwrap().log_x);
        // A figure no point has: no plot.
        assert!(plot(&keys, "mig", &few).is_none());
    }

    #[test]
    fn ticks_read_as_numbers() {
        assert_eq!(tick(2.0, true), "100");
        assert_eq!(tick(0.25, false), "0.25");
        assert_eq!(tick(-4.0, true), "1e-4");
        assert_eq!(tick(-0.0, false), "0");
    }
}
