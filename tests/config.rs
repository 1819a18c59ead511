//! `citysoc config check` over real files, and `citysoc serve --config`
//! serving what its file says.

mod common;

use common::{citysoc, free_port, sha256_hex, Server};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn check(file: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = citysoc().args(["config", "check"]).arg(file).args(extra).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn an_unreadable_file_is_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("serve.toml");
    let (ok, text) = check(&missing, &[]);
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("{}: cannot read", missing.display())), "{text}");
    // A folder where the file should be.
    let dir = tmp.path().join("sensor.toml");
    std::fs::create_dir(&dir).unwrap();
    let (ok, text) = check(&dir, &[]);
    assert!(!ok && text.contains("cannot read"), "{text}");
}

#[test]
fn three_problems_of_one_file_are_all_named_with_their_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("serve-site.toml");
    std::fs::write(
        &file,
        "# the SOC's server\n\
         listen = \"0.0.0.0:80:80\"\n\
         writer_heap_mb = 64\n\
         colour = \"blue\"\n\
         \n\
         [tls]\n\
         cert = \"/nonexistent/citysoc/cert.pem\"\n\
         key = \"/nonexistent/citysoc/key.pem\"\n",
    )
    .unwrap();
    let (ok, text) = check(&file, &[]);
    assert!(!ok, "{text}");
    let f = file.display();
    for want in [
        format!("{f}:2: listen: '0.0.0.0:80:80' is not an address and port"),
        format!("{f}:4: colour: unknown key"),
        format!("{f}:7: tls.cert: cannot read /nonexistent/citysoc/cert.pem"),
    ] {
        assert!(text.contains(&want), "{want:?} not in:\n{text}");
    }
    // The same file given as a sensor's: its keys are not a sensor's.
    let (ok, text) = check(&file, &["--kind", "sensor"]);
    assert!(!ok && text.contains(&format!("{f}:2: listen: unknown key")), "{text}");
    // And the server refuses to start on it, naming the same problems.
    let out = citysoc().args(["serve", "--config"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(":4: colour: unknown key") && err.contains(":7: tls.cert"), "{err}");
    // A flag's bad value is the flag's, not the file's line's.
    let out = citysoc().args(["serve", "--config"]).arg(&file).args(["--listen", "nowhere"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{f}: listen: 'nowhere' is not an address")), "{err}");
    assert!(err.contains("(given on the command line)") && !err.contains(":2: listen"), "{err}");
}

#[test]
fn good_files_are_ok_and_a_name_says_whose_file_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = tmp.path().join("serve.toml");
    std::fs::write(
        &serve,
        "data = \"/var/lib/citysoc/data\"\nlisten = \"127.0.0.1:8080\"\n\
         [retention]\nage = { flows = \"14d\", alerts = \"2y\" }\nbudget = { flows = \"200GiB\" }\n\
         [console]\ntime_zone = \"UTC\"\n",
    )
    .unwrap();
    let (ok, text) = check(&serve, &[]);
    assert!(ok && text.trim() == "ok", "{text}");
    let sensor = tmp.path().join("sensor.toml");
    std::fs::write(&sensor, "workers = 2\nlocal_nets = [\"10.0.0.0/8\"]\n[ring]\nbudget_mb = 2048\n").unwrap();
    let (ok, text) = check(&sensor, &[]);
    assert!(ok && text.trim() == "ok", "{text}");
    let other = tmp.path().join("site.toml");
    std::fs::write(&other, "workers = 2\n").unwrap();
    let (ok, text) = check(&other, &[]);
    assert!(!ok && text.contains("--kind"), "{text}");
    let (ok, text) = check(&other, &["--kind", "sensor"]);
    assert!(ok, "{text}");
}

/// The file's data folder, address, tokens and console table are what the
/// server runs with; a flag overrides its key.
#[test]
fn serve_runs_with_its_file_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = tmp.path().join("state");
    let tokens = tmp.path().join("tokens.toml");
    std::fs::write(&tokens, format!("[readers]\nr = \"{}\"\n", sha256_hex("reader"))).unwrap();
    let file = tmp.path().join("serve.toml");
    std::fs::write(
        &file,
        format!(
            "data = {:?}\nlisten = \"127.0.0.1:1\"\ntokens = {:?}\nwriter_heap_mb = 32\n\
             [retention]\ninterval = \"1h\"\n[console]\ntime_zone = \"UTC\"\n",
            data.display().to_string(),
            tokens.display().to_string()
        ),
    )
    .unwrap();
    let _s = Server(
        citysoc()
            .args(["serve", "--config"])
            .arg(&file)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    let url = format!("http://127.0.0.1:{port}/api/v1/search?q=*");
    let status = loop {
        match ureq::get(&url).call() {
            Err(ureq::Error::Status(code, _)) => break code,
            Ok(r) => break r.status(),
            Err(_) => {
                assert!(start.elapsed() < Duration::from_secs(30), "the SIEM did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    // The tokens file of the config: an anonymous search is refused, the
    // reader's token is taken.
    assert_eq!(status, 401);
    let r = ureq::get(&url).set("Authorization", "Bearer reader").call().unwrap();
    assert_eq!(r.status(), 200);
    assert!(data.join("tantivy").is_dir(), "the store is not in the file's data folder");
    assert!(data.join("console-users.json").is_file());
}

/// The sign-in sections are checked as the server checks them at start: a
/// file that passes the check also starts.
#[test]
fn sign_in_sections_are_checked_as_the_server_checks_them() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("serve.toml");
    std::fs::write(
        &file,
        "[console.oidc]\n\
         issuer = \"not a url\"\n\
         client_id = \"citysoc\"\n\
         redirect_url = \"https://soc.example/login/oidc/callback\"\n\
         role_map = { soc-analysts = \"analyst\" }\n\
         \n\
         [console.ldap]\n\
         url = \"http://ldap\"\n\
         user_base = \"ou=people,dc=city,dc=example\"\n\
         role_map = { soc = \"analyst\" }\n",
    )
    .unwrap();
    let (ok, text) = check(&file, &[]);
    assert!(!ok, "{text}");
    assert!(text.contains("console.oidc.issuer"), "{text}");
    assert!(text.contains("console.ldap.url"), "{text}");
}
