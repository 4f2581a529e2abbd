//! Line charts as SVG, drawn on the server.
//!
//! Why not a JavaScript chart library: the pages then need no script at
//! all (the Content-Security-Policy forbids every script), nothing from
//! outside has to be vetted, bundled and kept up to date, and a chart is
//! part of the page as it arrives: readable without JavaScript, printable,
//! and testable by reading the markup. The charts here are simple (one
//! series, a time axis, an optional limit line), which a hundred lines draw.
//!
//! The SVG is written here as text, and every text in it goes through
//! [`esc`]: a page splices a [`Chart`] in as markup.

use std::fmt::Write;

use maud::Render;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// One chart: `values` are (unix time, value or a gap); drawn from `from`
/// to `to`. `limit` draws a dashed line (the allocation). `label` formats
/// a value for the axis.
pub struct Chart<'a> {
    pub title: &'a str,
    pub values: Vec<(i64, Option<f64>)>,
    pub from: i64,
    pub to: i64,
    pub limit: Option<f64>,
    pub label: &'a dyn Fn(f64) -> String,
}

impl Chart<'_> {
    pub fn svg(&self) -> String {
        let known: Vec<(i64, f64)> = self
            .values
            .iter()
            .filter_map(|(t, v)| v.map(|v| (*t, v)))
            .collect();
        let top = known
            .iter()
            .map(|(_, v)| *v)
            .chain(self.limit)
            .fold(0.0f64, f64::max);
        let top = if top > 0.0 { top * 1.1 } else { 1.0 };
        let span = (self.to - self.from).max(1) as f64;
        let x = |t: i64| LEFT + (t - self.from) as f64 / span * (WIDTH - LEFT - RIGHT);
        let y = |v: f64| TOP + (1.0 - v / top) * (HEIGHT - TOP - BOTTOM);

        let mut out = format!(
            "<figure class=\"chart\"><figcaption>{}</figcaption>\
             <svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" data-samples=\"{}\">",
            esc(self.title),
            esc(&format!("{}: {} samples", self.title, known.len())),
            known.len()
        );
        // Grid and value axis: 0, a half and the top.
        for fraction in [0.0, 0.5, 1.0] {
            let v = top / 1.1 * fraction;
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 4.0,
                y(v) + 4.0,
                esc(&(self.label)(v)),
                y = y(v)
            );
        }
        // Time axis: the start, the middle and the end.
        for (t, anchor) in [
            (self.from, "start"),
            (self.from + (self.to - self.from) / 2, "middle"),
            (self.to, "end"),
        ] {
            let _ = write!(
                out,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
                x(t),
                HEIGHT - 6.0,
                esc(&time_label(t, self.to - self.from))
            );
        }
        if let Some(limit) = self.limit {
            let _ = write!(
                out,
                "<line class=\"limit\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"><title>limit {}</title></line>",
                WIDTH - RIGHT,
                esc(&(self.label)(limit)),
                y = y(limit)
            );
        }
        // The series: one path, broken where a value is missing.
        let mut path = String::new();
        let mut pen_down = false;
        for (t, v) in &self.values {
            match v {
                Some(v) => {
                    let _ = write!(
                        path,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(*t),
                        y(*v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(out, "<path class=\"series\" d=\"{}\"/>", path.trim_end());
        }
        // Few samples: each one a dot too, so two samples are seen as two.
        if known.len() <= 120 {
            for (t, v) in &known {
                let _ = write!(
                    out,
                    "<circle class=\"sample\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"><title>{}</title></circle>",
                    x(*t),
                    y(*v),
                    esc(&(self.label)(*v))
                );
            }
        }
        if known.is_empty() {
            let _ = write!(
                out,
                "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no samples in this range</text>",
                WIDTH / 2.0,
                HEIGHT / 2.0
            );
        }
        out.push_str("</svg></figure>");
        out
    }
}

/// A chart is spliced into a page as it is: [`Chart::svg`] escapes what it
/// embeds.
impl Render for Chart<'_> {
    fn render_to(&self, buffer: &mut String) {
        buffer.push_str(&self.svg());
    }
}

/// A time on the axis: the clock (UTC) for a range under two days, the
/// date and hour beyond.
fn time_label(t: i64, range: i64) -> String {
    let day = t.div_euclid(86_400);
    let seconds = t.rem_euclid(86_400);
    let (h, m) = (seconds / 3600, seconds % 3600 / 60);
    if range < 2 * 86_400 {
        format!("{h:02}:{m:02}")
    } else {
        let (_, month, d) = civil(day);
        format!("{month:02}-{d:02} {h:02}h")
    }
}

/// `text` safe inside an element or a double-quoted attribute: maud's
/// escaping, as every other splice of the pages gets.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    text.render_to(&mut out);
    out
}

/// The (year, month, day) of a day number since 1970-01-01 (Howard
/// Hinnant's civil-from-days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(values: Vec<(i64, Option<f64>)>) -> String {
        Chart {
            title: "Memory <used>",
            values,
            from: 0,
            to: 100,
            limit: Some(10.0),
            label: &|v| format!("{v:.0}"),
        }
        .svg()
    }

    #[test]
    fn samples_are_dots_on_one_path_broken_at_gaps() {
        let svg = chart(vec![
            (0, Some(1.0)),
            (50, None),
            (60, Some(5.0)),
            (100, Some(2.0)),
        ]);
        assert!(svg.contains("data-samples=\"3\""));
        assert_eq!(svg.matches("<circle").count(), 3);
        let path = svg.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert!(svg.contains("Memory &lt;used&gt;"));
        assert!(svg.contains("class=\"limit\""));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = chart(vec![]);
        assert!(svg.contains("no samples in this range"));
        assert!(svg.contains("data-samples=\"0\""));
    }

    #[test]
    fn dates_on_the_axis() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_454), (2026, 1, 1));
        assert_eq!(time_label(3600 + 120, 3600), "01:02");
        assert_eq!(time_label(20_454 * 86_400 + 7200, 7 * 86_400), "01-01 02h");
    }
}
