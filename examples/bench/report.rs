//! The results table: one line per measured number, each beside the reference it is
//! divided by (measured in the same process and run) and the target it is judged by.

use std::fmt::Write as _;
use std::time::Duration;

/// Whether a line meets its target.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// Reported for context; no target.
    Info,
}

/// One line of the table.
pub struct Line {
    pub row: &'static str,
    pub what: String,
    pub value: String,
    pub reference: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

/// The whole report: the lines and the notes that explain them.
#[derive(Default)]
pub struct Report {
    pub lines: Vec<Line>,
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a line without a target.
    pub fn info(&mut self, row: &'static str, what: impl Into<String>, value: impl Into<String>) {
        self.push(row, what, value, "", "", "", Verdict::Info);
    }

    /// Adds a line.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        row: &'static str,
        what: impl Into<String>,
        value: impl Into<String>,
        reference: impl Into<String>,
        ratio: impl Into<String>,
        target: impl Into<String>,
        verdict: Verdict,
    ) {
        self.lines.push(Line {
            row,
            what: what.into(),
            value: value.into(),
            reference: reference.into(),
            ratio: ratio.into(),
            target: target.into(),
            verdict,
        });
    }

    /// Adds a note printed under the table.
    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The table as Markdown (readable as plain text too).
    pub fn table(&self) -> String {
        let header = [
            "#",
            "measure",
            "value",
            "reference (same run)",
            "ratio",
            "target",
            "ok",
        ];
        let rows: Vec<[String; 7]> = self
            .lines
            .iter()
            .map(|l| {
                let ok = match l.verdict {
                    Verdict::Met => "yes",
                    Verdict::Missed => "NO",
                    Verdict::Info => "",
                };
                [
                    l.row.to_string(),
                    l.what.clone(),
                    l.value.clone(),
                    l.reference.clone(),
                    l.ratio.clone(),
                    l.target.clone(),
                    ok.to_string(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            out.push('|');
            for (cell, w) in cells.iter().zip(widths) {
                let _ = write!(out, " {cell:<w$} |");
            }
            out.push('\n');
        };
        line(&header.map(String::from));
        line(&widths.map(|w| "-".repeat(w)));
        for r in &rows {
            line(r);
        }
        out
    }
}

/// "12,345" for counts.
pub fn count(n: f64) -> String {
    let n = n.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate: "12,345/s".
pub fn rate(per_second: f64) -> String {
    format!("{}/s", count(per_second))
}

/// A duration with a unit that fits: "850 ns", "12.3 µs", "4.56 ms", "1.23 s".
pub fn dur(d: Duration) -> String {
    let ns = d.as_nanos() as f64;
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1_000_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// Bytes with a binary unit: "512 B", "3.4 KiB", "12.0 MiB".
pub fn bytes(b: f64) -> String {
    if b < 1024.0 {
        format!("{b:.0} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

/// "2.35x".
pub fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

/// Met if `ok`, else Missed.
pub fn judge(ok: bool) -> Verdict {
    if ok {
        Verdict::Met
    } else {
        Verdict::Missed
    }
}
