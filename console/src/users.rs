//! Local accounts: a name, a role, an argon2id password hash, kept in
//! `<data>/console-users.json` (written whole to a temporary file, then
//! renamed, so a crash never leaves half a file).

use crate::error::{ConsoleError, Msg};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Triages alerts and incidents.
    Analyst,
    /// Searches everything, follows flows, exports evidence.
    Responder,
    /// Rules, users, sensors, settings; and everything the others do.
    Admin,
    /// Sensor health.
    Operator,
    /// Read-only dashboards and alerts, internal client addresses
    /// pseudonymised.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Analyst, Role::Responder, Role::Admin, Role::Operator, Role::Viewer];

    pub fn name(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Responder => "responder",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == s)
    }

    /// What each role may do; the one table every page and call consults.
    pub fn may(self, what: Perm) -> bool {
        use Perm::*;
        use Role::*;
        match what {
            Dashboard => true,
            ReadAlerts => matches!(self, Analyst | Responder | Admin | Viewer),
            Triage => matches!(self, Analyst | Admin),
            Search => matches!(self, Analyst | Responder | Admin),
            Sensors => matches!(self, Operator | Admin),
            Rules => matches!(self, Analyst | Admin),
            // Packets hold content (what was said, not only who spoke).
            Packets => matches!(self, Analyst | Responder | Admin),
            Tune => self == Admin,
            Users | Audit => self == Admin,
        }
    }

    /// Whether internal client addresses are shown as pseudonyms.
    pub fn pseudonymised(self) -> bool {
        self == Role::Viewer
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    Dashboard,
    ReadAlerts,
    Triage,
    Search,
    Sensors,
    Rules,
    Users,
    Audit,
    Packets,
    /// Change detection settings (accept a device's change as normal).
    Tune,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub role: Role,
    /// PHC string: `$argon2id$v=19$m=...`.
    pub hash: String,
    /// Set for a bootstrap or reset password: the user must choose a new
    /// one before anything else.
    pub must_change: bool,
    pub disabled: bool,
    /// The account's TOTP secret (RFC 6238), base32, once enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    /// An admin requires a second factor: the user enrols at next sign-in.
    #[serde(default)]
    pub totp_required: bool,
}

pub const MIN_PASSWORD: usize = 12;
pub const MAX_PASSWORD: usize = 256;

pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn hash(password: &str) -> Result<String, ConsoleError> {
    let mut raw = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let salt = SaltString::encode_b64(&raw).map_err(|e| ConsoleError::Internal(format!("salt: {e}")))?;
    // Argon2::default() is argon2id, v19, with the RFC 9106 second
    // recommended parameters (m=19 MiB, t=2, p=1).
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ConsoleError::Internal(format!("password hashing: {e}")))
}

/// The password policy: long enough, not only blanks, not the user name.
pub fn check_password(name: &str, password: &str) -> Result<(), Msg> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(Msg::with("password.short", MIN_PASSWORD.to_string()));
    }
    if password.len() > MAX_PASSWORD {
        return Err(Msg::with("password.long", MAX_PASSWORD.to_string()));
    }
    if password.chars().all(char::is_whitespace) {
        return Err(Msg::new("password.blank"));
    }
    if password.trim().to_lowercase() == name.trim().to_lowercase() {
        return Err(Msg::new("password.is_name"));
    }
    Ok(())
}

/// The stored key of a name: ASCII letters without case, so `ADMIN` is
/// `admin`.
pub fn canonical(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

pub struct Users {
    path: PathBuf,
    users: Mutex<BTreeMap<String, User>>,
    /// A hash to verify against for unknown names, so a login takes as long
    /// whether or not the name exists.
    decoy: String,
}

impl Users {
    /// Opens the accounts; on first run creates `admin` with a random
    /// password, returned once so the caller can print it.
    pub fn open(data: &Path) -> Result<(Users, Option<String>), ConsoleError> {
        let path = data.join("console-users.json");
        let io = |e: std::io::Error| ConsoleError::Io(format!("{}: {e}", path.display()));
        let decoy = hash("decoy password, never used")?;
        let (users, first) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let users: BTreeMap<String, User> =
                    serde_json::from_str(&text).map_err(|e| ConsoleError::Io(format!("{}: {e}", path.display())))?;
                (users, None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let password = random_password();
                let admin = User {
                    role: Role::Admin,
                    hash: hash(&password)?,
                    must_change: true,
                    disabled: false,
                    totp: None,
                    totp_required: false,
                };
                (BTreeMap::from([("admin".to_string(), admin)]), Some(password))
            }
            Err(e) => return Err(io(e)),
        };
        let u = Users { path, users: Mutex::new(users), decoy };
        if first.is_some() {
            u.save(&u.users.lock().unwrap_or_else(|p| p.into_inner()))?;
        }
        Ok((u, first))
    }

    fn save(&self, users: &BTreeMap<String, User>) -> Result<(), ConsoleError> {
        let io = |e: std::io::Error| ConsoleError::Io(format!("{}: {e}", self.path.display()));
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(users).map_err(|e| ConsoleError::Internal(e.to_string()))?;
        // Password hashes and second-factor secrets: the server's user
        // only, whatever mode a leftover file had.
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut f = o.open(&tmp).map_err(io)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(io)?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// The account a typed name means: the same name, or the one name
    /// equal to it without case (accounts made before names lost their case
    /// keep their stored spelling).
    fn key_of(users: &BTreeMap<String, User>, name: &str) -> Option<String> {
        if users.contains_key(name) {
            return Some(name.to_string());
        }
        let mut same = users.keys().filter(|k| k.eq_ignore_ascii_case(name.trim()));
        match (same.next(), same.next()) {
            (Some(k), None) => Some(k.clone()),
            _ => None,
        }
    }

    /// The user's stored name and account, if the password is theirs and
    /// the account is enabled.
    pub fn verify(&self, name: &str, password: &str) -> Option<(String, User)> {
        let found = {
            let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
            Self::key_of(&users, name).and_then(|k| users.get(&k).cloned().map(|u| (k, u)))
        };
        let stored = found.as_ref().map_or(self.decoy.as_str(), |(_, u)| u.hash.as_str());
        let ok = PasswordHash::new(stored)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        found.filter(|(_, u)| ok && !u.disabled)
    }

    pub fn get(&self, name: &str) -> Option<User> {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        Self::key_of(&users, name).and_then(|k| users.get(&k).cloned())
    }

    pub fn list(&self) -> Vec<(String, User)> {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn set_password(&self, name: &str, password: &str, must_change: bool) -> Result<(), ConsoleError> {
        check_password(name, password).map_err(ConsoleError::Bad)?;
        let h = hash(password)?;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let key = Self::key_of(&users, name).ok_or(ConsoleError::NotFound)?;
        let u = users.get_mut(&key).ok_or(ConsoleError::NotFound)?;
        u.hash = h;
        u.must_change = must_change;
        self.save(&users)
    }

    /// Adds an account with a password its owner must change.
    /// Adds an account with a password its owner must change; the name is
    /// stored without case and must differ from every other without case.
    pub fn add(&self, name: &str, role: Role, password: &str) -> Result<String, ConsoleError> {
        if !valid_name(name) {
            return Err(ConsoleError::Bad(Msg::new("users.bad_name")));
        }
        let name = canonical(name);
        check_password(&name, password).map_err(ConsoleError::Bad)?;
        let h = hash(password)?;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = users.keys().find(|k| k.eq_ignore_ascii_case(&name)) {
            return Err(ConsoleError::Bad(Msg::with("users.exists", k.clone())));
        }
        let user = User { role, hash: h, must_change: true, disabled: false, totp: None, totp_required: false };
        users.insert(name.clone(), user);
        self.save(&users)?;
        Ok(name)
    }

    /// Changes an account as an admin asks; the stored name is returned.
    pub fn update(&self, name: &str, change: Change) -> Result<String, ConsoleError> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let key = Self::key_of(&users, name).ok_or(ConsoleError::NotFound)?;
        let mut next = users.clone();
        let u = next.get_mut(&key).ok_or(ConsoleError::NotFound)?;
        if let Some(r) = change.role {
            u.role = r;
        }
        if let Some(d) = change.disabled {
            u.disabled = d;
        }
        if let Some(t) = change.totp_required {
            u.totp_required = t;
        }
        if change.totp_reset {
            u.totp = None;
        }
        // Someone must still be able to administer the console.
        if !next.values().any(|u| u.role == Role::Admin && !u.disabled) {
            return Err(ConsoleError::Bad(Msg::new("users.last_admin")));
        }
        self.save(&next)?;
        *users = next;
        Ok(key)
    }

    /// Stores a verified TOTP secret for the account.
    pub fn set_totp(&self, name: &str, secret: Option<String>) -> Result<(), ConsoleError> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let key = Self::key_of(&users, name).ok_or(ConsoleError::NotFound)?;
        let mut next = users.clone();
        next.get_mut(&key).ok_or(ConsoleError::NotFound)?.totp = secret;
        self.save(&next)?;
        *users = next;
        Ok(())
    }
}

/// What an admin changes on an account; `None` leaves it as it is.
#[derive(Clone, Debug, Default)]
pub struct Change {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub totp_required: Option<bool>,
    /// Forget the enrolled second factor (a lost phone): the user enrols
    /// again if one is required.
    pub totp_reset: bool,
}

/// 20 characters from a 56-letter alphabet without look-alikes: ~116 bits.
pub fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_verify_and_last_admin() {
        let dir = tempfile::tempdir().unwrap();
        let (u, first) = Users::open(dir.path()).unwrap();
        let pw = first.unwrap();
        // Password hashes are for the server's user alone.
        let file = std::fs::read_dir(dir.path()).unwrap().flatten().find(|e| e.file_name() == "console-users.json");
        let mode = std::os::unix::fs::PermissionsExt::mode(&file.unwrap().metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let (_, admin) = u.verify("admin", &pw).unwrap();
        assert!(admin.must_change && admin.hash.starts_with("$argon2id$"));
        assert!(u.verify("admin", "wrong password!").is_none());
        assert!(u.verify("nobody", &pw).is_none());
        assert!(u.set_password("admin", "short", false).is_err());
        u.set_password("admin", "a long enough passphrase", false).unwrap();
        assert!(!u.verify("admin", "a long enough passphrase").unwrap().1.must_change);
        assert!(u.update("admin", Change { role: Some(Role::Viewer), ..Default::default() }).is_err());
        u.add("lan", Role::Analyst, "another long passphrase").unwrap();
        assert!(u.add("../x", Role::Analyst, "another long passphrase").is_err());
        // Reopened: no new bootstrap, the accounts kept.
        drop(u);
        let (u, first) = Users::open(dir.path()).unwrap();
        assert!(first.is_none());
        assert_eq!(u.get("lan").unwrap().role, Role::Analyst);
    }

    #[test]
    fn the_password_policy_refuses_blanks_short_ones_and_the_name() {
        assert_eq!(check_password("lan", &" ".repeat(12)).unwrap_err().key, "password.blank");
        assert_eq!(check_password("lan", "\t \u{a0}          ").unwrap_err().key, "password.blank");
        assert_eq!(check_password("lan", "short").unwrap_err().key, "password.short");
        assert_eq!(check_password("nguyen.van.an", "Nguyen.Van.An").unwrap_err().key, "password.is_name");
        assert_eq!(check_password("lan", &"x".repeat(300)).unwrap_err().key, "password.long");
        assert!(check_password("lan", "a long enough passphrase").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let (u, _) = Users::open(dir.path()).unwrap();
        assert!(u.set_password("admin", &" ".repeat(12), false).is_err());
        assert!(u.set_password("admin", "ADMINADMIN12", false).is_ok(), "containing is allowed, equal is not");
    }

    #[test]
    fn names_do_not_differ_by_case() {
        let dir = tempfile::tempdir().unwrap();
        let (u, _) = Users::open(dir.path()).unwrap();
        let e = u.add("ADMIN", Role::Viewer, "another long passphrase").unwrap_err();
        assert!(matches!(e, ConsoleError::Bad(ref m) if m.key == "users.exists"), "{e:?}");
        assert_eq!(u.add("Lan.Tran", Role::Analyst, "another long passphrase").unwrap(), "lan.tran");
        assert!(u.add("LAN.TRAN", Role::Analyst, "another long passphrase").is_err());
        // Signing in ignores case too, and names the stored account.
        assert_eq!(u.verify("LAN.tran", "another long passphrase").unwrap().0, "lan.tran");
        assert_eq!(u.get("Lan.Tran").unwrap().role, Role::Analyst);
    }

    #[test]
    fn roles_allow_what_they_should() {
        assert!(Role::Viewer.may(Perm::ReadAlerts) && !Role::Viewer.may(Perm::Triage));
        assert!(!Role::Operator.may(Perm::Search) && Role::Operator.may(Perm::Sensors));
        assert!(Role::Responder.may(Perm::Search) && !Role::Responder.may(Perm::Users));
        assert!(Role::ALL.iter().all(|r| r.may(Perm::Dashboard)));
    }
}
