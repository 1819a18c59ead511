//! Field access by Zeek name, over a live record (the detector's
//! [`FlatRecord`]) or a stored one (JSON from the SIEM). The models read
//! records only through this trait, so live and hunting runs share every
//! line of model code.

use crate::flat::FlatRecord;
use schema::Time;
use serde_json::{Map, Value as Json};
use std::borrow::Cow;
use std::net::IpAddr;

pub trait Fields {
    /// The first value of a field as text (numbers in decimal).
    fn text(&self, name: &str) -> Option<Cow<'_, str>>;
    fn num(&self, name: &str) -> Option<f64>;
    /// Every element of a list field (or the one value of a scalar).
    fn texts(&self, name: &str) -> Vec<String>;

    fn time(&self, name: &str) -> Option<Time> {
        self.num(name).filter(|f| f.is_finite()).map(|f| Time((f * 1e6).round() as i64))
    }

    fn ip(&self, name: &str) -> Option<IpAddr> {
        self.text(name)?.parse().ok()
    }

    /// The field equals `want` (text comparison, no allocation for text).
    fn is(&self, name: &str, want: &str) -> bool {
        self.text(name).is_some_and(|v| v == want)
    }

    fn port(&self, name: &str) -> Option<u16> {
        self.num(name).filter(|p| (0.0..=65535.0).contains(p)).map(|p| p as u16)
    }

    fn flag(&self, name: &str) -> Option<bool> {
        match self.text(name)?.as_ref() {
            "true" | "T" => Some(true),
            "false" | "F" => Some(false),
            _ => None,
        }
    }
}

/// The first value of a field; a linear scan beats hashing for the ~20
/// fields of a record.
fn first(f: &FlatRecord, name: &str) -> Option<crate::flat::Value> {
    f.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

impl Fields for FlatRecord {
    fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        let v = first(self, name)?;
        match self.str(v) {
            Some(s) => Some(Cow::Borrowed(s)),
            None => {
                let mut buf = String::new();
                Some(Cow::Owned(self.text_of(v, &mut buf).to_string()))
            }
        }
    }

    fn num(&self, name: &str) -> Option<f64> {
        first(self, name).and_then(|v| self.num_of(v))
    }

    fn texts(&self, name: &str) -> Vec<String> {
        let mut buf = String::new();
        self.get(name).map(|v| self.text_of(v, &mut buf).to_string()).collect()
    }
}

fn json_text(v: &Json) -> Option<Cow<'_, str>> {
    match v {
        Json::String(s) => Some(Cow::Borrowed(s)),
        Json::Number(n) => Some(Cow::Owned(n.to_string())),
        Json::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

impl Fields for Map<String, Json> {
    fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.get(name)? {
            Json::Array(a) => a.first().and_then(json_text),
            v => json_text(v),
        }
    }

    fn num(&self, name: &str) -> Option<f64> {
        let v = match self.get(name)? {
            Json::Array(a) => a.first()?,
            v => v,
        };
        match v {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn texts(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(Json::Array(a)) => a.iter().filter_map(json_text).map(Cow::into_owned).collect(),
            Some(v) => json_text(v).map(Cow::into_owned).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record read live and the same record read back from JSON give the
    /// same values through the trait, for every field of every sample record.
    #[test]
    fn live_and_stored_records_read_the_same() {
        for ev in schema::sample_events() {
            let mut flat = FlatRecord::default();
            flat.fill(&ev);
            let json = serde_json::to_value(&ev).unwrap();
            let Json::Object(map) = json else { panic!("records serialise to objects") };
            for (k, _) in &map {
                // Numbers may print differently (`1e-6`, `0.000001`) but
                // must be the same number; everything else the same text.
                match (flat.num(k), map.num(k)) {
                    (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{}: {k}", ev.log_name()),
                    _ => assert_eq!(flat.texts(k), map.texts(k), "{}: {k}", ev.log_name()),
                }
            }
        }
    }
}
