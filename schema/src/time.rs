use serde::{Serialize, Serializer};
use std::fmt;

/// A point in time, microseconds since the Unix epoch.
///
/// Zeek logs times with microsecond precision; keeping an integer avoids the
/// rounding drift of summing `f64` seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub i64);

/// A span of time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval(pub i64);

impl Time {
    pub fn from_secs_micros(secs: i64, micros: i64) -> Self {
        Time(secs.saturating_mul(1_000_000).saturating_add(micros))
    }
    pub fn micros(self) -> i64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
    pub fn since(self, earlier: Time) -> Interval {
        Interval(self.0.saturating_sub(earlier.0))
    }
    pub fn plus(self, d: Interval) -> Time {
        Time(self.0.saturating_add(d.0))
    }
}

impl Interval {
    pub const fn from_secs(s: i64) -> Self {
        Interval(s * 1_000_000)
    }
    pub fn micros(self) -> i64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

/// Writes `secs.micros` with six decimals, as Zeek's JSON writer does.
fn write_fixed6(f: &mut impl fmt::Write, micros: i64) -> fmt::Result {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    write!(f, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_fixed6(f, self.0)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_fixed6(f, self.0)
    }
}

fn serialize_fixed6<S: Serializer>(micros: i64, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = String::with_capacity(24);
    // Writing into a String cannot fail.
    let _ = write_fixed6(&mut buf, micros);
    let raw = serde_json::value::RawValue::from_string(buf).map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fixed6(self.0, s)
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fixed6(self.0, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_six_decimals() {
        assert_eq!(Time(1_362_692_526_869_344).to_string(), "1362692526.869344");
        assert_eq!(Interval(54).to_string(), "0.000054");
        assert_eq!(Interval(-1).to_string(), "-0.000001");
        assert_eq!(serde_json::to_string(&Interval(5_000_000)).unwrap(), "5.000000");
    }
}
