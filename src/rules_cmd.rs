//! `citysoc rules check` and `citysoc rules test`: what loads, what does
//! not and why; and the replay suite as a table per rule.

use citysoc::detection::DetectSettings;
use citysoc::replay;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum RulesCmd {
    /// Load rules and list what loaded, what was skipped and what failed.
    Check {
        /// The rules folder (sigma/, yara/, intel/ under it; default: the
        /// checkout's `rules` for a development build, else
        /// /usr/share/citysoc/rules).
        #[arg(long)]
        rules: Option<PathBuf>,
        /// More Sigma folders or files to load with it.
        extra: Vec<PathBuf>,
        /// List every loaded rule.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Run the replay suite and show, per rule, the alerts expected and raised.
    Test {
        /// The rules folder (as for `rules check`).
        #[arg(long)]
        rules: Option<PathBuf>,
        #[arg(long, default_value = "replay-pcaps")]
        cases: PathBuf,
        /// Where each case's logs go.
        #[arg(long, default_value = "replay-logs")]
        log_dir: PathBuf,
    },
}

pub fn run(cmd: RulesCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCmd::Check { rules, extra, verbose } => check(rules, extra, verbose),
        RulesCmd::Test { rules, cases, log_dir } => test(rules, cases, log_dir),
    }
}

fn check(dir: Option<PathBuf>, extra: Vec<PathBuf>, verbose: bool) -> anyhow::Result<ExitCode> {
    let dir = citysoc::rules_location(dir.as_deref(), None)?;
    let settings = DetectSettings { rules_dir: Some(dir.clone()), sigma_dirs: extra, ..Default::default() };
    let rules = settings.load("sensor")?;
    let s = &rules.sigma;
    if verbose {
        for r in &s.rules {
            println!(
                "loaded  sigma {}:{}  {}  [{}]",
                r.file.display(),
                r.line,
                r.meta.title,
                r.meta.id.as_deref().unwrap_or("-")
            );
        }
        for c in &s.correlations {
            println!("loaded  correlation {}:{}  {}", c.file.display(), c.line, c.meta.title);
        }
        if let Some(y) = &rules.yara {
            let mut ids: Vec<&String> = y.info.keys().collect();
            ids.sort();
            for id in ids {
                println!("loaded  yara {id}");
            }
        }
    }
    for sk in &rules.sigma_report.skipped {
        if verbose {
            println!("skipped {}:{}  {}: {}", sk.file.display(), sk.line, sk.title, sk.reason);
        }
    }
    for (file, title, field) in &rules.sigma_report.unknown_fields {
        println!(
            "note    {}: {title}: field '{field}' is not in the log it reads; tests on it never match",
            file.display()
        );
    }
    for e in &rules.errors {
        println!("error   {e}");
    }
    println!(
        "{} Sigma rules loaded, {} correlations, {} filters, {} skipped (other log sources), {} YARA rules in {} files, {} indicators, {} errors",
        s.rules.len(),
        s.correlations.len(),
        rules.sigma_report.filters,
        rules.sigma_report.skipped.len(),
        rules.yara.as_ref().map_or(0, |y| y.info.len()),
        rules.yara.as_ref().map_or(0, |y| y.files),
        rules.intel.len(),
        rules.errors.len()
    );
    Ok(if rules.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn test(dir: Option<PathBuf>, cases_dir: PathBuf, log_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let dir = citysoc::rules_location(dir.as_deref(), None)?;
    eprintln!("rules from {}", dir.display());
    let settings = DetectSettings { rules_dir: Some(dir), ..Default::default() };
    let rules = settings.load("sensor")?;
    for e in &rules.errors {
        eprintln!("rule not loaded: {e}");
    }
    let res = replay::test_rules(&rules, &cases_dir, &log_dir)?;
    for (case, failures) in &res.failures {
        println!("FAIL  {case}");
        for f in failures {
            println!("      {f}");
        }
    }
    println!("{:<48} {:>8} {:>6}  cases", "rule", "expected", "got");
    for t in &res.tally {
        // A rule whose alerts a failing case names fails even when the
        // counts agree (a changed severity, other endpoints).
        let named = res
            .failures
            .iter()
            .flat_map(|(_, f)| f)
            .any(|m| m.contains(&format!(" rule {} ", t.rule)) || m.contains(&format!(" rule {},", t.rule)));
        let mark = if t.expected == t.got && !named { " " } else { "!" };
        println!("{mark}{:<47} {:>8} {:>6}  {}", t.rule, t.expected, t.got, t.cases.join(","));
    }
    let failed = res.failures.len();
    println!("{} cases, {} failed", res.cases, failed);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
