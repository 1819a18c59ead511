//! FTP (RFC 959, RFC 2428): commands paired with their final replies
//! (Zeek's `ftp.log`), data channels announced by PORT/PASV/EPRT/EPSV and
//! recognised when they open (service `ftp-data`), and the size and type of
//! what they carried attached to the transfer command.

use crate::proto::files::{fuid, FileState};
use crate::proto::http::sniff;
use crate::proto::stream::{Chunk, Lines};
use crate::proto::{zeek_escape, AppOut, Expected, FlowCtx, Shared};
use schema::{Event, FlowUid, FtpRecord, Time};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};

pub const PORT: u16 = 21;

/// Commands Zeek writes to ftp.log.
const LOGGED: &[&str] = &["APPE", "DELE", "RETR", "STOR", "STOU", "ACCT", "PORT", "PASV", "EPRT", "EPSV"];
/// User names whose password Zeek logs.
const GUESTS: &[&str] = &["anonymous", "ftp", "ftpuser", "guest"];
/// A command or reply line longer than this is not FTP.
const MAX_LINE: usize = 4096;
const MAX_PENDING: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct Transfer {
    pub size: u64,
    pub head: Vec<u8>,
    pub fuid: String,
}

#[derive(Debug)]
struct Cmd {
    ts: Time,
    cmd: String,
    arg: Option<String>,
}

#[derive(Debug)]
pub struct FtpState {
    lines: [Lines; 2],
    pending: VecDeque<Cmd>,
    user: String,
    password: Option<String>,
    cwd: String,
    /// Lines of a multi-line reply so far (`code`, first text).
    multi: Option<(u16, String)>,
    bad: u8,
}

impl Default for FtpState {
    fn default() -> Self {
        FtpState {
            lines: [Lines::default(), Lines::default()],
            pending: VecDeque::new(),
            user: "<unknown>".into(),
            password: None,
            cwd: ".".into(),
            multi: None,
            bad: 0,
        }
    }
}

/// `h1,h2,h3,h4,p1,p2` of PORT and of a 227 reply.
fn host_port(s: &str) -> Option<(IpAddr, u16)> {
    let digits: String = s.chars().skip_while(|c| !c.is_ascii_digit()).collect();
    let nums: Vec<u16> = digits
        .split(|c: char| !c.is_ascii_digit())
        .filter(|x| !x.is_empty())
        .take(6)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if nums.len() != 6 || nums.iter().any(|&n| n > 255) {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    Some((IpAddr::V4(ip), nums[4] * 256 + nums[5]))
}

/// The port of an EPSV reply: `(|||port|)` (RFC 2428 3).
fn epsv_port(s: &str) -> Option<u16> {
    let open = s.find('(')?;
    let inner = s.get(open + 1..)?.split(')').next()?;
    let d = inner.chars().next()?;
    inner.split(d).nth(3)?.parse().ok()
}

/// The address and port of an EPRT argument: `|1|ip|port|`.
fn eprt(s: &str) -> Option<(IpAddr, u16)> {
    let d = s.chars().next()?;
    let mut p = s.split(d).skip(1);
    let _proto = p.next()?;
    let ip: IpAddr = p.next()?.parse().ok()?;
    Some((ip, p.next()?.parse().ok()?))
}

impl FtpState {
    pub fn failed(&self) -> bool {
        self.bad >= 3
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, shared: &mut Shared, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        let data = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => {
                self.lines[s].take();
                out.weirds.push("FTP_content_gap");
                return;
            }
        };
        self.lines[s].push(data);
        while let Some(line) = self.lines[s].next_line() {
            if s == 0 {
                self.command(ctx, &line, out);
            } else {
                self.reply_line(ctx, &line, shared, out);
            }
        }
        if self.lines[s].overflowed(MAX_LINE) {
            out.weirds.push("FTP_line_too_long");
            self.bad = self.bad.saturating_add(1);
        }
    }

    fn command(&mut self, ctx: &FlowCtx, line: &[u8], out: &mut AppOut) {
        let text = zeek_escape(line);
        let (cmd, arg) = match text.split_once(' ') {
            Some((c, a)) => (c.to_ascii_uppercase(), Some(a.to_string())),
            None => (text.to_ascii_uppercase(), None),
        };
        if cmd.is_empty() || cmd.len() > 8 || !cmd.chars().all(|c| c.is_ascii_alphabetic()) {
            out.weirds.push("FTP_bad_command");
            self.bad = self.bad.saturating_add(1);
            return;
        }
        match cmd.as_str() {
            "USER" => self.user = arg.clone().unwrap_or_default(),
            "PASS" if GUESTS.contains(&self.user.to_ascii_lowercase().as_str()) => self.password = arg.clone(),
            _ => {}
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(Cmd { ts: ctx.ts, cmd, arg });
    }

    fn reply_line(&mut self, ctx: &FlowCtx, line: &[u8], shared: &mut Shared, out: &mut AppOut) {
        let text = zeek_escape(line);
        let code: Option<u16> = text.get(..3).and_then(|c| c.parse().ok()).filter(|c| (100..600).contains(c));
        let sep = text.as_bytes().get(3).copied();
        match (code, sep, &self.multi) {
            // The first line of a multi-line reply.
            (Some(c), Some(b'-'), None) => self.multi = Some((c, text.get(4..).unwrap_or("").to_string())),
            // Its last line: the code again and a space.
            (Some(c), s, Some((mc, first))) if c == *mc && s != Some(b'-') => {
                let msg = first.clone();
                self.multi = None;
                self.reply(ctx, c, msg, shared, out);
            }
            (_, _, Some(_)) => {}
            (Some(c), _, None) => {
                let msg = text.get(4..).unwrap_or("").to_string();
                self.reply(ctx, c, msg, shared, out);
            }
            (None, _, None) => {
                out.weirds.push("FTP_bad_reply");
                self.bad = self.bad.saturating_add(1);
            }
        }
    }

    fn reply(&mut self, ctx: &FlowCtx, code: u16, msg: String, shared: &mut Shared, out: &mut AppOut) {
        out.confirmed = Some("ftp");
        // Preliminary replies (1xx) and the greeting do not end a command.
        if code < 200 {
            return;
        }
        let Some(c) = self.pending.pop_front() else { return };
        if c.cmd == "CWD" && code == 250 {
            if let Some(a) = &c.arg {
                self.cwd = if a.starts_with('/') { a.clone() } else { format!("{}/{}", self.cwd, a) };
            }
        }
        if !LOGGED.contains(&c.cmd.as_str()) {
            return;
        }
        let mut r = FtpRecord {
            ts: c.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            user: self.user.clone(),
            password: self.password.clone(),
            command: c.cmd.clone(),
            arg: c.arg.clone(),
            mime_type: None,
            file_size: None,
            reply_code: Some(code),
            reply_msg: Some(msg.clone()),
            dc_passive: None,
            dc_orig_h: None,
            dc_resp_h: None,
            dc_resp_p: None,
            fuid: None,
        };
        let (client, server) = (ctx.orig.0, ctx.resp.0);
        let channel = match (c.cmd.as_str(), code) {
            ("PASV", 227) => host_port(&msg).map(|(ip, p)| (true, client, ip, p)),
            ("EPSV", 229) => epsv_port(&msg).map(|p| (true, client, server, p)),
            ("PORT", 200) => c.arg.as_deref().and_then(host_port).map(|(ip, p)| (false, server, ip, p)),
            ("EPRT", 200) => c.arg.as_deref().and_then(eprt).map(|(ip, p)| (false, server, ip, p)),
            _ => None,
        };
        if let Some((passive, o, rh, rp)) = channel {
            r.dc_passive = Some(passive);
            r.dc_orig_h = Some(o);
            r.dc_resp_h = Some(rh);
            r.dc_resp_p = Some(rp);
            shared.expect((o, rh, rp), Expected { control: ctx.uid, at: ctx.ts });
        }
        if matches!(c.cmd.as_str(), "RETR" | "STOR" | "APPE" | "STOU") {
            if let Some(a) = &c.arg {
                let path = if a.starts_with('/') { a.clone() } else { format!("{}/{}", self.cwd, a) };
                let host = match server {
                    IpAddr::V6(v) => format!("[{v}]"),
                    v4 => v4.to_string(),
                };
                r.arg = Some(format!("ftp://{host}/{}", path.trim_start_matches('/')));
            }
            if let Some(t) = shared.transfers.remove(&ctx.uid) {
                r.file_size = Some(t.size);
                r.mime_type = sniff(&t.head).map(str::to_string);
                r.fuid = Some(t.fuid);
            }
        }
        out.events.push(Event::Ftp(r));
    }

    pub fn finish(&mut self, ctx: &FlowCtx, out: &mut AppOut) {
        for c in self.pending.drain(..) {
            if LOGGED.contains(&c.cmd.as_str()) {
                out.events.push(Event::Ftp(FtpRecord {
                    ts: c.ts,
                    uid: ctx.uid,
                    orig_h: ctx.orig.0,
                    orig_p: ctx.orig.1,
                    resp_h: ctx.resp.0,
                    resp_p: ctx.resp.1,
                    user: self.user.clone(),
                    password: self.password.clone(),
                    command: c.cmd,
                    arg: c.arg,
                    mime_type: None,
                    file_size: None,
                    reply_code: None,
                    reply_msg: None,
                    dc_passive: None,
                    dc_orig_h: None,
                    dc_resp_h: None,
                    dc_resp_p: None,
                    fuid: None,
                }));
            }
        }
    }
}

/// A data channel: hashes what it carries as a file and tells its control
/// connection the size and type.
#[derive(Debug)]
pub struct FtpData {
    control: FlowUid,
    t: Transfer,
    file: Option<FileState>,
    /// The data came from the channel's originator.
    from_orig: bool,
}

const SNIFF: usize = 512;

impl FtpData {
    pub fn new(control: FlowUid) -> Self {
        FtpData { control, t: Transfer::default(), file: None, from_orig: false }
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, shared: &mut Shared) {
        let file = self.file.get_or_insert_with(|| FileState::new(fuid(ctx.uid, 1, ctx.is_orig), ctx.keep_file_bytes));
        match chunk {
            Chunk::Data(d) => {
                if file.seen() == 0 {
                    self.from_orig = ctx.is_orig;
                }
                file.data(ctx.ts, d);
                self.t.size += d.len() as u64;
                self.t.fuid = file.fuid.clone();
                if self.t.head.len() < SNIFF {
                    let take = (SNIFF - self.t.head.len()).min(d.len());
                    self.t.head.extend_from_slice(&d[..take]);
                }
                shared.transfers.insert(self.control, self.t.clone());
            }
            Chunk::Gap(n) => file.gap(n),
        }
    }

    pub fn finish(&mut self, ctx: &FlowCtx, out: &mut AppOut) {
        if let Some(f) = self.file.take() {
            if let Some(r) = f.finish(ctx, "FTP_DATA", 0, self.from_orig, None, None) {
                out.events.push(Event::Files(r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_arguments() {
        assert_eq!(
            host_port("Entering Passive Mode (199,233,217,249,221,90)"),
            Some(("199.233.217.249".parse().unwrap(), 56666))
        );
        assert_eq!(host_port("141,142,220,235,131,46"), Some(("141.142.220.235".parse().unwrap(), 33582)));
        assert_eq!(host_port("1,2,3,4,5"), None);
        assert_eq!(host_port("999,2,3,4,5,6"), None);
        assert_eq!(epsv_port("Entering Extended Passive Mode (|||6446|)"), Some(6446));
        assert_eq!(eprt("|2|fd00::1|5282|"), Some(("fd00::1".parse().unwrap(), 5282)));
    }
}
