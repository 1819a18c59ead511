//! Zeek-format JSON log files, one per log name, written as records arrive.

use crate::SensorError;
use schema::{Event, FilesRecord};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where the pipeline delivers its records. Implementations own their
/// buffering; the pipeline calls `write` from its output thread only. Records
/// are lent mutably so that a sink can fill in what it did with them (the
/// name of an extracted file).
pub trait EventSink: Send {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError>;
    fn flush(&mut self) -> Result<(), SensorError>;
}

/// Writes `<dir>/<log>.log` in Zeek's JSON format (`LogAscii::use_json=T`).
pub struct LogWriter {
    dir: PathBuf,
    files: HashMap<&'static str, BufWriter<File>>,
    line: Vec<u8>,
    extract: Option<Extractor>,
}

/// Stores the content files carry (kept by the analyzers up to their cap)
/// under `<log dir>/extract_files/`, named as Zeek names them:
/// `extract-<ts>-<source>-<fuid>`. Nothing from the packets reaches the
/// name: the source is one of ours and the fuid is generated.
struct Extractor {
    dir: PathBuf,
    max_files: u64,
    written: u64,
}

impl Extractor {
    fn store(&mut self, f: &mut FilesRecord) -> Result<(), SensorError> {
        let Some(content) = f.content.as_deref() else { return Ok(()) };
        if self.written >= self.max_files {
            f.extracted_cutoff = None;
            return Ok(());
        }
        let name = format!("extract-{:.6}-{}-{}", f.ts.micros() as f64 / 1e6, f.source, f.fuid);
        let path = self.dir.join(&name);
        std::fs::write(&path, content).map_err(|error| SensorError::Log { path, error })?;
        self.written += 1;
        f.extracted_size = Some(content.len() as u64);
        f.extracted = Some(name);
        Ok(())
    }
}

impl LogWriter {
    pub fn new(dir: &Path) -> Result<LogWriter, SensorError> {
        std::fs::create_dir_all(dir).map_err(|error| SensorError::Log { path: dir.to_path_buf(), error })?;
        Ok(LogWriter { dir: dir.to_path_buf(), files: HashMap::new(), line: Vec::with_capacity(1024), extract: None })
    }

    /// Also stores the content of up to `max_files` files (the analyzers
    /// keep it when `FlowConfig::keep_file_bytes` is set).
    pub fn with_extraction(mut self, max_files: u64) -> Result<LogWriter, SensorError> {
        let dir = self.dir.join("extract_files");
        std::fs::create_dir_all(&dir).map_err(|error| SensorError::Log { path: dir.clone(), error })?;
        self.extract = Some(Extractor { dir, max_files, written: 0 });
        Ok(self)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }
}

impl EventSink for LogWriter {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        for ev in events {
            if let Event::Files(f) = ev {
                match self.extract.as_mut() {
                    Some(x) => x.store(f)?,
                    None => f.extracted_cutoff = None,
                }
            }
            let name = ev.log_name();
            self.line.clear();
            serde_json::to_writer(&mut self.line, ev)
                .map_err(|e| SensorError::Log { path: self.path(name), error: std::io::Error::other(e) })?;
            self.line.push(b'\n');
            let w = match self.files.get_mut(name) {
                Some(w) => w,
                None => {
                    let path = self.path(name);
                    let f = File::create(&path).map_err(|error| SensorError::Log { path, error })?;
                    self.files.entry(name).or_insert_with(|| BufWriter::with_capacity(1 << 16, f))
                }
            };
            w.write_all(&self.line).map_err(|error| SensorError::Log { path: self.dir.join(name), error })?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SensorError> {
        for (name, w) in self.files.iter_mut() {
            w.flush().map_err(|error| SensorError::Log { path: self.dir.join(format!("{name}.log")), error })?;
        }
        Ok(())
    }
}

/// Keeps records in memory: for tests and benchmarks.
#[derive(Default)]
pub struct MemorySink {
    pub events: Vec<Event>,
}

impl EventSink for MemorySink {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        self.events.extend_from_slice(events);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SensorError> {
        Ok(())
    }
}

/// Counts records and drops them: measures the pipeline without the disk.
#[derive(Default)]
pub struct CountingSink {
    pub events: u64,
}

impl EventSink for CountingSink {
    fn write(&mut self, events: &mut [Event]) -> Result<(), SensorError> {
        self.events += events.len() as u64;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SensorError> {
        Ok(())
    }
}
