//! How answers are printed: tables for people, pretty JSON for values and for `--json`.
//! Colour only when stdout is a terminal and `NO_COLOR` is not set.

use std::fmt::Write as _;
use std::io::IsTerminal;

use serde_json::Value;

/// Whether to colour what goes to stdout.
pub fn colour_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether to colour what goes to stderr.
pub fn colour_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `value` as indented JSON.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `text` in the colour that goes with run status `status`, if `colour`.
pub fn status_coloured(status: &str, colour: bool) -> String {
    let code = match status {
        "completed" => "32",                              // green
        "running" | "waiting" => "36",                    // cyan
        "returned_err" | "blocked" | "cancelled" => "33", // yellow
        "failed" | "faulted" => "31",                     // red
        _ => "",
    };
    paint(status, code, colour)
}

/// `text` with ANSI colour `code` when `colour` (and a code) is given.
pub fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour && !code.is_empty() {
        format!("\u{1b}[{code}m{text}\u{1b}[0m")
    } else {
        text.to_string()
    }
}

/// A table: a header row and rows of cells, columns padded to their widest cell (the
/// last column is not padded). Colour codes in cells do not count toward widths.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| visible_len(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(visible_len(cell));
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(visible_len(cell)) + 2;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Characters shown of `text`: without ANSI colour sequences.
fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

/// A time in ms since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm` UTC.
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// The calendar date of day `days` after 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day number (days after 1970-01-01) of a calendar date; the inverse of
/// [`civil_from_days`].
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A page of runs (`{"runs", "next"}`) as a table.
pub fn runs_table(page: &Value, colour: bool) -> String {
    let rows: Vec<Vec<String>> = page["runs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|run| {
            vec![
                text(&run["run_id"]),
                text(&run["workflow"]),
                text(&run["version"]),
                status_coloured(run["status"].as_str().unwrap_or("?"), colour),
                text(&run["steps"]),
                run["created_at_ms"].as_u64().map(time).unwrap_or_default(),
                run["updated_at_ms"].as_u64().map(time).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "RUN ID", "WORKFLOW", "VERSION", "STATUS", "STEPS", "CREATED", "UPDATED",
        ],
        &rows,
    )
}

/// The workflows (`{"workflows": [...]}`) as a table: name, input type and the signals
/// each waits for with their types.
pub fn workflows_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["workflows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|w| {
            let mut signals: Vec<String> = w["signals"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| match s["type"].as_str() {
                    Some(ty) => format!("{}: {ty}", text(&s["name"])),
                    None => text(&s["name"]),
                })
                .collect();
            if w["signals_closed"] == false {
                signals.push("(and names not known in advance)".into());
            }
            vec![text(&w["name"]), text(&w["input_type"]), signals.join(", ")]
        })
        .collect();
    table(&["WORKFLOW", "INPUT TYPE", "SIGNALS"], &rows)
}

/// The task queues (as `GET /v1/queues` lists them) as a table: tasks waiting, tasks
/// leased, and the workers seen lately.
pub fn queues_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list["queues"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|q| {
            let workers: Vec<String> = q["workers"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(text)
                .collect();
            let live = match workers.len() {
                0 => "none".to_string(),
                n => format!("{n}: {}", workers.join(", ")),
            };
            vec![
                text(&q["name"]),
                text(&q["pending"]),
                text(&q["leased"]),
                live,
            ]
        })
        .collect();
    table(
        &["QUEUE", "PENDING", "LEASED", "WORKERS (SEEN IN 90 S)"],
        &rows,
    )
}

/// One run (as `GET /v1/runs/{id}` shows it) for people.
pub fn run_details(run: &Value, colour: bool) -> String {
    let mut out = String::new();
    let bold = |s: &str| paint(s, "1", colour);
    let status = run["status"].as_str().unwrap_or("?");
    let _ = writeln!(out, "{} {}", bold("run:     "), text(&run["run_id"]));
    let _ = writeln!(
        out,
        "{} {} (version {})",
        bold("workflow:"),
        text(&run["workflow"]),
        text(&run["version"])
    );
    let _ = writeln!(
        out,
        "{} {}",
        bold("status:  "),
        status_coloured(status, colour)
    );
    if let Some(reason) = run["reason"].as_str() {
        let _ = writeln!(out, "{} {reason}", bold("reason:  "));
    }
    let _ = writeln!(out, "{} {}", bold("steps:   "), text(&run["steps"]));
    if let Some(ms) = run["created_at_ms"].as_u64() {
        let _ = writeln!(out, "{} {} UTC", bold("created: "), time(ms));
    }
    if let Some(ms) = run["updated_at_ms"].as_u64() {
        let _ = writeln!(out, "{} {} UTC", bold("updated: "), time(ms));
    }
    let _ = writeln!(
        out,
        "{}\n{}",
        bold("input:"),
        indent(&pretty(&run["input"]))
    );
    if !run["output"].is_null() || status == "completed" || status == "returned_err" {
        let _ = writeln!(
            out,
            "{}\n{}",
            bold("output:"),
            indent(&pretty(&run["output"]))
        );
    }
    match run["pending"].as_object() {
        None => {
            let _ = writeln!(out, "{} none", bold("pending: "));
        }
        Some(pending) => {
            let _ = writeln!(
                out,
                "{} step {} {} (scheduled {} UTC)",
                bold("pending: "),
                text(&pending["step"]),
                text(&pending["name"]),
                pending["scheduled_at_ms"]
                    .as_u64()
                    .map(time)
                    .unwrap_or_default()
            );
            if let Some(attempt) = pending["attempt"].as_u64() {
                let _ = writeln!(out, "{} {attempt}", bold("  attempt:   "));
            }
            if let Some(error) = pending["last_error"].as_str() {
                let _ = writeln!(
                    out,
                    "{} {}",
                    bold("  last error:"),
                    paint(error, "31", colour)
                );
            }
            if let Some(ms) = pending["retry_at_ms"].as_u64() {
                let _ = writeln!(out, "{} {} UTC", bold("  retry at:  "), time(ms));
            }
        }
    }
    out
}

/// History events as a table: sequence number, time, type and the other fields as
/// compact JSON.
pub fn history_table(events: &[Value], header: bool) -> String {
    let rows: Vec<Vec<String>> = events.iter().map(event_row).collect();
    let table = table(&["SEQ", "TIME", "EVENT", "DETAILS"], &rows);
    match header {
        true => table,
        // Following: the header was printed with the first batch; widths may differ.
        false => table.lines().skip(1).map(|l| format!("{l}\n")).collect(),
    }
}

fn event_row(event: &Value) -> Vec<String> {
    let details: serde_json::Map<String, Value> = event
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "seq" | "at_ms" | "type"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    vec![
        text(&event["seq"]),
        event["at_ms"].as_u64().map(time).unwrap_or_default(),
        text(&event["type"]),
        if details.is_empty() {
            String::new()
        } else {
            shortened(&Value::Object(details).to_string(), MAX_DETAILS)
        },
    ]
}

/// Characters of an event's details a history table shows (`--json` shows all).
const MAX_DETAILS: usize = 120;

/// `text` cut to `max` characters, with `…` where it was cut.
/// How `flow locals` names a saved local: its source name, its type when the source spells
/// it, and its slot (`total: u64 (slot 2)`); by its slot alone (`slot 2`) when the server
/// or journal reader does not register the code that saved it.
fn local_label(local: &Value) -> String {
    let slot = text(&local["slot"]);
    match (local["name"].as_str(), local["type"].as_str()) {
        (Some(name), Some(ty)) => format!("{name}: {ty} (slot {slot})"),
        (Some(name), None) => format!("{name} (slot {slot})"),
        (None, _) => format!("slot {slot}"),
    }
}

/// Steps with their saved locals, as `flow locals` prints them: a line per step (its
/// number, what it awaited, when it was scheduled and completed), then each local by its
/// source name (and slot) and the step's output, as indented JSON.
pub fn locals_text(steps: &[Value]) -> String {
    let mut out = String::new();
    for step in steps {
        let completed = match step["completed"]["at_ms"].as_u64() {
            Some(ms) => format!("completed {}", time(ms)),
            None => "not completed".to_string(),
        };
        let scheduled = step["scheduled"]["at_ms"]
            .as_u64()
            .map_or_else(String::new, |ms| format!("scheduled {}, ", time(ms)));
        out.push_str(&format!(
            "step {} {} (state s{}; {scheduled}{completed})\n",
            text(&step["step"]),
            text(&step["name"]),
            text(&step["state"]),
        ));
        match step["locals"].as_array() {
            None => out.push_str("  (no saved locals: recorded before flow kept step states)\n"),
            Some(locals) if locals.is_empty() => out.push_str("  (no locals live across it)\n"),
            Some(locals) => {
                for local in locals {
                    let value = pretty(&local["value"]);
                    out.push_str(&format!(
                        "  {} = {}\n",
                        local_label(local),
                        indent(&value).trim_start()
                    ));
                }
            }
        }
        if !step["completed"].is_null() {
            let output = pretty(&step["completed"]["output"]);
            out.push_str(&format!("  output = {}\n", indent(&output).trim_start()));
        }
    }
    if steps.is_empty() {
        out.push_str("no steps scheduled yet\n");
    }
    out
}

fn shortened(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// A JSON value as plain text: strings without quotes.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(time(0), "1970-01-01 00:00:00.000");
        assert_eq!(time(951_827_696_789), "2000-02-29 12:34:56.789");
        for days in [-1000, 0, 59, 10_957, 20_000, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn locals_are_printed_by_source_name_with_their_slot() {
        let steps = [serde_json::json!({
            "step": 3, "name": "ship", "state": 2, "scheduled": null, "completed": null,
            "locals": [
                {"slot": 2, "name": "total", "type": "u64", "value": 400},
                {"slot": 5, "name": "x#2", "type": null, "value": "b"},
                {"slot": 7, "name": null, "type": null, "value": true},
            ],
        })];
        assert_eq!(
            locals_text(&steps),
            "step 3 ship (state s2; not completed)\n  total: u64 (slot 2) = 400\n  \
             x#2 (slot 5) = \"b\"\n  slot 7 = true\n"
        );
    }

    #[test]
    fn long_details_are_cut_on_a_character_boundary() {
        assert_eq!(shortened("abc", 3), "abc");
        assert_eq!(shortened("ééééé", 2), "éé…");
    }

    #[test]
    fn tables_pad_columns_to_their_widest_cell_ignoring_colour() {
        let rows = vec![
            vec!["a".to_string(), paint("long", "31", true), "x".into()],
            vec!["bbb".to_string(), "s".to_string(), "y".into()],
        ];
        let out = table(&["A", "B", "C"], &rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "A    B     C");
        assert_eq!(lines[1], "a    \u{1b}[31mlong\u{1b}[0m  x");
        assert_eq!(lines[2], "bbb  s     y");
    }
}
