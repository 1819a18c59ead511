//! Time ranges as people type them, for the API's `from`/`to` and every
//! console page that takes a range: absolute times (epoch seconds, ISO 8601
//! with or without an offset) and relative ones (`15m`, `24h`, `7d`: that
//! long before now; `now`; `now-2h`). A time without an offset is read in
//! the reader's zone (the API's callers: UTC).

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use std::fmt;

/// A range as it applies: either end may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TimeRange {
    pub from: Option<f64>,
    pub to: Option<f64>,
}

/// A bound that does not parse, or a range that does not hold, naming the
/// parameter at fault (`from` or `to`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeError {
    pub param: &'static str,
    pub message: String,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.param, self.message)
    }
}

impl std::error::Error for RangeError {}

/// Longest relative span accepted (about 100 years): keeps `now - span`
/// inside the times records may have.
const MAX_SPAN_SECS: f64 = 100.0 * 366.0 * 86_400.0;

/// A relative span: digits and a unit (`s`, `m`, `h`, `d`, `w`), as in
/// `15m`, `24h`, `7d`.
pub fn parse_span(text: &str) -> Option<f64> {
    let s = text.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    let secs = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86_400.0,
        'w' => 7.0 * 86_400.0,
        _ => return None,
    };
    Some(n as f64 * secs).filter(|s| *s <= MAX_SPAN_SECS)
}

/// Whether a time is said relative to now (`15m`, `now`, `now-2h`): kept
/// as typed, it moves with the clock.
pub fn is_relative(text: &str) -> bool {
    let s = text.trim();
    s == "now" || parse_span(s.strip_prefix("now-").unwrap_or(s)).is_some()
}

/// One time: epoch seconds (`1700000000.5`), RFC 3339 / ISO 8601 with an
/// offset (`2026-12-07T14:00:00Z`, `…T21:00:00+07:00`), without one, read
/// in `tz` (`2026-12-07T14:00`, `2026-12-07 14:00:00.5`, `2026-12-07`),
/// or relative to `now` (`15m`, `now`, `now-2h`). A `+` left unencoded in
/// a URL arrives as a space: a space before the offset is read as `+`.
pub fn parse_time<Tz: TimeZone>(text: &str, tz: &Tz, now: f64) -> Result<f64, String> {
    let s = text.trim();
    let bad = || {
        format!(
            "'{}' is not a time: give ISO 8601 (2026-12-07T14:00:00Z, 2026-12-07 21:00), epoch seconds \
             or a span before now (15m, 24h, 7d)",
            s.chars().take(40).collect::<String>()
        )
    };
    if let Ok(f) = s.parse::<f64>() {
        return if f.is_finite() { Ok(f) } else { Err(bad()) };
    }
    if s == "now" {
        return Ok(now);
    }
    if let Some(span) = parse_span(s.strip_prefix("now-").unwrap_or(s)) {
        return Ok(now - span);
    }
    if s.len() > 40 {
        return Err(bad());
    }
    let secs = |d: DateTime<FixedOffset>| d.timestamp() as f64 + f64::from(d.timestamp_subsec_micros()) / 1e6;
    let plus = match s.get(10..).and_then(|t| t.rfind(' ')) {
        Some(i) if i > 0 => format!("{}+{}", &s[..10 + i], &s[10 + i + 1..]),
        _ => s.to_string(),
    };
    // `Z` for UTC where chrono's formats want an offset (`…T14:00Z`).
    let zulu = s.strip_suffix(['Z', 'z']).map(|x| format!("{x}+00:00")).unwrap_or_default();
    for t in [s, plus.as_str(), zulu.as_str()] {
        if let Ok(d) = DateTime::parse_from_rfc3339(t) {
            return Ok(secs(d));
        }
        for f in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
            if let Ok(d) = DateTime::parse_from_str(t, f) {
                return Ok(secs(d));
            }
        }
    }
    let local = |d: NaiveDateTime| -> Result<f64, String> {
        // A time the zone skips (a clock put forward) is no time there; a
        // time it repeats is its first.
        let t =
            tz.from_local_datetime(&d).earliest().ok_or_else(|| format!("{} does not exist in that time zone", d))?;
        Ok(secs(t.fixed_offset()))
    };
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return local(d);
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return local(d.and_hms_opt(0, 0, 0).ok_or_else(bad)?);
    }
    Err(bad())
}

/// A range from its two ends as typed (empty: open), checked: within the
/// times records may have and in order.
pub fn parse_range<Tz: TimeZone>(from: &str, to: &str, tz: &Tz, now: f64) -> Result<TimeRange, RangeError> {
    let one = |param: &'static str, text: &str| -> Result<Option<f64>, RangeError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        let t = parse_time(text, tz, now).map_err(|message| RangeError { param, message })?;
        if !(0.0..=crate::store::MAX_TS).contains(&t) {
            let message = format!("{} is outside the times records may have", text.trim());
            return Err(RangeError { param, message });
        }
        Ok(Some(t))
    };
    let r = TimeRange { from: one("from", from)?, to: one("to", to)? };
    if let (Some(f), Some(t)) = (r.from, r.to) {
        if f > t {
            return Err(RangeError { param: "to", message: "is before from".into() });
        }
    }
    Ok(r)
}

/// Now, as records' `ts`.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    #[test]
    fn absolute_times_with_and_without_an_offset() {
        let t = 1_796_652_882.0; // 2026-12-07T14:14:42Z
        for s in ["2026-12-07T14:14:42Z", "2026-12-07T21:14:42+07:00", "2026-12-07 21:14:42 07:00", "1796652882"] {
            assert_eq!(parse_time(s, &Utc, 0.0), Ok(t), "{s}");
        }
        // Without an offset: in the reader's zone.
        let hcm = FixedOffset::east_opt(7 * 3600).unwrap();
        assert_eq!(parse_time("2026-12-07T21:14:42", &hcm, 0.0), Ok(t));
        assert_eq!(parse_time("2026-12-07 21:14:42", &hcm, 0.0), Ok(t));
        assert_eq!(parse_time("2026-12-07T14:14:42", &Utc, 0.0), Ok(t));
        assert_eq!(parse_time("2026-12-07", &hcm, 0.0), Ok(1_796_576_400.0));
        assert_eq!(parse_time("2026-12-07T14:14:42.25Z", &Utc, 0.0), Ok(t + 0.25));
        assert_eq!(parse_time("2026-12-07T14:14Z", &hcm, 0.0), Ok(t - 42.0));
    }

    #[test]
    fn relative_times_count_back_from_now() {
        let now = 1_000_000.0;
        assert_eq!(parse_time("15m", &Utc, now), Ok(now - 900.0));
        assert_eq!(parse_time("24h", &Utc, now), Ok(now - 86_400.0));
        assert_eq!(parse_time("7d", &Utc, now), Ok(now - 7.0 * 86_400.0));
        assert_eq!(parse_time("now-2h", &Utc, now), Ok(now - 7200.0));
        assert_eq!(parse_time("now", &Utc, now), Ok(now));
        assert!(is_relative("15m") && is_relative("now-2h") && is_relative(" now "));
        assert!(!is_relative("2026-12-07") && !is_relative("1700000000"));
        for bad in ["15x", "m", "-5m", "yesterday", "2026-13-01", "9999999999999999999999d", "NaN", ""] {
            assert!(parse_time(bad, &Utc, now).unwrap_err().contains("is not a time"), "{bad}");
        }
    }

    #[test]
    fn ranges_name_the_parameter_at_fault() {
        let now = 1_796_652_882.0;
        let r = parse_range("1h", "", &Utc, now).unwrap();
        assert_eq!(r, TimeRange { from: Some(now - 3600.0), to: None });
        assert_eq!(parse_range("", "", &Utc, now).unwrap(), TimeRange::default());
        assert_eq!(parse_range("x", "", &Utc, now).unwrap_err().param, "from");
        assert_eq!(parse_range("", "later", &Utc, now).unwrap_err().param, "to");
        assert_eq!(parse_range("1h", "2h", &Utc, now).unwrap_err().param, "to");
        assert_eq!(parse_range("2200-01-01", "", &Utc, now).unwrap_err().param, "from");
    }
}
