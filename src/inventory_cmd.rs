//! `citysoc inventory`: the device inventory's data.

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum InventoryCmd {
    /// Read a newer IEEE OUI registry (IEEE's `oui.csv` or `oui.txt`, as
    /// Debian's `ieee-data` installs them under /usr/share/ieee-data) into
    /// the file sensors name vendors from (`[inventory] oui_file`).
    UpdateOui {
        /// The registry as IEEE publishes it.
        file: PathBuf,
        /// Where to write it (gzipped); point `[inventory] oui_file` of the
        /// sensors at it.
        #[arg(long, default_value = "/var/lib/citysoc/oui.tsv.gz")]
        out: PathBuf,
    },
}

pub fn run(cmd: InventoryCmd) -> anyhow::Result<ExitCode> {
    let InventoryCmd::UpdateOui { file, out } = cmd;
    let table = sensor::inventory::read_registry(&file)?;
    sensor::inventory::write_registry(&table, &out)?;
    // Read back as the sensor will.
    let n = sensor::inventory::read_registry(&out)?.len();
    println!("{n} OUI assignments written to {}; sensors use them from their next start", out.display());
    Ok(ExitCode::SUCCESS)
}
