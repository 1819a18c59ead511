//! A small JSON file of the console's own (saved searches, investigations):
//! read whole at start, written whole to a temporary file then renamed, so
//! that a crash never leaves half a file.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use crate::error::ConsoleError;

fn io(path: &Path) -> impl Fn(std::io::Error) -> ConsoleError + '_ {
    move |e| ConsoleError::Io(format!("{}: {e}", path.display()))
}

/// The file's content; a missing file is the empty value.
pub(crate) fn load<T: DeserializeOwned + Default>(path: &Path) -> Result<T, ConsoleError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| ConsoleError::Io(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io(path)(e)),
    }
}

pub(crate) fn store<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), ConsoleError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).map_err(|e| ConsoleError::Internal(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(io(path))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
