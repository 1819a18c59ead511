//! `citysoc config`: check a configuration file without starting anything,
//! print the configuration reference.

use citysoc::config_file::{Problems, Source};
use citysoc::sensor_setup::SensorConfig;
use citysoc::serve_config::ServeConfig;
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Parse and check a configuration file: prints `ok` or every problem
    /// (with its line) and exits non-zero on problems.
    Check {
        /// The file (sensor.toml or serve.toml).
        file: PathBuf,
        /// Which program's file it is; by default from its name (`sensor*.toml`, `serve*.toml`).
        #[arg(long, value_enum)]
        kind: Option<Kind>,
    },
    /// Print the reference of every configuration key (markdown).
    Reference,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Sensor,
    Serve,
}

fn kind_of(file: &Path) -> Option<Kind> {
    let name = file.file_name()?.to_str()?;
    if !name.ends_with(".toml") {
        return None;
    }
    if name.starts_with("sensor") {
        Some(Kind::Sensor)
    } else if name.starts_with("serve") {
        Some(Kind::Serve)
    } else {
        None
    }
}

/// Every problem of the file, none when it is good.
pub fn check(file: &Path, kind: Kind) -> Result<(), Problems> {
    let source = Source::read(file)?;
    let list = match kind {
        Kind::Serve => {
            let (cfg, mut list) = source.parse_lenient::<ServeConfig>()?;
            list.extend(cfg.validate(crate::serve_cmd::default_rules).err().unwrap_or_default());
            list
        }
        Kind::Sensor => return SensorConfig::check(&source).map(|_| ()),
    };
    if list.is_empty() {
        Ok(())
    } else {
        Err(source.problems(list))
    }
}

pub fn run(cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Reference => {
            print!("{}", citysoc::config_file::reference());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCmd::Check { file, kind } => {
            let Some(kind) = kind.or_else(|| kind_of(&file)) else {
                anyhow::bail!(
                    "{}: cannot tell whose file it is from its name; give --kind sensor or --kind serve",
                    file.display()
                );
            };
            match check(&file, kind) {
                Ok(()) => {
                    println!("ok");
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    println!("{problems}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
