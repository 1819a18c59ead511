//! Just enough DER (X.690) to name the leaf certificate of a TLS
//! Certificate message: its subject and issuer, rendered as RFC 4514
//! strings (most specific attribute first, as OpenSSL and Zeek print them).

/// Reads one DER TLV at the start of `b`: `(tag, content, total length)`.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let content = b.get(hdr..hdr.checked_add(len)?)?;
    Some((tag, content, hdr + len))
}

fn children(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut v = Vec::new();
    while let Some((t, c, used)) = tlv(b) {
        v.push((t, c));
        b = b.get(used..).unwrap_or(&[]);
        if v.len() > 64 {
            break;
        }
    }
    v
}

fn oid_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return None,
    })
}

/// RFC 4514 escaping of an attribute value.
fn escape(v: &[u8]) -> String {
    let mut s = String::new();
    for (i, &c) in v.iter().enumerate() {
        let special = matches!(c, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
            || (i == 0 && (c == b' ' || c == b'#'))
            || (i + 1 == v.len() && c == b' ');
        if special {
            s.push('\\');
            s.push(c as char);
        } else if (0x20..0x7f).contains(&c) {
            s.push(c as char);
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

fn name(rdn_seq: &[u8]) -> String {
    let mut parts = Vec::new();
    for (_, set) in children(rdn_seq) {
        for (_, atv) in children(set) {
            let kids = children(atv);
            if let (Some((0x06, oid)), Some((_, val))) = (kids.first(), kids.get(1)) {
                let key = oid_name(oid)
                    .map(str::to_string)
                    .unwrap_or_else(|| oid.iter().map(|b| format!("{b:02x}")).collect::<String>());
                parts.push(format!("{key}={}", escape(val)));
            }
        }
    }
    parts.reverse();
    parts.join(",")
}

/// The subject and issuer of the first certificate of a TLS 1.2 (or older)
/// Certificate handshake message body.
pub fn leaf_names(msg: &[u8]) -> Option<(String, String)> {
    // certificate_list<3>, then cert_data<3>.
    let first_len = usize::from(*msg.get(3)?) << 16 | usize::from(*msg.get(4)?) << 8 | usize::from(*msg.get(5)?);
    let der = msg.get(6..6 + first_len)?;
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut fields = children(tbs);
    // An explicit [0] version comes first when present.
    if fields.first().is_some_and(|(t, _)| *t == 0xa0) {
        fields.remove(0);
    }
    // serialNumber, signature, issuer, validity, subject.
    let issuer = fields.get(2)?.1;
    let subject = fields.get(4)?.1;
    Some((name(subject), name(issuer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 128 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    fn rdn(oid: &[u8], val: &str) -> Vec<u8> {
        let mut atv = der(0x06, oid);
        atv.extend_from_slice(&der(0x0c, val.as_bytes()));
        der(0x31, &der(0x30, &atv))
    }

    #[test]
    fn names_of_a_leaf() {
        let mut subj = rdn(&[0x55, 4, 6], "VN");
        subj.extend_from_slice(&rdn(&[0x55, 4, 10], "City, Police"));
        subj.extend_from_slice(&rdn(&[0x55, 4, 3], "soc.city.example"));
        let issuer = rdn(&[0x55, 4, 3], "City CA");
        let mut tbs = der(0xa0, &der(0x02, &[2]));
        tbs.extend_from_slice(&der(0x02, &[1, 2, 3]));
        tbs.extend_from_slice(&der(0x30, &der(0x06, &[0x2a, 0x86, 0x48])));
        tbs.extend_from_slice(&der(0x30, &issuer));
        tbs.extend_from_slice(&der(0x30, &[]));
        tbs.extend_from_slice(&der(0x30, &subj));
        let cert = der(0x30, &der(0x30, &tbs));
        let mut msg = ((cert.len() + 3) as u32).to_be_bytes()[1..].to_vec();
        msg.extend_from_slice(&(cert.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&cert);
        let (s, i) = leaf_names(&msg).unwrap();
        assert_eq!(s, "CN=soc.city.example,O=City\\, Police,C=VN");
        assert_eq!(i, "CN=City CA");
        for n in 0..msg.len() {
            let _ = leaf_names(&msg[..n]);
        }
    }
}
