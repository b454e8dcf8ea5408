//! Task outputs and inputs of any size.
//!
//! An output up to [`Payloads::inline_limit`] (64 KiB by default) is stored
//! inline in its task row; a larger one is an object in the payload store
//! and the row keeps a [`PayloadRef`] to it (URL, size, SHA-256). Outputs
//! over [`Payloads::max_bytes`] (1 GiB by default) fail the attempt.
//!
//! The payload store is reached through the `object_store` crate's
//! `ObjectStore` trait, one code path whatever it is: the local payload
//! directory by default (`object_store::local::LocalFileSystem`, `file://`
//! references), or S3 or GCS ([`Remote`], built by ork-api from
//! `ORK_PAYLOAD_URL`). The local directory is also where outputs land first
//! (`PUT /outputs`; a local process's `$ORK_OUTPUT` is next to its log)
//! before [`Payloads::adopt`] moves them into the store, and where a local
//! process's input file is written: those stay plain paths.
//!
//! An input document up to the inline limit reaches the task as `ORK_INPUT`;
//! a larger one (or one with a parent's output stored by reference) is
//! written, streaming, to a file in the payload directory (`ORK_INPUT_FILE`,
//! local processes) or to an object of the remote store, presigned for GET
//! (`ORK_INPUT_URL`, cloud workers). References are resolved while it is
//! written: the referenced output's bytes are copied into the document in
//! chunks, so no payload is ever held whole in memory by the engine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::model::AttemptRef;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
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

/// Presigned URLs of a remote store: a worker fetches its input with a
/// plain GET, with no cloud SDK or credentials of its own.
#[async_trait::async_trait]
pub trait Presign: Send + Sync {
    /// A URL that allows a GET of `path` for `ttl`.
    async fn get_url(&self, path: &ObjectPath, ttl: Duration) -> Result<String, String>;
    /// A URL that allows a PUT of `path` for `ttl`.
    async fn put_url(&self, path: &ObjectPath, ttl: Duration) -> Result<String, String>;
}

/// An object store holding the payloads: S3 or GCS (built by ork-api), or
/// the local directory (built by [`Payloads::store`]).
#[derive(Clone)]
pub struct Remote {
    /// The store's URL (`s3://bucket/prefix`): a reference is this URL,
    /// `/` and the object's key under the prefix.
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    /// The prefix in the bucket, the path part of `url`.
    pub prefix: ObjectPath,
    pub presign: Arc<dyn Presign>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

impl Remote {
    /// The object of a key (`outputs/<run>/<name>`).
    fn path(&self, key: &str) -> ObjectPath {
        key.split('/')
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    fn url_of(&self, key: &str) -> String {
        format!("{}/{key}", self.url.trim_end_matches('/'))
    }

    /// A streaming writer of one object: a single PUT up to
    /// [`UPLOAD_PART`], a multipart upload above, at most two parts in
    /// flight (the memory it holds is bounded by that, whatever the size).
    fn writer(&self, path: ObjectPath) -> object_store::buffered::BufWriter {
        object_store::buffered::BufWriter::with_capacity(self.store.clone(), path, UPLOAD_PART)
            .with_max_concurrency(2)
    }

    /// The object a reference names, when it is in this store (`..` in
    /// it is a name, never a way out: `object_store` encodes it).
    fn path_of(&self, url: &str) -> Option<ObjectPath> {
        let key = url.strip_prefix(self.url.trim_end_matches('/'))?;
        Some(self.path(key.strip_prefix('/')?))
    }

    /// Deletes every object under `key/`; returns how many. Missing ones
    /// are no error (racing deleters).
    async fn delete_prefix(&self, key: &str) -> object_store::Result<u64> {
        let listed = self.store.list(Some(&self.path(key)));
        let locations = listed.map(|meta| meta.map(|m| m.location)).boxed();
        let mut deleted = self.store.delete_stream(locations);
        let mut n = 0;
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => n += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// The local store presigns nothing: its references are read by path.
struct NoPresign;

#[async_trait::async_trait]
impl Presign for NoPresign {
    async fn get_url(&self, _: &ObjectPath, _: Duration) -> Result<String, String> {
        Err("the local payload store cannot presign URLs".into())
    }
    async fn put_url(&self, _: &ObjectPath, _: Duration) -> Result<String, String> {
        Err("the local payload store cannot presign URLs".into())
    }
}

/// The size of the parts of a multipart upload (S3's minimum is 5 MiB).
pub const UPLOAD_PART: usize = 8 << 20;

/// The longest a presigned URL is valid (S3's and GCS's limit for V4 signatures).
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The payload store and its size bounds.
#[derive(Debug, Clone)]
pub struct Payloads {
    /// The local payload directory: the store itself when there is no
    /// `remote`, and where outputs and local processes' inputs are written.
    pub dir: PathBuf,
    pub inline_limit: u64,
    pub max_bytes: u64,
    pub remote: Option<Remote>,
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
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
            remote: None,
        }
    }

    /// The store payloads live in: the remote one, else the local
    /// directory as a `LocalFileSystem` rooted at `/`, so that any local
    /// file is one of its objects and moving an output in is a rename.
    pub fn store(&self) -> std::io::Result<std::borrow::Cow<'_, Remote>> {
        match &self.remote {
            Some(remote) => Ok(std::borrow::Cow::Borrowed(remote)),
            None => self.local_store().map(std::borrow::Cow::Owned),
        }
    }

    /// The local directory as an object store (see [`Payloads::store`]).
    fn local_store(&self) -> std::io::Result<Remote> {
        Ok(Remote {
            url: format!("file://{}", self.dir.display()),
            store: Arc::new(object_store::local::LocalFileSystem::new()),
            prefix: ObjectPath::from_absolute_path(&self.dir).map_err(io_error)?,
            presign: Arc::new(NoPresign),
        })
    }

    /// Moves a large output (a file an executor validated) into the store,
    /// under `outputs/<run>/<name>`: a rename into the local store (a
    /// streamed copy across file systems), a streamed multipart upload to
    /// a remote one (the file is removed once stored).
    pub async fn adopt(
        &self,
        r: &PayloadRef,
        run: uuid::Uuid,
        name: &str,
    ) -> std::io::Result<PayloadRef> {
        let Some(src) = r.local_path() else {
            return Ok(r.clone());
        };
        let store = self.store()?;
        let key = format!("outputs/{run}/{name}");
        let stored = PayloadRef {
            url: store.url_of(&key),
            ..r.clone()
        };
        if stored.url == r.url {
            return Ok(stored);
        }
        let to = store.path(&key);
        if self.remote.is_none() {
            if let Ok(from) = ObjectPath::from_absolute_path(&src) {
                match store.store.rename(&from, &to).await {
                    Ok(()) => return Ok(stored),
                    Err(e) => tracing::debug!(error = %e, "output not renamed, copying it"),
                }
            }
        }
        let mut f = tokio::fs::File::open(&src).await?;
        let mut out = store.writer(to);
        tokio::io::copy(&mut f, &mut out).await?;
        out.shutdown().await?;
        let _ = tokio::fs::remove_file(&src).await;
        Ok(stored)
    }

    /// A referenced payload, to be read as a stream of chunks (a download of
    /// an output): in the store, or in the local directory (an output
    /// stored before `ORK_PAYLOAD_URL` was set); `None` for a reference
    /// outside both.
    pub async fn open(
        &self,
        r: &PayloadRef,
    ) -> Option<object_store::Result<object_store::GetResult>> {
        let local = match self.local_store() {
            Ok(local) => local,
            Err(e) => {
                return Some(Err(object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                }))
            }
        };
        let store = self.remote.as_ref().unwrap_or(&local);
        let (store, path) = match store.path_of(&r.url) {
            Some(path) => (store, path),
            None => (&local, local.path_of(&r.url)?),
        };
        Some(store.store.get(&path).await)
    }

    /// Deletes what a finished run left: its outputs and input documents
    /// in the store (`outputs/<run>/`, `inputs/<run>/`, `uploads/<run>/`,
    /// local or remote) and its input files in the local directory.
    /// Returns the number of objects deleted.
    pub async fn forget_run(&self, run: uuid::Uuid) -> std::io::Result<u64> {
        let store = self.store()?;
        let mut n = 0;
        for top in ["outputs", "inputs", "uploads"] {
            n += store
                .delete_prefix(&format!("{top}/{run}"))
                .await
                .map_err(io_error)?;
        }
        for top in ["outputs", "inputs"] {
            // The directories the local store leaves (plain paths).
            let dir = self.dir.join(top).join(run.to_string());
            match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(n)
    }

    /// A URL presigned for a GET of a referenced payload in the remote
    /// store (a download link); `None` for a reference outside it.
    pub async fn presigned_get(
        &self,
        r: &PayloadRef,
        ttl: Duration,
    ) -> Option<Result<String, String>> {
        let remote = self.remote.as_ref()?;
        let path = remote.path_of(&r.url)?;
        Some(
            remote
                .presign
                .get_url(&path, ttl.min(MAX_PRESIGN_TTL))
                .await,
        )
    }

    /// The key of an attempt's output uploaded by its worker.
    fn upload_key(a: &AttemptRef) -> String {
        format!(
            "uploads/{}/{}.{}.{}.json",
            a.run_id, a.name, a.task_index, a.attempt
        )
    }

    /// Where `PUT /outputs` keeps the output of an attempt until its report.
    pub fn upload_path(&self, a: &AttemptRef) -> PathBuf {
        self.dir
            .join("uploads")
            .join(format!("{}.{}.json", a.task_id, a.attempt))
    }

    /// A URL presigned for the PUT of an attempt's output into the remote
    /// store (`ORK_OUTPUT_URL`: a cloud worker's large output goes there,
    /// not through the control plane); `None` without a remote store.
    pub async fn output_put_url(
        &self,
        a: &AttemptRef,
        ttl: Duration,
    ) -> Option<Result<String, String>> {
        let remote = self.remote.as_ref()?;
        let path = remote.path(&Self::upload_key(a));
        Some(
            remote
                .presign
                .put_url(&path, ttl.min(MAX_PRESIGN_TTL))
                .await,
        )
    }

    /// The output a worker uploaded before reporting `output_uploaded`:
    /// through `PUT /outputs` (a file here), else to its presigned PUT URL
    /// (an object of the remote store, streamed into a file here to be
    /// checked, then referenced where it is: nothing is uploaded twice).
    /// Checked as [`check_output_file`] does; a small one is inline.
    pub async fn uploaded(&self, a: &AttemptRef) -> Result<OutputFile, String> {
        let path = self.upload_path(a);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return check_output_file(&path, self.inline_limit, self.max_bytes).await;
        }
        let Some(remote) = &self.remote else {
            return Ok(OutputFile::None);
        };
        let key = Self::upload_key(a);
        let object = remote.path(&key);
        let got = match remote.store.get(&object).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(OutputFile::None),
            Err(e) => return Err(format!("cannot read the uploaded output {key}: {e}")),
        };
        if got.meta.size > self.max_bytes {
            let _ = remote.store.delete(&object).await;
            return Err(format!(
                "output is {} bytes, over the limit of {} bytes",
                got.meta.size, self.max_bytes
            ));
        }
        let copied: std::io::Result<()> = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let mut f = BufWriter::new(tokio::fs::File::create(&path).await?);
            let mut chunks = got.into_stream();
            while let Some(chunk) = chunks.next().await {
                f.write_all(&chunk.map_err(io_error)?).await?;
            }
            f.flush().await
        }
        .await;
        let checked = match copied {
            Ok(()) => check_output_file(&path, self.inline_limit, self.max_bytes).await,
            Err(e) => Err(format!("cannot read the uploaded output {key}: {e}")),
        };
        let _ = tokio::fs::remove_file(&path).await;
        match checked {
            Ok(OutputFile::Ref(r)) => Ok(OutputFile::Ref(PayloadRef {
                url: remote.url_of(&key),
                ..r
            })),
            other => {
                let _ = remote.store.delete(&object).await;
                other
            }
        }
    }

    /// Where the input file of an attempt goes.
    pub fn input_path(&self, run: uuid::Uuid, name: &str, index: i64, attempt: i64) -> PathBuf {
        self.dir
            .join("inputs")
            .join(run.to_string())
            .join(format!("{name}.{index}.{attempt}.json"))
    }

    /// Removes what is left of a finished run's input files (those of
    /// cancelled attempts; the others went as their attempts ended).
    pub async fn forget_run_inputs(&self, run: uuid::Uuid) {
        let dir = self.dir.join("inputs").join(run.to_string());
        let _ = tokio::fs::remove_dir_all(dir).await;
    }

    /// The key of an attempt's input document in the remote store.
    pub fn input_key(a: &AttemptRef) -> String {
        format!(
            "inputs/{}/{}.{}.{}.json",
            a.run_id, a.name, a.task_index, a.attempt
        )
    }

    /// Removes the input documents of attempts that ended (nobody reads
    /// them again): local files, and for attempts of cloud workers
    /// (`remote_too`) objects of the remote store, in batched deletes.
    /// Missing ones are no error; a failure is logged, never fatal.
    pub async fn forget_inputs(&self, attempts: &[(&AttemptRef, bool)]) {
        let mut runs_with_files = std::collections::HashMap::new();
        for (a, _) in attempts {
            // One look per run: most runs never write an input file.
            let dir = self.dir.join("inputs").join(a.run_id.to_string());
            let has_files = match runs_with_files.get(&a.run_id) {
                Some(has) => *has,
                None => {
                    // A stat: in place (see `check_output_file`).
                    let has = std::fs::exists(&dir).unwrap_or(false);
                    runs_with_files.insert(a.run_id, has);
                    has
                }
            };
            if has_files {
                let path = self.input_path(a.run_id, &a.name, a.task_index, a.attempt);
                let _ = tokio::fs::remove_file(path).await;
            }
        }
        let Some(remote) = &self.remote else {
            return;
        };
        let paths: Vec<object_store::Result<ObjectPath>> = attempts
            .iter()
            .filter(|(_, remote_too)| *remote_too)
            .map(|(a, _)| Ok(remote.path(&Self::input_key(a))))
            .collect();
        if paths.is_empty() {
            return;
        }
        let mut deleted = remote
            .store
            .delete_stream(futures::stream::iter(paths).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "cannot delete an input document"),
            }
        }
    }

    /// Reads a referenced payload as JSON (for `foreach` over a large
    /// output: its items are all needed, in memory, to create the instances).
    pub async fn read_value(&self, r: &PayloadRef) -> Result<serde_json::Value, String> {
        let store = self.store().map_err(|e| e.to_string())?;
        if let Some(path) = store.path_of(&r.url) {
            let bytes = async { store.store.get(&path).await?.bytes().await }
                .await
                .map_err(|e| format!("cannot read payload {}: {e}", r.url))?;
            return serde_json::from_slice(&bytes)
                .map_err(|e| format!("payload {} is not JSON: {e}", r.url));
        }
        // A `file://` reference outside the store: read by path.
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
    // A stat and a read of at most `inline_limit` bytes of a local file
    // take microseconds: done in place, not on the blocking pool, whose
    // hand-off cost more than the call on every completion.
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(OutputFile::None);
    };
    let size = meta.len();
    if size > max_bytes {
        return Err(format!(
            "output is {size} bytes, over the limit of {max_bytes} bytes"
        ));
    }
    if size <= inline_limit {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read output: {e}"))?;
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

impl Payloads {
    /// Writes the pieces, in order, to `path` (created with its directory),
    /// streaming referenced payloads from the store. Returns the bytes written.
    pub async fn write_pieces(&self, path: &Path, pieces: &[Piece<'_>]) -> std::io::Result<u64> {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let file = tokio::fs::File::create(path).await?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        let n = self.write_to(&mut out, pieces).await?;
        out.flush().await?;
        Ok(n)
    }

    /// Writes the pieces to the object `key` of the remote store (a
    /// multipart upload in chunks) and returns a URL presigned for a GET of
    /// it, valid for `ttl` (at most [`MAX_PRESIGN_TTL`]). `None` without a
    /// remote store.
    pub async fn put_pieces(
        &self,
        key: &str,
        pieces: &[Piece<'_>],
        ttl: Duration,
    ) -> Option<std::io::Result<String>> {
        let remote = self.remote.as_ref()?;
        Some(
            async {
                let path = remote.path(key);
                let mut out = remote.writer(path.clone());
                self.write_to(&mut out, pieces).await?;
                out.shutdown().await?;
                remote
                    .presign
                    .get_url(&path, ttl.min(MAX_PRESIGN_TTL))
                    .await
                    .map_err(io_error)
            }
            .await,
        )
    }

    async fn write_to<W: AsyncWrite + Unpin>(
        &self,
        out: &mut W,
        pieces: &[Piece<'_>],
    ) -> std::io::Result<u64> {
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
                    n += self.copy_ref(r, out).await?;
                }
            }
        }
        Ok(n)
    }

    /// Copies a referenced payload into `out`, chunk by chunk.
    async fn copy_ref<W: AsyncWrite + Unpin>(
        &self,
        r: &PayloadRef,
        out: &mut W,
    ) -> std::io::Result<u64> {
        let store = self.store()?;
        if let Some(path) = store.path_of(&r.url) {
            let mut chunks = store
                .store
                .get(&path)
                .await
                .map_err(io_error)?
                .into_stream();
            let mut n = 0;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(io_error)?;
                out.write_all(&chunk).await?;
                n += chunk.len() as u64;
            }
            return Ok(n);
        }
        // A `file://` reference outside the store: read by path.
        let path = r.local_path().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("payload {} is not in this payload store", r.url),
            )
        })?;
        let mut f = tokio::fs::File::open(&path).await?;
        tokio::io::copy(&mut f, out).await
    }
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
