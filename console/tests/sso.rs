//! Signing in through the city's directory and identity provider, against
//! real ones the tests start: Debian's OpenLDAP (`slapd`, its own config
//! and database in a temporary folder, on a free loopback port) and the
//! certified `oidc-provider` under Node (`tests/oidc/`), through headless
//! Chromium. `.ci/run` installs them; without them a test fails and says
//! what to install.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use console::users::Role;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use siem::api::AppState;
use siem::store::tantivy::{TantivyConfig, TantivyStore};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{cookie_value, get, login, send, Reply};

const SLAPD: &str = "/usr/sbin/slapd";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const SUFFIX: &str = "dc=city,dc=example";
const ROOT_PW: &str = "root password of the test directory";
const SEARCH_PW: &str = "search account password";
const CLIENT_SECRET: &str = "the console client secret at the test provider";

/// One browser at a time (a small CI machine).
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A child process ended with its test.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port()
}

fn wait_for(host: &str, port: u16, what: &str, proc: &mut Proc) {
    wait_logged(host, port, what, proc, None)
}

/// As `wait_for`, showing the process's output (`log`) if it fails.
fn wait_logged(host: &str, port: u16, what: &str, proc: &mut Proc, log: Option<&Path>) {
    let said = || log.map(|l| std::fs::read_to_string(l).unwrap_or_default()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect((host, port)).is_err() {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("{what} exited before listening on {host}:{port}: {status}\n{}", said());
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {host}:{port}\n{}", said());
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------- directory

struct Slapd {
    url: String,
    /// `ldaps://` on its own port, for a directory started with TLS.
    ldaps: Option<String>,
    dir: tempfile::TempDir,
    proc: Option<Proc>,
}

impl Slapd {
    /// Changes entries as the directory's administrator would.
    fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        let out = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url, "-D", &format!("cn=admin,{SUFFIX}"), "-w", ROOT_PW, "-f"])
            .arg(&path)
            .output()
            .expect("ldapmodify runs (apt-get install ldap-utils)");
        assert!(out.status.success(), "ldapmodify: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn stop(&mut self) {
        self.proc = None;
    }
}

/// People of the city: lan an analyst, minh an admin, hoa in parks only
/// (no role), the search account the console looks users up with.
fn directory_ldif() -> String {
    let person = |uid: &str, cn: &str, pw: &str| {
        format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {cn}\n\
             userPassword: {pw}\n\n"
        )
    };
    let group = |cn: &str, members: &[&str]| {
        let mut g = format!("dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n");
        for m in members {
            g.push_str(&format!("member: uid={m},ou=people,{SUFFIX}\n"));
        }
        g + "\n"
    };
    let mut l = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: city\no: City\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: cn=citysoc,ou=services,{SUFFIX}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: citysoc\nuserPassword: {SEARCH_PW}\n\n"
    );
    l += &person("lan", "Tran Thi Lan", "lan's directory password");
    l += &person("minh", "Le Van Minh", "minh's directory password");
    l += &person("hoa", "Pham Thu Hoa", "hoa's directory password");
    l += &group("soc-analysts", &["lan"]);
    l += &group("soc-admins", &["minh"]);
    l += &group("parks", &["hoa", "lan"]);
    l
}

fn openssl(dir: &Path, args: &[&str]) {
    let out =
        Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA of the test's own and a certificate from it for 127.0.0.1, as a
/// city's directory has from the city's CA.
fn certificates(d: &Path) -> String {
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=City test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    format!(
        "TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\nTLSCertificateKeyFile {d}/server.key\n",
        d = d.display()
    )
}

fn slapd() -> Slapd {
    slapd_with(false)
}

fn slapd_with(tls: bool) -> Slapd {
    assert!(Path::new(SLAPD).exists(), "{SLAPD} is missing: apt-get install slapd ldap-utils");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("db")).unwrap();
    let tls_conf = if tls { certificates(d) } else { String::new() };
    let conf = tls_conf
        + &format!(
            "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         modulepath /usr/lib/ldap\nmoduleload back_mdb\npidfile {pid}\nargsfile {args}\n\
         database mdb\nmaxsize 10485760\nsuffix \"{SUFFIX}\"\nrootdn \"cn=admin,{SUFFIX}\"\nrootpw \"{ROOT_PW}\"\n\
         directory {db}\n\
         access to attrs=userPassword by anonymous auth by self read by * none\n\
         access to * by dn.exact=\"cn=citysoc,ou=services,{SUFFIX}\" read by users read by * none\n",
            pid = d.join("slapd.pid").display(),
            args = d.join("slapd.args").display(),
            db = d.join("db").display(),
        );
    std::fs::write(d.join("slapd.conf"), conf).unwrap();
    std::fs::write(d.join("data.ldif"), directory_ldif()).unwrap();
    let out = Command::new("/usr/sbin/slapadd")
        .arg("-f")
        .arg(d.join("slapd.conf"))
        .arg("-l")
        .arg(d.join("data.ldif"))
        .output()
        .unwrap();
    assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port("127.0.0.1");
    let url = format!("ldap://127.0.0.1:{port}");
    let ldaps_port = free_port("127.0.0.1");
    let ldaps = tls.then(|| format!("ldaps://127.0.0.1:{ldaps_port}"));
    let listen = match &ldaps {
        Some(s) => format!("{url}/ {s}/"),
        None => format!("{url}/"),
    };
    // `-d` keeps it in the foreground, a child of the test.
    let child = Command::new(SLAPD)
        .arg("-f")
        .arg(d.join("slapd.conf"))
        .args(["-h", &listen, "-d", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("slapd starts");
    let mut proc = Proc(child);
    wait_for("127.0.0.1", port, "slapd", &mut proc);
    if tls {
        wait_for("127.0.0.1", ldaps_port, "slapd (ldaps)", &mut proc);
    }
    Slapd { url, ldaps, dir, proc: Some(proc) }
}

fn ldap_config(s: &Slapd) -> console::sso::LdapConfig {
    let pw = s.dir.path().join("search.pw");
    std::fs::write(&pw, format!("{SEARCH_PW}\n")).unwrap();
    let text = format!(
        "url = '{url}'\nbind_dn = 'cn=citysoc,ou=services,{SUFFIX}'\nbind_password_file = '{pw}'\n\
         user_base = 'ou=people,{SUFFIX}'\nuser_filter = '(&(objectClass=inetOrgPerson)(uid={{user}}))'\n\
         group_base = 'ou=groups,{SUFFIX}'\ngroup_filter = '(&(objectClass=groupOfNames)(member={{dn}}))'\n\
         timeout_secs = 3\n[role_map]\nsoc-analysts = 'analyst'\n'cn=soc-admins,ou=groups,{SUFFIX}' = 'admin'\n",
        url = s.url,
        pw = pw.display(),
    );
    toml::from_str(&text).unwrap()
}

// --------------------------------------------------------------- console

fn console(dir: &Path, cfg: console::ConsoleConfig) -> (Arc<console::Console>, String) {
    let store = Arc::new(TantivyStore::open(dir, TantivyConfig::default()).unwrap());
    let siem = Arc::new(AppState::open(store, None, dir, 2).unwrap());
    let (c, first) = console::Console::open(siem, dir, cfg).unwrap();
    (Arc::new(c), first.unwrap())
}

/// The audit trail's entries of an action, as JSON.
fn audited(dir: &Path, action: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["action"] == action)
        .collect()
}

/// A message as the reader sees it.
fn text(key: &str) -> String {
    console::i18n::Tr { lang: console::i18n::Lang::En }.t(key).to_string()
}

/// A message as the page's HTML holds it.
fn html(key: &str) -> String {
    askama_escape(&text(key))
}

/// As the templates write it (Askama escapes `'` and `"`).
fn askama_escape(s: &str) -> String {
    s.replace('&', "&#38;").replace('\'', "&#39;").replace('"', "&#34;")
}

// ------------------------------------------------------------ LDAP tests

#[tokio::test]
async fn directory_users_sign_in_with_the_role_of_their_groups_at_every_sign_in() {
    let ldap = slapd();
    let data = tempfile::tempdir().unwrap();
    let cfg = console::ConsoleConfig { ldap: Some(ldap_config(&ldap)), ..Default::default() };
    let (c, _) = console(data.path(), cfg);

    // lan is in soc-analysts (by name) and parks (unmapped): an analyst.
    let r = login(&c, [10, 0, 0, 1], "lan", "lan's directory password").await;
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/"), "{}", r.body);
    let lan = cookie_value(&r, "citysoc_session").unwrap();
    let s = c.sessions.get(&lan).unwrap();
    assert_eq!((s.user.as_str(), s.role, s.source.as_deref()), ("ldap:lan", Role::Analyst, Some("ldap")));
    assert_eq!(get(&c, &lan, "/").await.status, StatusCode::OK);
    // An analyst's session cannot reach the admins' pages.
    assert_eq!(get(&c, &lan, "/users").await.status, StatusCode::FORBIDDEN);

    // minh is in soc-admins (mapped by DN); the name is found without case.
    let r = login(&c, [10, 0, 0, 2], "MINH", "minh's directory password").await;
    let minh = cookie_value(&r, "citysoc_session").expect("minh signed in");
    assert_eq!(c.sessions.get(&minh).unwrap().role, Role::Admin);
    assert_eq!(get(&c, &minh, "/users").await.status, StatusCode::OK);

    let logins = audited(data.path(), "console.login");
    let lan_login = logins.iter().find(|e| e["who"] == "ldap:lan").expect("lan's sign-in audited");
    assert_eq!(lan_login["detail"]["source"], "ldap");
    assert_eq!(lan_login["detail"]["role"], "analyst");
    assert_eq!(lan_login["detail"]["subject"], format!("uid=lan,ou=people,{SUFFIX}"));

    // The directory makes lan an admin: it shows at her next sign-in.
    ldap.modify(&format!(
        "dn: cn=soc-admins,ou=groups,{SUFFIX}\nchangetype: modify\nadd: member\nmember: uid=lan,ou=people,{SUFFIX}\n"
    ));
    assert_eq!(c.sessions.get(&lan).unwrap().role, Role::Analyst, "the running session keeps its role");
    let r = login(&c, [10, 0, 0, 1], "lan", "lan's directory password").await;
    let again = cookie_value(&r, "citysoc_session").unwrap();
    assert_eq!(c.sessions.get(&again).unwrap().role, Role::Admin);

    // A directory user has no local password or second factor to change.
    assert_ne!(get(&c, &again, "/totp").await.status, StatusCode::OK);
}

/// TLS as a city runs it: the directory's certificate from the city's CA,
/// trusted through `ca_file`, over ldaps:// and over StartTLS; without the
/// CA the connection is refused, never made in the clear.
#[tokio::test]
async fn the_directory_over_tls_is_trusted_through_the_configured_ca_only() {
    let ldap = slapd_with(true);
    let ca = ldap.dir.path().join("ca.pem");
    let data = tempfile::tempdir().unwrap();
    let base = ldap_config(&ldap);
    let ldaps =
        console::sso::LdapConfig { url: ldap.ldaps.clone().unwrap(), ca_file: Some(ca.clone()), ..base.clone() };
    let starttls = console::sso::LdapConfig { starttls: true, ca_file: Some(ca), ..base.clone() };
    let untrusted = console::sso::LdapConfig { url: ldap.ldaps.clone().unwrap(), ..base };
    for (i, (cfg, ok)) in [(ldaps, true), (starttls, true), (untrusted, false)].into_iter().enumerate() {
        let d = data.path().join(i.to_string());
        std::fs::create_dir(&d).unwrap();
        let (c, _) = console(&d, console::ConsoleConfig { ldap: Some(cfg.clone()), ..Default::default() });
        let r = login(&c, [10, 0, 8, i as u8], "lan", "lan's directory password").await;
        if ok {
            assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/"), "{cfg:?}: {}", r.body);
        } else {
            assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{cfg:?}: {}", r.body);
            let failed = audited(&d, "console.login_failed");
            assert!(
                failed[0]["detail"]["reason"].as_str().unwrap().to_lowercase().contains("certificate"),
                "{failed:#?}"
            );
        }
    }
}

#[tokio::test]
async fn wrong_passwords_injections_and_users_in_no_mapped_group_are_refused() {
    let ldap = slapd();
    let data = tempfile::tempdir().unwrap();
    let cfg = console::ConsoleConfig { ldap: Some(ldap_config(&ldap)), ..Default::default() };
    let (c, _) = console(data.path(), cfg);
    let refused = |r: &Reply, status: StatusCode, key: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        assert!(cookie_value(r, "citysoc_session").is_none());
        assert!(r.body.contains(&html(key)), "no '{key}' message in {}", r.body);
    };
    let r = login(&c, [10, 0, 1, 1], "lan", "not lan's password").await;
    refused(&r, StatusCode::UNAUTHORIZED, "login.failed");
    // Filter injections: with the name escaped they look for a user named
    // so, and there is none (unescaped, `*)(uid=*` finds every entry).
    for (i, name) in ["*)(uid=*", "*", "lan)(|(uid=*", "lan*"].iter().enumerate() {
        let r = login(&c, [10, 0, 2, i as u8], name, "lan's directory password").await;
        refused(&r, StatusCode::UNAUTHORIZED, "login.failed");
    }
    // An empty password would be an anonymous bind, which proves nothing.
    let r = login(&c, [10, 0, 3, 1], "lan", "").await;
    refused(&r, StatusCode::UNAUTHORIZED, "login.failed");
    // hoa is in parks only.
    let r = login(&c, [10, 0, 4, 1], "hoa", "hoa's directory password").await;
    refused(&r, StatusCode::FORBIDDEN, "sso.no_role");
    let failed = audited(data.path(), "console.login_failed");
    assert_eq!(failed.len(), 7, "{failed:#?}");
    assert!(failed.iter().all(|e| e["detail"]["source"] == "ldap"));
    assert!(failed.iter().any(|e| e["who"] == "*)(uid=*"));
    assert!(failed
        .iter()
        .any(|e| e["who"] == "hoa" && e["detail"]["reason"].as_str().unwrap().contains("no mapped group")));
}

#[tokio::test]
async fn local_accounts_come_first_and_still_work_when_the_directory_is_down() {
    let mut ldap = slapd();
    let data = tempfile::tempdir().unwrap();
    let cfg = console::ConsoleConfig { ldap: Some(ldap_config(&ldap)), ..Default::default() };
    let (c, admin_pw) = console(data.path(), cfg);
    // A local name is never sent to the directory: a wrong password for
    // `admin` is a local failure, and the directory hears nothing of it.
    let r = login(&c, [10, 0, 5, 1], "admin", "lan's directory password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(audited(data.path(), "console.login_failed").iter().all(|e| e["detail"]["source"].is_null()));

    ldap.stop();
    let r = login(&c, [10, 0, 5, 2], "lan", "lan's directory password").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains(&html("sso.ldap_down")), "{}", r.body);
    let r = login(&c, [10, 0, 5, 3], "admin", &admin_pw).await;
    assert_eq!((r.status, r.location.as_str()), (StatusCode::SEE_OTHER, "/password"), "{}", r.body);
    assert!(cookie_value(&r, "citysoc_session").is_some());
}

#[test]
fn a_console_refuses_to_start_on_a_broken_directory_or_provider_section() {
    let data = tempfile::tempdir().unwrap();
    let ldap: console::sso::LdapConfig =
        toml::from_str("url = 'ldaps://dir.city.example'\nstarttls = true\nuser_base = 'dc=city'\nbind_dn = 'cn=x'")
            .unwrap();
    let oidc: console::sso::OidcConfig = toml::from_str(
        "issuer = 'https://sso.city.example/realms/city'\nclient_id = 'citysoc'\n\
         client_secret_file = '/nonexistent/secret'\nredirect_url = 'https://soc.city.example/login/oidc/callback'\n\
         [role_map]\nsoc = 'analyst'",
    )
    .unwrap();
    let cfg = console::ConsoleConfig { ldap: Some(ldap), oidc: Some(oidc), ..Default::default() };
    let store = Arc::new(TantivyStore::open(data.path(), TantivyConfig::default()).unwrap());
    let siem = Arc::new(AppState::open(store, None, data.path(), 2).unwrap());
    let Err(e) = console::Console::open(siem, data.path(), cfg) else { panic!("a broken section was accepted") };
    let e = e.to_string();
    for part in ["starttls", "bind_dn without bind_password_file", "role_map is empty", "/nonexistent/secret"] {
        assert!(e.contains(part), "'{part}' not in {e}");
    }
}

// ------------------------------------------------------------ OIDC tests

/// The test provider, its npm packages installed once under target/.
struct Provider {
    issuer: String,
    _proc: Proc,
}

fn provider_dir() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/oidc-provider");
    let lock = std::fs::read(src.join("package-lock.json")).unwrap();
    let installed = std::fs::read(dir.join("package-lock.json")).ok();
    if installed.as_deref() != Some(lock.as_slice()) || !dir.join("node_modules/oidc-provider").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir)
            .output()
            .expect("npm runs (apt-get install nodejs npm)");
        assert!(out.status.success(), "npm ci: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::copy(src.join("provider.mjs"), dir.join("provider.mjs")).unwrap();
    dir
}

/// A provider on 127.0.0.2: another site than the console's 127.0.0.1 to
/// the browser, as a real provider is.
fn provider(redirect: &str, other_key: bool) -> Provider {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let dir = {
        let _one = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
        provider_dir()
    };
    let port = free_port("127.0.0.2");
    let log = dir.join(format!("provider-{port}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.2")
        .env("REDIRECT_URI", redirect)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .env("PUBLISH_OTHER_KEY", if other_key { "1" } else { "0" })
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("node runs");
    let mut proc = Proc(child);
    wait_logged("127.0.0.2", port, "the OpenID provider", &mut proc, Some(&log));
    let _ = std::fs::remove_file(&log);
    Provider { issuer: format!("http://127.0.0.2:{port}"), _proc: proc }
}

fn oidc_config(issuer: &str, console_url: &str) -> console::sso::OidcConfig {
    toml::from_str(&format!(
        "name = 'City SSO'\nissuer = '{issuer}'\nclient_id = 'citysoc'\nclient_secret = '{CLIENT_SECRET}'\n\
         redirect_url = '{console_url}/login/oidc/callback'\ntimeout_secs = 5\n\
         [role_map]\nsoc-analysts = 'analyst'\nsoc-admins = 'admin'\n"
    ))
    .unwrap()
}

/// A console served on loopback, as a browser reaches it.
struct Served {
    url: String,
    console: Arc<console::Console>,
    data: tempfile::TempDir,
}

async fn serve(listener: tokio::net::TcpListener, cfg: console::ConsoleConfig) -> Served {
    let data = tempfile::tempdir().unwrap();
    let (c, _) = console(data.path(), cfg);
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = console::router(Arc::clone(&c)).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Served { url, console: c, data }
}

async fn browser() -> (Client, Proc) {
    for (path, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(Path::new(path).exists(), "{path} is missing: apt-get install {pkg}");
    }
    let port = free_port("127.0.0.1");
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let mut driver = Proc(child);
    wait_for("127.0.0.1", port, "chromedriver", &mut driver);
    let profile = tempfile::tempdir().unwrap().keep();
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()), "--lang=en"],
            "prefs": {"intl.accept_languages": "en"}
        }
    });
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps.as_object().unwrap().clone())
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with headless Chromium");
    (client, driver)
}

/// The text of an element once it satisfies `ok`.
async fn until(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = c.current_url().await.map(|u| u.to_string()).unwrap_or_default();
    panic!("{css} never became as expected at {url}; last seen: {last:?}");
}

/// From the console's sign-in page through the provider's: the user types
/// their name and password there, as they would at Keycloak.
async fn sign_in_at_provider(b: &Client, console_url: &str, user: &str) {
    b.goto(&format!("{console_url}/login")).await.unwrap();
    let button = until(b, "#login-oidc", |_| true).await;
    assert_eq!(button, "Sign in with City SSO");
    b.find(Locator::Id("login-oidc")).await.unwrap().click().await.unwrap();
    until(b, "input[name=login]", |_| true).await;
    b.find(Locator::Css("input[name=login]")).await.unwrap().send_keys(user).await.unwrap();
    b.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("any password").await.unwrap();
    b.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
}

async fn session_cookie(b: &Client) -> Option<String> {
    b.get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "citysoc_session")
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_through_the_browser_maps_groups_to_roles_and_refuses_the_rest() {
    let _one = ONE_BROWSER.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_url = format!("http://{}", listener.local_addr().unwrap());
    let idp = provider(&format!("{console_url}/login/oidc/callback"), false);
    let cfg = console::ConsoleConfig { oidc: Some(oidc_config(&idp.issuer, &console_url)), ..Default::default() };
    let s = serve(listener, cfg).await;
    let (b, _driver) = browser().await;

    // lan (soc-analysts) ends on the dashboard as an analyst.
    sign_in_at_provider(&b, &s.url, "lan").await;
    until(&b, "body", |_| true).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.current_url().await.unwrap().path() != "/" {
        assert!(Instant::now() < deadline, "never reached the dashboard: {}", b.current_url().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until(&b, "#whoami", |t| t == format!("oidc:lan ({})", text("role.analyst"))).await;
    // The console's own password and second factor are not theirs.
    assert!(b.find(Locator::Css("a[href='/password']")).await.is_err());
    let cookie = session_cookie(&b).await.expect("a session");
    let session = s.console.sessions.get(&cookie).unwrap();
    assert_eq!(
        (session.user.as_str(), session.role, session.source.as_deref()),
        ("oidc:lan", Role::Analyst, Some("oidc"))
    );
    let login = audited(s.data.path(), "console.login");
    let d = &login.iter().find(|e| e["who"] == "oidc:lan").expect("lan's sign-in audited")["detail"];
    assert_eq!(
        (d["provider"].as_str(), d["subject"].as_str(), d["role"].as_str()),
        (Some("City SSO"), Some("lan"), Some("analyst"))
    );

    // The callback once more (a replayed or forged answer) is refused.
    b.goto(&format!("{}/login/oidc/callback?code=forged&state=forged", s.url)).await.unwrap();
    until(&b, "#login-error", |t| t == text("sso.bad_state")).await;

    // Signed out of both (WebDriver deletes the cookies of the page's own
    // site), hoa (parks only) signs in at the provider and is refused.
    b.delete_all_cookies().await.unwrap();
    b.goto(&idp.issuer).await.unwrap();
    b.delete_all_cookies().await.unwrap();
    sign_in_at_provider(&b, &s.url, "hoa").await;
    until(&b, "#login-error", |t| t == text("sso.no_role")).await;
    assert!(session_cookie(&b).await.is_none());
    let failed = audited(s.data.path(), "console.login_failed");
    assert!(
        failed
            .iter()
            .any(|e| e["detail"]["source"] == "oidc" && e["detail"]["reason"].as_str().unwrap().contains("oidc:hoa")),
        "{failed:#?}"
    );
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_signed_by_a_key_the_provider_does_not_publish_is_refused() {
    let _one = ONE_BROWSER.lock().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_url = format!("http://{}", listener.local_addr().unwrap());
    let idp = provider(&format!("{console_url}/login/oidc/callback"), true);
    let cfg = console::ConsoleConfig { oidc: Some(oidc_config(&idp.issuer, &console_url)), ..Default::default() };
    let s = serve(listener, cfg).await;
    let (b, _driver) = browser().await;
    sign_in_at_provider(&b, &s.url, "minh").await;
    until(&b, "#login-error", |t| t == text("sso.bad_token")).await;
    assert!(session_cookie(&b).await.is_none());
    let failed = audited(s.data.path(), "console.login_failed");
    assert!(
        failed.iter().any(|e| e["detail"]["reason"].as_str().unwrap().to_lowercase().contains("signature")),
        "{failed:#?}"
    );
    b.close().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_provider_is_a_message_on_the_sign_in_page() {
    let data = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let issuer = format!("http://127.0.0.1:{}", free_port("127.0.0.1"));
    let cfg = console::ConsoleConfig { oidc: Some(oidc_config(&issuer, "http://127.0.0.1:1")), ..Default::default() };
    let (c, _) = console(data.path(), cfg);
    let req = Request::get("/login/oidc").header(header::ACCEPT, "text/html").body(Body::empty()).unwrap();
    let r = send(&c, [10, 0, 6, 1], req).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains(&html("sso.unreachable")), "{}", r.body);
    // The sign-in page still offers the local form.
    assert!(r.body.contains("id=\"password\""));
}

/// A code the provider does not accept (expired, used, or never issued: the
/// provider answers `invalid_grant` to each alike) is refused with a
/// message; the begun sign-in cannot be tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_the_provider_does_not_accept_is_refused_and_the_state_is_used_up() {
    let console_url = "http://127.0.0.1:1";
    let idp = provider(&format!("{console_url}/login/oidc/callback"), false);
    let data = tempfile::tempdir().unwrap();
    let cfg = console::ConsoleConfig { oidc: Some(oidc_config(&idp.issuer, console_url)), ..Default::default() };
    let (c, _) = console(data.path(), cfg);
    let r = send(&c, [10, 0, 7, 1], Request::get("/login/oidc").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(r.location.starts_with(&format!("{}/auth?", idp.issuer)), "{}", r.location);
    assert!(r.location.contains("code_challenge_method=S256") && r.location.contains("nonce="), "{}", r.location);
    let state = cookie_value(&r, "citysoc_oidc").expect("the state bound to the browser");
    let callback = |code: &str| {
        Request::get(format!("/login/oidc/callback?code={code}&state={state}"))
            .header(header::COOKIE, format!("citysoc_oidc={state}"))
            .header(header::ACCEPT_LANGUAGE, "en")
            .body(Body::empty())
            .unwrap()
    };
    let r = send(&c, [10, 0, 7, 1], callback("not-a-code-the-provider-issued")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains(&html("sso.exchange")), "{}", r.body);
    let r = send(&c, [10, 0, 7, 1], callback("another")).await;
    assert!(r.body.contains(&html("sso.bad_state")), "{}", r.body);
    let failed = audited(data.path(), "console.login_failed");
    assert!(failed[0]["detail"]["reason"].as_str().unwrap().contains("token endpoint"), "{failed:#?}");
}
