//! Alert summaries as a message key and its arguments, with one table of
//! templates per language.
//!
//! The detector renders the English summary from the same template the
//! console renders the Vietnamese one from, so the two cannot drift: a
//! test keeps both tables to the same keys and the same placeholders.
//!
//! Template syntax: `{name}` is an argument's value. `[...]` is an optional
//! part, shown only when every argument it names is present; `{?name}`
//! names an argument without showing it (a flag). Values are inserted as
//! they are: numbers and units (`45 s`, `2.1 KB`), addresses, names.

use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// A language the summaries are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    En,
    Vi,
}

/// English templates, by key.
pub const EN: &[(&str, &str)] = &[
    ("sigma.match", "{title}{endpoints}"),
    ("sigma.correlation.events", "{title}: {n} events within {secs}s[ for {group}]"),
    ("sigma.correlation.values", "{title}: {n} distinct {field} within {secs}s[ for {group}]"),
    ("sigma.correlation.sequence", "{title}: {n} rules in sequence within {secs}s[ for {group}]"),
    ("intel.title", "Threat intelligence: {kind} {value} listed by {source}"),
    ("sensor.spool_dropped.title", "Spool full: records dropped"),
    (
        "sensor.spool_dropped",
        "sensor {sensor} deleted its {batches} oldest batches of records ({records} records) from its full spool \
         ({cap} MiB) while the SIEM did not take them",
    ),
    ("sensor.spool_paused.title", "Spool full: capture held back"),
    (
        "sensor.spool_paused",
        "sensor {sensor} held its capture back for {secs} s: its spool ({cap} MiB) was full while the SIEM did not \
         take it",
    ),
    ("intel.match", "{field} matched {kind} {value}{endpoints}"),
    ("yara.file.named", "YARA {rule} matched file {file} ({source}){endpoints}"),
    ("yara.file.typed", "YARA {rule} matched {mime} file ({source}){endpoints}"),
    ("yara.file", "YARA {rule} matched file ({source}){endpoints}"),
    ("yara.stream.orig", "YARA {rule} matched stream from originator{endpoints}"),
    ("yara.stream.resp", "YARA {rule} matched stream from responder{endpoints}"),
    ("yara.udp", "YARA {rule} matched UDP payload{endpoints}"),
    (
        "model.beacon.long",
        "Long connection: {src} to {dst}:{port}[ ({name})] open {duration} ({sent} sent, {received} received)",
    ),
    (
        "model.beacon.periodic",
        "Beaconing: {src} to {dst}:{port}[ ({name})] every {interval} s +/- {interval_dev} s over {n} connections \
         in {span}, {bytes} +/- {bytes_dev} sent each; score {score} (timing {timing}, size {size})",
    ),
    (
        "model.brute.failed",
        "Brute force: {failures} failed {service} logins from {src} to {dst}:{port} in {took} over {sessions} \
         sessions; no success",
    ),
    (
        "model.brute.succeeded",
        "Brute force: {failures} failed {service} logins from {src} to {dst}:{port} in {took} over {sessions} \
         sessions; then a successful login",
    ),
    (
        "model.brute.spraying",
        "Password spraying: {src} tried {accounts} accounts on {hosts} hosts ({services}[ and {services_more} more]), \
         at most 3 attempts each: {names}[ and {names_more} more]",
    ),
    (
        "model.brute.short_sessions",
        "Brute force suspected: {sessions} sessions of under {limit} s from {src} to {dst}:{port} in {took}",
    ),
    (
        "model.dns.tunnel",
        "DNS tunnel suspected: {client} asked {n} unique subdomains of {domain} in {took}, mean length {length}, \
         entropy {entropy} bits/char, {txt} TXT/NULL of {queries} queries (e.g. {examples}[ and {examples_more} more])",
    ),
    (
        "model.dns.dga",
        "DGA-like lookups: {client} got NXDOMAIN for {domains} registered domains in {took}, {share}% machine-made \
         looking (e.g. {examples}[ and {examples_more} more])",
    ),
    ("model.dns.nxdomain_burst", "NXDOMAIN burst: {client} got {nx} NXDOMAIN answers for {domains} registered domains in {took}"),
    (
        "model.iot.profile",
        "Device {dev} left its profile: new {kind} \"{value}\"[ (with {peer})] after {learned} of records; \
         {known} known[: {known_list}][ and {known_more} more]",
    ),
    (
        "model.scan.vertical",
        "Vertical scan: {src} probed [{?capped}at least ]{ports} ports of {host} in {took} (ports {lo}-{hi}; \
         open: [{?none}none][{open}][ and {open_more} more])",
    ),
    (
        "model.scan.horizontal",
        "Horizontal scan: {src} probed [{?capped}at least ]{hosts} hosts in {took} on {ports}[ and {ports_more} more]; \
         {answered} answered open",
    ),
    (
        "model.scan.icmp_sweep",
        "ICMP sweep: {src} sent echo requests to [{?capped}at least ]{hosts} hosts ({lo} to {hi}) in {took}",
    ),
    (
        "model.flood.syn",
        "SYN flood: {n} half-open connection attempts to {host} (ports {ports}[ and {ports_more} more]) from \
         [{?capped}over ]{sources} sources in {secs} s[; this hour's baseline {mean} +/- {dev} packets]",
    ),
    (
        "model.flood.udp",
        "UDP flood: {n} packets to {host} from [{?capped}over ]{sources} sources in {secs} s[; this hour's baseline \
         {mean} +/- {dev} packets]",
    ),
    (
        "model.flood.icmp",
        "ICMP flood: {n} packets to {host} from [{?capped}over ]{sources} sources in {secs} s[; this hour's baseline \
         {mean} +/- {dev} packets]",
    ),
    (
        "model.flood.amplification",
        "Amplification attack: {bytes} of unrequested replies to {host} from {reflectors} reflectors in {secs} s \
         ({ports}[ and {ports_more} more])",
    ),
];

/// Vietnamese templates, by key.
pub const VI: &[(&str, &str)] = &[
    ("sigma.match", "{title}{endpoints}"),
    ("sigma.correlation.events", "{title}: {n} sự kiện trong {secs} giây[ cho {group}]"),
    ("sigma.correlation.values", "{title}: {n} giá trị {field} khác nhau trong {secs} giây[ cho {group}]"),
    ("sigma.correlation.sequence", "{title}: {n} quy tắc liên tiếp trong {secs} giây[ cho {group}]"),
    ("intel.title", "Tình báo mối đe dọa: {kind} {value} do {source} liệt kê"),
    ("sensor.spool_dropped.title", "Bộ đệm đầy: bản ghi bị xóa"),
    (
        "sensor.spool_dropped",
        "cảm biến {sensor} đã xóa {batches} lô bản ghi cũ nhất ({records} bản ghi) khỏi bộ đệm đầy ({cap} MiB) \
         trong khi SIEM không nhận",
    ),
    ("sensor.spool_paused.title", "Bộ đệm đầy: tạm giữ việc bắt gói"),
    (
        "sensor.spool_paused",
        "cảm biến {sensor} đã tạm giữ việc bắt gói trong {secs} s: bộ đệm ({cap} MiB) đầy trong khi SIEM không nhận",
    ),
    ("intel.match", "{field} khớp {kind} {value}{endpoints}"),
    ("yara.file.named", "YARA {rule} khớp tệp {file} ({source}){endpoints}"),
    ("yara.file.typed", "YARA {rule} khớp tệp {mime} ({source}){endpoints}"),
    ("yara.file", "YARA {rule} khớp tệp ({source}){endpoints}"),
    ("yara.stream.orig", "YARA {rule} khớp luồng từ bên khởi tạo{endpoints}"),
    ("yara.stream.resp", "YARA {rule} khớp luồng từ bên phản hồi{endpoints}"),
    ("yara.udp", "YARA {rule} khớp tải UDP{endpoints}"),
    (
        "model.beacon.long",
        "Kết nối kéo dài: {src} tới {dst}:{port}[ ({name})] mở {duration} (gửi {sent}, nhận {received})",
    ),
    (
        "model.beacon.periodic",
        "Beacon định kỳ: {src} tới {dst}:{port}[ ({name})] mỗi {interval} s +/- {interval_dev} s qua {n} kết nối \
         trong {span}, mỗi lần gửi {bytes} +/- {bytes_dev}; điểm {score} (thời gian {timing}, kích thước {size})",
    ),
    (
        "model.brute.failed",
        "Dò mật khẩu: {failures} lần đăng nhập {service} thất bại từ {src} tới {dst}:{port} trong {took} qua \
         {sessions} phiên; không thành công",
    ),
    (
        "model.brute.succeeded",
        "Dò mật khẩu: {failures} lần đăng nhập {service} thất bại từ {src} tới {dst}:{port} trong {took} qua \
         {sessions} phiên; sau đó đăng nhập thành công",
    ),
    (
        "model.brute.spraying",
        "Rải mật khẩu: {src} thử {accounts} tài khoản trên {hosts} máy ({services}[ và {services_more} khác]), \
         tối đa 3 lần mỗi tài khoản: {names}[ và {names_more} khác]",
    ),
    (
        "model.brute.short_sessions",
        "Nghi dò mật khẩu: {sessions} phiên dưới {limit} s từ {src} tới {dst}:{port} trong {took}",
    ),
    (
        "model.dns.tunnel",
        "Nghi đường hầm DNS: {client} hỏi {n} tên miền con khác nhau của {domain} trong {took}, độ dài trung bình \
         {length}, entropy {entropy} bit/ký tự, {txt} truy vấn TXT/NULL trên {queries} (ví dụ {examples}[ và \
         {examples_more} khác])",
    ),
    (
        "model.dns.dga",
        "Truy vấn kiểu DGA: {client} nhận NXDOMAIN cho {domains} tên miền đã đăng ký trong {took}, {share}% trông \
         như do máy tạo (ví dụ {examples}[ và {examples_more} khác])",
    ),
    (
        "model.dns.nxdomain_burst",
        "Dồn dập NXDOMAIN: {client} nhận {nx} câu trả lời NXDOMAIN cho {domains} tên miền đã đăng ký trong {took}",
    ),
    (
        "model.iot.profile",
        "Thiết bị {dev} lệch khỏi hồ sơ: {kind} mới \"{value}\"[ (với {peer})] sau {learned} bản ghi; \
         {known} đã biết[: {known_list}][ và {known_more} khác]",
    ),
    (
        "model.scan.vertical",
        "Quét dọc: {src} dò [{?capped}ít nhất ]{ports} cổng của {host} trong {took} (cổng {lo}-{hi}; \
         mở: [{?none}không có][{open}][ và {open_more} khác])",
    ),
    (
        "model.scan.horizontal",
        "Quét ngang: {src} dò [{?capped}ít nhất ]{hosts} máy trong {took} trên {ports}[ và {ports_more} khác]; \
         {answered} máy trả lời mở",
    ),
    (
        "model.scan.icmp_sweep",
        "Quét ICMP: {src} gửi yêu cầu echo tới [{?capped}ít nhất ]{hosts} máy ({lo} đến {hi}) trong {took}",
    ),
    (
        "model.flood.syn",
        "Tấn công SYN flood: {n} lần mở kết nối dở dang tới {host} (cổng {ports}[ và {ports_more} khác]) từ \
         [{?capped}hơn ]{sources} nguồn trong {secs} s[; mức nền giờ này {mean} +/- {dev} gói]",
    ),
    (
        "model.flood.udp",
        "Tấn công UDP flood: {n} gói tới {host} từ [{?capped}hơn ]{sources} nguồn trong {secs} s[; mức nền giờ này \
         {mean} +/- {dev} gói]",
    ),
    (
        "model.flood.icmp",
        "Tấn công ICMP flood: {n} gói tới {host} từ [{?capped}hơn ]{sources} nguồn trong {secs} s[; mức nền giờ này \
         {mean} +/- {dev} gói]",
    ),
    (
        "model.flood.amplification",
        "Tấn công khuếch đại: {bytes} phản hồi không được yêu cầu tới {host} từ {reflectors} máy phản xạ trong \
         {secs} s ({ports}[ và {ports_more} khác])",
    ),
];

/// A language's template for a key.
pub fn template(lang: Lang, key: &str) -> Option<&'static str> {
    let table = match lang {
        Lang::En => EN,
        Lang::Vi => VI,
    };
    table.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
}

/// The names a template refers to, flags included, sorted.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let Some(e) = after.find('}') else { break };
        let name = after[..e].trim_start_matches('?');
        if !out.contains(&name) {
            out.push(name);
        }
        rest = &after[e + 1..];
    }
    out.sort_unstable();
    out
}

/// A key's template in a language with its arguments filled in; None when
/// the key is unknown or a placeholder outside an optional part has no
/// argument.
pub fn render(lang: Lang, key: &str, args: &SummaryArgs) -> Option<String> {
    fill(template(lang, key)?, &args.0)
}

/// Any template of this syntax with its arguments filled in (the console
/// writes the SIEM's refusals with it too); None when a placeholder outside
/// an optional part has no argument.
pub fn fill(t: &str, args: &BTreeMap<String, String>) -> Option<String> {
    let mut out = String::with_capacity(t.len() + 32);
    let mut rest = t;
    while let Some(i) = rest.find(['[', '{']) {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with('[') {
            let e = rest[i..].find(']')? + i;
            if let Some(part) = fill(&rest[i + 1..e], args) {
                out.push_str(&part);
            }
            rest = &rest[e + 1..];
        } else {
            let e = rest[i..].find('}')? + i;
            let name = &rest[i + 1..e];
            match name.strip_prefix('?') {
                Some(flag) => {
                    args.get(flag)?;
                }
                None => out.push_str(args.get(name)?),
            }
            rest = &rest[e + 1..];
        }
    }
    out.push_str(rest);
    Some(out)
}

/// A summary's named values. Stored as the text of a JSON object, so every
/// store keeps it as one string field and the console's pseudonymisation
/// rewrites it as it rewrites the summary itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SummaryArgs(pub BTreeMap<String, String>);

impl SummaryArgs {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads the stored text back; None when it is not a JSON object of strings.
    pub fn parse(s: &str) -> Option<SummaryArgs> {
        serde_json::from_str(s).ok().map(SummaryArgs)
    }
}

impl Serialize for SummaryArgs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

/// A summary made in code: its English text, and the key and arguments it
/// was rendered from.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub text: String,
    pub key: Option<&'static str>,
    pub args: SummaryArgs,
}

impl Summary {
    /// The English summary for `key`. Arguments whose value is None are
    /// left out (their optional parts disappear).
    pub fn en(key: &'static str, args: &[(&str, Option<String>)]) -> Summary {
        let args = SummaryArgs(args.iter().filter_map(|(k, v)| Some((k.to_string(), v.clone()?))).collect());
        let text = render(Lang::En, key, &args);
        debug_assert!(text.is_some(), "summary template {key} missing or an argument of it not given");
        Summary { text: text.unwrap_or_else(|| key.to_string()), key: Some(key), args }
    }

    /// A summary with no template (its text is the only form it has).
    pub fn plain(text: String) -> Summary {
        Summary { text, key: None, args: SummaryArgs::default() }
    }
}

/// A list shortened for a summary: the first `n` items joined, and how many
/// were left out (None when none were).
pub fn some_of<T: std::fmt::Display>(items: impl IntoIterator<Item = T>, n: usize) -> (String, Option<String>) {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for (i, x) in items.into_iter().enumerate() {
        if i < n {
            shown.push(x.to_string());
        } else {
            more += 1;
        }
    }
    (shown.join(", "), (more > 0).then(|| more.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys_and_placeholders() {
        assert_eq!(EN.len(), VI.len());
        for (k, en) in EN {
            let vi = template(Lang::Vi, k).unwrap_or_else(|| panic!("no Vietnamese template for {k}"));
            assert_eq!(placeholders(en), placeholders(vi), "placeholders of {k}");
            assert_eq!(en.matches('[').count(), en.matches(']').count(), "brackets of {k}");
            assert_eq!(vi.matches('[').count(), vi.matches(']').count(), "brackets of {k}");
        }
        for (k, _) in VI {
            assert!(template(Lang::En, k).is_some(), "no English template for {k}");
        }
    }

    #[test]
    fn optional_parts_and_flags() {
        let s = Summary::en(
            "model.scan.horizontal",
            &[
                ("src", Some("10.0.0.5".into())),
                ("capped", Some(String::new())),
                ("hosts", Some("40".into())),
                ("took", Some("3.0 s".into())),
                ("ports", Some("tcp/22 (40 hosts)".into())),
                ("ports_more", None),
                ("answered", Some("2".into())),
            ],
        );
        assert_eq!(
            s.text,
            "Horizontal scan: 10.0.0.5 probed at least 40 hosts in 3.0 s on tcp/22 (40 hosts); 2 answered open"
        );
        assert_eq!(
            render(Lang::Vi, "model.scan.horizontal", &s.args).unwrap(),
            "Quét ngang: 10.0.0.5 dò ít nhất 40 máy trong 3.0 s trên tcp/22 (40 hosts); 2 máy trả lời mở"
        );
        let mut args = s.args.clone();
        args.0.remove("capped");
        args.0.insert("ports_more".into(), "3".into());
        assert_eq!(
            render(Lang::En, "model.scan.horizontal", &args).unwrap(),
            "Horizontal scan: 10.0.0.5 probed 40 hosts in 3.0 s on tcp/22 (40 hosts) and 3 more; 2 answered open"
        );
        args.0.remove("src");
        assert_eq!(render(Lang::En, "model.scan.horizontal", &args), None, "a required argument is missing");
    }

    #[test]
    fn args_are_stored_as_one_string() {
        let s = Summary::en("yara.udp", &[("rule", Some("Eicar".into())), ("endpoints", Some(String::new()))]);
        let v = serde_json::to_value(&s.args).unwrap();
        assert_eq!(v, serde_json::json!(r#"{"endpoints":"","rule":"Eicar"}"#));
        assert_eq!(SummaryArgs::parse(v.as_str().unwrap()), Some(s.args));
    }
}
