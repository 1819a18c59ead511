//! TLS between sensors and the SOC (rustls with ring): the SOC serves its
//! API over HTTPS, optionally requiring client certificates from a CA
//! (mutual TLS); a sensor verifies the SOC against a CA file, against a
//! pinned SHA-256 of its certificate, or against the public web roots.

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificates from {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in the file", path.display());
    }
    Ok(certs)
}

fn key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("{}: no PEM private key", path.display()))
}

fn roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
    }
    Ok(roots)
}

/// The SOC's side: its certificate and key, and the CA its sensors'
/// certificates must come from when mutual TLS is on.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    pub fn config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let p = provider();
        let builder =
            rustls::ServerConfig::builder_with_provider(Arc::clone(&p)).with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), p)
                    .build()
                    .with_context(|| format!("client CA {}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder
            .with_single_cert(certs(&self.cert)?, key(&self.key)?)
            .with_context(|| format!("{} does not go with {}", self.key.display(), self.cert.display()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// A sensor's side: how it trusts the SOC, and its own certificate when
/// the SOC asks for one.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// Trust only certificates from this CA (PEM).
    pub ca: Option<PathBuf>,
    /// Trust only the certificate with this SHA-256 (hex, colons allowed).
    pub pin: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// An HTTP agent for the SOC: plain for `http://`, TLS as configured
    /// for `https://` (the public web roots when neither CA nor pin is set).
    pub fn agent(&self, timeout: std::time::Duration) -> anyhow::Result<ureq::Agent> {
        let b = ureq::AgentBuilder::new().timeout(timeout);
        if self.ca.is_none() && self.pin.is_none() && self.cert.is_none() {
            return Ok(b.build());
        }
        Ok(b.tls_config(Arc::new(self.config()?)).build())
    }

    pub fn config(&self) -> anyhow::Result<rustls::ClientConfig> {
        let p = provider();
        let builder =
            rustls::ClientConfig::builder_with_provider(Arc::clone(&p)).with_safe_default_protocol_versions()?;
        let builder = match (&self.pin, &self.ca) {
            (Some(pin), ca) => {
                let ca = ca.as_deref().map(roots).transpose()?;
                builder.dangerous().with_custom_certificate_verifier(Arc::new(Pinned::new(pin, ca, p)?))
            }
            (None, Some(ca)) => builder.with_root_certificates(roots(ca)?),
            (None, None) => {
                let mut r = RootCertStore::empty();
                r.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                builder.with_root_certificates(r)
            }
        };
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => builder
                .with_client_auth_cert(certs(c)?, key(k)?)
                .with_context(|| format!("{} does not go with {}", k.display(), c.display())),
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => bail!("a client certificate needs both its certificate and its key"),
        }
    }
}

/// Accepts exactly the pinned certificate, whoever issued it and whether or
/// not it is a CA: the pin, not a chain, is the trust. Its dates and name
/// are still checked, and with a CA given too, its chain to that CA.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    ca: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn new(pin: &str, ca: Option<RootCertStore>, provider: Arc<CryptoProvider>) -> anyhow::Result<Pinned> {
        let hex: String = pin.chars().filter(|c| *c != ':').collect();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()
            .unwrap_or_default();
        let Ok(pin) = <[u8; 32]>::try_from(bytes) else {
            bail!("the pin '{pin}' is not a SHA-256 in hex (64 digits, colons allowed)");
        };
        Ok(Pinned { pin, ca: ca.map(Arc::new), provider })
    }
}

/// SHA-256 of a certificate's DER, as `--ship-pin` takes it.
pub fn fingerprint(der: &[u8]) -> String {
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha2::Sha256::digest(end_entity.as_ref()).as_slice() != self.pin {
            return Err(rustls::Error::General(format!(
                "the SOC's certificate (SHA-256 {}) is not the pinned one",
                fingerprint(end_entity)
            )));
        }
        if let Some(ca) = &self.ca {
            return WebPkiServerVerifier::builder_with_provider(Arc::clone(ca), Arc::clone(&self.provider))
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        }
        // No chain is built (taking the certificate as its own anchor
        // refuses one a CA signed, UnknownIssuer, and a self-signed one
        // marked CA, CaUsedAsEndEntity); what a chain check would also
        // establish, the name and the dates, is checked here. That the
        // server holds the certificate's key is the handshake signature's
        // proof, as always.
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let now = now.as_secs() as i64;
        if now < cert.validity().not_before.timestamp() {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet));
        }
        if now > cert.validity().not_after.timestamp() {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS failure inside a transport error, if that is what it was: a
/// certificate refused by either side does not get better by retrying.
pub fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(t.to_string());
            }
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    /// A certificate for `name`, signed by `issuer` (self-signed without
    /// one), a CA itself with `ca`, dated 2020 with `expired`.
    fn cert(
        name: &str,
        issuer: Option<&(rcgen::Certificate, KeyPair)>,
        ca: bool,
        expired: bool,
    ) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let c = match issuer {
            Some((ic, ik)) => p.signed_by(&key, ic, ik).unwrap(),
            None => p.self_signed(&key).unwrap(),
        };
        (c, key)
    }

    fn verify(pinned: &[u8], presented: &[u8], name: &str) -> Result<ServerCertVerified, rustls::Error> {
        let pin = Pinned::new(&fingerprint(pinned), None, provider()).unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        pin.verify_server_cert(&CertificateDer::from(presented.to_vec()), &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn a_pin_accepts_exactly_its_certificate_whatever_its_issuer_or_ca_flag() {
        let city = cert("city-ca", None, true, false);
        let signed = cert("127.0.0.1", Some(&city), false, false).0;
        let self_ca = cert("127.0.0.1", None, true, false).0;
        let self_leaf = cert("127.0.0.1", None, false, false).0;
        for (what, c) in [("CA-signed", &signed), ("self-signed CA:TRUE", &self_ca), ("self-signed", &self_leaf)] {
            assert!(
                verify(c.der(), c.der(), "127.0.0.1").is_ok(),
                "{what}: {:?}",
                verify(c.der(), c.der(), "127.0.0.1")
            );
        }
        // Not the pinned one, even from the same CA.
        let other = cert("127.0.0.1", Some(&city), false, false).0;
        let e = verify(signed.der(), other.der(), "127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("is not the pinned one"), "{e}");
        // The pinned one, for another name or out of its dates.
        let e = verify(signed.der(), signed.der(), "soc.example").unwrap_err();
        assert!(
            matches!(
                e,
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{e:?}"
        );
        let old = cert("127.0.0.1", Some(&city), false, true).0;
        let e = verify(old.der(), old.der(), "127.0.0.1").unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)), "{e:?}");
    }

    #[test]
    fn a_malformed_pin_is_refused_with_the_reason() {
        for bad in ["zz", "abc", &"0".repeat(62), &"g".repeat(64)] {
            let e = Pinned::new(bad, None, provider()).unwrap_err();
            assert!(e.to_string().contains("is not a SHA-256 in hex"), "{e}");
        }
    }
}
