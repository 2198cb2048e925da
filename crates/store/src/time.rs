//! Timestamps as the APIs print them, without a calendar crate: seed 003 writes
//! RFC 3339 in UTC (`2026-01-26T10:00:00Z`); ZStack's Gson writes Java's default
//! date form (`Jan 26, 2026 10:00:00 AM`), which its SDKs parse.

/// (year, month 1..12, day 1..31) of a day count since 1970-01-01, by Howard
/// Hinnant's `civil_from_days`.
fn civil(days: i64) -> (i64, u32, u32) {
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

fn split(secs: f64) -> ((i64, u32, u32), u32, u32, u32) {
    let secs = secs.floor() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    (civil(days), rest / 3600, rest / 60 % 60, rest % 60)
}

/// Days since 1970-01-01 of a civil date (Hinnant's `days_from_civil`).
fn days(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A date as a ZStack query gives one, in seconds since the epoch (UTC):
/// milliseconds since the epoch (ZStack's own timestamps), `2026-01-26
/// 10:00:00[.fff]` (Java's `Timestamp` form), `2026-01-26`, or RFC 3339's
/// `2026-01-26T10:00:00Z`.
pub fn parse_date(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms as f64 / 1000.0);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, clock) = match text.split_once([' ', 'T']) {
        Some((d, c)) => (d, Some(c)),
        None => (text, None),
    };
    let mut ymd = date.splitn(3, '-').map(str::parse::<u32>);
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || date.len() != 10 {
        return None;
    }
    let secs = match clock {
        None => 0.0,
        Some(c) => {
            let (hms, frac) = c.split_once('.').unwrap_or((c, ""));
            let mut parts = hms.splitn(3, ':').map(str::parse::<u32>);
            let (h, mi, s) = (
                parts.next()?.ok()?,
                parts.next()?.ok()?,
                parts.next()?.ok()?,
            );
            if h > 23 || mi > 59 || s > 60 || !frac.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let frac: f64 = format!("0.{frac}0").parse().ok()?;
            f64::from(h * 3600 + mi * 60 + s) + frac
        }
    };
    Some(days(i64::from(y), m, d) as f64 * 86_400.0 + secs)
}

/// `2026-01-26T10:00:00Z`.
pub fn rfc3339(secs: f64) -> String {
    let ((y, mo, d), h, mi, s) = split(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `Jan 26, 2026 10:00:00 AM` (UTC).
pub fn zstack_date(secs: f64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let ((y, mo, d), h, mi, s) = split(secs);
    let (h12, half) = match h {
        0 => (12, "AM"),
        1..=11 => (h, "AM"),
        12 => (12, "PM"),
        _ => (h - 12, "PM"),
    };
    format!(
        "{} {d}, {y} {h12}:{mi:02}:{s:02} {half}",
        MONTHS[mo as usize - 1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        // 2026-01-26T10:00:00Z, seed 003's example.
        assert_eq!(rfc3339(1_769_421_600.0), "2026-01-26T10:00:00Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00Z");
        assert_eq!(zstack_date(1_769_421_600.0), "Jan 26, 2026 10:00:00 AM");
        for text in [
            "2026-01-26 10:00:00",
            "2026-01-26T10:00:00Z",
            "1769421600000",
        ] {
            assert_eq!(parse_date(text), Some(1_769_421_600.0), "{text}");
        }
        assert_eq!(parse_date("2000-02-29"), Some(951_782_400.0));
        assert_eq!(parse_date("2026-01-26 10:00:00.5"), Some(1_769_421_600.5));
        for bad in [
            "2026-13-01",
            "yesterday",
            "2026-01-26 25:00:00",
            "26-01-2026",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(zstack_date(1_769_464_800.0), "Jan 26, 2026 10:00:00 PM");
        assert_eq!(zstack_date(951_782_400.0), "Feb 29, 2000 12:00:00 AM");
    }
}
