//! Bar charts as plain SVG, drawn on the server: no script, no library, readable without
//! JavaScript, and allowed by the content security policy (inline SVG is markup, not
//! script). A chart is geometry computed here and markup in the templates' macro.

/// Width of a chart's drawing, in SVG units (it scales to the page).
const WIDTH: i64 = 640;

/// Height of the bars' area.
const PLOT_HEIGHT: i64 = 140;

/// Space above the bars (for the maximum's label).
const TOP: i64 = 16;

/// Half the width of a label under the bars (five characters of the axis font).
const AXIS_LABEL_MARGIN: i64 = 18;

/// Labels under the bars: every this many bars, so they never overlap.
const LABEL_EVERY_BARS_MAX: usize = 8;

/// One bar.
#[derive(Debug, Clone)]
pub struct Bar {
    /// Left edge.
    pub x: i64,
    /// Top edge.
    pub y: i64,
    /// Width.
    pub w: i64,
    /// Height.
    pub h: i64,
    /// What it shows, in words (the tooltip and the accessible text).
    pub label: String,
}

/// A label under the bars.
#[derive(Debug, Clone)]
pub struct AxisLabel {
    /// Its centre.
    pub x: i64,
    /// The text.
    pub text: String,
}

/// A chart of one series.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Its heading (also the SVG's accessible name).
    pub title: String,
    /// The SVG's width.
    pub width: i64,
    /// The SVG's height.
    pub height: i64,
    /// Where the bars stand.
    pub baseline: i64,
    /// The bars.
    pub bars: Vec<Bar>,
    /// Labels under the bars.
    pub axis: Vec<AxisLabel>,
    /// The largest value, written out.
    pub max_label: String,
    /// Whether every value is zero.
    pub empty: bool,
}

impl BarChart {
    /// A chart of `points` (label, value), values written with `format`.
    pub fn new(title: &str, points: &[(String, i64)], format: impl Fn(i64) -> String) -> Self {
        let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(0);
        let count = i64::try_from(points.len().max(1)).unwrap_or(1);
        let slot = (WIDTH / count).max(1);
        let gap = (slot / 5).max(1);
        let baseline = TOP + PLOT_HEIGHT;
        let every = points.len().div_ceil(LABEL_EVERY_BARS_MAX).max(1);
        let mut bars = Vec::with_capacity(points.len());
        let mut axis = Vec::new();
        for (i, (label, value)) in points.iter().enumerate() {
            let index = i64::try_from(i).unwrap_or(0);
            let h = if max > 0 {
                // i128: a large value times the height must not overflow.
                let scaled =
                    i128::from((*value).max(0)) * i128::from(PLOT_HEIGHT) / i128::from(max);
                i64::try_from(scaled).unwrap_or(PLOT_HEIGHT)
            } else {
                0
            };
            // A non-zero value shows at least a sliver.
            let h = if *value > 0 { h.max(1) } else { h };
            let x = index * slot + gap / 2;
            bars.push(Bar {
                x,
                y: baseline - h,
                w: (slot - gap).max(1),
                h,
                label: format!("{label}: {}", format(*value)),
            });
            if i % every == 0 {
                // Kept inside the drawing, so the first and last labels are not cut.
                let centre =
                    (x + (slot - gap) / 2).clamp(AXIS_LABEL_MARGIN, WIDTH - AXIS_LABEL_MARGIN);
                axis.push(AxisLabel {
                    x: centre,
                    text: label.clone(),
                });
            }
        }
        Self {
            title: title.to_owned(),
            width: WIDTH,
            height: baseline + 20,
            baseline,
            bars,
            axis,
            max_label: format(max),
            empty: max == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let points: Vec<(String, i64)> = (1..=4).map(|d| (format!("d{d}"), d * 10)).collect();
        let chart = BarChart::new("t", &points, |v| v.to_string());
        assert_eq!(chart.bars.len(), 4);
        assert_eq!(chart.bars.last().map(|b| b.h), Some(PLOT_HEIGHT));
        assert_eq!(chart.bars.first().map(|b| b.h), Some(PLOT_HEIGHT / 4));
        assert!(chart.bars.iter().all(|b| b.y + b.h == chart.baseline));
        assert_eq!(chart.max_label, "40");
        assert!(!chart.empty);
        assert!(BarChart::new("t", &[], |v| v.to_string()).empty);
    }
}
