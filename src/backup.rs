//! Backup and restore of the SIEM's data directory.
//!
//! A backup is taken while the server runs, without asking it anything:
//! every file under the data directory is either written once and never
//! changed (Tantivy's segment files), replaced whole by a rename (Tantivy's
//! `meta.json`, the console's JSON files, keys), or only appended to (the
//! audit trail, the triage log, the ingest ledger). So:
//! - a replaced file read through one open descriptor is one whole version;
//! - an appended file is cut after its last complete line;
//! - a Tantivy partition is its `meta.json` as read once, and the segment
//!   files that version names, each opened before a merge could remove it
//!   (a file gone means a merge moved on: the partition is read again).
//!   Every acknowledged batch was committed, so a `meta.json` read after
//!   the acknowledgement holds it.
//!
//! Files are read in the reverse order of the server's writes within one
//! operation (the audit trail before the users it speaks of, the triage log
//! before the alerts it names, the ledger's `done` log before the store,
//! its `begun` log after), so that whatever one file of the archive refers
//! to is in the archive too: what a crash at that moment would have left.
//!
//! The archive is a plain tar (the indexes are compressed already) with
//! `MANIFEST` last: the SHA-256 and size of every file. A restore checks
//! every file against it before it writes anything.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

/// The archive's first entry: what it is.
const INFO: &str = "citysoc-backup.json";
/// The archive's last entry: `sha256  size  path` per file.
const MANIFEST: &str = "MANIFEST";
/// Files of the data directory go under this folder of the archive.
const PREFIX: &str = "data/";
const FORMAT: u32 = 1;
/// A partition read again this often at most while merges keep replacing
/// its segments.
const PARTITION_ATTEMPTS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0}")]
    Invalid(String),
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.display().to_string(), source }
}

/// What a backup or a restore did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub files: usize,
    pub bytes: u64,
}

/// Reads through, hashing what it reads.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    manifest: Vec<(String, String, u64)>,
}

impl<W: Write> Writer<W> {
    /// One file of the data directory: `len` bytes of `r`.
    fn add(&mut self, rel: &str, mode: u32, len: u64, r: impl Read, archive: &Path) -> Result<(), BackupError> {
        let mut h = tar::Header::new_gnu();
        h.set_size(len);
        h.set_mode(mode & 0o7777);
        h.set_mtime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        h.set_entry_type(tar::EntryType::Regular);
        let mut r = Hashing { inner: r.take(len), hash: Sha256::new(), n: 0 };
        let name = format!("{PREFIX}{rel}");
        self.tar.append_data(&mut h, &name, &mut r).map_err(io_at(archive))?;
        if r.n != len {
            return Err(BackupError::Invalid(format!("{rel}: shrank while it was read")));
        }
        self.manifest.push((hex(r.hash.finalize()), rel.to_string(), len));
        Ok(())
    }

    fn add_bytes(&mut self, rel: &str, mode: u32, bytes: &[u8], archive: &Path) -> Result<(), BackupError> {
        self.add(rel, mode, bytes.len() as u64, bytes, archive)
    }
}

#[cfg(unix)]
fn mode_of(m: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode()
}

#[cfg(not(unix))]
fn mode_of(_: &std::fs::Metadata) -> u32 {
    0o600
}

fn rel_of(data: &Path, p: &Path) -> Option<String> {
    let rel = p.strip_prefix(data).ok()?;
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    Some(parts?.join("/"))
}

/// Every file under `dir`, sorted; Tantivy's folder apart.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BackupError> {
    walk(dir, out, true)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, top: bool) -> Result<(), BackupError> {
    let mut entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(d) => d.flatten().collect(),
        // A partition retention dropped since its parent was listed.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !top => return Ok(()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(&p, out, false)?;
        } else if t.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// Files only ever appended to, line by line: read up to their last
/// complete line.
fn appended(rel: &str) -> bool {
    !rel.contains('/') && rel.ends_with(".log")
}

/// In the order the server's operations write them, last first (see the
/// module's doc): 0 before 1 before the store before 3.
fn rank(rel: &str) -> u8 {
    match rel {
        "audit.log" => 0,
        "ingest-begun.log" => 3,
        _ => 1,
    }
}

/// Copies one file as it is at one moment.
fn add_file<W: Write>(w: &mut Writer<W>, data: &Path, p: &Path, archive: &Path) -> Result<(), BackupError> {
    let Some(rel) = rel_of(data, p) else { return Ok(()) };
    // A new version being written, to be renamed over its file: maybe
    // half written, and not yet part of any state.
    if rel.ends_with(".tmp") {
        return Ok(());
    }
    let mut f = match File::open(p) {
        Ok(f) => f,
        // Removed since the listing (a session file replaced, an old
        // rule version): not part of the moment being saved.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(p)(e)),
    };
    let meta = f.metadata().map_err(io_at(p))?;
    let mut len = meta.len();
    if appended(&rel) && len > 0 {
        len = complete_lines(&mut f, len).map_err(io_at(p))?;
        f.seek(SeekFrom::Start(0)).map_err(io_at(p))?;
    }
    w.add(&rel, mode_of(&meta), len, f, archive)
}

/// Length of the file's complete lines within its first `len` bytes.
fn complete_lines(f: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The segment files a `meta.json` names.
fn segment_files(meta: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_slice(meta).map_err(|e| e.to_string())?;
    let segs = v.get("segments").and_then(|s| s.as_array()).ok_or("no segments list")?;
    let mut out = Vec::new();
    for s in segs {
        let id = s.get("segment_id").and_then(|i| i.as_str()).ok_or("a segment without an id")?.replace('-', "");
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("segment id '{id}'"));
        }
        // Tantivy writes these six for every segment (`SegmentComponent`),
        // and the alive bitset of the latest delete as `<id>.<opstamp>.del`.
        for ext in ["idx", "pos", "term", "store", "fast", "fieldnorm"] {
            out.push(format!("{id}.{ext}"));
        }
        if let Some(op) = s.get("deletes").and_then(|d| d.get("opstamp")).and_then(|o| o.as_u64()) {
            out.push(format!("{id}.{op}.del"));
        }
    }
    Ok(out)
}

/// One Tantivy partition (a folder with `meta.json`) as one committed
/// version.
fn add_partition<W: Write>(w: &mut Writer<W>, data: &Path, dir: &Path, archive: &Path) -> Result<(), BackupError> {
    let Some(rel) = rel_of(data, dir) else { return Ok(()) };
    for _ in 0..PARTITION_ATTEMPTS {
        let meta_path = dir.join("meta.json");
        let meta = match std::fs::read(&meta_path) {
            Ok(m) => m,
            // Dropped by retention since the listing, or made and not yet
            // committed: nothing acknowledged is in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(&meta_path)(e)),
        };
        #[cfg(test)]
        AFTER_META.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f()
            }
        });
        let names = segment_files(&meta)
            .map_err(|e| BackupError::Invalid(format!("{}: not a Tantivy index: {e}", meta_path.display())))?;
        let mut open = Vec::with_capacity(names.len());
        let mut gone = false;
        for n in &names {
            let p = dir.join(n);
            match File::open(&p) {
                Ok(f) => open.push((n, f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    gone = true;
                    break;
                }
                Err(e) => return Err(io_at(&p)(e)),
            }
        }
        if gone {
            #[cfg(test)]
            PARTITION_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A merge ended and its garbage collection removed segments
            // of the version read: read the newer one.
            continue;
        }
        // Open descriptors keep every file of this version readable
        // whatever the server removes meanwhile.
        for (n, f) in open {
            let m = f.metadata().map_err(io_at(&dir.join(n)))?;
            w.add(&format!("{rel}/{n}"), mode_of(&m), m.len(), f, archive)?;
        }
        for small in ["citysoc-layout", ".managed.json"] {
            if let Ok(bytes) = std::fs::read(dir.join(small)) {
                w.add_bytes(&format!("{rel}/{small}"), 0o644, &bytes, archive)?;
            }
        }
        return w.add_bytes(&format!("{rel}/meta.json"), 0o644, &meta, archive);
    }
    Err(BackupError::Invalid(format!(
        "{}: merges replaced its segments {PARTITION_ATTEMPTS} times while it was read; try again",
        dir.display()
    )))
}

/// Saves the data directory `data` to a new archive `to`, whether a server
/// runs on it or not.
pub fn backup(data: &Path, to: &Path) -> Result<Summary, BackupError> {
    if !data.is_dir() {
        return Err(BackupError::Invalid(format!("{} is not a folder", data.display())));
    }
    if ["tantivy", "audit.log", "console-users.json"].iter().all(|f| !data.join(f).exists()) {
        return Err(BackupError::Invalid(format!(
            "{} is not a data directory of citysoc serve (no tantivy/, audit.log or console-users.json)",
            data.display()
        )));
    }
    if to.exists() {
        return Err(BackupError::Invalid(format!("{} exists already", to.display())));
    }
    // An archive inside the folder it saves would take in itself.
    let inside = match (
        std::fs::canonicalize(data),
        to.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }),
    ) {
        (Ok(d), Some(parent)) => std::fs::canonicalize(parent).is_ok_and(|p| p.starts_with(&d)),
        _ => false,
    };
    if inside {
        return Err(BackupError::Invalid(format!(
            "{} is inside the data directory {}; write the archive elsewhere",
            to.display(),
            data.display()
        )));
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        // The archive holds the evidence key and the users' password hashes.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(&tmp).map_err(io_at(&tmp))?;
        let mut w = Writer { tar: tar::Builder::new(io::BufWriter::new(file)), manifest: Vec::new() };
        let info = serde_json::json!({
            "format": FORMAT,
            "version": env!("CARGO_PKG_VERSION"),
            "source": data.display().to_string(),
            "created": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        });
        let mut h = tar::Header::new_gnu();
        let info = serde_json::to_vec_pretty(&info).unwrap_or_default();
        h.set_size(info.len() as u64);
        h.set_mode(0o644);
        w.tar.append_data(&mut h, INFO, info.as_slice()).map_err(io_at(&tmp))?;

        let mut files = Vec::new();
        files_under(data, &mut files)?;
        let store = data.join("tantivy");
        let (in_store, mut rest): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|p| p.starts_with(&store));
        rest.sort_by_key(|p| rel_of(data, p).map(|r| rank(&r)).unwrap_or(1));
        let (before, after): (Vec<PathBuf>, Vec<PathBuf>) =
            rest.into_iter().partition(|p| rel_of(data, p).is_none_or(|r| rank(&r) < 3));
        for p in &before {
            add_file(&mut w, data, p, &tmp)?;
        }
        let mut partitions: Vec<PathBuf> = in_store.iter().filter_map(|p| p.parent().map(Path::to_path_buf)).collect();
        partitions.sort();
        partitions.dedup();
        for dir in &partitions {
            add_partition(&mut w, data, dir, &tmp)?;
        }
        for p in &after {
            add_file(&mut w, data, p, &tmp)?;
        }
        let mut text = String::new();
        let mut summary = Summary::default();
        for (hash, rel, len) in &w.manifest {
            text.push_str(&format!("{hash}  {len}  {rel}\n"));
            summary.files += 1;
            summary.bytes += len;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(text.len() as u64);
        h.set_mode(0o644);
        w.tar.append_data(&mut h, MANIFEST, text.as_bytes()).map_err(io_at(&tmp))?;
        let buf = w.tar.into_inner().map_err(io_at(&tmp))?;
        let file = buf.into_inner().map_err(|e| io_at(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_at(&tmp))?;
        Ok(summary)
    })();
    match result {
        Ok(s) => {
            std::fs::rename(&tmp, to).map_err(io_at(to))?;
            Ok(s)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A relative path of the archive that stays inside the data directory.
fn safe_rel(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    (!rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))).then(|| p.to_path_buf())
}

fn bad(archive: &Path, what: String) -> BackupError {
    BackupError::Invalid(format!("{}: {what}; nothing was restored", archive.display()))
}

/// Every file of the archive checked against its manifest: (path, size).
fn verify(archive: &Path) -> Result<BTreeMap<String, u64>, BackupError> {
    let file = File::open(archive).map_err(io_at(archive))?;
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    let mut seen: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let mut manifest: Option<String> = None;
    let mut info = false;
    for entry in tar.entries().map_err(io_at(archive))? {
        let mut e = entry.map_err(|e| bad(archive, format!("not a readable archive: {e}")))?;
        let name = e.path().map_err(io_at(archive))?.to_string_lossy().into_owned();
        if name == MANIFEST {
            let mut s = String::new();
            e.read_to_string(&mut s).map_err(|e| bad(archive, format!("{MANIFEST}: {e}")))?;
            manifest = Some(s);
            continue;
        }
        if manifest.is_some() {
            return Err(bad(archive, format!("{name} after the manifest")));
        }
        if name == INFO {
            let mut s = String::new();
            e.read_to_string(&mut s).map_err(|e| bad(archive, format!("{INFO}: {e}")))?;
            let v: serde_json::Value = serde_json::from_str(&s).map_err(|e| bad(archive, format!("{INFO}: {e}")))?;
            if v.get("format").and_then(|f| f.as_u64()) != Some(FORMAT.into()) {
                return Err(bad(archive, format!("{INFO}: an archive format this version does not read")));
            }
            info = true;
            continue;
        }
        let Some(rel) = name.strip_prefix(PREFIX).filter(|r| safe_rel(r).is_some()) else {
            return Err(bad(archive, format!("unexpected entry {name}")));
        };
        // Backups hold regular files only: no links to follow out of the
        // data directory.
        if e.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(archive, format!("{rel}: not a regular file")));
        }
        let mut h = Hashing { inner: &mut e, hash: Sha256::new(), n: 0 };
        io::copy(&mut h, &mut io::sink()).map_err(|err| bad(archive, format!("{rel}: {err}")))?;
        seen.insert(rel.to_string(), (hex(h.hash.finalize()), h.n));
    }
    if !info {
        return Err(bad(archive, "not an archive of citysoc backup".into()));
    }
    let Some(manifest) = manifest else {
        return Err(bad(archive, format!("no {MANIFEST}: the archive is incomplete")));
    };
    let mut listed = BTreeMap::new();
    for (i, line) in manifest.lines().enumerate() {
        let mut parts = line.splitn(3, "  ");
        let (Some(hash), Some(len), Some(rel)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(archive, format!("{MANIFEST} line {}: not `sha256  size  path`", i + 1)));
        };
        let len: u64 = len.parse().map_err(|_| bad(archive, format!("{MANIFEST} line {}: size '{len}'", i + 1)))?;
        match seen.get(rel) {
            None => return Err(bad(archive, format!("{rel}: in the manifest, missing from the archive"))),
            Some((h, n)) if h != hash || *n != len => {
                return Err(bad(
                    archive,
                    format!("{rel}: its checksum differs from the manifest (the file is damaged)"),
                ))
            }
            Some(_) => {}
        }
        listed.insert(rel.to_string(), len);
    }
    if let Some(extra) = seen.keys().find(|k| !listed.contains_key(*k)) {
        return Err(bad(archive, format!("{extra}: in the archive, not in the manifest")));
    }
    Ok(listed)
}

/// A server holds the writer lock of a partition of this data directory.
fn in_use(data: &Path) -> Option<PathBuf> {
    let mut files = Vec::new();
    files_under(&data.join("tantivy"), &mut files).ok()?;
    for p in files.iter().filter(|p| p.ends_with(".tantivy-writer.lock")) {
        let Ok(f) = File::open(p) else { continue };
        // Tantivy takes an exclusive flock on it for as long as its writer
        // lives; taking it here (and letting it go) means nobody holds it.
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Some(p.clone());
        }
    }
    None
}

/// Brings the data directory `data` back from `archive`. A non-empty
/// `data` is replaced only with `force`; the archive is checked whole
/// before anything is written.
pub fn restore(archive: &Path, data: &Path, force: bool) -> Result<Summary, BackupError> {
    let non_empty = std::fs::read_dir(data).map(|mut d| d.next().is_some()).unwrap_or(false);
    if non_empty && !force {
        return Err(BackupError::Invalid(format!(
            "{} is not empty; restoring replaces everything in it: give --force to do so",
            data.display()
        )));
    }
    if let Some(lock) = in_use(data) {
        return Err(BackupError::Invalid(format!(
            "{} is in use by a running server ({} is locked); stop it first",
            data.display(),
            lock.display()
        )));
    }
    let listed = verify(archive)?;
    std::fs::create_dir_all(data).map_err(io_at(data))?;
    // Unpacked beside the old contents first, so that a failure half way
    // leaves the old data directory as it was.
    let staging = data.join(format!(".restore-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io_at(&staging))?;
    }
    let unpacked = unpack(archive, &staging, &listed);
    if let Err(e) = unpacked {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let mut old: Vec<PathBuf> = std::fs::read_dir(data).map_err(io_at(data))?.flatten().map(|e| e.path()).collect();
    old.retain(|p| p != &staging);
    for p in old {
        let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        r.map_err(io_at(&p))?;
    }
    for e in std::fs::read_dir(&staging).map_err(io_at(&staging))?.flatten() {
        let to = data.join(e.file_name());
        std::fs::rename(e.path(), &to).map_err(io_at(&to))?;
    }
    std::fs::remove_dir(&staging).map_err(io_at(&staging))?;
    // The renames made durable before the restore says it is done.
    File::open(data).and_then(|d| d.sync_all()).map_err(io_at(data))?;
    Ok(Summary { files: listed.len(), bytes: listed.values().sum() })
}

fn unpack(archive: &Path, to: &Path, listed: &BTreeMap<String, u64>) -> Result<(), BackupError> {
    let file = File::open(archive).map_err(io_at(archive))?;
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    for entry in tar.entries().map_err(io_at(archive))? {
        let mut e = entry.map_err(io_at(archive))?;
        let name = e.path().map_err(io_at(archive))?.to_string_lossy().into_owned();
        let Some(rel) = name.strip_prefix(PREFIX) else { continue };
        // Checked by `verify`; the archive may not have changed since.
        let (Some(safe), Some(_)) = (safe_rel(rel), listed.get(rel)) else {
            return Err(bad(archive, format!("{rel} changed while it was restored")));
        };
        let dest = to.join(safe);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        let mode = e.header().mode().unwrap_or(0o600) & 0o777;
        let mut out = File::create(&dest).map_err(io_at(&dest))?;
        io::copy(&mut e, &mut out).map_err(io_at(&dest))?;
        out.sync_all().map_err(io_at(&dest))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).map_err(io_at(&dest))?;
        }
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Run between reading a partition's `meta.json` and opening its
    /// files: where a merge's garbage collection would strike.
    static AFTER_META: std::cell::RefCell<Option<Box<dyn FnMut()>>> = const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
pub(crate) static PARTITION_RETRIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(test)]
mod tests {
    use super::*;
    use siem::schema::Catalog;
    use siem::store::tantivy::{TantivyConfig, TantivyStore};
    use siem::store::{Record, SearchRequest, Store};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    fn total(store: &TantivyStore) -> u64 {
        let mut req = SearchRequest::new(siem::query::parse("_log:conn", &Catalog::new()).unwrap());
        req.limit = 1;
        store.search(&req).unwrap().total
    }

    /// One partition committed to batch after batch, so that merges keep
    /// replacing its segments, backed up again and again: every archive
    /// opens, and holds every batch committed before its backup began and
    /// none twice.
    #[test]
    fn partitions_are_read_whole_while_merges_replace_their_segments() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let store = Arc::new(TantivyStore::open(&data, TantivyConfig { writer_heap_mb: 16 }).unwrap());
        let committed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (store, committed, stop) = (Arc::clone(&store), Arc::clone(&committed), Arc::clone(&stop));
            std::thread::spawn(move || {
                let catalog = Catalog::new();
                let mut b = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let recs: Vec<Record> = (0..5)
                        .map(|i| {
                            let v = serde_json::json!({"ts": 1_700_000_000.0 + b as f64, "uid": format!("B{b}R{i}")});
                            Record::validate(&catalog, "conn", "s1", v.as_object().unwrap().clone()).unwrap()
                        })
                        .collect();
                    store.ingest_batch(&recs, Some(&format!("s1/{b}"))).unwrap();
                    b += 1;
                    committed.store(b, Ordering::SeqCst);
                }
            })
        };
        while committed.load(Ordering::SeqCst) < 20 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for n in 0..12 {
            let before = committed.load(Ordering::SeqCst) as u64;
            let archive = tmp.path().join(format!("{n}.tar"));
            backup(&data, &archive).unwrap();
            let after = committed.load(Ordering::SeqCst) as u64;
            let to = tmp.path().join(format!("r{n}"));
            restore(&archive, &to, false).unwrap();
            let got = total(&TantivyStore::open(&to, TantivyConfig::default()).unwrap());
            // The writer counts a batch just after its commit: one more
            // may be in.
            assert!(
                got >= before * 5 && got <= (after + 1) * 5 && got % 5 == 0,
                "{got} records: {before}..={after} batches"
            );
            std::fs::remove_dir_all(&to).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        eprintln!(
            "{} batches; partitions read again after a merge: {}",
            committed.load(Ordering::SeqCst),
            PARTITION_RETRIES.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn appended_files_are_cut_after_their_last_whole_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("audit.log");
        std::fs::write(&p, "one\ntwo\nthr").unwrap();
        let mut f = File::open(&p).unwrap();
        assert_eq!(complete_lines(&mut f, 11).unwrap(), 8);
        std::fs::write(&p, "partial").unwrap();
        let mut f = File::open(&p).unwrap();
        assert_eq!(complete_lines(&mut f, 7).unwrap(), 0);
        // Longer than one read from the end.
        let long = "x".repeat(200_000) + "\n" + &"y".repeat(100_000);
        std::fs::write(&p, &long).unwrap();
        let mut f = File::open(&p).unwrap();
        assert_eq!(complete_lines(&mut f, long.len() as u64).unwrap(), 200_001);
    }

    #[test]
    fn archive_paths_stay_inside_the_data_directory() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
            assert!(safe_rel(bad).is_none(), "{bad}");
        }
        assert!(safe_rel("tantivy/flows/2026-12-07/meta.json").is_some());
    }

    /// A merge ends between the read of `meta.json` and the opening of its
    /// files, and removes the segments that version named: the partition is
    /// read again, and the archive holds the newer version whole.
    #[test]
    fn a_partition_whose_segments_go_is_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let part = data.join("tantivy/flows/2026-12-07");
        std::fs::create_dir_all(&part).unwrap();
        let meta = |id: &str, del: Option<u64>| {
            let deletes =
                del.map_or(serde_json::Value::Null, |op| serde_json::json!({"num_deleted_docs": 1, "opstamp": op}));
            serde_json::json!({"segments": [{"segment_id": id, "max_doc": 3, "deletes": deletes}], "opstamp": 9})
                .to_string()
        };
        let old = "0b6f3a2e-8a4d-4a0e-9c1b-2f1e3d4c5b6a";
        let new = "1c7a4b3f-9b5e-4b1f-8d2c-3a2f4e5d6c7b";
        let files = |id: &str, del: Option<u64>| {
            let id = id.replace('-', "");
            let mut v: Vec<String> =
                ["idx", "pos", "term", "store", "fast", "fieldnorm"].iter().map(|e| format!("{id}.{e}")).collect();
            if let Some(op) = del {
                v.push(format!("{id}.{op}.del"));
            }
            v
        };
        for f in files(old, None) {
            std::fs::write(part.join(f), "old").unwrap();
        }
        std::fs::write(part.join("meta.json"), meta(old, None)).unwrap();
        std::fs::write(part.join("citysoc-layout"), "3").unwrap();
        std::fs::write(data.join("audit.log"), "").unwrap();
        let (p, mut fired) = (part.clone(), false);
        AFTER_META.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                if !fired {
                    fired = true;
                    for f in files(new, Some(7)) {
                        std::fs::write(p.join(f), "new").unwrap();
                    }
                    std::fs::write(p.join("meta.json"), meta(new, Some(7))).unwrap();
                    for f in files(old, None) {
                        std::fs::remove_file(p.join(f)).unwrap();
                    }
                }
            }))
        });
        let before = PARTITION_RETRIES.load(std::sync::atomic::Ordering::Relaxed);
        let archive = tmp.path().join("a.tar");
        backup(&data, &archive).unwrap();
        AFTER_META.with(|h| *h.borrow_mut() = None);
        assert!(PARTITION_RETRIES.load(std::sync::atomic::Ordering::Relaxed) > before);
        let listed = verify(&archive).unwrap();
        let rel = "tantivy/flows/2026-12-07";
        for f in files(new, Some(7)) {
            assert!(listed.contains_key(&format!("{rel}/{f}")), "{f} missing: {listed:?}");
        }
        assert!(!listed.keys().any(|k| k.contains(&old.replace('-', ""))), "{listed:?}");
        let to = tmp.path().join("r");
        restore(&archive, &to, false).unwrap();
        assert_eq!(std::fs::read_to_string(to.join(rel).join("meta.json")).unwrap(), meta(new, Some(7)));
    }
}
