//! Reading OCM dumps for offline bootstrapping: a JSON array of POIs (as `/poi` returns it, in
//! compact or verbose form) or NDJSON (one POI per line, like `ocm-data`'s `poi.json`). The file
//! is parsed on a blocking thread and handed over in batches through a bounded channel, so a
//! 300,000-POI dump needs the memory of a few batches, not of the whole file.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::Value;
use tokio::sync::mpsc;

/// Batches read ahead of the writer.
const READ_AHEAD: usize = 2;

/// Why a dump could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DumpError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path} is not a JSON array or NDJSON of POIs: {reason}")]
    Syntax { path: String, reason: String },
}

/// The batches of one dump, in file order.
pub struct DumpBatches {
    rx: mpsc::Receiver<Result<Vec<Value>, DumpError>>,
}

impl DumpBatches {
    /// Starts reading `path`.
    pub fn open(path: &Path, batch_size: usize) -> Result<Self, DumpError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| DumpError::Io {
            path: name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_reader(file, name, batch_size))
    }

    /// Starts reading a dump held in memory (the bundled demo POIs).
    pub fn from_static(data: &'static str, name: &str, batch_size: usize) -> Self {
        Self::from_reader(data.as_bytes(), name.to_string(), batch_size)
    }

    fn from_reader(reader: impl Read + Send + 'static, name: String, batch_size: usize) -> Self {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let batch_size = batch_size.max(1);
        tokio::task::spawn_blocking(move || {
            let result = read(BufReader::with_capacity(1 << 20, reader), batch_size, &tx);
            if let Err(reason) = result {
                // the receiver may be gone already; then nobody needs the error
                let _ = tx.blocking_send(Err(DumpError::Syntax { path: name, reason }));
            }
        });
        Self { rx }
    }

    /// The next batch; `None` at the end of the dump.
    pub async fn next(&mut self) -> Option<Result<Vec<Value>, DumpError>> {
        self.rx.recv().await
    }
}

type Sender = mpsc::Sender<Result<Vec<Value>, DumpError>>;

fn read(mut reader: impl BufRead, batch_size: usize, tx: &Sender) -> Result<(), String> {
    let first = loop {
        let buf = reader.fill_buf().map_err(|e| e.to_string())?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(at) => break Some(buf[at]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    match first {
        None => Ok(()),
        Some(b'[') => read_array(reader, batch_size, tx),
        Some(_) => read_ndjson(reader, batch_size, tx),
    }
}

fn read_array(reader: impl BufRead, batch_size: usize, tx: &Sender) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    BatchSeed { batch_size, tx }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Streams the elements of a JSON array into batches as they are parsed.
struct BatchSeed<'a> {
    batch_size: usize,
    tx: &'a Sender,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of OCM POIs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut batch = Vec::with_capacity(self.batch_size);
        while let Some(value) = seq.next_element::<Value>()? {
            batch.push(value);
            if batch.len() >= self.batch_size {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(self.batch_size));
                self.tx
                    .blocking_send(Ok(full))
                    .map_err(|_| A::Error::custom("the import stopped"))?;
            }
        }
        if !batch.is_empty() {
            self.tx
                .blocking_send(Ok(batch))
                .map_err(|_| A::Error::custom("the import stopped"))?;
        }
        Ok(())
    }
}

/// One JSON value per line; a line that does not parse becomes `null` (a failed POI) so the
/// rest of the dump still lands.
fn read_ndjson(reader: impl BufRead, batch_size: usize, tx: &Sender) -> Result<(), String> {
    let mut batch = Vec::with_capacity(batch_size);
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value = serde_json::from_str(line).unwrap_or_else(|e| {
            tracing::warn!(line = number + 1, error = %e, "dump line is not JSON");
            Value::Null
        });
        batch.push(value);
        if batch.len() >= batch_size {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            if tx.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(data: &'static str, batch: usize) -> Vec<Result<Vec<Value>, DumpError>> {
        let mut batches = DumpBatches::from_static(data, "test", batch);
        let mut out = Vec::new();
        while let Some(b) = batches.next().await {
            out.push(b);
        }
        out
    }

    #[tokio::test]
    async fn json_arrays_come_in_batches() {
        let out = collect("  [{\"ID\":1},{\"ID\":2},\n{\"ID\":3}]\n", 2).await;
        let sizes: Vec<usize> = out.iter().map(|b| b.as_ref().map_or(0, Vec::len)).collect();
        assert_eq!(sizes, vec![2, 1]);
    }

    #[tokio::test]
    async fn ndjson_lines_that_do_not_parse_become_null() {
        let out = collect("{\"ID\":1}\nnot json\n\n{\"ID\":3}\n", 10).await;
        assert_eq!(out.len(), 1);
        let batch = out[0].clone().unwrap_or_default();
        assert_eq!(batch.len(), 3);
        assert!(batch[1].is_null());
    }

    #[tokio::test]
    async fn a_truncated_array_is_an_error() {
        let out = collect("[{\"ID\":1},{\"ID\"", 10).await;
        assert!(out.iter().any(Result::is_err));
    }
}
