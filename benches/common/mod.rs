//! What the root crate's benchmarks share: the realistic mix they read.

use std::path::{Path, PathBuf};

/// `bench-data/mix-<MB>mb.pcap`, generated once and shared with the
/// sensor's benchmark.
pub fn capture(mb: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    let path = dir.join(format!("mix-{mb}mb.pcap"));
    if !path.exists() {
        std::fs::create_dir_all(&dir).expect("bench-data directory");
        eprintln!("generating {} ...", path.display());
        let tmp = path.with_extension("tmp");
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).expect("create capture"));
        pcapgen::bench_mix_with(&mut w, mb << 20, false).expect("generate capture");
        std::io::Write::flush(&mut w).expect("write capture");
        std::fs::rename(&tmp, &path).expect("rename capture");
    }
    path
}
