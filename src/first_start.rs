//! `citysoc serve-init`: the secrets a SIEM needs before its first start,
//! made when missing so that a fresh install never serves an open API. Run
//! before every start (the service's `ExecStartPre`); whatever exists is
//! left as it is.

use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What to make, and where.
#[derive(Clone, Debug)]
pub struct Init {
    /// The tokens file the server reads (`[sensors]`, `[readers]`,
    /// `[admins]`: name = SHA-256 of the token).
    pub tokens: PathBuf,
    /// Where the clear tokens are written, once, mode 0600.
    pub initial_tokens: PathBuf,
    /// The server's certificate and key; `None`: no TLS to prepare.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Names and addresses the certificate is valid for.
    pub tls_names: Vec<String>,
    /// Run as root: the group the files are given to (the service's), so
    /// that the server reads what it cannot write.
    pub group: Option<String>,
}

/// What was made (`None`: it was there already).
#[derive(Debug, Default)]
pub struct Made {
    /// The admin's and the sensor's clear tokens.
    pub tokens: Option<(String, String)>,
    /// The new certificate's SHA-256 (a sensor's `--ship-pin`).
    pub certificate: Option<String>,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed
/// over), created with `mode` so the content is never readable by more.
fn write_new(path: &Path, bytes: &[u8], mode: u32, gid: Option<u32>) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{}.new", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Some(g) = gid {
        std::os::unix::fs::chown(&tmp, None, Some(g))
            .with_context(|| format!("cannot give {} to group {g}", tmp.display()))?;
    }
    // The umask may have taken bits away; never added any.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

impl Init {
    /// Makes what is missing. A certificate without its key (or the other
    /// way round) is an error: one of them is not replaced alone.
    pub fn run(&self) -> anyhow::Result<Made> {
        let gid = match &self.group {
            Some(g) => Some(
                nix::unistd::Group::from_name(g)
                    .with_context(|| format!("group {g}: cannot read the group database"))?
                    .with_context(|| format!("group {g}: no such group"))?
                    .gid
                    .as_raw(),
            ),
            None => None,
        };
        let mut made = Made::default();
        if let Some((cert, key)) = &self.tls {
            match (cert.exists(), key.exists()) {
                (true, true) => {}
                (false, false) => {
                    let ck = rcgen::generate_simple_self_signed(self.tls_names.clone())
                        .context("cannot make a self-signed certificate")?;
                    // The key first: a certificate alone is never left behind.
                    write_new(key, ck.key_pair.serialize_pem().as_bytes(), 0o640, gid)?;
                    write_new(cert, ck.cert.pem().as_bytes(), 0o644, gid)?;
                    made.certificate = Some(crate::tls::fingerprint(ck.cert.der()));
                }
                (true, false) => bail!("{} is there but its key {} is not", cert.display(), key.display()),
                (false, true) => bail!("{} is there but its certificate {} is not", key.display(), cert.display()),
            }
        }
        if !self.tokens.exists() {
            let (admin, sensor) = (random_token(), random_token());
            let hash = |t: &str| siem::api::hash_token(t);
            let clear = format!(
                "# Made by `citysoc serve-init` on the first start. Keep these, then delete this file:\n\
                 # the server keeps only their SHA-256 (in {}).\n\
                 admin = {admin}\n\
                 sensor = {sensor}\n",
                self.tokens.display()
            );
            // The clear copy first: tokens nobody can know are of no use.
            write_new(&self.initial_tokens, clear.as_bytes(), 0o600, None)?;
            let table = format!(
                "# Bearer tokens of the API, as the SHA-256 of each token (`printf %s TOKEN | sha256sum`).\n\
                 # Name = hash; a sensor's name is the one its records are stored under.\n\
                 # `systemctl reload citysoc-serve` (SIGHUP) reads this file again.\n\n\
                 [admins]\n\
                 admin = \"{}\"\n\n\
                 [readers]\n\n\
                 [sensors]\n\
                 sensor = \"{}\"\n",
                hash(&admin),
                hash(&sensor)
            );
            write_new(&self.tokens, table.as_bytes(), 0o640, gid)?;
            made.tokens = Some((admin, sensor));
        }
        Ok(made)
    }
}

/// This machine's name, for the certificate.
pub fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

/// What a first certificate is valid for: this machine's name, localhost,
/// and every address of its interfaces (loopback included), so sensors
/// reach it by name or address with `--ship-pin`.
pub fn default_names() -> Vec<String> {
    let mut names: Vec<String> = hostname().into_iter().collect();
    names.push("localhost".into());
    let mut addrs: Vec<std::net::IpAddr> = Vec::new();
    if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
        for a in ifs.filter_map(|i| i.address) {
            if let Some(v4) = a.as_sockaddr_in() {
                addrs.push(std::net::IpAddr::V4(v4.ip()));
            } else if let Some(v6) = a.as_sockaddr_in6() {
                // Link-local addresses need a zone a URL cannot carry well.
                let ip = v6.ip();
                if (ip.segments()[0] & 0xffc0) != 0xfe80 {
                    addrs.push(std::net::IpAddr::V6(ip));
                }
            }
        }
    }
    for a in [std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()] {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    addrs.sort();
    addrs.dedup();
    names.extend(addrs.iter().map(|a| a.to_string()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn init(dir: &Path) -> Init {
        Init {
            tokens: dir.join("etc/tokens.toml"),
            initial_tokens: dir.join("lib/initial-tokens.txt"),
            tls: Some((dir.join("etc/tls/cert.pem"), dir.join("etc/tls/key.pem"))),
            tls_names: vec!["soc.example".into(), "127.0.0.1".into()],
            group: None,
        }
    }

    #[test]
    fn makes_what_is_missing_once_with_tight_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let i = init(tmp.path());
        let made = i.run().unwrap();
        let (admin, sensor) = made.tokens.unwrap();
        assert_ne!(admin, sensor);
        assert_eq!(admin.len(), 64);
        let tokens = siem::api::Tokens::load(&i.tokens).unwrap();
        assert_eq!(tokens.admins["admin"], siem::api::hash_token(&admin));
        assert_eq!(tokens.sensors["sensor"], siem::api::hash_token(&sensor));
        let clear = std::fs::read_to_string(&i.initial_tokens).unwrap();
        assert!(clear.contains(&admin) && clear.contains(&sensor));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&i.initial_tokens), 0o600);
        assert_eq!(mode(&i.tokens), 0o640);
        let (cert, key) = i.tls.clone().unwrap();
        assert_eq!(mode(&key), 0o640);
        // The server takes the pair as it is.
        crate::tls::ServerTls { cert: cert.clone(), key: key.clone(), client_ca: None }.config().unwrap();
        assert_eq!(made.certificate.unwrap().len(), 64);

        // Idempotent: a second run makes nothing and changes nothing.
        let before = (std::fs::read(&i.tokens).unwrap(), std::fs::read(&cert).unwrap());
        let again = i.run().unwrap();
        assert!(again.tokens.is_none() && again.certificate.is_none());
        assert_eq!(before, (std::fs::read(&i.tokens).unwrap(), std::fs::read(&cert).unwrap()));
    }

    #[test]
    fn a_certificate_without_its_key_is_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let i = init(tmp.path());
        let (cert, key) = i.tls.clone().unwrap();
        std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
        std::fs::write(&cert, "not touched").unwrap();
        let e = i.run().unwrap_err().to_string();
        assert!(e.contains(&key.display().to_string()), "{e}");
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), "not touched");
    }
}
