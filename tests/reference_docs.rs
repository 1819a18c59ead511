//! The book's reference pages are rendered from the code (`citysoc
//! reference`): the command line, the API and the field catalog. Each page
//! is committed under `docs/src/reference/`, and these tests fail when the
//! code and the page disagree, so the reference cannot drift. After a change
//! on purpose, `UPDATE_GOLDENFILES=1 cargo test -p citysoc --test
//! reference_docs` writes the pages anew; the diff shows the change in review.

mod common;

use std::path::PathBuf;

fn page(name: &str) -> PathBuf {
    common::root().join("docs/src/reference").join(name)
}

fn rendered(flag: &str) -> String {
    let out = common::citysoc().args(["reference", flag]).output().expect("run citysoc reference");
    assert!(out.status.success(), "citysoc reference {flag}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("the page is UTF-8")
}

/// Compares a rendered page with the committed one, or writes it when
/// `UPDATE_GOLDENFILES` is set. On a difference, names the first line that
/// differs: the whole pages are long.
fn check(name: &str, rendered: &str) {
    let path = page(name);
    if std::env::var_os("UPDATE_GOLDENFILES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rendered).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if committed != rendered {
        let line = committed.lines().zip(rendered.lines()).position(|(a, b)| a != b);
        let detail = match line {
            Some(i) => format!(
                "line {}:\n  committed: {}\n  rendered:  {}",
                i + 1,
                committed.lines().nth(i).unwrap_or(""),
                rendered.lines().nth(i).unwrap_or("")
            ),
            None => format!("{} lines committed, {} rendered", committed.lines().count(), rendered.lines().count()),
        };
        panic!(
            "{} is out of date with the code; UPDATE_GOLDENFILES=1 cargo test -p citysoc --test reference_docs \
             renders it again. First difference at {detail}",
            path.display()
        );
    }
}

#[test]
fn cli_reference_matches_the_command_line() {
    let page = rendered("--cli");
    // Every command the binary has is on the page, with its own section.
    for cmd in ["sensor", "replay", "rules check", "rules test", "serve", "demo", "hunt", "pcap", "evidence verify"] {
        assert!(page.contains(&format!("\n## citysoc {cmd}\n")), "no section for citysoc {cmd}");
    }
    assert!(page.contains("`--log-dir <LOG_DIR>`"), "the sensor's arguments are listed");
    check("cli.md", &page);
}

#[test]
fn api_reference_matches_the_openapi_document() {
    let page = rendered("--api");
    let doc: serde_json::Value = serde_json::from_str(siem::api::OPENAPI).unwrap();
    // Every operation of the document has its section.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let heading = format!("\n## {} {path} {{#", method.to_uppercase());
            assert!(page.contains(&heading), "no section for {}", heading.trim());
        }
    }
    check("api.md", &page);
}

#[test]
fn fields_reference_matches_the_catalog() {
    let page = rendered("--fields");
    for log in schema::CATALOG {
        assert!(page.contains(&format!("\n## {}\n", log.name)), "no section for {}.log", log.name);
        for f in log.fields {
            assert!(page.contains(&format!("| `{}` |", f.path)), "{}.log's {} is missing", log.name, f.path);
        }
    }
    check("fields.md", &page);
}
