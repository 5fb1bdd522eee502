//! The times `--since` and `--until` take: ms since the Unix epoch, a UTC date, or an age.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::CliError;
use crate::output::days_from_civil;

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `text` as ms since the Unix epoch: digits are taken as such; `90s`, `15m`, `2h`, `7d`
/// as that long before `now_ms`; `YYYY-MM-DD`, optionally with `THH:MM[:SS]` and a
/// trailing `Z`, as that UTC time. `option` names the option in the error.
pub fn parse(text: &str, now_ms: u64, option: &str) -> Result<u64, CliError> {
    let text = text.trim();
    let wrong = || {
        CliError::usage(format!(
            "{option} `{text}` is not a time; give milliseconds since the Unix epoch, a UTC \
             date (2026-12-01 or 2026-12-01T10:30:00Z) or an age (90s, 15m, 2h, 7d)"
        ))
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| wrong());
    }
    if let Some(unit) = text.chars().last().filter(|c| "smhd".contains(*c)) {
        let number = &text[..text.len() - 1];
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            let amount: u64 = number.parse().map_err(|_| wrong())?;
            let unit_ms = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return Ok(now_ms.saturating_sub(amount.saturating_mul(unit_ms)));
        }
    }
    date(text).ok_or_else(wrong)
}

/// `YYYY-MM-DD[(T| )HH:MM[:SS]][Z]` as ms since the Unix epoch, UTC.
fn date(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (day, clock) = match text.split_once(['T', ' ']) {
        Some((day, clock)) => (day, Some(clock)),
        None => (text, None),
    };
    let mut parts = day.split('-');
    let year: i64 = number(parts.next()?, 4)?;
    let month: u32 = number(parts.next()?, 2)?;
    let dom: u32 = number(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&dom) {
        return None;
    }
    let (mut h, mut m, mut s) = (0u64, 0u64, 0u64);
    if let Some(clock) = clock {
        let mut parts = clock.split(':');
        h = number(parts.next()?, 2)?;
        m = number(parts.next()?, 2)?;
        if let Some(sec) = parts.next() {
            s = number(sec, 2)?;
        }
        if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
            return None;
        }
    }
    let days = u64::try_from(days_from_civil(year, month, dom)).ok()?;
    Some(((days * 86_400) + h * 3600 + m * 60 + s) * 1000)
}

fn number<T: std::str::FromStr>(text: &str, digits: usize) -> Option<T> {
    (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_epoch_ms_dates_or_ages() {
        let now = 1_000_000_000_000;
        assert_eq!(
            parse("1700000000000", now, "--since").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(parse("90s", now, "--since").unwrap(), now - 90_000);
        assert_eq!(parse("2h", now, "--since").unwrap(), now - 7_200_000);
        assert_eq!(parse("7d", now, "--since").unwrap(), now - 7 * 86_400_000);
        assert_eq!(
            parse("2000-02-29", now, "--since").unwrap(),
            951_782_400_000
        );
        assert_eq!(
            parse("2000-02-29T12:34:56Z", now, "--since").unwrap(),
            951_827_696_000
        );
        assert_eq!(
            parse("2000-02-29 12:34", now, "--since").unwrap(),
            951_827_640_000
        );
        for wrong in [
            "",
            "yesterday",
            "2000-13-01",
            "2000-02-29T25:00",
            "5w",
            "-3h",
        ] {
            let e = parse(wrong, now, "--until").unwrap_err();
            assert_eq!(e.code, crate::error::EXIT_USAGE, "{wrong}");
            assert!(e.message.contains("--until"), "{}", e.message);
        }
    }
}
