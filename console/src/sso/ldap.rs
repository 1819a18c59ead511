//! Directory sign-in (OpenLDAP, Active Directory): the search account finds
//! the user's entry and groups, then a bind as that entry with the typed
//! password proves it. Groups are read at every sign-in.

use super::{role_for, Identity, LdapConfig, Refusal};
use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};
use std::sync::Arc;
use std::time::Duration;

/// `invalidCredentials` (RFC 4511 §4.1.9).
const INVALID_CREDENTIALS: u32 = 49;
/// Names longer than this are not looked up (AD's sAMAccountName is at most
/// 20, a uid rarely past 64).
const MAX_NAME: usize = 256;

pub struct Ldap {
    url: String,
    starttls: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    bind_dn: Option<String>,
    bind_password: Option<String>,
    user_base: String,
    user_filter: String,
    group_base: Option<String>,
    group_filter: String,
    role_map: super::RoleMap,
    default_role: Option<crate::users::Role>,
    timeout: Duration,
}

impl Ldap {
    /// Checks `[console.ldap]`; problems go to `errors`.
    pub fn new(c: &LdapConfig, errors: &mut Vec<String>) -> Option<Ldap> {
        let before = errors.len();
        match url::Url::parse(&c.url) {
            Ok(u) if u.scheme() == "ldap" || u.scheme() == "ldaps" => {
                if u.scheme() == "ldaps" && c.starttls {
                    errors.push("console.ldap.starttls: not with an ldaps:// url (it is TLS already)".into());
                }
                if u.scheme() == "ldap" && !c.starttls {
                    tracing::warn!(
                        url = %c.url,
                        "console.ldap: plain ldap:// without starttls sends the users' passwords in clear"
                    );
                }
            }
            Ok(_) => errors.push(format!("console.ldap.url: '{}' is neither ldap:// nor ldaps://", c.url)),
            Err(e) => errors.push(format!("console.ldap.url: '{}': {e}", c.url)),
        }
        if c.user_base.trim().is_empty() {
            errors.push("console.ldap.user_base: empty".into());
        }
        if !c.user_filter.contains("{user}") {
            errors.push(format!("console.ldap.user_filter: '{}' has no {{user}}", c.user_filter));
        }
        if c.group_base.is_some() && !(c.group_filter.contains("{dn}") || c.group_filter.contains("{user}")) {
            errors.push(format!("console.ldap.group_filter: '{}' has neither {{dn}} nor {{user}}", c.group_filter));
        }
        if c.role_map.is_empty() && c.default_role.is_none() {
            errors.push("console.ldap: role_map is empty and there is no default_role: nobody could sign in".into());
        }
        let bind_password = match (&c.bind_dn, &c.bind_password_file) {
            (Some(_), Some(p)) => super::read_secret(p, "console.ldap.bind_password_file", errors),
            (Some(_), None) => {
                errors.push("console.ldap: bind_dn without bind_password_file".into());
                None
            }
            (None, Some(_)) => {
                errors.push("console.ldap: bind_password_file without bind_dn".into());
                None
            }
            (None, None) => None,
        };
        let tls = c.ca_file.as_ref().and_then(|p| super::tls_with_ca(p, "console.ldap.ca_file", errors));
        if errors.len() > before {
            return None;
        }
        Some(Ldap {
            url: c.url.clone(),
            starttls: c.starttls,
            tls,
            bind_dn: c.bind_dn.clone(),
            bind_password,
            user_base: c.user_base.clone(),
            user_filter: c.user_filter.clone(),
            group_base: c.group_base.clone(),
            group_filter: c.group_filter.clone(),
            role_map: c.role_map.clone(),
            default_role: c.default_role,
            timeout: Duration::from_secs(c.timeout_secs.clamp(1, 120)),
        })
    }

    /// Signs `user` in with `password`: `Ok` with their role, or why not.
    pub async fn authenticate(&self, user: &str, password: &str) -> Result<Identity, Refusal> {
        if user.is_empty() || user.len() > MAX_NAME || user.chars().any(char::is_control) {
            return Err(Refusal::new("login.failed", "name not usable in the directory"));
        }
        // A simple bind with an empty password is an anonymous bind (RFC 4513
        // §5.1.2), which many directories accept: it would prove nothing.
        if password.is_empty() {
            return Err(Refusal::new("login.failed", "empty password"));
        }
        match tokio::time::timeout(self.timeout * 4, self.try_authenticate(user, password)).await {
            Ok(r) => r,
            Err(_) => Err(Refusal::new("sso.ldap_down", format!("{}: no answer in time", self.url))),
        }
    }

    async fn try_authenticate(&self, user: &str, password: &str) -> Result<Identity, Refusal> {
        let down = |e: LdapError| Refusal::new("sso.ldap_down", format!("{}: {e}", self.url));
        let mut settings = LdapConnSettings::new().set_conn_timeout(self.timeout).set_starttls(self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(Arc::clone(tls));
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url).await.map_err(down)?;
        ldap3::drive!(conn);
        if let (Some(dn), Some(pw)) = (&self.bind_dn, &self.bind_password) {
            // The search account failing is the directory's or our
            // configuration's fault, not the user's.
            ldap.with_timeout(self.timeout)
                .simple_bind(dn, pw)
                .await
                .and_then(|r| r.success())
                .map_err(|e| Refusal::new("sso.ldap_down", format!("search account {dn}: {e}")))?;
        }
        let escaped = ldap_escape(user);
        let filter = self.user_filter.replace("{user}", &escaped);
        let (entries, _) = ldap
            .with_timeout(self.timeout)
            .search(&self.user_base, Scope::Subtree, &filter, vec!["memberOf"])
            .await
            .and_then(|r| r.success())
            .map_err(|e| {
                Refusal::new("sso.ldap_down", format!("user search {filter} under {}: {e}", self.user_base))
            })?;
        let mut entries = entries.into_iter().map(SearchEntry::construct);
        let entry = match (entries.next(), entries.next()) {
            (Some(e), None) => e,
            (None, _) => return Err(Refusal::new("login.failed", format!("no entry for {filter}"))),
            (Some(_), Some(_)) => {
                return Err(Refusal::new("login.failed", format!("several entries for {filter}: refusing to guess")))
            }
        };
        let mut groups: Vec<String> = entry
            .attrs
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("memberOf"))
            .flat_map(|(_, v)| v.clone())
            .collect();
        if let Some(base) = &self.group_base {
            let filter = self.group_filter.replace("{dn}", &ldap_escape(&entry.dn)).replace("{user}", &escaped);
            let (found, _) = ldap
                .with_timeout(self.timeout)
                .search(base, Scope::Subtree, &filter, vec!["cn"])
                .await
                .and_then(|r| r.success())
                .map_err(|e| Refusal::new("sso.ldap_down", format!("group search {filter} under {base}: {e}")))?;
            groups.extend(found.into_iter().map(|e| SearchEntry::construct(e).dn));
        }
        // Last, the password: a bind as the user's own entry.
        let bound = ldap.with_timeout(self.timeout).simple_bind(&entry.dn, password).await;
        let _ = ldap.unbind().await;
        match bound.map(|r| r.rc) {
            Ok(0) => {}
            Ok(INVALID_CREDENTIALS) => {
                return Err(Refusal::new("login.failed", format!("{}: invalid credentials", entry.dn)))
            }
            Ok(rc) => {
                return Err(Refusal::new("login.failed", format!("{}: bind refused, result code {rc}", entry.dn)))
            }
            Err(e) => return Err(down(e)),
        }
        let user = format!("ldap:{}", crate::users::canonical(user));
        let Some(role) = role_for(&groups, &self.role_map, self.default_role) else {
            return Err(Refusal::new("sso.no_role", format!("{} is in no mapped group: {groups:?}", entry.dn)));
        };
        Ok(Identity { user, subject: entry.dn, groups, role })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_escaped_per_rfc_4515() {
        assert_eq!(super::ldap_escape("*)(uid=*"), r"\2a\29\28uid=\2a");
        assert_eq!(super::ldap_escape("a\\b\0"), r"a\5cb\00");
    }
}
