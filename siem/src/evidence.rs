//! Evidence bundles fit for a case file: one tar holding the alert or
//! incident, the records of its flows, their packets, and `manifest.json`
//! (every file's SHA-256 and size, who exported it, when, and the SOC's
//! ed25519 public key), with `manifest.sig`, the signature of the manifest's
//! exact bytes. Changing any byte of any file, or the manifest, fails
//! verification.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::Path;

pub const FORMAT: &str = "citysoc-evidence/1";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The SOC's signing key, kept in the data folder (`evidence-key`, owner
/// only) and made on first use; `evidence-key.pub` is its public half.
pub struct Signer {
    key: SigningKey,
}

impl Signer {
    pub fn open(data: &Path) -> io::Result<Signer> {
        let path = data.join("evidence-key");
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes: [u8; 32] = unhex(text.trim()).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{} is damaged", path.display()))
                })?;
                SigningKey::from_bytes(&bytes)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed);
                let key = SigningKey::from_bytes(&seed);
                std::fs::create_dir_all(data)?;
                write_private(&path, &hex(&seed))?;
                std::fs::write(data.join("evidence-key.pub"), hex(key.verifying_key().as_bytes()) + "\n")?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(Signer { key })
    }

    pub fn public_hex(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> io::Result<()> {
    std::fs::write(path, text)
}

/// Packs and signs. `files` are (name inside the bundle, bytes); names are
/// made by the caller from ids, never from packet data.
pub fn bundle(files: &[(String, Vec<u8>)], subject: Value, who: &str, signer: &Signer) -> io::Result<Vec<u8>> {
    let listed: Vec<Value> =
        files.iter().map(|(n, b)| json!({"name": n, "sha256": hex(&Sha256::digest(b)), "bytes": b.len()})).collect();
    let now = std::time::SystemTime::now();
    let manifest = json!({
        "format": FORMAT,
        "subject": subject,
        "exported_by": who,
        "exported_at": humantime::format_rfc3339_seconds(now).to_string(),
        "files": listed,
        "public_key": signer.public_hex(),
    });
    let mtext = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    let sig = signer.key.sign(&mtext);
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        h.set_cksum();
        tar.append_data(&mut h, name, data)
    };
    add("manifest.json", &mtext)?;
    add("manifest.sig", (hex(&sig.to_bytes()) + "\n").as_bytes())?;
    for (n, b) in files {
        add(n, b)?;
    }
    tar.into_inner()
}

/// A rules folder as a tar of its files (sorted paths) and its version:
/// the first 12 hex digits of a SHA-256 over every path and content, each
/// preceded by its length (a path or content cannot run into the next, so
/// two different folders never hash the same bytes).
pub fn rules_tar(dir: &Path) -> io::Result<(String, Vec<u8>)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> io::Result<()> {
        for e in std::fs::read_dir(d)? {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                walk(root, &p, out)?;
            } else if ft.is_file() {
                if let Ok(rel) = p.strip_prefix(root) {
                    out.push((rel.to_string_lossy().replace('\\', "/"), p.clone()));
                }
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    let mut tar = tar::Builder::new(Vec::new());
    for (rel, path) in &files {
        let data = std::fs::read(path)?;
        h.update((rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
        let mut hd = tar::Header::new_gnu();
        hd.set_size(data.len() as u64);
        hd.set_mode(0o644);
        hd.set_cksum();
        tar.append_data(&mut hd, rel, &data[..])?;
    }
    let version = hex(&h.finalize()[..6]);
    Ok((version, tar.into_inner()?))
}

/// Unpacks a rules tar into `dest`, refusing any path that is not a plain
/// relative one.
pub fn unpack_rules(bytes: &[u8], dest: &Path) -> io::Result<usize> {
    let mut ar = tar::Archive::new(bytes);
    let mut n = 0;
    for e in ar.entries()? {
        let mut e = e?;
        let rel = e.path()?.into_owned();
        if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} leaves the folder", rel.display())));
        }
        let out = dest.join(&rel);
        if let Some(p) = out.parent() {
            std::fs::create_dir_all(p)?;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        std::fs::write(out, data)?;
        n += 1;
    }
    Ok(n)
}

/// What a bundle that verifies says about itself.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Value,
    pub files: usize,
    pub public_key: String,
}

/// Checks the signature and every file. With `expected_key` (hex), the
/// bundle must also be signed by that key (the SOC's published one), not
/// merely by the key it carries.
pub fn verify(bytes: &[u8], expected_key: Option<&str>) -> Result<Verified, String> {
    let mut ar = tar::Archive::new(bytes);
    let mut files: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for e in ar.entries().map_err(|e| format!("not a bundle: {e}"))? {
        let mut e = e.map_err(|e| format!("damaged bundle: {e}"))?;
        let name = e.path().map_err(|e| format!("damaged bundle: {e}"))?.to_string_lossy().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).map_err(|e| format!("damaged bundle: {e}"))?;
        if files.insert(name.clone(), data).is_some() {
            return Err(format!("{name} appears twice"));
        }
    }
    let mtext = files.remove("manifest.json").ok_or("no manifest.json")?;
    let sigtext = files.remove("manifest.sig").ok_or("no manifest.sig")?;
    let manifest: Value = serde_json::from_slice(&mtext).map_err(|e| format!("manifest.json: {e}"))?;
    if manifest["format"] != FORMAT {
        return Err(format!("not a {FORMAT} bundle"));
    }
    let key_hex = manifest["public_key"].as_str().ok_or("the manifest names no key")?.to_string();
    if let Some(want) = expected_key {
        if !want.trim().eq_ignore_ascii_case(&key_hex) {
            return Err(format!("signed by {key_hex}, not by the expected key {}", want.trim()));
        }
    }
    let key_bytes: [u8; 32] = unhex(&key_hex).and_then(|b| b.try_into().ok()).ok_or("bad public key")?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|e| format!("bad public key: {e}"))?;
    let sig_bytes: [u8; 64] = std::str::from_utf8(&sigtext)
        .ok()
        .and_then(|s| unhex(s.trim()))
        .and_then(|b| b.try_into().ok())
        .ok_or("bad signature file")?;
    key.verify(&mtext, &Signature::from_bytes(&sig_bytes)).map_err(|_| "the signature does not match the manifest")?;
    let listed = manifest["files"].as_array().ok_or("the manifest lists no files")?;
    for f in listed {
        let name = f["name"].as_str().ok_or("a file without a name")?;
        let data = files.remove(name).ok_or_else(|| format!("{name} is missing"))?;
        if f["sha256"].as_str() != Some(hex(&Sha256::digest(&data)).as_str()) {
            return Err(format!("{name} was changed: its SHA-256 differs from the manifest"));
        }
        if f["bytes"].as_u64() != Some(data.len() as u64) {
            return Err(format!("{name} was changed: its size differs from the manifest"));
        }
    }
    if let Some(extra) = files.keys().next() {
        return Err(format!("{extra} is not in the manifest"));
    }
    Ok(Verified { files: listed.len(), manifest, public_key: key_hex })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_verifies_and_any_change_fails() {
        let dir = std::env::temp_dir().join(format!("citysoc-evidence-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let signer = Signer::open(&dir).unwrap();
        // The key is kept: the same one signs next time.
        assert_eq!(Signer::open(&dir).unwrap().public_hex(), signer.public_hex());
        let files =
            vec![("alert.json".to_string(), b"{\"id\":\"A1\"}".to_vec()), ("flows/C1.pcap".into(), vec![7u8; 300])];
        let b = bundle(&files, json!({"alert": "A1"}), "responder1", &signer).unwrap();
        let v = verify(&b, Some(&signer.public_hex())).unwrap();
        assert_eq!((v.files, v.manifest["exported_by"].as_str()), (2, Some("responder1")));
        // One byte of the pcap changed.
        let at = b.windows(300).position(|w| w.iter().all(|x| *x == 7)).unwrap();
        let mut t = b.clone();
        t[at + 10] = 8;
        assert!(verify(&t, None).unwrap_err().contains("flows/C1.pcap was changed"));
        // The manifest changed (who exported it).
        let mut t = b.clone();
        let at = b.windows(10).position(|w| w == b"responder1").unwrap();
        t[at] = b'R';
        assert!(verify(&t, None).unwrap_err().contains("signature"));
        // Signed by another key than the SOC's.
        assert!(verify(&b, Some(&"00".repeat(32))).unwrap_err().contains("expected key"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_rules_version_tells_where_one_file_ends() {
        // `a` holding "x" then `b`, against `a` holding "x" + the bytes
        // that named `b`: the same bytes once a path and content were
        // hashed back to back.
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(one.path().join("a"), "x").unwrap();
        std::fs::write(one.path().join("b"), "").unwrap();
        std::fs::write(two.path().join("a"), "xb\0").unwrap();
        let (v1, _) = rules_tar(one.path()).unwrap();
        let (v2, _) = rules_tar(two.path()).unwrap();
        assert_ne!(v1, v2);
        assert_eq!(rules_tar(one.path()).unwrap().0, v1, "a folder's version is stable");
    }
}
