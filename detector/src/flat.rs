//! A record seen as a flat list of `(field, value)` pairs, made by walking
//! its `Serialize` impl: rules read typed records without a JSON round trip,
//! and the buffers are reused from one record to the next.

use serde::ser::{self, Impossible, Serialize};
use std::fmt::{self, Write as _};
use std::ops::Range;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A range of `FlatRecord::text`.
    Str(u32, u32),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
}

/// One record's fields. A list-valued field (Zeek's `answers`) appears once
/// per element, so "any element matches" falls out of scanning the pairs.
#[derive(Default, Debug)]
pub struct FlatRecord {
    pub fields: Vec<(&'static str, Value)>,
    text: String,
}

impl FlatRecord {
    pub fn clear(&mut self) {
        self.fields.clear();
        self.text.clear();
    }

    pub fn fill<T: Serialize + ?Sized>(&mut self, rec: &T) {
        self.clear();
        // Records serialise to maps of scalars and lists; anything else is
        // skipped by the serializer, so this cannot fail on record content.
        let _ = rec.serialize(Flattener { out: self, key: "", raw: false });
    }

    /// A stored record (JSON, as the SIEM returns it) of `log`: the fields
    /// the catalog lists for that log, under their catalog names; others
    /// are left out, as a typed record of the sensor has none.
    pub fn fill_json(&mut self, log: &str, rec: &serde_json::Map<String, serde_json::Value>) {
        use serde_json::Value as J;
        self.clear();
        let Some(def) = schema::CATALOG.iter().find(|l| l.name == log) else { return };
        for (k, v) in rec {
            let Some(f) = def.fields.iter().find(|f| f.path == k) else { continue };
            let values: &[J] = match v {
                J::Array(a) => a,
                other => std::slice::from_ref(other),
            };
            for v in values {
                match v {
                    J::String(t) => self.push_str(f.path, t),
                    J::Bool(b) => self.fields.push((f.path, Value::Bool(*b))),
                    J::Number(n) => {
                        let x = if let Some(u) = n.as_u64() {
                            Value::Uint(u)
                        } else if let Some(i) = n.as_i64() {
                            Value::Int(i)
                        } else {
                            Value::Float(n.as_f64().unwrap_or(0.0))
                        };
                        self.fields.push((f.path, x));
                    }
                    J::Null | J::Array(_) | J::Object(_) => {}
                }
            }
        }
    }

    pub fn str(&self, v: Value) -> Option<&str> {
        match v {
            Value::Str(a, b) => self.text.get(a as usize..b as usize),
            _ => None,
        }
    }

    /// The value as text, for string comparisons: numbers in their decimal
    /// form, as the Sigma specification compares them.
    pub fn text_of<'a>(&'a self, v: Value, buf: &'a mut String) -> &'a str {
        match v {
            Value::Str(a, b) => self.text.get(a as usize..b as usize).unwrap_or(""),
            other => {
                buf.clear();
                let _ = match other {
                    Value::Int(i) => write!(buf, "{i}"),
                    Value::Uint(u) => write!(buf, "{u}"),
                    Value::Float(f) => write!(buf, "{f}"),
                    Value::Bool(b) => write!(buf, "{b}"),
                    Value::Str(..) => Ok(()),
                };
                buf.as_str()
            }
        }
    }

    /// The value as a number, for `gt`/`lt`: strings that hold a number count.
    pub fn num_of(&self, v: Value) -> Option<f64> {
        match v {
            Value::Int(i) => Some(i as f64),
            Value::Uint(u) => Some(u as f64),
            Value::Float(f) => Some(f),
            Value::Bool(_) => None,
            Value::Str(..) => self.str(v).and_then(|s| s.trim().parse().ok()),
        }
    }

    pub fn get(&self, name: &str) -> impl Iterator<Item = Value> + '_ {
        let name = name.to_string();
        self.fields.iter().filter(move |(k, _)| *k == name).map(|(_, v)| *v)
    }

    fn push_str(&mut self, key: &'static str, s: &str) {
        let a = self.text.len();
        self.text.push_str(s);
        self.fields.push((key, Value::Str(a as u32, self.text.len() as u32)));
    }

    fn push_display(&mut self, key: &'static str, d: &dyn fmt::Display) {
        let a = self.text.len();
        let _ = write!(self.text, "{d}");
        self.fields.push((key, Value::Str(a as u32, self.text.len() as u32)));
    }

    pub fn text_range(&self, r: Range<u32>) -> &str {
        self.text.get(r.start as usize..r.end as usize).unwrap_or("")
    }
}

#[derive(Debug)]
pub struct Skip;

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unsupported value")
    }
}
impl std::error::Error for Skip {}
impl ser::Error for Skip {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Skip
    }
}

/// Serialises one value under `key` (the record's top level has key "").
struct Flattener<'a> {
    out: &'a mut FlatRecord,
    key: &'static str,
    /// Inside serde_json's `RawValue`, which times serialise through: the
    /// string is a JSON number.
    raw: bool,
}

/// The field name serde_json gives a `RawValue`'s content.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

macro_rules! scalar {
    ($name:ident, $t:ty, $variant:ident, $conv:ty) => {
        fn $name(self, v: $t) -> Result<(), Skip> {
            self.out.fields.push((self.key, Value::$variant(<$conv>::from(v))));
            Ok(())
        }
    };
}

impl<'a> ser::Serializer for Flattener<'a> {
    type Ok = ();
    type Error = Skip;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Impossible<(), Skip>;
    type SerializeTupleVariant = Impossible<(), Skip>;
    type SerializeMap = Impossible<(), Skip>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Skip>;

    scalar!(serialize_bool, bool, Bool, bool);
    scalar!(serialize_i8, i8, Int, i64);
    scalar!(serialize_i16, i16, Int, i64);
    scalar!(serialize_i32, i32, Int, i64);
    scalar!(serialize_i64, i64, Int, i64);
    scalar!(serialize_u8, u8, Uint, u64);
    scalar!(serialize_u16, u16, Uint, u64);
    scalar!(serialize_u32, u32, Uint, u64);
    scalar!(serialize_u64, u64, Uint, u64);
    scalar!(serialize_f32, f32, Float, f64);
    scalar!(serialize_f64, f64, Float, f64);

    fn serialize_char(self, v: char) -> Result<(), Skip> {
        self.out.push_display(self.key, &v);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Skip> {
        if self.raw {
            if let Ok(f) = v.parse::<f64>() {
                self.out.fields.push((self.key, Value::Float(f)));
                return Ok(());
            }
        }
        self.out.push_str(self.key, v);
        Ok(())
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result<(), Skip> {
        self.out.push_display(self.key, &v);
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Skip> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Skip> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Skip> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Skip> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Skip> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Skip> {
        self.out.push_str(self.key, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), Skip> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> Result<(), Skip> {
        v.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Skip> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Skip> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Skip> {
        Err(Skip)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Skip> {
        Err(Skip)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Skip> {
        Err(Skip)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Skip> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Skip> {
        Err(Skip)
    }
}

impl ser::SerializeSeq for Flattener<'_> {
    type Ok = ();
    type Error = Skip;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Skip> {
        // A failing element (a nested map) is skipped, not the whole record.
        let _ = v.serialize(Flattener { out: self.out, key: self.key, raw: false });
        Ok(())
    }
    fn end(self) -> Result<(), Skip> {
        Ok(())
    }
}

impl ser::SerializeTuple for Flattener<'_> {
    type Ok = ();
    type Error = Skip;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Skip> {
        let _ = v.serialize(Flattener { out: self.out, key: self.key, raw: false });
        Ok(())
    }
    fn end(self) -> Result<(), Skip> {
        Ok(())
    }
}

impl ser::SerializeStruct for Flattener<'_> {
    type Ok = ();
    type Error = Skip;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), Skip> {
        // Records are flat (Zeek's dotted names are field renames), so a
        // nested struct keeps its own field names.
        let f = if key == RAW_VALUE_TOKEN {
            Flattener { out: self.out, key: self.key, raw: true }
        } else {
            Flattener { out: self.out, key, raw: false }
        };
        let _ = v.serialize(f);
        Ok(())
    }
    fn end(self) -> Result<(), Skip> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::{ConnRecord, FlowUid, Time};

    #[test]
    fn conn_flattens_with_zeek_names() {
        let a = "10.0.0.1".parse().unwrap();
        let c = ConnRecord {
            ts: Time(1_500_000),
            uid: FlowUid::new(7),
            orig_h: a,
            orig_p: 1234,
            resp_h: a,
            resp_p: 80,
            proto: "tcp",
            service: Some("http".into()),
            duration: None,
            orig_bytes: Some(5),
            resp_bytes: None,
            conn_state: "SF",
            local_orig: true,
            local_resp: false,
            missed_bytes: 0,
            history: None,
            orig_pkts: 1,
            orig_ip_bytes: 1,
            resp_pkts: 1,
            resp_ip_bytes: 1,
            tunnel_parents: vec![FlowUid::new(1), FlowUid::new(2)],
            ip_proto: 6,
            orig_l2_addr: None,
            resp_l2_addr: None,
            vlan: None,
            inner_vlan: None,
            community_id: None,
        };
        let mut f = FlatRecord::default();
        f.fill(&c);
        let mut buf = String::new();
        let v: Vec<String> = f.get("id.orig_h").map(|v| f.text_of(v, &mut buf).to_string()).collect();
        assert_eq!(v, ["10.0.0.1"]);
        assert_eq!(f.get("id.resp_p").next(), Some(Value::Uint(80)));
        assert_eq!(f.get("tunnel_parents").count(), 2);
        assert_eq!(f.get("resp_bytes").count(), 0);
        assert_eq!(f.get("ts").next().and_then(|v| f.num_of(v)), Some(1.5));
    }
}
