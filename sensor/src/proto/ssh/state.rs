//! Per-connection SSH state: each side goes version line, then clear binary
//! packets until NEWKEYS, then encrypted; the sizes of the encrypted server
//! packets give Zeek's authentication heuristics.

use super::parser::{first_string, kexinit, packet, KexInit, MAX_LINE};
use crate::proto::stream::Chunk;
use crate::proto::{zeek_escape, AppOut, FlowCtx};
use base64::Engine;
use md5::{Digest, Md5};
use schema::{Event, SshRecord};
use sha2::Sha256;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    #[default]
    Version,
    Packets,
    /// After NEWKEYS: only sizes are seen.
    Encrypted,
    /// After a gap in the clear part, SSH-1, or given up.
    Done,
}

#[derive(Debug, Default)]
struct Side {
    phase: Phase,
    buf: Vec<u8>,
    version: Option<String>,
    kex: Option<KexInit>,
    /// Lines before the version string (a server may send some).
    lines: u8,
}

#[derive(Debug)]
pub struct SshState {
    rec: Option<SshRecord>,
    sides: [Side; 2],
    failed: bool,
    auth: AuthGuess,
    /// A gap anywhere ends all analysis, as in Zeek.
    had_gap: bool,
}

/// Zeek's guess at authentication from the sizes of the server's encrypted
/// segments: the first is SERVICE_ACCEPT; one 16 bytes shorter is
/// USERAUTH_SUCCESS; repeats of the first failure's size are failures.
#[derive(Debug, Default)]
struct AuthGuess {
    saw_client: bool,
    service_accept: usize,
    failure: usize,
    skipped_banner: bool,
    decided: bool,
}

/// Clear-text bytes buffered per side before the analyzer gives up.
const MAX_BUFFER: usize = 64 << 10;

impl Default for SshState {
    fn default() -> Self {
        Self::new()
    }
}

impl SshState {
    pub fn new() -> Self {
        SshState {
            rec: None,
            sides: [Side::default(), Side::default()],
            failed: false,
            auth: AuthGuess::default(),
            had_gap: false,
        }
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    fn record(&mut self, ctx: &FlowCtx) -> &mut SshRecord {
        self.rec.get_or_insert_with(|| {
            let (lo, lr) = (ctx.orig_local, ctx.resp_local);
            SshRecord {
                ts: ctx.ts,
                uid: ctx.uid,
                orig_h: ctx.orig.0,
                orig_p: ctx.orig.1,
                resp_h: ctx.resp.0,
                resp_p: ctx.resp.1,
                version: None,
                auth_success: None,
                auth_attempts: 0,
                direction: (lo != lr).then_some(if lo { "OUTBOUND" } else { "INBOUND" }),
                client: None,
                server: None,
                cipher_alg: None,
                mac_alg: None,
                compression_alg: None,
                kex_alg: None,
                host_key_alg: None,
                host_key: None,
                host_key_fingerprint: None,
                hassh_version: None,
                hassh: None,
                hassh_algorithms: None,
                hassh_server: None,
                hassh_server_algorithms: None,
                cshka: None,
                sshka: None,
            }
        })
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        let data = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => {
                // Framing is lost; what follows is of no use unencrypted.
                if let Some(side) = self.sides.get_mut(s) {
                    side.phase = Phase::Done;
                    side.buf = Vec::new();
                }
                self.had_gap = true;
                return;
            }
        };
        if self.had_gap {
            return;
        }
        let Some(side) = self.sides.get_mut(s) else { return };
        match side.phase {
            Phase::Done => return,
            Phase::Encrypted => {
                self.encrypted(data.len(), ctx.is_orig);
                return;
            }
            _ => {}
        }
        side.buf.extend_from_slice(data);
        loop {
            let Some(side) = self.sides.get_mut(s) else { return };
            match side.phase {
                Phase::Done => {
                    side.buf = Vec::new();
                    return;
                }
                Phase::Encrypted => {
                    // The rest of the segment that carried NEWKEYS.
                    let n = std::mem::take(&mut side.buf).len();
                    if n > 0 {
                        self.encrypted(n, ctx.is_orig);
                    }
                    return;
                }
                Phase::Version => {
                    let Some(nl) = side.buf.iter().position(|&b| b == b'\n') else {
                        if side.buf.len() > MAX_LINE {
                            out.weirds.push("SSH_version_line_too_long");
                            side.phase = Phase::Done;
                            self.failed = side.version.is_none() && s == 0;
                        }
                        return;
                    };
                    let line: Vec<u8> = side.buf.drain(..=nl).collect();
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.starts_with(b"SSH-") {
                        let v = zeek_escape(line);
                        side.version = Some(v.clone());
                        side.phase = if line.starts_with(b"SSH-1.") && !line.starts_with(b"SSH-1.99") {
                            // SSH-1 packets are not decoded.
                            Phase::Done
                        } else {
                            Phase::Packets
                        };
                        out.confirmed = Some("ssh");
                        let r = self.record(ctx);
                        if ctx.is_orig {
                            r.client = Some(v);
                        } else {
                            r.server = Some(v);
                        }
                        self.set_version();
                    } else {
                        side.lines += 1;
                        // Only a server may send lines first; a client that
                        // does, or too many lines, is not SSH.
                        if ctx.is_orig || side.lines > 20 {
                            out.weirds.push("SSH_not_a_version_line");
                            side.phase = Phase::Done;
                            self.failed = self.rec.is_none();
                            return;
                        }
                    }
                }
                Phase::Packets => match packet(&side.buf) {
                    Ok(None) => {
                        if side.buf.len() > MAX_BUFFER {
                            side.phase = Phase::Done;
                        }
                        return;
                    }
                    Err(w) => {
                        out.weirds.push(w);
                        side.phase = Phase::Done;
                        return;
                    }
                    Ok(Some((t, body, used))) => {
                        let body = body.to_vec();
                        side.buf.drain(..used);
                        self.message(ctx, s, t, &body, out);
                    }
                },
            }
        }
    }

    fn message(&mut self, ctx: &FlowCtx, s: usize, t: u8, body: &[u8], out: &mut AppOut) {
        match t {
            // SSH_MSG_KEXINIT
            20 => match kexinit(body) {
                Ok((_, k)) => {
                    if let Some(side) = self.sides.get_mut(s) {
                        side.kex = Some(k);
                    }
                    self.negotiate(ctx);
                }
                Err(_) => out.weirds.push("SSH_bad_kexinit"),
            },
            // SSH_MSG_NEWKEYS: this side encrypts from here on.
            21 => {
                if let Some(side) = self.sides.get_mut(s) {
                    side.phase = Phase::Encrypted;
                }
            }
            // KEXDH_REPLY / KEX_ECDH_REPLY (31) or KEX_DH_GEX_REPLY (33) from
            // the server carry its host key first; with group exchange, 31 is
            // the group and carries no key.
            31 | 33 if s == 1 => {
                let gex =
                    self.rec.as_ref().and_then(|r| r.kex_alg.as_deref()).is_some_and(|k| k.contains("group-exchange"));
                if (t == 33) == gex {
                    if let Ok((_, key)) = first_string(body) {
                        let d = Md5::digest(key);
                        let hex: Vec<String> = d.iter().map(|b| format!("{b:02x}")).collect();
                        let sha = base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(key));
                        let r = self.record(ctx);
                        r.host_key = Some(hex.join(":"));
                        // Zeek writes the first 32 base64 characters (24
                        // of the 32 digest bytes); so do we, to match it.
                        r.host_key_fingerprint = Some(format!("SHA256:{}", &sha[..32]));
                    }
                }
            }
            _ => {}
        }
    }

    /// One encrypted segment of `len` bytes (Zeek's `ProcessEncrypted`).
    fn encrypted(&mut self, len: usize, is_orig: bool) {
        let a = &mut self.auth;
        if a.decided || self.rec.as_ref().and_then(|r| r.version) != Some(2) {
            return;
        }
        if is_orig {
            a.saw_client = true;
            return;
        }
        if !a.saw_client {
            return;
        }
        if a.service_accept == 0 {
            a.service_accept = len;
            return;
        }
        // USERAUTH_SUCCESS (8 bytes before padding and MAC) is 16 bytes
        // shorter than SERVICE_ACCEPT.
        let success = len + 16 == a.service_accept;
        if a.failure == 0 {
            if success {
                a.decided = true;
                self.attempted(true);
                return;
            }
            // A much larger packet is a pre-authentication banner.
            if !a.skipped_banner && len > a.service_accept + 256 {
                a.skipped_banner = true;
                return;
            }
            a.failure = len;
            return;
        }
        if len == a.failure {
            self.attempted(false);
        } else if success {
            self.auth.decided = true;
            self.attempted(true);
        }
    }

    /// Zeek's `ssh_auth_attempted` handler: sizes say nothing under
    /// compression, and a success is final.
    fn attempted(&mut self, success: bool) {
        let Some(r) = self.rec.as_mut() else { return };
        if matches!(r.compression_alg.as_deref(), Some("zlib" | "zlib@openssh.com")) || r.auth_success == Some(true) {
            return;
        }
        r.auth_success = Some(success);
        r.auth_attempts += 1;
    }

    /// Zeek's `set_version`.
    fn set_version(&mut self) {
        let Some(r) = self.rec.as_mut() else { return };
        let (Some(c), Some(s)) = (r.client.as_deref(), r.server.as_deref()) else { return };
        let (c, s) = (c.as_bytes(), s.as_bytes());
        if c.len() <= 4 || s.len() <= 4 {
            return;
        }
        let is199 = |v: &[u8]| v.len() > 7 && v[6] == b'9' && v[7] == b'9';
        r.version = match (c[4], s[4]) {
            (b'1', b'2') => Some(if is199(c) { 2 } else { 0 }),
            (b'2', b'1') => Some(if is199(s) { 2 } else { 0 }),
            (b'1', b'1') => Some(if is199(s) && is199(c) { 2 } else { 1 }),
            (b'2', b'2') => Some(2),
            _ => r.version,
        };
    }

    /// Both offers known: the negotiated algorithms (Zeek's `find_alg`) and
    /// the HASSH fingerprints (hassh 1.1).
    fn negotiate(&mut self, ctx: &FlowCtx) {
        let (client, server) = (self.sides[0].kex.clone(), self.sides[1].kex.clone());
        let r = self.record(ctx);
        if let Some(c) = &client {
            let algs = format!("{};{};{};{}", c.kex, c.enc_c2s, c.mac_c2s, c.comp_c2s);
            r.hassh = Some(md5_hex(algs.as_bytes()));
            r.hassh_algorithms = Some(algs);
            r.hassh_version = Some("1.1");
            r.cshka = Some(c.host_key.clone());
        }
        if let Some(sv) = &server {
            let algs = format!("{};{};{};{}", sv.kex, sv.enc_s2c, sv.mac_s2c, sv.comp_s2c);
            r.hassh_server = Some(md5_hex(algs.as_bytes()));
            r.hassh_server_algorithms = Some(algs);
            r.hassh_version = Some("1.1");
            r.sshka = Some(sv.host_key.clone());
        }
        if let (Some(c), Some(sv)) = (client, server) {
            r.cipher_alg = Some(bidirectional(&c.enc_c2s, &sv.enc_c2s, &c.enc_s2c, &sv.enc_s2c));
            r.mac_alg = Some(bidirectional(&c.mac_c2s, &sv.mac_c2s, &c.mac_s2c, &sv.mac_s2c));
            r.compression_alg = Some(bidirectional(&c.comp_c2s, &sv.comp_c2s, &c.comp_s2c, &sv.comp_s2c));
            r.kex_alg = Some(find_alg(&c.kex, &sv.kex));
            r.host_key_alg = Some(find_alg(&c.host_key, &sv.host_key));
        }
    }

    pub fn finish(&mut self, _ctx: &FlowCtx, out: &mut AppOut) {
        if let Some(r) = self.rec.take() {
            out.events.push(Event::Ssh(r));
        }
    }
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// The first client algorithm the server also offers.
fn find_alg(client: &str, server: &str) -> String {
    let s: Vec<&str> = server.split(',').collect();
    client
        .split(',')
        .find(|a| s.contains(a))
        .map(str::to_string)
        .unwrap_or_else(|| "Algorithm negotiation failed".into())
}

fn bidirectional(c_c2s: &str, s_c2s: &str, c_s2c: &str, s_s2c: &str) -> String {
    let a = find_alg(c_c2s, s_c2s);
    let b = find_alg(c_s2c, s_s2c);
    if a == b {
        a
    } else {
        format!("To server: {a}, to client: {b}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::parser::tests::{kexinit_packet, wrap};
    use super::*;
    use schema::{FlowUid, Time};

    fn ctx(is_orig: bool) -> FlowCtx {
        FlowCtx {
            ts: Time(5),
            uid: FlowUid::new(3),
            orig: ("11.2.3.4".parse().unwrap(), 50000),
            resp: ("10.1.0.22".parse().unwrap(), 22),
            is_orig,
            keep_file_bytes: 0,
            orig_local: false,
            resp_local: true,
        }
    }

    fn session() -> Vec<(bool, Vec<u8>)> {
        let mut host_key_reply = vec![31];
        host_key_reply.extend_from_slice(&11u32.to_be_bytes());
        host_key_reply.extend_from_slice(b"ssh-ed25519");
        vec![
            (false, b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
            (true, b"SSH-2.0-Go\r\n".to_vec()),
            (
                true,
                kexinit_packet(
                    "curve25519-sha256,ecdh-sha2-nistp256",
                    "ssh-ed25519,rsa-sha2-256",
                    "aes128-gcm@openssh.com,aes256-ctr",
                    "hmac-sha2-256",
                    "none",
                ),
            ),
            (
                false,
                kexinit_packet(
                    "ecdh-sha2-nistp256,curve25519-sha256",
                    "rsa-sha2-256,ssh-ed25519",
                    "aes256-ctr,aes128-gcm@openssh.com",
                    "hmac-sha2-256",
                    "none,zlib@openssh.com",
                ),
            ),
            (false, wrap(&host_key_reply)),
            (true, wrap(&[21])),
            (false, wrap(&[21])),
            (true, vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3]),
        ]
    }

    fn run(split: usize) -> SshRecord {
        let mut st = SshState::new();
        let mut out = AppOut::default();
        for (is_orig, bytes) in session() {
            let cut = split.min(bytes.len());
            st.stream(&ctx(is_orig), Chunk::Data(&bytes[..cut]), &mut out);
            st.stream(&ctx(is_orig), Chunk::Data(&bytes[cut..]), &mut out);
        }
        st.finish(&ctx(true), &mut out);
        assert!(out.weirds.is_empty(), "{:?}", out.weirds);
        match out.events.pop() {
            Some(Event::Ssh(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn negotiation_and_fingerprints_at_every_split() {
        let whole = run(usize::MAX);
        assert_eq!(whole.version, Some(2));
        assert_eq!(whole.direction, Some("INBOUND"));
        assert_eq!(whole.client.as_deref(), Some("SSH-2.0-Go"));
        assert_eq!(whole.kex_alg.as_deref(), Some("curve25519-sha256"));
        assert_eq!(whole.host_key_alg.as_deref(), Some("ssh-ed25519"));
        assert_eq!(whole.cipher_alg.as_deref(), Some("aes128-gcm@openssh.com"));
        assert_eq!(whole.compression_alg.as_deref(), Some("none"));
        assert_eq!(
            whole.hassh_algorithms.as_deref(),
            Some("curve25519-sha256,ecdh-sha2-nistp256;aes128-gcm@openssh.com,aes256-ctr;hmac-sha2-256;none")
        );
        assert_eq!(
            whole.hassh.as_deref(),
            Some(md5_hex(whole.hassh_algorithms.as_deref().unwrap().as_bytes()).as_str())
        );
        assert_eq!(whole.host_key.as_deref().map(str::len), Some(47));
        for split in 0..80 {
            assert_eq!(run(split), whole, "split at {split}");
        }
    }

    #[test]
    fn version_rules() {
        let mut st = SshState::new();
        let mut out = AppOut::default();
        st.stream(&ctx(true), Chunk::Data(b"SSH-2.0-OpenSSH_3.6.1p1\r\n"), &mut out);
        st.stream(&ctx(false), Chunk::Data(b"SSH-1.99-OpenSSH_3.1p1\n"), &mut out);
        st.finish(&ctx(true), &mut out);
        let Some(Event::Ssh(r)) = out.events.pop() else { panic!() };
        assert_eq!(r.version, Some(2));
        assert_eq!(r.server.as_deref(), Some("SSH-1.99-OpenSSH_3.1p1"));
    }

    fn with_encrypted(sizes: &[(bool, usize)]) -> SshRecord {
        let mut st = SshState::new();
        let mut out = AppOut::default();
        for (is_orig, bytes) in session() {
            st.stream(&ctx(is_orig), Chunk::Data(&bytes), &mut out);
        }
        for &(is_orig, n) in sizes {
            st.stream(&ctx(is_orig), Chunk::Data(&vec![0x5a; n]), &mut out);
        }
        st.finish(&ctx(true), &mut out);
        match out.events.pop() {
            Some(Event::Ssh(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn authentication_guessed_from_encrypted_sizes() {
        // SERVICE_ACCEPT 52, two failures of 68 (the first only sets the
        // size), then a success of 36.
        let r = with_encrypted(&[
            (true, 52),
            (false, 52),
            (true, 84),
            (false, 68),
            (true, 84),
            (false, 68),
            (true, 84),
            (false, 36),
        ]);
        assert_eq!((r.auth_success, r.auth_attempts), (Some(true), 2));
        // Failures only.
        let r = with_encrypted(&[(true, 52), (false, 52), (true, 84), (false, 68), (true, 84), (false, 68)]);
        assert_eq!((r.auth_success, r.auth_attempts), (Some(false), 1));
        // Success with no failure first ("none" method), after a banner.
        let r = with_encrypted(&[(true, 52), (false, 52), (false, 600), (false, 36)]);
        assert_eq!((r.auth_success, r.auth_attempts), (Some(true), 1));
        // Nothing decided yet: unset, as in Zeek.
        let r = with_encrypted(&[(false, 52)]);
        assert_eq!((r.auth_success, r.auth_attempts), (None, 0));
    }
}
