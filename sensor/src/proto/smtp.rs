//! SMTP (RFC 5321): the envelope (HELO, MAIL FROM, RCPT TO), the message
//! headers, each MIME part as a file, and the last reply; Zeek's `smtp.log`.
//! Once the server accepts STARTTLS, the rest of the connection goes to the
//! TLS analyzer (ssl.log, service `smtp,ssl`), as in Zeek.

use crate::proto::mime::Mime;
use crate::proto::stream::{Chunk, Lines};
use crate::proto::tls::TlsState;
use crate::proto::{zeek_escape, AppOut, FlowCtx};
use schema::{Event, SmtpRecord};
use std::net::IpAddr;

pub const PORTS: &[u16] = &[25, 587];
const MAX_LINE: usize = 64 << 10;

#[derive(Debug, Default)]
pub struct SmtpState {
    lines: [Lines; 2],
    helo: Option<String>,
    txn: Option<SmtpRecord>,
    depth: u32,
    /// The client is sending the message (after DATA and its 354).
    in_data: bool,
    data_pending: bool,
    mime: Option<Mime>,
    /// The client asked for STARTTLS; the server's reply decides.
    starttls_pending: bool,
    tls: bool,
    /// The TLS handshake after STARTTLS.
    tls_state: Option<Box<TlsState>>,
    multi: Option<String>,
    bad: u8,
    /// The message ended: log the transaction with the server's reply.
    log_after_reply: bool,
}

fn addr(arg: &str) -> String {
    let a = arg.split_once(':').map(|(_, v)| v).unwrap_or(arg).trim();
    let a = a.split_whitespace().next().unwrap_or("");
    a.trim_start_matches('<').trim_end_matches('>').to_string()
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

impl SmtpState {
    pub fn failed(&self) -> bool {
        self.bad >= 3
    }

    fn txn(&mut self, ctx: &FlowCtx) -> &mut SmtpRecord {
        if self.txn.is_none() {
            self.depth += 1;
        }
        let depth = self.depth;
        let helo = self.helo.clone();
        self.txn.get_or_insert_with(|| SmtpRecord {
            ts: ctx.ts,
            uid: ctx.uid,
            orig_h: ctx.orig.0,
            orig_p: ctx.orig.1,
            resp_h: ctx.resp.0,
            resp_p: ctx.resp.1,
            trans_depth: depth,
            helo,
            mailfrom: None,
            rcptto: None,
            date: None,
            from: None,
            to: None,
            cc: None,
            reply_to: None,
            msg_id: None,
            in_reply_to: None,
            subject: None,
            x_originating_ip: None,
            first_received: None,
            second_received: None,
            last_reply: None,
            path: vec![ctx.resp.0, ctx.orig.0],
            user_agent: None,
            tls: self.tls,
            fuids: None,
        })
    }

    pub fn stream(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let s = usize::from(!ctx.is_orig);
        let data = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => {
                self.lines[s].take();
                out.weirds.push("SMTP_content_gap");
                return;
            }
        };
        if self.tls {
            self.feed_tls(ctx, Chunk::Data(data), out);
            return;
        }
        self.lines[s].push(data);
        while let Some(line) = self.lines[s].next_line() {
            if s == 0 {
                self.client_line(ctx, &line, out);
            } else {
                self.server_line(ctx, &line, out);
            }
            if self.tls {
                // What the client sent past STARTTLS is already TLS.
                let rest = self.lines[0].take();
                self.lines[1].take();
                if !rest.is_empty() {
                    let c = FlowCtx { is_orig: true, ..*ctx };
                    self.feed_tls(&c, Chunk::Data(&rest), out);
                }
                return;
            }
        }
        if self.lines[s].overflowed(MAX_LINE) {
            out.weirds.push("SMTP_line_too_long");
        }
    }

    fn client_line(&mut self, ctx: &FlowCtx, line: &[u8], out: &mut AppOut) {
        if self.in_data {
            if line == b"." {
                self.in_data = false;
                self.end_message(ctx, out);
                return;
            }
            // Dot-stuffing (RFC 5321 4.5.2).
            let line = line.strip_prefix(b".").filter(|_| line.starts_with(b"..")).unwrap_or(line);
            if let Some(m) = self.mime.as_mut() {
                m.line(ctx, line);
            }
            return;
        }
        let text = zeek_escape(line);
        let (cmd, arg) = match text.split_once(' ') {
            Some((c, a)) => (c.to_ascii_uppercase(), a.to_string()),
            None => (text.to_ascii_uppercase(), String::new()),
        };
        match cmd.as_str() {
            "HELO" | "EHLO" => self.helo = Some(arg),
            "MAIL" => self.txn(ctx).mailfrom = Some(addr(&arg)),
            "RCPT" => {
                let a = addr(&arg);
                let r = self.txn(ctx).rcptto.get_or_insert_with(Vec::new);
                if !r.contains(&a) {
                    r.push(a);
                }
            }
            "DATA" => self.data_pending = true,
            "RSET" => self.log(out),
            "STARTTLS" => self.starttls_pending = true,
            "QUIT" | "NOOP" | "AUTH" | "VRFY" | "EXPN" | "HELP" | "BDAT" | "XCLIENT" => {}
            _ if cmd.chars().all(|c| c.is_ascii_alphabetic()) && cmd.len() <= 10 => {}
            _ => {
                out.weirds.push("SMTP_bad_command");
                self.bad = self.bad.saturating_add(1);
            }
        }
    }

    fn server_line(&mut self, ctx: &FlowCtx, line: &[u8], out: &mut AppOut) {
        let text = zeek_escape(line);
        let Some(code) = text.get(..3).and_then(|c| c.parse::<u16>().ok()) else {
            out.weirds.push("SMTP_bad_reply");
            self.bad = self.bad.saturating_add(1);
            return;
        };
        if text.as_bytes().get(3) == Some(&b'-') {
            self.multi.get_or_insert(text);
            return;
        }
        self.multi = None;
        out.confirmed = Some("smtp");
        if let Some(t) = self.txn.as_mut() {
            t.last_reply = Some(text.clone());
        }
        if self.log_after_reply {
            self.log_after_reply = false;
            self.log(out);
        }
        if self.starttls_pending {
            self.starttls_pending = false;
            if code == 220 {
                self.tls = true;
                self.tls_state = Some(Box::default());
                if let Some(t) = self.txn.as_mut() {
                    t.tls = true;
                }
            }
        }
        if code == 354 && self.data_pending {
            self.data_pending = false;
            self.in_data = true;
            self.mime = Some(Mime::new());
            self.txn(ctx);
        }
    }

    fn end_message(&mut self, ctx: &FlowCtx, out: &mut AppOut) {
        let Some(mut m) = self.mime.take() else { return };
        m.finish(ctx);
        let t = self.txn(ctx);
        let mut received = 0;
        for (k, v) in &m.top_headers {
            let v = zeek_escape(v.as_bytes());
            match k.to_ascii_lowercase().as_str() {
                "date" => t.date = Some(v),
                "from" => t.from = Some(v),
                "to" => t.to.get_or_insert_with(Vec::new).extend(list(&v)),
                "cc" => t.cc.get_or_insert_with(Vec::new).extend(list(&v)),
                "reply-to" => t.reply_to = Some(v),
                "message-id" => t.msg_id = Some(v),
                "in-reply-to" => t.in_reply_to = Some(v),
                "subject" => t.subject = Some(v),
                "x-originating-ip" => t.x_originating_ip = Some(v),
                "user-agent" | "x-mailer" => t.user_agent = Some(v),
                "received" => {
                    received += 1;
                    match received {
                        1 => t.first_received = Some(v.clone()),
                        2 => t.second_received = Some(v.clone()),
                        _ => {}
                    }
                    for ip in v.split(['[', ']']).filter_map(|s| s.parse::<IpAddr>().ok()) {
                        if !t.path.contains(&ip) {
                            t.path.push(ip);
                        }
                    }
                }
                _ => {}
            }
        }
        for f in m.files.drain(..) {
            t.fuids.get_or_insert_with(Vec::new).push(f.fuid.clone());
            out.events.push(Event::Files(f));
        }
        // Logged once the server accepts the message (its reply follows).
        self.log_after_reply = true;
    }

    fn log(&mut self, out: &mut AppOut) {
        if let Some(t) = self.txn.take() {
            out.events.push(Event::Smtp(t));
        }
    }

    fn feed_tls(&mut self, ctx: &FlowCtx, chunk: Chunk<'_>, out: &mut AppOut) {
        let Some(t) = self.tls_state.as_mut() else { return };
        let mut inner = AppOut::default();
        t.stream(ctx, chunk, &mut inner);
        if t.failed() {
            self.tls_state = None;
        }
        if inner.confirmed.is_some() {
            out.confirmed = Some("smtp,ssl");
        }
        out.events.append(&mut inner.events);
        out.weirds.append(&mut inner.weirds);
    }

    pub fn finish(&mut self, ctx: &FlowCtx, out: &mut AppOut) {
        if let Some(t) = self.tls_state.as_mut() {
            t.finish(ctx, out);
        }
        if let Some(mut m) = self.mime.take() {
            m.finish(ctx);
            for f in m.files.drain(..) {
                out.events.push(Event::Files(f));
            }
        }
        self.log(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::{FlowUid, Time};

    fn ctx(is_orig: bool) -> FlowCtx {
        FlowCtx {
            ts: Time(1),
            uid: FlowUid::new(4),
            orig: ("10.0.0.5".parse().unwrap(), 40000),
            resp: ("10.0.0.25".parse().unwrap(), 25),
            is_orig,
            keep_file_bytes: 0,
            orig_local: false,
            resp_local: false,
        }
    }

    fn session() -> Vec<(bool, &'static [u8])> {
        vec![
            (false, b"220 mail.city.example ESMTP\r\n"),
            (true, b"EHLO ws17\r\n"),
            (false, b"250-mail.city.example\r\n250 SIZE 10240000\r\n"),
            (true, b"MAIL FROM:<clerk@city.example>\r\n"),
            (false, b"250 OK\r\n"),
            (true, b"RCPT TO:<chief@police.city.example>\r\n"),
            (false, b"250 OK\r\n"),
            (true, b"DATA\r\n"),
            (false, b"354 go ahead\r\n"),
            (
                true,
                b"From: Clerk <clerk@city.example>\r\nTo: chief@police.city.example, desk@city.example\r\n\
Subject: Report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n\
--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n..dot line\r\n--b1\r\n\
Content-Type: application/octet-stream; name=\"r.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
aGVsbG8g\r\nd29ybGQ=\r\n--b1--\r\n.\r\n",
            ),
            (false, b"250 queued as 42\r\n"),
            (true, b"QUIT\r\n"),
        ]
    }

    fn run(split: usize) -> Vec<Event> {
        let mut st = SmtpState::default();
        let mut out = AppOut::default();
        for (o, d) in session() {
            let cut = split.min(d.len());
            st.stream(&ctx(o), Chunk::Data(&d[..cut]), &mut out);
            st.stream(&ctx(o), Chunk::Data(&d[cut..]), &mut out);
        }
        st.finish(&ctx(true), &mut out);
        out.events
    }

    #[test]
    fn envelope_headers_and_parts_at_every_split() {
        let whole = run(usize::MAX);
        let smtp: Vec<&SmtpRecord> =
            whole.iter().filter_map(|e| if let Event::Smtp(s) = e { Some(s) } else { None }).collect();
        let files: Vec<&schema::FilesRecord> =
            whole.iter().filter_map(|e| if let Event::Files(f) = e { Some(f) } else { None }).collect();
        assert_eq!(smtp.len(), 1);
        let s = smtp[0];
        assert_eq!(s.helo.as_deref(), Some("ws17"));
        assert_eq!(s.mailfrom.as_deref(), Some("clerk@city.example"));
        assert_eq!(s.to.as_ref().unwrap().len(), 2);
        assert_eq!(s.last_reply.as_deref(), Some("250 queued as 42"));
        assert_eq!(files.len(), 2);
        // ".." is unstuffed; the break before the next part's boundary is dropped.
        assert_eq!(files[0].seen_bytes, b"See attached.\r\n.dot line".len() as u64);
        assert_eq!(files[1].seen_bytes, 11);
        assert_eq!(files[1].filename.as_deref(), Some("r.bin"));
        assert_eq!(s.fuids.as_ref().unwrap().len(), 2);
        for split in 0..40 {
            assert_eq!(run(split), whole, "split {split}");
        }
    }
}
