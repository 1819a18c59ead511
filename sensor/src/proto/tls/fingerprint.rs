//! TLS fingerprints: JA3/JA3S (Salesforce) and JA4/JA4S (FoxIO).

use super::parser::{
    alpn, is_grease, u16_list, u8_list, Hello, EXT_ALPN, EXT_EC_POINT_FORMATS, EXT_SIGNATURE_ALGORITHMS, EXT_SNI,
    EXT_SUPPORTED_GROUPS, EXT_SUPPORTED_VERSIONS,
};
use md5::{Digest, Md5};
use sha2::Sha256;

fn dash(v: impl Iterator<Item = u64>) -> String {
    v.map(|x| x.to_string()).collect::<Vec<_>>().join("-")
}

fn md5_hex(s: &str) -> String {
    Md5::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha12(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// JA3: MD5 of `version,ciphers,extensions,groups,point formats`, GREASE removed.
pub fn ja3(h: &Hello) -> String {
    let ciphers = dash(h.ciphers.iter().filter(|c| !is_grease(**c)).map(|&c| u64::from(c)));
    let exts = dash(h.extensions.iter().map(|(t, _)| *t).filter(|t| !is_grease(*t)).map(u64::from));
    let groups = h.ext(EXT_SUPPORTED_GROUPS).map(|e| u16_list(e, 2)).unwrap_or_default();
    let groups = dash(groups.into_iter().filter(|g| !is_grease(*g)).map(u64::from));
    let formats = dash(h.ext(EXT_EC_POINT_FORMATS).map(u8_list).unwrap_or_default().into_iter().map(u64::from));
    md5_hex(&format!("{},{ciphers},{exts},{groups},{formats}", h.legacy_version))
}

/// JA3S: MD5 of `version,cipher,extensions`.
pub fn ja3s(h: &Hello) -> String {
    let exts = dash(h.extensions.iter().map(|(t, _)| u64::from(*t)));
    let cipher = h.ciphers.first().copied().unwrap_or(0);
    md5_hex(&format!("{},{cipher},{exts}", h.legacy_version))
}

fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The highest non-GREASE version a ClientHello offers (supported_versions
/// when present, else the legacy field).
pub fn client_version(h: &Hello) -> u16 {
    match h.ext(EXT_SUPPORTED_VERSIONS) {
        Some(e) => {
            let list = e.get(1..).unwrap_or(&[]);
            list.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .filter(|v| !is_grease(*v))
                .max()
                .unwrap_or(h.legacy_version)
        }
        None => h.legacy_version,
    }
}

/// The version a ServerHello selects.
pub fn server_version(h: &Hello) -> u16 {
    match h.ext(EXT_SUPPORTED_VERSIONS) {
        Some([a, b, ..]) => u16::from_be_bytes([*a, *b]),
        _ => h.legacy_version,
    }
}

/// The two ALPN characters of JA4: first and last of the first value, or
/// of its hex form when either is not alphanumeric; `00` without ALPN.
fn alpn_chars(first: Option<&[u8]>) -> String {
    let Some(v) = first.filter(|v| !v.is_empty()) else { return "00".into() };
    let (f, l) = (v[0], v[v.len() - 1]);
    if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() {
        format!("{}{}", f as char, l as char)
    } else {
        let hex: String = v.iter().map(|b| format!("{b:02x}")).collect();
        let hb = hex.as_bytes();
        format!("{}{}", hb[0] as char, hb[hb.len() - 1] as char)
    }
}

/// JA4 of a ClientHello; `transport` is `t` (TCP) or `q` (QUIC).
pub fn ja4(h: &Hello, transport: char) -> String {
    let ciphers: Vec<u16> = h.ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
    let exts: Vec<u16> = h.extensions.iter().map(|(t, _)| *t).filter(|t| !is_grease(*t)).collect();
    let sni = if h.ext(EXT_SNI).is_some() { 'd' } else { 'i' };
    let first_alpn = h.ext(EXT_ALPN).and_then(|e| alpn(e).first().copied());
    let a = format!(
        "{transport}{}{sni}{:02}{:02}{}",
        version_code(client_version(h)),
        ciphers.len().min(99),
        exts.len().min(99),
        alpn_chars(first_alpn)
    );
    let mut sorted_c: Vec<String> = ciphers.iter().map(|c| format!("{c:04x}")).collect();
    sorted_c.sort();
    let b = if sorted_c.is_empty() { "000000000000".into() } else { sha12(&sorted_c.join(",")) };
    let mut sorted_e: Vec<String> =
        exts.iter().filter(|t| **t != EXT_SNI && **t != EXT_ALPN).map(|t| format!("{t:04x}")).collect();
    sorted_e.sort();
    let sigs: Vec<String> = h
        .ext(EXT_SIGNATURE_ALGORITHMS)
        .map(|e| u16_list(e, 2))
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !is_grease(*s))
        .map(|s| format!("{s:04x}"))
        .collect();
    let c_in = if sigs.is_empty() { sorted_e.join(",") } else { format!("{}_{}", sorted_e.join(","), sigs.join(",")) };
    let c = if sorted_e.is_empty() { "000000000000".into() } else { sha12(&c_in) };
    format!("{a}_{b}_{c}")
}

/// JA4S of a ServerHello.
pub fn ja4s(h: &Hello, transport: char) -> String {
    let exts: Vec<String> = h.extensions.iter().map(|(t, _)| format!("{t:04x}")).collect();
    let chosen = h.ext(EXT_ALPN).and_then(|e| alpn(e).first().copied());
    let a = format!(
        "{transport}{}{:02}{}",
        version_code(server_version(h)),
        h.extensions.len().min(99),
        alpn_chars(chosen)
    );
    let cipher = format!("{:04x}", h.ciphers.first().copied().unwrap_or(0));
    let c = if exts.is_empty() { "000000000000".into() } else { sha12(&exts.join(",")) };
    format!("{a}_{cipher}_{c}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(ciphers: &[u16], exts: &[(u16, Vec<u8>)]) -> Hello {
        Hello { legacy_version: 0x0303, session_id: vec![], ciphers: ciphers.to_vec(), extensions: exts.to_vec() }
    }

    /// The worked example of FoxIO's JA4 technical details: a Chrome
    /// ClientHello over TCP with SNI, ALPN h2, 15 ciphers and 16 extensions.
    #[test]
    fn ja4_spec_example() {
        let ciphers = [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d,
            0x002f, 0x0035,
        ];
        let sigs: Vec<u8> = [0x0403u16, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
            .iter()
            .flat_map(|s| s.to_be_bytes())
            .collect();
        let mut sig_ext = (sigs.len() as u16).to_be_bytes().to_vec();
        sig_ext.extend_from_slice(&sigs);
        let mut alpn_ext = vec![0, 3, 2];
        alpn_ext.extend_from_slice(b"h2");
        let exts: Vec<(u16, Vec<u8>)> = [
            0x001bu16, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b, 0xff01,
            0x000b, 0x000a, 0x0015,
        ]
        .iter()
        .map(|&t| match t {
            0x000d => (t, sig_ext.clone()),
            0x0010 => (t, alpn_ext.clone()),
            0x002b => (t, vec![4, 0x03, 0x04, 0x03, 0x03]),
            _ => (t, vec![]),
        })
        .collect();
        let h = hello(&ciphers, &exts);
        assert_eq!(ja4(&h, 't'), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn grease_is_ignored_and_alpn_hex_fallback() {
        let a = hello(&[0x0a0a, 0x1301], &[(0x1a1a, vec![])]);
        let b = hello(&[0x1301], &[]);
        assert_eq!(ja3(&a), ja3(&b));
        assert_eq!(alpn_chars(Some(b"\xab\x01")), "a1");
        assert_eq!(alpn_chars(None), "00");
    }
}
