//! Sessions (random ids in a cookie, expiring when idle and at an age),
//! their CSRF tokens, and the limit on failed logins. Sessions are kept in
//! `<data>/console-sessions.json` under the SHA-256 of their cookie, so a
//! restart keeps everyone signed in and a copy of the file gives no usable
//! cookie.

use crate::users::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// Sent with every state-changing request, compared here.
    pub csrf: String,
    pub must_change: bool,
    /// The password was right; the second factor is still to come.
    #[serde(default)]
    pub second_factor: bool,
    /// A second factor is required and none is enrolled yet.
    #[serde(default)]
    pub must_enrol: bool,
    /// The secret the enrolment page offered, kept here so that the code
    /// typed back proves that secret and no other (a form's hidden field
    /// is the sender's to choose). Not written to disk: after a restart
    /// the page is loaded again.
    #[serde(skip)]
    pub pending_totp: Option<String>,
    /// Where a directory user signed in (`oidc`, `ldap`); none for a local
    /// account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Unix milliseconds.
    created_ms: u64,
    last_seen_ms: u64,
}

pub struct Sessions {
    /// By the SHA-256 of the cookie value.
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max_age: Duration,
    max: usize,
    /// Where they are kept; none for a console that keeps them in memory.
    path: Option<PathBuf>,
    /// When the file was last written for idle clocks alone: written at
    /// most once a minute for them, at once for anything else.
    touched: Mutex<Instant>,
}

fn token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key(cookie: &str) -> String {
    Sha256::digest(cookie.as_bytes()).iter().map(|x| format!("{x:02x}")).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Constant-time comparison of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a new session starts with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Start {
    pub must_change: bool,
    pub second_factor: bool,
    pub must_enrol: bool,
}

impl Sessions {
    /// Sessions in memory only.
    pub fn new(idle: Duration, max: usize) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            idle,
            max_age: Duration::from_secs(u64::MAX / 2000),
            max,
            path: None,
            touched: Mutex::new(Instant::now()),
        }
    }

    /// Sessions kept in `path`: those still live are read back. A file that
    /// cannot be read costs the sessions, not the start.
    pub fn open(path: PathBuf, idle: Duration, max_age: Duration, max: usize) -> Sessions {
        let map: HashMap<String, Session> = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "sessions file unreadable; everyone signs in again");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        let s = Sessions {
            map: Mutex::new(map),
            idle,
            max_age,
            max,
            path: Some(path),
            touched: Mutex::new(Instant::now()),
        };
        {
            let mut map = s.lock();
            s.expire(&mut map);
            s.save(&map);
        }
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self, s: &Session, now: u64) -> bool {
        now.saturating_sub(s.last_seen_ms) < self.idle.as_millis() as u64
            && now.saturating_sub(s.created_ms) < self.max_age.as_millis() as u64
    }

    fn expire(&self, map: &mut HashMap<String, Session>) {
        let now = now_ms();
        map.retain(|_, s| self.live(s, now));
    }

    /// Written whole to a temporary file, then renamed; readable by the
    /// console's user only. A failed write is logged: the sessions still
    /// work until the next restart.
    fn save(&self, map: &HashMap<String, Session>) {
        let Some(path) = &self.path else { return };
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec(map).map_err(std::io::Error::other).and_then(|text| {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            let mut f = o.open(&tmp)?;
            std::io::Write::write_all(&mut f, &text)?;
            std::fs::rename(&tmp, path)
        });
        if let Err(e) = result {
            tracing::error!(path = %path.display(), error = %e, "sessions not saved");
        }
        *self.touched.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Starts a session; returns the cookie value.
    pub fn start(&self, user: &str, role: Role, start: Start) -> String {
        let cookie = token();
        let mut map = self.lock();
        self.expire(&mut map);
        if map.len() >= self.max {
            // The longest idle goes first.
            if let Some(k) = map.iter().min_by_key(|(_, s)| s.last_seen_ms).map(|(k, _)| k.clone()) {
                map.remove(&k);
            }
        }
        let now = now_ms();
        let s = Session {
            user: user.into(),
            role,
            csrf: token(),
            must_change: start.must_change,
            second_factor: start.second_factor,
            must_enrol: start.must_enrol,
            pending_totp: None,
            source: None,
            created_ms: now,
            last_seen_ms: now,
        };
        map.insert(key(&cookie), s);
        self.save(&map);
        cookie
    }

    /// Starts the session of a directory user signed in through `source`;
    /// their second factor was the provider's or directory's to ask.
    pub fn start_from(&self, user: &str, role: Role, source: &str) -> String {
        let cookie = self.start(user, role, Start::default());
        self.change(&cookie, |s| s.source = Some(source.to_string()));
        cookie
    }

    /// The live session of a cookie, its idle clock reset.
    pub fn get(&self, cookie: &str) -> Option<Session> {
        let mut map = self.lock();
        let k = key(cookie);
        let now = now_ms();
        let s = map.get(&k)?;
        if !self.live(s, now) {
            map.remove(&k);
            self.save(&map);
            return None;
        }
        let s = map.get_mut(&k)?;
        s.last_seen_ms = now;
        let s = s.clone();
        let stale = self.touched.lock().unwrap_or_else(|p| p.into_inner()).elapsed() > Duration::from_secs(60);
        if stale {
            self.save(&map);
        }
        Some(s)
    }

    pub fn end(&self, cookie: &str) {
        let mut map = self.lock();
        map.remove(&key(cookie));
        self.save(&map);
    }

    /// After a password change, a role change or disabling: every session
    /// of the user ends, except the one making the change.
    pub fn end_user(&self, user: &str, keep: Option<&str>) {
        let keep = keep.map(key);
        let mut map = self.lock();
        map.retain(|k, s| !s.user.eq_ignore_ascii_case(user) || keep.as_deref() == Some(k.as_str()));
        self.save(&map);
    }

    fn change(&self, cookie: &str, f: impl FnOnce(&mut Session)) {
        let mut map = self.lock();
        if let Some(s) = map.get_mut(&key(cookie)) {
            f(s);
            self.save(&map);
        }
    }

    pub fn clear_must_change(&self, cookie: &str) {
        self.change(cookie, |s| s.must_change = false);
    }

    /// The second factor was given.
    pub fn clear_second_factor(&self, cookie: &str) {
        self.change(cookie, |s| s.second_factor = false);
    }

    /// A second factor was enrolled.
    pub fn clear_must_enrol(&self, cookie: &str) {
        self.change(cookie, |s| {
            s.must_enrol = false;
            s.pending_totp = None;
        });
    }

    /// Keeps the secret the enrolment page offers to this session.
    pub fn offer_totp(&self, cookie: &str, secret: &str) {
        self.change(cookie, |s| s.pending_totp = Some(secret.to_string()));
    }
}

/// Failed logins per client address and per user name within a window;
/// past the limit, logins are refused until the window passes.
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    limit: usize,
    window: Duration,
    max_keys: usize,
}

impl LoginLimiter {
    pub fn new(limit: usize, window: Duration) -> LoginLimiter {
        LoginLimiter { failures: Mutex::new(HashMap::new()), limit, window, max_keys: 100_000 }
    }

    /// Seconds to wait, if any of the keys is over the limit.
    pub fn blocked(&self, keys: &[&str]) -> Option<u64> {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window;
        let mut wait = None;
        for k in keys {
            if let Some(v) = f.get_mut(*k) {
                v.retain(|t| t.elapsed() < window);
                if v.len() >= self.limit {
                    let oldest = v.iter().min().copied().unwrap_or_else(Instant::now);
                    let w = window.saturating_sub(oldest.elapsed()).as_secs().max(1);
                    wait = Some(wait.map_or(w, |x: u64| x.max(w)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, keys: &[&str]) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() >= self.max_keys {
            let window = self.window;
            f.retain(|_, v| v.iter().any(|t| t.elapsed() < window));
        }
        for k in keys {
            if f.len() < self.max_keys || f.contains_key(*k) {
                f.entry(k.to_string()).or_default().push(Instant::now());
            }
        }
    }

    pub fn succeeded(&self, keys: &[&str]) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            f.remove(*k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_end_per_user() {
        let s = Sessions::new(Duration::from_millis(50), 10);
        let c = s.start("lan", Role::Analyst, Start::default());
        assert_eq!(s.get(&c).unwrap().user, "lan");
        assert!(s.get("forged").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.get(&c).is_none());
        let a = s.start("lan", Role::Analyst, Start::default());
        let b = s.start("lan", Role::Analyst, Start::default());
        s.end_user("lan", Some(&a));
        assert!(s.get(&a).is_some() && s.get(&b).is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 3);
        let first = s.start("a", Role::Viewer, Start::default());
        std::thread::sleep(Duration::from_millis(2));
        for _ in 0..3 {
            s.start("b", Role::Viewer, Start::default());
        }
        assert!(s.get(&first).is_none());
    }

    #[test]
    fn sessions_outlive_a_restart_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console-sessions.json");
        let open = |age_ms| Sessions::open(path.clone(), Duration::from_secs(60), Duration::from_millis(age_ms), 10);
        let s = open(60_000);
        let c = s.start("lan", Role::Analyst, Start { must_change: true, ..Default::default() });
        let csrf = s.get(&c).unwrap().csrf;
        drop(s);
        // The file holds the cookie's hash, never the cookie.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&c) && text.contains(&key(&c)), "{text}");
        let s = open(60_000);
        let back = s.get(&c).unwrap();
        assert_eq!((back.user.as_str(), back.csrf, back.must_change), ("lan", csrf, true));
        drop(s);
        // Past its age a session is gone, restart or not.
        std::thread::sleep(Duration::from_millis(30));
        let s = open(20);
        assert!(s.get(&c).is_none());
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&key(&c)));
    }

    #[test]
    fn logins_are_limited_per_key() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(l.blocked(&["ip:1", "user:admin"]).is_none());
            l.failed(&["ip:1", "user:admin"]);
        }
        assert!(l.blocked(&["ip:2", "user:admin"]).is_some());
        assert!(l.blocked(&["ip:2", "user:lan"]).is_none());
        l.succeeded(&["user:admin"]);
        assert!(l.blocked(&["ip:2", "user:admin"]).is_none());
    }
}
