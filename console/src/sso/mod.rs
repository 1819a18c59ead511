//! Signing in through the city's own identity systems: its OpenID provider
//! (Keycloak, Entra ID) and its directory (OpenLDAP, Active Directory).
//! Directory users have no local account: their role comes from their
//! groups at every sign-in, so a change in the directory takes effect at
//! their next sign-in, and their second factor is the provider's business.
//!
//! Their sessions carry the source (`oidc` or `ldap`) and a name that no
//! local account can have (`ldap:lan`, `oidc:lan@city.example`: `:` is not
//! allowed in local names), so no page meant for local accounts (password,
//! second factor) can ever act on a local account through them.

pub mod ldap;
pub mod oidc;
mod routes;

pub use routes::{password_login, routes};

use crate::error::ConsoleError;
use crate::users::Role;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Directory groups → console roles. A key is a group's name as the
/// provider sends it (Keycloak: `soc-analysts` or `/soc-analysts` with
/// full paths; Entra ID: the group's object id) or, from a directory, a
/// group's DN or the value of its first RDN (`cn`). Compared without case.
pub type RoleMap = BTreeMap<String, Role>;

/// `[console.oidc]`: signing in through an OpenID provider (authorization
/// code flow with PKCE; the ID token's signature, issuer, audience, nonce
/// and expiry are checked).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's name on the sign-in page ("Sign in with" and the name) and
    /// in the audit trail.
    #[serde(default = "default_provider_name")]
    pub name: String,
    /// The issuer URL; its `/.well-known/openid-configuration` is read for
    /// the endpoints and keys (Keycloak:
    /// `https://sso.city.example/realms/city`; Entra ID:
    /// `https://login.microsoftonline.com/<tenant id>/v2.0`).
    pub issuer: String,
    /// The console's client id at the provider.
    pub client_id: String,
    /// The client secret, written here. Prefer `client_secret_file`.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A file holding the client secret (readable by the service only);
    /// trailing whitespace is ignored. Neither this nor `client_secret`:
    /// a public client (PKCE alone).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends browsers back: this console's
    /// `/login/oidc/callback`, as the browser reaches it
    /// (`https://soc.city.example/login/oidc/callback`). Register the same
    /// URL at the provider.
    pub redirect_url: String,
    /// Scopes asked for besides `openid` (which is always asked for).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim listing the user's groups (Keycloak's group
    /// mapper and Entra ID both call it `groups`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The ID token claim naming the user in the console and the audit
    /// trail; the e-mail, then the subject, when it is missing.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Groups → roles. A user in groups of several roles gets the first of
    /// admin, analyst, responder, operator, viewer.
    #[serde(default)]
    pub role_map: RoleMap,
    /// The role of a user in no mapped group; none (the default) refuses
    /// them.
    #[serde(default)]
    pub default_role: Option<Role>,
    /// PEM file of the CA that signed the provider's HTTPS certificate,
    /// for a provider with a certificate of the city's own CA; without it
    /// the public web roots are trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A call to the provider (discovery, keys, token) waits this long.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

/// `[console.ldap]`: signing in with a directory account (LDAP simple
/// bind, OpenLDAP or Active Directory) on the same form as local accounts.
/// Local accounts are tried first; a name that is a local account is never
/// sent to the directory.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is
    /// sent (passwords never cross the network in clear text unless this is
    /// off on an `ldap://` URL).
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of the CA that signed the directory's certificate; without
    /// it the system's trusted roots are used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The search account's DN (`cn=citysoc,ou=services,dc=city,dc=example`;
    /// in AD also `citysoc@city.example`). None: users are looked up
    /// anonymously.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// A file holding the search account's password (readable by the
    /// service only); trailing whitespace is ignored.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Where users are looked up (subtree).
    pub user_base: String,
    /// The filter finding a user; `{user}` is replaced by the typed name,
    /// escaped per RFC 4515 (`(uid={user})`; AD: `(sAMAccountName={user})`).
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// Where groups are looked up (subtree). None: only the user's
    /// `memberOf` attribute names their groups (AD, OpenLDAP's memberof
    /// overlay).
    #[serde(default)]
    pub group_base: Option<String>,
    /// The filter finding the user's groups under `group_base`; `{dn}` is
    /// the user's DN and `{user}` the typed name, both escaped
    /// (`(member={dn})`, `(uniqueMember={dn})`, `(memberUid={user})`).
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// Groups (DN or `cn`) → roles. A user in groups of several roles gets
    /// the first of admin, analyst, responder, operator, viewer.
    #[serde(default)]
    pub role_map: RoleMap,
    /// The role of a user in no mapped group; none (the default) refuses
    /// them.
    #[serde(default)]
    pub default_role: Option<Role>,
    /// Connecting, binding and each search wait this long.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_provider_name() -> String {
    "single sign-on".into()
}
fn default_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into()]
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_user_filter() -> String {
    "(uid={user})".into()
}
fn default_group_filter() -> String {
    "(member={dn})".into()
}
fn default_timeout_secs() -> u64 {
    10
}

/// Who a provider or directory says signed in.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// The session's user name: `oidc:<name>` or `ldap:<name>`.
    pub user: String,
    /// The provider's subject, or the directory entry's DN.
    pub subject: String,
    pub groups: Vec<String>,
    pub role: Role,
}

/// Why a directory or provider sign-in was refused. The message key is
/// what the reader sees; the detail goes to the log and the audit trail.
#[derive(Debug)]
pub struct Refusal {
    /// `sso.<key>` in the console's strings.
    pub key: &'static str,
    pub detail: String,
}

impl Refusal {
    pub fn new(key: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal { key, detail: detail.into() }
    }
}

/// The role of someone in `groups`: the first role of `precedence` any of
/// them maps to, else the default.
pub fn role_for(groups: &[String], map: &RoleMap, default: Option<Role>) -> Option<Role> {
    const PRECEDENCE: [Role; 5] = [Role::Admin, Role::Analyst, Role::Responder, Role::Operator, Role::Viewer];
    let mapped: Vec<Role> =
        map.iter().filter(|(key, _)| groups.iter().any(|g| group_matches(key, g))).map(|(_, r)| *r).collect();
    PRECEDENCE.into_iter().find(|r| mapped.contains(r)).or(default)
}

/// A map key names a group when it is the group as sent, or, for a DN, the
/// value of its first RDN (`soc-analysts` for
/// `cn=soc-analysts,ou=groups,dc=city,dc=example`). Keycloak's full paths
/// (`/soc-analysts`) match their name without the slash.
fn group_matches(key: &str, group: &str) -> bool {
    let key = key.trim();
    if key.eq_ignore_ascii_case(group.trim()) || key.eq_ignore_ascii_case(group.trim().trim_start_matches('/')) {
        return true;
    }
    first_rdn_value(group).is_some_and(|v| key.eq_ignore_ascii_case(&v))
}

/// `soc-analysts` of `cn=soc-analysts,ou=groups,...`; escaped commas
/// (`\,`) stay part of the value.
fn first_rdn_value(dn: &str) -> Option<String> {
    let (_, rest) = dn.split_once('=')?;
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => value.extend(chars.next()),
            ',' | '+' => break,
            c => value.push(c),
        }
    }
    Some(value.trim().to_string())
}

/// A secret from a file, trailing whitespace (the newline editors add)
/// removed.
fn read_secret(path: &Path, what: &str, errors: &mut Vec<String>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim_end().is_empty() => {
            errors.push(format!("{what}: {} is empty", path.display()));
            None
        }
        Ok(s) => Some(s.trim_end().to_string()),
        Err(e) => {
            errors.push(format!("{what}: cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// A rustls client configuration trusting the CAs of a PEM file.
fn tls_with_ca(path: &Path, what: &str, errors: &mut Vec<String>) -> Option<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let certs = match CertificateDer::pem_file_iter(path).and_then(|it| it.collect::<Result<Vec<_>, _>>()) {
        Ok(c) if !c.is_empty() => c,
        Ok(_) => {
            errors.push(format!("{what}: {} holds no certificate", path.display()));
            return None;
        }
        Err(e) => {
            errors.push(format!("{what}: cannot read certificates from {}: {e}", path.display()));
            return None;
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        if let Err(e) = roots.add(c) {
            errors.push(format!("{what}: a certificate of {} is not usable: {e}", path.display()));
            return None;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
        Ok(b) => Some(std::sync::Arc::new(b.with_root_certificates(roots).with_no_client_auth())),
        Err(e) => {
            errors.push(format!("{what}: tls: {e}"));
            None
        }
    }
}

/// The sign-in sources the console is configured with.
#[derive(Default)]
pub struct Sso {
    pub oidc: Option<oidc::Oidc>,
    pub ldap: Option<ldap::Ldap>,
}

impl Sso {
    /// Checks both sections, every error collected before failing.
    pub fn new(oidc: Option<&OidcConfig>, ldap: Option<&LdapConfig>) -> Result<Sso, ConsoleError> {
        let mut errors = Vec::new();
        let oidc = oidc.and_then(|c| oidc::Oidc::new(c, &mut errors));
        let ldap = ldap.and_then(|c| ldap::Ldap::new(c, &mut errors));
        if errors.is_empty() {
            Ok(Sso { oidc, ldap })
        } else {
            Err(ConsoleError::Invalid(errors.join("; ")))
        }
    }

    /// Whether a session from `source` may go on: its source is still
    /// configured.
    pub fn knows(&self, source: &str) -> bool {
        match source {
            "oidc" => self.oidc.is_some(),
            "ldap" => self.ldap.is_some(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Role)]) -> RoleMap {
        pairs.iter().map(|(k, r)| (k.to_string(), *r)).collect()
    }

    #[test]
    fn groups_map_to_the_strongest_role_or_the_default() {
        let m = map(&[("soc-analysts", Role::Analyst), ("SOC-Admins", Role::Admin), ("noc", Role::Operator)]);
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(role_for(&g(&["noc", "soc-analysts"]), &m, None), Some(Role::Analyst));
        assert_eq!(role_for(&g(&["cn=soc-admins,ou=groups,dc=city,dc=example"]), &m, None), Some(Role::Admin));
        assert_eq!(role_for(&g(&["/soc-analysts"]), &m, None), Some(Role::Analyst));
        assert_eq!(role_for(&g(&["parks"]), &m, None), None);
        assert_eq!(role_for(&g(&[]), &m, Some(Role::Viewer)), Some(Role::Viewer));
        // A DN only matches on its first RDN, not on a parent.
        assert_eq!(role_for(&g(&["cn=parks,ou=noc,dc=city"]), &m, None), None);
        assert_eq!(first_rdn_value(r"cn=Smith\, John,ou=x").as_deref(), Some("Smith, John"));
    }

    #[test]
    fn the_schemas_carry_every_field_with_its_doc() {
        for (schema, fields) in [
            (serde_json::to_value(schemars::schema_for!(OidcConfig)).unwrap(), 13),
            (serde_json::to_value(schemars::schema_for!(LdapConfig)).unwrap(), 12),
        ] {
            let props = schema["properties"].as_object().unwrap();
            assert_eq!(props.len(), fields, "{schema:#}");
            for (name, p) in props {
                assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()), "{name} has no doc");
            }
        }
    }

    #[test]
    fn every_error_of_both_sections_is_reported() {
        let oidc: OidcConfig = toml::from_str(
            "issuer = 'not a url'\nclient_id = 'c'\nredirect_url = '/cb'\nclient_secret = 'a'\nclient_secret_file = '/x'",
        )
        .unwrap();
        let ldap: LdapConfig = toml::from_str("url = 'http://dir'\nuser_base = ''\nuser_filter = '(uid=x)'").unwrap();
        let Err(ConsoleError::Invalid(e)) = Sso::new(Some(&oidc), Some(&ldap)) else { panic!("accepted") };
        for part in ["issuer", "redirect_url", "client_secret", "ldap.url", "user_base", "{user}"] {
            assert!(e.contains(part), "{part} missing in {e}");
        }
        assert!(toml::from_str::<LdapConfig>("url = 'ldap://x'\nuser_base = 'dc=x'\nbogus = 1").is_err());
    }
}
