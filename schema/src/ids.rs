use serde::{Serialize, Serializer};
use std::fmt;

/// Zeek-style connection identifier: `C` followed by 96 bits in base 62.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowUid(pub u128);

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl FlowUid {
    /// Keeps the low 96 bits, the width of Zeek's uids.
    pub fn new(bits: u128) -> Self {
        FlowUid(bits & ((1u128 << 96) - 1))
    }

    /// Renders with a one-letter prefix (`C` for connections, `F` for files).
    pub fn render(self, prefix: char) -> String {
        let mut digits = [0u8; 24];
        let mut n = self.0;
        let mut len = 0;
        while n > 0 || len == 0 {
            digits[len] = BASE62[(n % 62) as usize];
            n /= 62;
            len += 1;
        }
        let mut s = String::with_capacity(len + 1);
        s.push(prefix);
        for d in digits[..len].iter().rev() {
            s.push(*d as char);
        }
        s
    }
}

impl fmt::Display for FlowUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render('C'))
    }
}

impl Serialize for FlowUid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.render('C'))
    }
}

/// Name of the sensor that produced a record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SensorId(pub String);

impl Default for SensorId {
    fn default() -> Self {
        SensorId("sensor".into())
    }
}

impl fmt::Display for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_shape() {
        let u = FlowUid::new(u128::MAX);
        let s = u.to_string();
        assert!(s.starts_with('C'));
        assert!(s.len() <= 18, "{s}");
        assert_eq!(FlowUid::new(0).to_string(), "C0");
    }
}
