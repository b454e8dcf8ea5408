//! Task outputs and inputs of any size.
//!
//! An output up to [`Payloads::inline_limit`] (64 KiB by default) is stored
//! inline in its task row; a larger one is a file in the payload directory
//! and the row keeps a [`PayloadRef`] to it (URL, size, SHA-256). Outputs
//! over [`Payloads::max_bytes`] (1 GiB by default) fail the attempt.
//!
//! An input document up to the inline limit reaches the task as `ORK_INPUT`;
//! a larger one (or one with a parent's output stored by reference) is
//! written, streaming, to a file in the payload directory, and the task gets
//! its path as `ORK_INPUT_FILE`. References are resolved while the file is
//! written: the referenced output's bytes are copied into the document, so
//! no payload is ever held whole in memory by the engine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

/// Outputs at most this large are stored inline in the task row.
pub const DEFAULT_INLINE_LIMIT: u64 = 64 * 1024;

/// No output may be larger than this.
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 1 << 30;

/// Where an output too large to be inline lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    /// `file:///abs/path` for the local store.
    pub url: String,
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
}

impl PayloadRef {
    /// The local path of a `file://` reference.
    pub fn local_path(&self) -> Option<PathBuf> {
        self.url.strip_prefix("file://").map(PathBuf::from)
    }
}

/// The payload store (a local directory) and its size bounds.
#[derive(Debug, Clone)]
pub struct Payloads {
    pub dir: PathBuf,
    pub inline_limit: u64,
    pub max_bytes: u64,
}

impl Default for Payloads {
    fn default() -> Self {
        Payloads::new(std::env::temp_dir().join("ork-payloads"))
    }
}

impl Payloads {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Payloads {
            dir: std::path::absolute(&dir).unwrap_or(dir),
            inline_limit: DEFAULT_INLINE_LIMIT,
            max_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }

    /// Moves a large output (a file an executor validated) into the store,
    /// under `outputs/<run>/<name>`; copies when a rename cannot.
    pub async fn adopt(
        &self,
        r: &PayloadRef,
        run: uuid::Uuid,
        name: &str,
    ) -> std::io::Result<PayloadRef> {
        let Some(src) = r.local_path() else {
            return Ok(r.clone());
        };
        let dir = self.dir.join("outputs").join(run.to_string());
        if src.starts_with(&dir) {
            return Ok(r.clone());
        }
        tokio::fs::create_dir_all(&dir).await?;
        let dst = dir.join(name);
        if tokio::fs::rename(&src, &dst).await.is_err() {
            tokio::fs::copy(&src, &dst).await?;
            let _ = tokio::fs::remove_file(&src).await;
        }
        Ok(PayloadRef {
            url: format!("file://{}", dst.display()),
            ..r.clone()
        })
    }

    /// Where the input file of an attempt goes.
    pub fn input_path(&self, run: uuid::Uuid, name: &str, index: i64, attempt: i64) -> PathBuf {
        self.dir
            .join("inputs")
            .join(run.to_string())
            .join(format!("{name}.{index}.{attempt}.json"))
    }

    /// Reads a referenced payload as JSON (for `foreach` over a large output).
    pub async fn read_value(&self, r: &PayloadRef) -> Result<serde_json::Value, String> {
        let path = r
            .local_path()
            .ok_or_else(|| format!("cannot read payload {}", r.url))?;
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            serde_json::from_reader(std::io::BufReader::new(f))
                .map_err(|e| format!("payload {} is not JSON: {e}", path.display()))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// A task's output file, checked: inline JSON when small, a reference to
/// the file itself (validated as JSON and hashed while streaming through
/// it) when larger than `inline_limit`, an error naming the size and the cap
/// over `max_bytes`.
pub enum OutputFile {
    None,
    Inline(serde_json::Value),
    Ref(PayloadRef),
}

pub async fn check_output_file(
    path: &Path,
    inline_limit: u64,
    max_bytes: u64,
) -> Result<OutputFile, String> {
    let Ok(meta) = tokio::fs::metadata(path).await else {
        return Ok(OutputFile::None);
    };
    let size = meta.len();
    if size > max_bytes {
        return Err(format!(
            "output is {size} bytes, over the limit of {max_bytes} bytes"
        ));
    }
    if size <= inline_limit {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| format!("cannot read output: {e}"))?;
        return serde_json::from_slice(&bytes)
            .map(OutputFile::Inline)
            .map_err(|e| format!("output at $ORK_OUTPUT is not JSON: {e}"));
    }
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path).map_err(|e| format!("cannot read output: {e}"))?;
        let mut reader = Hashing {
            inner: std::io::BufReader::with_capacity(1 << 16, f),
            hash: Sha256::new(),
            size: 0,
        };
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        serde::de::IgnoredAny::deserialize(&mut de)
            .and_then(|_| de.end())
            .map_err(|e| format!("output at $ORK_OUTPUT is not JSON: {e}"))?;
        // Whatever the parser did not read (trailing whitespace).
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| e.to_string())?;
        Ok(OutputFile::Ref(PayloadRef {
            url: format!("file://{}", path.display()),
            size: reader.size,
            sha256: hex::encode(reader.hash.finalize()),
        }))
    })
    .await
    .map_err(|e| e.to_string())?
}

struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// One piece of an input document being written: JSON already in memory,
/// or a stored payload whose bytes are copied in.
pub enum Piece<'a> {
    Json(&'a serde_json::Value),
    Ref(&'a PayloadRef),
    Raw(std::borrow::Cow<'a, str>),
}

/// Writes the pieces, in order, to `path` (created with its directory),
/// streaming referenced payloads from the store. Returns the bytes written.
pub async fn write_pieces(path: &Path, pieces: &[Piece<'_>]) -> std::io::Result<u64> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let file = tokio::fs::File::create(path).await?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let mut n = 0u64;
    let mut buf = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Raw(s) => {
                out.write_all(s.as_bytes()).await?;
                n += s.len() as u64;
            }
            Piece::Json(v) => {
                buf.clear();
                serde_json::to_writer(&mut buf, v)?;
                out.write_all(&buf).await?;
                n += buf.len() as u64;
            }
            Piece::Ref(r) => {
                n += copy_ref(r, &mut out).await?;
            }
        }
    }
    out.flush().await?;
    Ok(n)
}

async fn copy_ref<W: AsyncWrite + Unpin>(r: &PayloadRef, out: &mut W) -> std::io::Result<u64> {
    let path = r.local_path().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("cannot read payload {}", r.url),
        )
    })?;
    let mut f = tokio::fs::File::open(&path).await?;
    tokio::io::copy(&mut f, out).await
}

/// Serialized size of a JSON value, without keeping the bytes.
pub fn json_len(v: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}
