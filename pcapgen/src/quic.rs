//! QUIC Initial packets, protected as RFC 9001 5 says, for the scenarios. The
//! key schedule is written here again on purpose: the generator is the
//! independent side the sensor's decryption is checked against.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

pub const V1: u32 = 1;
pub const V2: u32 = 0x6b33_43cf;

fn label(prk: &[u8], name: &str, len: usize) -> Vec<u8> {
    let full = format!("tls13 {name}");
    let mut info = (len as u16).to_be_bytes().to_vec();
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let mut out = vec![0; len];
    Hkdf::<Sha256>::from_prk(prk).expect("prk").expand(&info, &mut out).expect("length");
    out
}

fn keys(version: u32, odcid: &[u8], client: bool) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (salt, p) = if version == V2 {
        ("0dede3def700a6db819381be6e269dcbf9bd2ed9", "quicv2")
    } else {
        ("38762cf7f55934b34d179ae6a4c80cadccbb7f0a", "quic")
    };
    let salt: Vec<u8> = (0..40).step_by(2).map(|i| u8::from_str_radix(&salt[i..i + 2], 16).unwrap()).collect();
    let (initial, _) = Hkdf::<Sha256>::extract(Some(&salt), odcid);
    let secret = label(&initial, if client { "client in" } else { "server in" }, 32);
    (
        label(&secret, &format!("{p} key"), 16),
        label(&secret, &format!("{p} iv"), 12),
        label(&secret, &format!("{p} hp"), 16),
    )
}

fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=63 => vec![v as u8],
        64..=16383 => ((v as u16) | 0x4000).to_be_bytes().to_vec(),
        _ => ((v as u32) | 0x8000_0000).to_be_bytes().to_vec(),
    }
}

/// A CRYPTO frame.
pub fn crypto(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint(offset));
    f.extend(varint(data.len() as u64));
    f.extend_from_slice(data);
    f
}

/// An ACK frame for packet 0.
pub fn ack0() -> Vec<u8> {
    vec![0x02, 0, 0, 0, 0]
}

/// One protected Initial packet carrying `frames`, padded to `min_len`
/// (clients pad their Initial datagrams to 1200 bytes).
#[allow(clippy::too_many_arguments)]
pub fn initial(
    version: u32,
    odcid: &[u8],
    dcid: &[u8],
    scid: &[u8],
    client: bool,
    pn: u16,
    frames: &[u8],
    min_len: usize,
) -> Vec<u8> {
    let (key, iv, hp) = keys(version, odcid, client);
    let ty = if version == V2 { 1 } else { 0 };
    let mut h = vec![0xc0 | (ty << 4) | 0x01];
    h.extend_from_slice(&version.to_be_bytes());
    h.push(dcid.len() as u8);
    h.extend_from_slice(dcid);
    h.push(scid.len() as u8);
    h.extend_from_slice(scid);
    h.push(0); // no token
    let mut payload = frames.to_vec();
    // Header, a 2-byte length, a 2-byte packet number, the payload and the tag.
    let fixed = h.len() + 2 + 2 + 16;
    if fixed + payload.len() < min_len {
        payload.resize(min_len - fixed, 0);
    }
    h.extend(((2 + payload.len() + 16) as u16 | 0x4000).to_be_bytes());
    let pn_at = h.len();
    h.extend_from_slice(&pn.to_be_bytes());
    let mut nonce = iv.clone();
    for (i, b) in u64::from(pn).to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= b;
    }
    let sealed = Aes128Gcm::new_from_slice(&key)
        .unwrap()
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: &payload, aad: &h })
        .unwrap();
    let mut pkt = h;
    pkt.extend_from_slice(&sealed);
    let mut mask = aes::Block::clone_from_slice(&pkt[pn_at + 4..pn_at + 20]);
    aes::Aes128::new_from_slice(&hp).unwrap().encrypt_block(&mut mask);
    pkt[0] ^= mask[0] & 0x0f;
    pkt[pn_at] ^= mask[1];
    pkt[pn_at + 1] ^= mask[2];
    pkt
}
