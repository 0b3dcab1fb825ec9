//! The record file: one JSON line per received `tools/call`, so tests can prove what arrived.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rmcp::ErrorData as McpError;
use rmcp::model::JsonObject;
use serde::{Deserialize, Serialize};

use crate::FixtureError;

/// One line of the record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedCall {
    pub name: String,
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

impl RecordedCall {
    /// Reads a record file; a missing file is an empty record.
    pub fn read_all(path: &Path) -> std::io::Result<Vec<RecordedCall>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).map_err(std::io::Error::other))
            .collect()
    }
}

#[derive(Debug)]
pub(crate) struct Recorder {
    path: PathBuf,
    file: Mutex<File>,
}

impl Recorder {
    pub(crate) fn open(path: &Path) -> Result<Self, FixtureError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| FixtureError::Record {
                path: path.to_owned(),
                source,
            })?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Appends one call before returning.
    pub(crate) fn append(&self, name: &str, arguments: &JsonObject) -> Result<(), McpError> {
        let line = serde_json::json!({ "name": name, "arguments": arguments });
        let mut bytes = serde_json::to_vec(&line)
            .map_err(|_| McpError::internal_error("cannot encode the record line", None))?;
        bytes.push(b'\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| McpError::internal_error("the record file is unavailable", None))?;
        // One unbuffered write: the line is in the kernel before the tool runs, even if it exits.
        file.write_all(&bytes).map_err(|err| {
            tracing::error!(path = %self.path.display(), %err, "cannot append to the record file");
            McpError::internal_error("cannot append to the record file", None)
        })
    }
}
