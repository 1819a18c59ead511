//! SSH wire formats: version lines (RFC 4253 4.2), binary packets (6) and
//! KEXINIT (7.1), parsed with explicit bounds on every length.

use nom::bytes::complete::take;
use nom::number::complete::{be_u32, be_u8};
use nom::IResult;

/// A version line may be 255 bytes with CR LF (RFC 4253 4.2); lines a server
/// sends before it are bounded the same way.
pub const MAX_LINE: usize = 255;
/// RFC 4253 6.1: implementations must handle packets of 35000 bytes; more is
/// not SSH (or is encrypted).
pub const MAX_PACKET: u32 = 35_000;

/// The offer of one side's KEXINIT, name-lists as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KexInit {
    pub kex: String,
    pub host_key: String,
    pub enc_c2s: String,
    pub enc_s2c: String,
    pub mac_c2s: String,
    pub mac_s2c: String,
    pub comp_c2s: String,
    pub comp_s2c: String,
}

fn name_list(i: &[u8]) -> IResult<&[u8], String> {
    let (i, len) = be_u32(i)?;
    let (i, raw) = take(len)(i)?;
    Ok((i, String::from_utf8_lossy(raw).into_owned()))
}

/// Parses the payload of an SSH_MSG_KEXINIT (after the message byte).
pub fn kexinit(i: &[u8]) -> IResult<&[u8], KexInit> {
    let (i, _cookie) = take(16usize)(i)?;
    let (i, kex) = name_list(i)?;
    let (i, host_key) = name_list(i)?;
    let (i, enc_c2s) = name_list(i)?;
    let (i, enc_s2c) = name_list(i)?;
    let (i, mac_c2s) = name_list(i)?;
    let (i, mac_s2c) = name_list(i)?;
    let (i, comp_c2s) = name_list(i)?;
    let (i, comp_s2c) = name_list(i)?;
    let (i, _lang_c2s) = name_list(i)?;
    let (i, _lang_s2c) = name_list(i)?;
    let (i, _first_kex_follows) = be_u8(i)?;
    Ok((i, KexInit { kex, host_key, enc_c2s, enc_s2c, mac_c2s, mac_s2c, comp_c2s, comp_s2c }))
}

/// The first `string` of a message payload (the host key blob K_S of a
/// KEXDH/ECDH/GEX reply).
pub fn first_string(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (i, len) = be_u32(i)?;
    take(len)(i)
}

/// One unencrypted binary packet: `(message type, payload after it, bytes
/// consumed)`, or `None` when more bytes are needed. `Err` when the length
/// is impossible.
#[allow(clippy::type_complexity)]
pub fn packet(buf: &[u8]) -> Result<Option<(u8, &[u8], usize)>, &'static str> {
    let Some(h) = buf.get(..5) else { return Ok(None) };
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let pad = u32::from(h[4]);
    if !(5..=MAX_PACKET).contains(&len) || pad + 1 > len {
        return Err("SSH_bad_packet_length");
    }
    let total = 4 + len as usize;
    let Some(body) = buf.get(5..total) else { return Ok(None) };
    let payload = body.get(..(len - pad - 1) as usize).unwrap_or(&[]);
    match payload.split_first() {
        Some((&t, rest)) => Ok(Some((t, rest, total))),
        None => Err("SSH_empty_packet"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn nl(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    /// A KEXINIT packet with the given lists (kex, host key, enc, mac, comp
    /// used for both directions).
    pub fn kexinit_packet(kex: &str, hk: &str, enc: &str, mac: &str, comp: &str) -> Vec<u8> {
        let mut p = vec![20];
        p.extend_from_slice(&[7; 16]);
        for s in [kex, hk, enc, enc, mac, mac, comp, comp, "", ""] {
            p.extend_from_slice(&nl(s));
        }
        p.extend_from_slice(&[0, 0, 0, 0, 0]);
        wrap(&p)
    }

    pub fn wrap(payload: &[u8]) -> Vec<u8> {
        let pad = 8 - (payload.len() + 5) % 8 + 4;
        let len = (payload.len() + pad + 1) as u32;
        let mut v = len.to_be_bytes().to_vec();
        v.push(pad as u8);
        v.extend_from_slice(payload);
        v.extend(std::iter::repeat_n(0u8, pad));
        v
    }

    #[test]
    fn kexinit_round_trip() {
        let pkt = kexinit_packet("curve25519-sha256", "ssh-ed25519", "aes128-ctr", "hmac-sha2-256", "none");
        let (t, body, used) = packet(&pkt).unwrap().unwrap();
        assert_eq!((t, used), (20, pkt.len()));
        let (_, k) = kexinit(body).unwrap();
        assert_eq!(k.kex, "curve25519-sha256");
        assert_eq!(k.enc_s2c, "aes128-ctr");
        for n in 0..pkt.len() {
            assert!(matches!(packet(&pkt[..n]), Ok(None)));
        }
    }

    #[test]
    fn impossible_lengths_are_errors() {
        assert!(packet(&[0xff, 0xff, 0xff, 0xff, 4, 0, 0]).is_err());
        assert!(packet(&[0, 0, 0, 8, 9, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
