//! What the end-to-end tests share: the binary, the repository, a child
//! process that dies with the test, token hashes, and reading a child's
//! stderr line by line. Each test file uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn citysoc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_citysoc"))
}

/// A child process (a SIEM, a sensor) killed if the test ends first.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The lines a child writes to its (piped) stderr, as they come.
pub fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits up to 30 s for a line containing `needle`, and returns it.
pub fn wait_for(rx: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            if l.contains(needle) {
                return l;
            }
        }
    }
    panic!("never saw a line with {needle:?}");
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A ClickHouse server of its own for one test (on free loopback ports,
/// in a temporary folder), stopped when dropped.
pub struct ClickHouse {
    child: Child,
    pub http_port: u16,
    _dir: tempfile::TempDir,
}

impl ClickHouse {
    pub fn start() -> ClickHouse {
        let bin = ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("clickhouse-server is not installed (scripts/install-deps installs it)");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let http = free_port();
        let child = Command::new(bin)
            .arg("--config-file=/etc/clickhouse-server/config.xml")
            .arg("--")
            .arg(format!("--path={d}/data/"))
            .arg(format!("--tmp_path={d}/tmp/"))
            .arg(format!("--user_files_path={d}/uf/"))
            .arg(format!("--format_schema_path={d}/fs/"))
            .arg(format!("--http_port={http}"))
            .arg(format!("--tcp_port={}", free_port()))
            .arg(format!("--interserver_http_port={}", free_port()))
            .arg("--listen_host=127.0.0.1")
            .arg(format!("--logger.log={d}/server.log"))
            .arg(format!("--logger.errorlog={d}/server.err.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("clickhouse-server starts");
        let ch = ClickHouse { child, http_port: http, _dir: dir };
        let start = Instant::now();
        while !ureq::get(&format!("http://127.0.0.1:{http}/ping")).call().is_ok_and(|r| r.status() == 200) {
            assert!(start.elapsed() < Duration::from_secs(30), "clickhouse-server did not answer /ping");
            std::thread::sleep(Duration::from_millis(100));
        }
        ch
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        // SIGTERM, so the server stops its own children and cleans up.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}
