//! A sweep's plots (`plotters`): one PNG per final figure, the figure
//! against the first swept key (its values, or their positions when they
//! are not numbers), one line per combination of the other swept keys.
//! Text uses a system TrueType font (DejaVu Sans, which `scripts/setup.sh`
//! installs); without one the plot has no text.
use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::point::PointResult;
use crate::study::figures::{bounds, font, save};

/// The x coordinate of each point: the first axis's value when every one
/// is a number, else its position among the axis's values.
fn xs(keys: &[String], rows: &[PointResult]) -> Vec<f64> {
    let Some(first) = keys.first() else {
        return rows.iter().map(|r| r.index as f64).collect();
    };
    let vals: Vec<&str> = rows
        .iter()
        .map(|r| r.values.get(first).map_or("", String::as_str))
        .collect();
    let nums: Option<Vec<f64>> = vals.iter().map(|v| v.parse().ok()).collect();
    nums.unwrap_or_else(|| {
        let mut distinct: Vec<&str> = Vec::new();
        for v in &vals {
            if !distinct.contains(v) {
                distinct.push(v);
            }
        }
        vals.iter()
            .map(|v| distinct.iter().position(|d| d == v).unwrap_or(0) as f64)
            .collect()
    })
}

/// The plots' size in pixels.
const SIZE: (u32, u32) = (800, 500);

/// Plots `figure` against the first swept key into the PNG `path`
/// (drawn into an RGB buffer, written atomically).
pub fn figure(
    path: &Path,
    keys: &[String],
    figure: &str,
    rows: &[PointResult],
) -> Result<(), String> {
    let mut pixels = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    if !draw(&mut pixels, keys, figure, rows)? {
        return Ok(());
    }
    save(path, pixels, SIZE)
}

/// Draws the plot into `pixels`; whether there was anything to draw.
fn draw(
    pixels: &mut [u8],
    keys: &[String],
    figure: &str,
    rows: &[PointResult],
) -> Result<bool, String> {
    let x = xs(keys, rows);
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (r, &xi) in rows.iter().zip(&x) {
        let Some(&y) = r.figures.get(figure) else {
            continue;
        };
        let label = keys
            .iter()
            .skip(1)
            .map(|k| format!("{k}={}", r.values.get(k).map_or("", String::as_str)))
            .collect::<Vec<_>>()
            .join(",");
        series.entry(label).or_default().push((xi, y));
    }
    let pts: Vec<(f64, f64)> = series.values().flatten().copied().collect();
    if pts.is_empty() {
        return Ok(false);
    }
    let (x0, x1) = bounds(pts.iter().map(|p| p.0));
    let (y0, y1) = bounds(pts.iter().map(|p| p.1));
    let root = BitMapBackend::with_buffer(pixels, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let text = font();
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(figure, ("sans-serif", 24))
            .x_label_area_size(40)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| e.to_string())?;
    if text {
        chart
            .configure_mesh()
            .x_desc(keys.first().map_or("point", String::as_str))
            .y_desc(figure)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    for (i, (label, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(i).to_rgba();
        let line = chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        if text && !label.is_empty() {
            line.label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    if text && keys.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(true)
}
