//! Sessions (random ids in a cookie, kept in memory, expiring when idle),
//! their CSRF tokens, and the limit on failed logins.

use crate::users::Role;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// Sent with every state-changing request, compared here.
    pub csrf: String,
    pub must_change: bool,
    last_seen: Instant,
}

pub struct Sessions {
    /// By the SHA-256 of the cookie value: a leaked memory dump does not
    /// give usable cookies.
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: usize,
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

/// Constant-time comparison of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), idle, max }
    }

    /// Starts a session; returns the cookie value.
    pub fn start(&self, user: &str, role: Role, must_change: bool) -> String {
        let cookie = token();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let idle = self.idle;
        map.retain(|_, s| s.last_seen.elapsed() < idle);
        if map.len() >= self.max {
            // The longest idle goes first.
            if let Some(k) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone()) {
                map.remove(&k);
            }
        }
        let s = Session { user: user.into(), role, csrf: token(), must_change, last_seen: Instant::now() };
        map.insert(key(&cookie), s);
        cookie
    }

    /// The live session of a cookie, its idle clock reset.
    pub fn get(&self, cookie: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(cookie);
        let s = map.get_mut(&k)?;
        if s.last_seen.elapsed() >= self.idle {
            map.remove(&k);
            return None;
        }
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    pub fn end(&self, cookie: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(&key(cookie));
    }

    /// After a password change, a role change or disabling: every session
    /// of the user ends, except the one making the change.
    pub fn end_user(&self, user: &str, keep: Option<&str>) {
        let keep = keep.map(key);
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, s| s.user != user || keep.as_deref() == Some(k.as_str()));
    }

    pub fn clear_must_change(&self, cookie: &str) {
        if let Some(s) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&key(cookie)) {
            s.must_change = false;
        }
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
        let c = s.start("lan", Role::Analyst, false);
        assert_eq!(s.get(&c).unwrap().user, "lan");
        assert!(s.get("forged").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.get(&c).is_none());
        let a = s.start("lan", Role::Analyst, false);
        let b = s.start("lan", Role::Analyst, false);
        s.end_user("lan", Some(&a));
        assert!(s.get(&a).is_some() && s.get(&b).is_none());
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::new(Duration::from_secs(60), 3);
        let first = s.start("a", Role::Viewer, false);
        for _ in 0..3 {
            s.start("b", Role::Viewer, false);
        }
        assert!(s.get(&first).is_none());
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
