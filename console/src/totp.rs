//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): HMAC-SHA1,
//! six digits, 30-second steps, the defaults every authenticator app reads
//! from an `otpauth://` URI. A code is taken once: the last step used per
//! account is remembered, so a code seen over a shoulder cannot be replayed
//! within its window.

use hmac::{Hmac, Mac};
use std::collections::HashMap;
use std::sync::Mutex;

const STEP_SECS: u64 = 30;
const DIGITS: u32 = 6;
/// Steps either side of now accepted (RFC 6238 §5.2): a phone's clock a
/// little off still works.
const DRIFT: u64 = 1;

/// A new secret: 20 random bytes (RFC 4226 §4 asks for 160 bits), base32.
pub fn new_secret() -> String {
    let mut raw = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    data_encoding::BASE32_NOPAD.encode(&raw)
}

fn decode(secret: &str) -> Option<Vec<u8>> {
    let clean: String = secret.chars().filter(|c| !c.is_whitespace() && *c != '=').collect();
    data_encoding::BASE32_NOPAD.decode(clean.to_ascii_uppercase().as_bytes()).ok()
}

/// HOTP (RFC 4226 §5.3) of a raw key at a counter.
fn hotp(key: &[u8], counter: u64) -> Option<u32> {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).ok()?;
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h.last()? & 0x0f) as usize;
    let b = h.get(offset..offset + 4)?;
    let bin = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]);
    Some(bin % 10u32.pow(DIGITS))
}

/// The code of a base32 secret at a Unix time.
pub fn code_at(secret: &str, unix_secs: u64) -> Option<String> {
    let key = decode(secret)?;
    hotp(&key, unix_secs / STEP_SECS).map(|c| format!("{c:0width$}", width = DIGITS as usize))
}

/// The URI an authenticator app enrols from (Key Uri Format).
pub fn uri(issuer: &str, account: &str, secret: &str) -> String {
    let enc =
        |s: &str| -> String { form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20") };
    format!(
        "otpauth://totp/{}:{}?secret={secret}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The steps used per account, so that each code works once.
#[derive(Default)]
pub struct Verifier {
    used: Mutex<HashMap<String, u64>>,
}

impl Verifier {
    /// Whether `code` is the account's code now (within the drift), and not
    /// one already used.
    pub fn check(&self, account: &str, secret: &str, code: &str) -> bool {
        self.check_at(account, secret, code, now_secs())
    }

    pub fn check_at(&self, account: &str, secret: &str, code: &str, unix_secs: u64) -> bool {
        let code = code.trim().replace(' ', "");
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let Some(key) = decode(secret) else { return false };
        let now = unix_secs / STEP_SECS;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let last = used.get(account).copied();
        for step in now.saturating_sub(DRIFT)..=now + DRIFT {
            let Some(want) = hotp(&key, step) else { continue };
            let want = format!("{want:0width$}", width = DIGITS as usize);
            if crate::session::same(&want, &code) && last.is_none_or(|l| step > l) {
                used.insert(account.to_string(), step);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 key "12345678901234567890": the 8-digit
    /// codes' last six digits.
    #[test]
    fn the_rfc_6238_test_vectors() {
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        for (t, want) in
            [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
        {
            assert_eq!(code_at(&secret, t).unwrap(), want, "t={t}");
        }
    }

    #[test]
    fn a_code_works_once_and_only_near_its_time() {
        let v = Verifier::default();
        let secret = new_secret();
        let t = 1_700_000_000;
        let code = code_at(&secret, t).unwrap();
        assert!(!v.check_at("lan", &secret, &code, t + 120), "two steps late");
        assert!(v.check_at("lan", &secret, &code, t + 20));
        assert!(!v.check_at("lan", &secret, &code, t + 20), "replayed");
        assert!(!v.check_at("lan", &secret, "12345", t));
        assert!(!v.check_at("lan", &secret, "abcdef", t));
        let u = uri("CitySOC", "lan", &secret);
        assert!(u.starts_with("otpauth://totp/CitySOC:lan?secret=") && u.contains("&issuer=CitySOC"), "{u}");
    }
}
