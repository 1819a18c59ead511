//! The viewer's copy of the data: every record, alert, incident and bucket
//! a pseudonymised reader is shown passes through [`Pseudonymiser::value`]
//! before anything renders it. Internal addresses, MAC addresses, user
//! names, mail addresses and secrets become keyed pseudonyms in every field,
//! free text included (a summary's `10.35.4.20:43000 -> ...`, a URI's
//! `?user=...`, a DNS answer, a PTR name). Doing it to the data, not to
//! chosen fields of chosen pages, is what keeps a new field or a new page
//! from leaking.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

/// Fields whose whole value names a person or holds a secret.
const IDENTITY_FIELDS: &[&str] = &[
    "user",
    "username",
    "password",
    "host_name",
    "dhcp_host_name",
    "mailfrom",
    "rcptto",
    "from",
    "to",
    "cc",
    "reply_to",
    "client_name",
];

/// Keys that, written `key=value` or `key: value` inside free text (a URI's
/// query, a matched value), are followed by a person's name or a secret.
const IDENTITY_KEYS: &[&str] = &["user", "username", "login", "uname", "password", "pass", "passwd", "pwd", "email"];

/// Keyed pseudonyms: the same value gives the same pseudonym for one key,
/// and nothing without the key maps one back.
#[derive(Clone)]
pub struct Pseudonymiser {
    key: [u8; 32],
}

fn digest8(key: &[u8; 32], kind: &str, v: &str) -> String {
    let mut h = Sha256::new();
    h.update(key);
    // Addresses keep the input the pseudonyms have always had, so a
    // viewer's links and notes stay comparable within one start.
    if kind != "internal" {
        h.update(kind.as_bytes());
        h.update(b":");
    }
    h.update(v.as_bytes());
    let d = h.finalize();
    format!("{kind}-{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
}

/// Private, loopback, link-local, shared (CGNAT) and unique-local ranges:
/// the city's own clients.
pub fn internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || (v.octets()[0] == 100 && v.octets()[1] & 0xc0 == 64)
        }
        IpAddr::V6(v) => {
            if let Some(v4) = v.to_ipv4_mapped() {
                return internal(IpAddr::V4(v4));
            }
            v.is_loopback() || (v.segments()[0] & 0xfe00) == 0xfc00 || (v.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

fn is_run_byte(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.' || b == b'-'
}

fn is_local_part_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

/// `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff`, or Cisco's `aabb.ccdd.eeff`.
fn is_mac(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() == 14 {
        return b[4] == b'.'
            && b[9] == b'.'
            && b.iter().enumerate().all(|(i, c)| i == 4 || i == 9 || c.is_ascii_hexdigit());
    }
    b.len() == 17
        && (0..6).all(|i| b[i * 3].is_ascii_hexdigit() && b[i * 3 + 1].is_ascii_hexdigit())
        && (0..5).all(|i| b[i * 3 + 2] == b':' || b[i * 3 + 2] == b'-')
        && (b[2] == b':' || b[2] == b'-')
        && (0..5).all(|i| b[i * 3 + 2] == b[2])
}

/// A dotted quad starting at `i` of `b`, with its length, if one is there.
fn quad_at(b: &[u8], i: usize) -> Option<(Ipv4Addr, usize)> {
    let mut j = i;
    for part in 0..4 {
        let start = j;
        while j < b.len() && b[j].is_ascii_digit() && j - start < 3 {
            j += 1;
        }
        if j == start {
            return None;
        }
        if part < 3 {
            if b.get(j) != Some(&b'.') {
                return None;
            }
            j += 1;
        }
    }
    // Not the start of a longer number or a fifth part.
    if b.get(j).is_some_and(u8::is_ascii_digit)
        || (b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit))
    {
        return None;
    }
    // Parts are read as numbers, leading zeros and all (`010.030.000.005`
    // is how some devices log 10.30.0.5; Rust's parser refuses it).
    let text = std::str::from_utf8(&b[i..j]).ok()?;
    let mut o = [0u8; 4];
    for (slot, part) in o.iter_mut().zip(text.split('.')) {
        *slot = part.parse().ok()?;
    }
    Some((Ipv4Addr::from(o), j - i))
}

/// FTP's `h1,h2,h3,h4,p1,p2` (PORT and the PASV reply, RFC 959 4.1.2) at
/// `i` of `b`: the address and the length of its four numbers.
fn ftp_address_at(b: &[u8], i: usize) -> Option<(Ipv4Addr, usize)> {
    let mut nums = [0u8; 6];
    let mut j = i;
    for (k, slot) in nums.iter_mut().enumerate() {
        let start = j;
        while j < b.len() && b[j].is_ascii_digit() && j - start < 3 {
            j += 1;
        }
        *slot = std::str::from_utf8(b.get(start..j)?).ok()?.parse().ok()?;
        if k < 5 {
            if b.get(j) != Some(&b',') {
                return None;
            }
            j += 1;
        }
    }
    if b.get(j).is_some_and(|c| c.is_ascii_digit() || *c == b',') {
        return None;
    }
    let addr_len = b[i..].iter().enumerate().filter(|(_, c)| **c == b',').nth(3)?.0;
    Some((Ipv4Addr::new(nums[0], nums[1], nums[2], nums[3]), addr_len))
}

impl Pseudonymiser {
    pub fn new(key: [u8; 32]) -> Pseudonymiser {
        Pseudonymiser { key }
    }

    /// An internal address's pseudonym (others are shown as they are).
    pub fn addr(&self, ip: IpAddr) -> Option<String> {
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        internal(ip).then(|| digest8(&self.key, "internal", &ip.to_string()))
    }

    pub fn mac(&self, mac: &str) -> String {
        let lower = mac.to_ascii_lowercase();
        // One device, one pseudonym, whichever way it was written.
        let hex: String = lower.chars().filter(char::is_ascii_hexdigit).collect();
        let canonical = if hex.len() == 12 && lower.len() == 14 {
            hex.as_bytes().chunks(2).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(":")
        } else {
            lower.replace('-', ":")
        };
        digest8(&self.key, "mac", &canonical)
    }

    pub fn user(&self, name: &str) -> String {
        digest8(&self.key, "user", &name.to_lowercase())
    }

    /// A record, an alert, a list of them: every string in it, and the whole
    /// value of fields that name a person.
    pub fn value(&self, v: &mut Value) {
        self.values(std::slice::from_mut(v));
    }

    /// Values shown together (an incident and its alerts): a name one of
    /// them marks as a person's goes in all of them.
    pub fn values(&self, vs: &mut [Value]) {
        let mut names = BTreeSet::new();
        for v in vs.iter() {
            collect_names(v, None, &mut names);
        }
        // Longest first, so `alice.nguyen` goes before `alice`.
        let mut names: Vec<String> = names.into_iter().filter(|n| n.chars().count() >= 3 && !is_pseudonym(n)).collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for v in vs.iter_mut() {
            self.walk(v, None, &names);
        }
    }

    fn walk(&self, v: &mut Value, key: Option<&str>, names: &[String]) {
        let identity = key.is_some_and(is_identity_field);
        match v {
            // An alert summary's arguments are the summary in pieces: each
            // value is rewritten as the summary's text is, and the keys
            // (template names, never data) are kept so it still renders.
            Value::String(s) if key == Some("summary_args") && s.starts_with('{') => {
                if let Ok(mut args) = serde_json::from_str::<serde_json::Map<String, Value>>(s) {
                    args.values_mut().for_each(|x| self.walk(x, None, names));
                    *s = Value::Object(args).to_string();
                } else {
                    *s = self.text_with(s, names);
                }
            }
            Value::String(s) => {
                *s = if is_pseudonym(s) {
                    s.clone()
                } else if identity {
                    self.user(s)
                } else if key.is_some_and(|k| k.starts_with("rule.")) {
                    // A rule's title is ours: a user called `admin` must not
                    // rename "Admin login over FTP".
                    self.text_with(s, &[])
                } else {
                    self.text_with(s, names)
                };
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.walk(x, key, names)),
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    self.walk(x, Some(k), names);
                }
            }
            _ => {}
        }
    }

    /// Free text: addresses, MAC addresses, mail addresses and `user=`
    /// values replaced.
    pub fn text(&self, s: &str) -> String {
        let mut names = BTreeSet::new();
        names_in_text(s, &mut names);
        let mut names: Vec<String> = names.into_iter().filter(|n| n.chars().count() >= 3).collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        self.text_with(s, &names)
    }

    fn text_with(&self, s: &str, names: &[String]) -> String {
        let s = self.key_values(s);
        let s = self.mails(&s);
        let s = self.ftp_addresses(&s);
        let s = self.addresses(&s);
        replace_names(&s, names, |n| self.user(n))
    }

    /// `user=alice`, `password: x` → the value's pseudonym.
    fn key_values(&self, s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut i = 0;
        while i < b.len() {
            if let Some((vstart, vend)) = key_value_at(b, i).filter(|(v, e)| !is_pseudonym(&s[*v..*e])) {
                out.push_str(&s[last..vstart]);
                out.push_str(&self.user(&s[vstart..vend]));
                last = vend;
                i = vend;
            } else {
                i += 1;
            }
        }
        out.push_str(&s[last..]);
        out
    }

    fn mails(&self, s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for (at, _) in s.match_indices('@') {
            let mut start = at;
            while start > last && is_local_part_byte(b[start - 1]) {
                start -= 1;
            }
            let domain = b.get(at + 1).is_some_and(|c| c.is_ascii_alphanumeric());
            let local = &s[start..at];
            if start < at && domain && !local.starts_with("user-") {
                out.push_str(&s[last..start]);
                out.push_str(&self.user(local));
                last = at;
            }
        }
        out.push_str(&s[last..]);
        out
    }

    /// Internal addresses in FTP's comma form: the four numbers become the
    /// pseudonym, the port numbers stay.
    fn ftp_addresses(&self, s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let (mut last, mut i) = (0, 0);
        while i < b.len() {
            let starts = b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_digit() || b[i - 1] == b','));
            if let Some((ip, len)) = starts.then(|| ftp_address_at(b, i)).flatten() {
                if let Some(p) = self.addr(IpAddr::V4(ip)) {
                    out.push_str(&s[last..i]);
                    out.push_str(&p);
                    last = i + len;
                }
                i += len;
            } else {
                i += 1;
            }
        }
        out.push_str(&s[last..]);
        out
    }

    fn addresses(&self, s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        let mut i = 0;
        while i < b.len() {
            if !is_run_byte(b[i]) || (i > 0 && b[i - 1].is_ascii_alphanumeric() && !b[i].is_ascii_digit()) {
                i += 1;
                continue;
            }
            let mut e = i;
            while e < b.len() && is_run_byte(b[e]) {
                e += 1;
            }
            for (from, to, with) in self.in_run(s, i, e) {
                out.push_str(&s[last..from]);
                out.push_str(&with);
                last = to;
            }
            i = e.max(i + 1);
        }
        out.push_str(&s[last..]);
        out
    }

    /// Replacements inside the run `s[i..e]` of address-like bytes.
    fn in_run(&self, s: &str, i: usize, e: usize) -> Vec<(usize, usize, String)> {
        let run = &s[i..e];
        let trimmed_start = i + (run.len() - run.trim_start_matches(['-', '.']).len());
        let trimmed_end = i + run.trim_end_matches(['-', '.', ':']).len();
        for (from, to) in [(i, e), (trimmed_start, e), (trimmed_start, trimmed_end)] {
            if from >= to {
                continue;
            }
            let t = &s[from..to];
            if t.contains(':') {
                if let Ok(ip) = t.parse::<IpAddr>() {
                    return self.addr(ip).map(|p| vec![(from, to, p)]).unwrap_or_default();
                }
            }
            if is_mac(t) {
                return vec![(from, to, self.mac(t))];
            }
        }
        // Dotted quads anywhere in the run: `10.0.0.1:443`, a range, a PTR
        // name (`4.3.2.10.in-addr.arpa` is 10.2.3.4).
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut j = i;
        while j < e {
            let starts = b[j].is_ascii_digit() && (j == 0 || !(b[j - 1].is_ascii_digit() || b[j - 1] == b'.'));
            if let Some((ip, len)) = starts.then(|| quad_at(b, j)).flatten() {
                let rest = &s[j + len..];
                let ptr = rest.len() >= 13 && rest[..13].eq_ignore_ascii_case(".in-addr.arpa");
                let ip = if ptr {
                    let o = ip.octets();
                    Ipv4Addr::new(o[3], o[2], o[1], o[0])
                } else {
                    ip
                };
                if let Some(p) = self.addr(IpAddr::V4(ip)) {
                    out.push((j, j + len, p));
                }
                j += len;
            } else {
                j += 1;
            }
        }
        out
    }
}

fn is_identity_field(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    IDENTITY_FIELDS.contains(&last)
}

/// Where `key=value` or `key: value` has a value at `i`, for the keys of
/// [`IDENTITY_KEYS`]: the value's span.
fn key_value_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let key = IDENTITY_KEYS.iter().find(|k| {
        b.len() >= i + k.len()
            && b[i..i + k.len()].eq_ignore_ascii_case(k.as_bytes())
            && matches!(b.get(i + k.len()), Some(b'=') | Some(b':'))
    })?;
    let mut v = i + key.len() + 1;
    while b.get(v) == Some(&b' ') {
        v += 1;
    }
    if b.get(v) == Some(&b'"') || b.get(v) == Some(&b'\'') {
        v += 1;
    }
    let mut e = v;
    while e < b.len() && !b" \t\r\n&;,\"'<>)]}".contains(&b[e]) {
        e += 1;
    }
    // Split only at ASCII bytes: the value ends on a character boundary.
    (e > v).then_some((v, e))
}

fn names_in_text(s: &str, out: &mut BTreeSet<String>) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if let Some((v, e)) = key_value_at(b, i) {
            out.insert(s[v..e].to_string());
            i = e;
        } else {
            i += 1;
        }
    }
}

/// Person names in a value: the identity fields' values, and `user=` values
/// in any text, so the same name elsewhere (a summary) goes too.
fn collect_names(v: &Value, key: Option<&str>, out: &mut BTreeSet<String>) {
    let identity = key.is_some_and(is_identity_field);
    match v {
        Value::String(s) => {
            if identity {
                out.insert(s.clone());
            }
            names_in_text(s, out);
        }
        Value::Array(items) => items.iter().for_each(|x| collect_names(x, key, out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| collect_names(x, Some(k), out)),
        _ => {}
    }
}

/// Whole-word occurrences of `names` replaced (ASCII case ignored).
fn replace_names(s: &str, names: &[String], with: impl Fn(&str) -> String) -> String {
    if names.is_empty() {
        return s.to_string();
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    'outer: while i < s.len() {
        for n in names {
            let end = i + n.len();
            if end <= s.len()
                && s.is_char_boundary(end)
                && s[i..end].eq_ignore_ascii_case(n)
                && !word(s[..i].chars().next_back())
                && !word(s[end..].chars().next())
            {
                out.push_str(&with(&s[i..end]));
                i = end;
                continue 'outer;
            }
        }
        let c = s[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// A pseudonym made here (`user-1a2b3c4d`): left as it is.
fn is_pseudonym(s: &str) -> bool {
    ["user-", "mac-", "internal-"]
        .iter()
        .any(|p| s.strip_prefix(p).is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> Pseudonymiser {
        Pseudonymiser::new([9; 32])
    }

    #[test]
    fn addresses_in_free_text() {
        let p = p();
        let s = p.text("10.35.4.20:43000 -> 10.30.0.80:80 (via 203.0.113.9)");
        assert!(!s.contains("10.35.4.20") && !s.contains("10.30.0.80"), "{s}");
        assert!(s.contains("203.0.113.9") && s.contains(":43000 -> internal-"), "{s}");
        assert_eq!(
            p.text("GET /x?ip=192.168.1.5&q=1"),
            format!("GET /x?ip={}&q=1", p.addr("192.168.1.5".parse().unwrap()).unwrap())
        );
        let v6 = p.text("[fd00::1]:80 and fe80::1, ::ffff:10.1.1.1");
        assert!(!v6.contains("fd00::1") && !v6.contains("fe80::1") && !v6.contains("10.1.1.1"), "{v6}");
        let ptr = p.text("20.4.35.10.in-addr.arpa");
        assert!(!ptr.contains("20.4.35.10"), "{ptr}");
        // Versions and dates are not addresses.
        assert_eq!(p.text("nginx/1.25.3 on 2026-12-07 12:00:01"), "nginx/1.25.3 on 2026-12-07 12:00:01");
        assert_eq!(p.text("1.2.3.4.5"), "1.2.3.4.5");
        // Leading zeros, and FTP's comma form (PORT, PASV replies).
        let z = p.text("from 010.030.000.005");
        assert_eq!(z, format!("from {}", p.addr("10.30.0.5".parse().unwrap()).unwrap()));
        let ftp = p.text("PORT 10,26,0,10,214,216 / 227 Entering Passive Mode (203,0,113,9,4,1)");
        let pseud = p.addr("10.26.0.10".parse().unwrap()).unwrap();
        assert_eq!(ftp, format!("PORT {pseud},214,216 / 227 Entering Passive Mode (203,0,113,9,4,1)"));
        assert_eq!(p.text("1,2,3,4,5,6,7"), "1,2,3,4,5,6,7");
    }

    #[test]
    fn macs_mails_and_names() {
        let p = p();
        let s = p.text("dev 00:80:F4:00:00:07 and 00-80-f4-00-00-07");
        assert!(!s.to_lowercase().contains("00:80:f4") && !s.contains("00-80-f4"), "{s}");
        assert_eq!(s.matches(&p.mac("00:80:f4:00:00:07")).count(), 2, "one device, one pseudonym: {s}");
        let cisco = p.text("learned 0200.0000.000a on Gi0/1");
        assert!(!cisco.contains("0200.0000.000a"), "{cisco}");
        assert!(cisco.contains(&p.mac("02:00:00:00:00:0a")), "{cisco}");
        let m = p.text("mail from an.tran@city.example.vn");
        assert!(!m.contains("an.tran") && m.contains("@city.example.vn"), "{m}");
        let u = p.text("/login?user=alice.nguyen&password=hunter2 then alice.nguyen again");
        assert!(!u.contains("alice") && !u.contains("hunter2"), "{u}");
    }

    #[test]
    fn every_field_of_a_value() {
        let p = p();
        let mut v = json!({
            "id.orig_h": "10.35.4.20", "summary": "FTP login by Bob.Le from 10.35.4.20", "user": "bob.le",
            "answers": ["10.30.0.80", "portal.city.example"], "mac": "aa:bb:cc:dd:ee:ff",
            "matched": ["user=bob.le"], "nested": {"rcptto": ["x@y.example"]}, "count": 3
        });
        p.value(&mut v);
        let text = v.to_string();
        for real in ["10.35.4.20", "10.30.0.80", "bob.le", "Bob.Le", "aa:bb:cc", "x@y"] {
            assert!(!text.contains(real), "{real} in {text}");
        }
        assert_eq!(v["user"], json!(p.user("bob.le")));
        assert!(text.contains("portal.city.example") && v["count"] == 3);
        // Idempotent: a pseudonymised value stays as it is.
        let again = {
            let mut w = v.clone();
            p.value(&mut w);
            w
        };
        assert_eq!(again["id.orig_h"], v["id.orig_h"]);
        assert_eq!(again["summary"], v["summary"]);
    }

    /// A summary's arguments hide what its text hides, and still render.
    #[test]
    fn summary_args_as_the_summary() {
        let p = p();
        let args = r#"{"src":"10.35.4.20","names":"bob.le, an.tran","dev":"00:80:f4:00:00:07","n":"3"}"#;
        let mut v = json!({
            "summary": "Password spraying: 10.35.4.20 tried bob.le, an.tran from 00:80:f4:00:00:07",
            "summary_key": "model.brute.spraying", "summary_args": args, "user": "bob.le",
        });
        p.value(&mut v);
        let out: serde_json::Map<String, Value> = serde_json::from_str(v["summary_args"].as_str().unwrap()).unwrap();
        let mut keys: Vec<&String> = out.keys().collect();
        keys.sort();
        assert_eq!(keys, ["dev", "n", "names", "src"], "template names are kept");
        for real in ["10.35.4.20", "bob.le", "00:80:f4"] {
            assert!(!v.to_string().contains(real), "{real} in {v}");
        }
        assert!(v["summary"].as_str().unwrap().contains(out["src"].as_str().unwrap()), "the same pseudonym: {v}");
        assert!(v["summary"].as_str().unwrap().contains(out["dev"].as_str().unwrap()), "{v}");
        assert_eq!(out["n"], "3");
    }
}
