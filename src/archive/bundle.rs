//! Writing a bundle: tar + gzip on one thread of its own, streamed through a bounded channel
//! into a multipart upload. Memory stays bounded by the channel (4 × 256 KiB), one part being
//! filled and at most two parts in flight (8 MiB each), whatever the bundle's size.
//!
//! One encoder thread for the whole bundle, not a pool thread per file: the encoder allocates
//! every chunk and the uploader frees it on another thread. mimalloc returns such a free to
//! the allocating thread's heap only when that thread allocates again, so chunks of pool
//! threads that went idle stayed resident (+108 MiB for 1 GB with a busy blocking pool, as
//! in the operator; `tests/archive_memory.rs`).

use super::store::Store;
use super::{ArchiveError, FileEntry, MANIFEST, describe, hex};
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Size of one uploaded part (S3 wants at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Most parts uploading at once; with the one being filled, the upload holds at most
/// three parts.
const PARTS_IN_FLIGHT: usize = 2;
/// Size of one message from the encoder to the uploader.
const CHUNK: usize = 256 * 1024;
/// Messages queued between encoder and uploader before the encoder waits.
const CHANNEL_DEPTH: usize = 4;

/// What was written: the object's SHA-256 and size, and every file in it (the manifest
/// last), to be compared with what [`super::verify`] reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Where the bundle is (`s3://...` or `file://...`).
    pub location: String,
    /// SHA-256 of the whole `.tar.gz` object, lowercase hex.
    pub sha256: String,
    /// Size of the object in bytes.
    pub size: u64,
    /// Every file in the bundle, in order, `SHA256SUMS` last.
    pub files: Vec<FileEntry>,
}

/// A bundle being streamed to a store. Add files, then [`BundleWriter::finish`]; dropping it
/// unfinished, or any error, aborts the upload so that no partial object appears.
pub struct BundleWriter {
    /// Commands to the encoder thread; None once the bundle failed or finished (dropping it
    /// ends the thread, which drops the encoder and so closes the upload's channel).
    encoder: Option<std::sync::mpsc::Sender<Cmd>>,
    uploader: Option<JoinHandle<Result<(), ArchiveError>>>,
    // Set when the bundle is given up: later writes (the tar and gzip trailers their Drop
    // impls write) fail at once instead of blocking on a channel nobody reads.
    abandoned: Arc<AtomicBool>,
    files: Vec<FileEntry>,
    names: HashSet<String>,
    mtime: u64,
    location: String,
}

impl std::fmt::Debug for BundleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleWriter")
            .field("location", &self.location)
            .field("files", &self.files.len())
            .finish()
    }
}

type Builder = tar::Builder<GzEncoder<ChannelWriter>>;

/// What the encoder thread is asked to do.
enum Cmd {
    Append {
        name: String,
        mtime: u64,
        source: Source,
        reply: oneshot::Sender<Result<FileEntry, Failure>>,
    },
    /// Append the manifest, close gzip, send the end mark: the manifest's entry, the
    /// object's SHA-256 and size, or Err when the upload side stopped.
    Finish {
        manifest: String,
        mtime: u64,
        reply: oneshot::Sender<Result<(FileEntry, String, u64), ()>>,
    },
}

/// The encoder thread: owns the tar + gzip stream until the bundle finishes, fails in a way
/// that breaks the stream, or the writer goes away.
fn encode(mut builder: Builder, commands: std::sync::mpsc::Receiver<Cmd>) {
    while let Ok(cmd) = commands.recv() {
        match cmd {
            Cmd::Append {
                name,
                mtime,
                source,
                reply,
            } => {
                let r = append_blocking(&mut builder, &name, mtime, source);
                let go_on = matches!(r, Ok(_) | Err(Failure::Before(_)));
                let _ = reply.send(r);
                if !go_on {
                    return;
                }
            }
            Cmd::Finish {
                manifest,
                mtime,
                reply,
            } => {
                let _ = reply.send(finish_blocking(builder, manifest, mtime));
                return;
            }
        }
    }
}

/// Every step here only writes to the upload: any error is the upload's.
fn finish_blocking(
    mut builder: Builder,
    manifest: String,
    mtime: u64,
) -> Result<(FileEntry, String, u64), ()> {
    let entry = append_blocking(
        &mut builder,
        MANIFEST,
        mtime,
        Source::Bytes(manifest.into()),
    )
    .map_err(|_| ())?;
    let gz = builder.into_inner().map_err(|_| ())?;
    let sink = gz.finish().map_err(|_| ())?;
    let (sha256, size) = sink.close().map_err(|_| ())?;
    Ok((entry, sha256, size))
}

/// The content of one entry.
enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// Why an append failed, which decides what the bundle can still do.
enum Failure {
    /// Nothing was written (e.g. the file could not be opened): the bundle goes on.
    Before(ArchiveError),
    /// The input failed part-way: the tar stream is broken, the bundle is given up.
    Input(String),
    /// The upload side stopped: its own error says why.
    Sink,
}

impl BundleWriter {
    /// Starts a bundle at `key` in `store` (its multipart upload starts in the background).
    /// Must be called within a Tokio runtime.
    pub fn start(store: &Store, key: &str) -> Result<BundleWriter, ArchiveError> {
        let path = store.path(key)?;
        let location = store.location(key);
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| ArchiveError::Config("archiving needs a Tokio runtime".into()))?;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let abandoned = Arc::new(AtomicBool::new(false));
        let sink = ChannelWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(CHUNK),
            sha: Sha256::new(),
            size: 0,
            abandoned: abandoned.clone(),
            sink_failed: false,
        };
        // Fast deflate: archiving a finished run should cost little CPU next to the
        // operator's probing; logs still compress several-fold.
        let gz = GzEncoder::new(sink, Compression::fast());
        let builder = tar::Builder::new(gz);
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("vigil-bundle".into())
            .spawn(move || encode(builder, cmd_rx))
            .map_err(|e| ArchiveError::Input(format!("cannot start the archiving thread: {e}")))?;
        let uploader = handle.spawn(upload(store.inner.clone(), path, rx, location.clone()));
        Ok(BundleWriter {
            encoder: Some(cmd_tx),
            uploader: Some(uploader),
            abandoned,
            files: Vec::new(),
            names: HashSet::new(),
            mtime: 0,
            location,
        })
    }

    /// Sets the modification time (Unix seconds) written into every entry from now on
    /// (default 0), e.g. the run's completion time. With equal inputs and times, bundles
    /// are byte-for-byte equal.
    pub fn with_mtime(mut self, secs: u64) -> Self {
        self.mtime = secs;
        self
    }

    /// Where the bundle goes.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Adds a file with `data` as its content.
    pub async fn add_bytes(&mut self, name: &str, data: Vec<u8>) -> Result<(), ArchiveError> {
        self.append(name, Source::Bytes(data)).await
    }

    /// Adds the file at `path` as `name`, streaming it. A file that cannot be opened leaves
    /// the bundle usable (add a note in its place); one that fails or changes size while
    /// being read gives the bundle up.
    pub async fn add_file(&mut self, name: &str, path: &Path) -> Result<(), ArchiveError> {
        self.append(name, Source::File(path.to_path_buf())).await
    }

    /// Appends `SHA256SUMS`, completes the upload, and returns what was written. On any
    /// failure the upload is aborted first.
    pub async fn finish(mut self) -> Result<Written, ArchiveError> {
        let mut manifest = String::new();
        for f in &self.files {
            manifest.push_str(&format!("{}  {}\n", f.sha256, f.name));
        }
        let encoder = self.taken()?;
        let (reply, answer) = oneshot::channel();
        let cmd = Cmd::Finish {
            manifest,
            mtime: self.mtime,
            reply,
        };
        let joined = match encoder.send(cmd) {
            Ok(()) => answer.await.map_err(|_| ()),
            Err(_) => Err(()),
        };
        match joined {
            Ok(Ok((entry, sha256, size))) => {
                let uploaded = match self.uploader.take() {
                    Some(h) => joined_upload(h.await),
                    None => Err(ArchiveError::Upload("the upload was not running".into())),
                };
                uploaded?;
                self.files.push(entry);
                Ok(Written {
                    location: self.location.clone(),
                    sha256,
                    size,
                    files: std::mem::take(&mut self.files),
                })
            }
            Ok(Err(())) => Err(self.fail(Failure::Sink).await),
            Err(()) => Err(self
                .fail(Failure::Input("the archiving thread stopped".into()))
                .await),
        }
    }

    fn taken(&mut self) -> Result<std::sync::mpsc::Sender<Cmd>, ArchiveError> {
        self.encoder
            .take()
            .ok_or_else(|| ArchiveError::Input("the bundle already failed; start a new one".into()))
    }

    async fn append(&mut self, name: &str, source: Source) -> Result<(), ArchiveError> {
        check_name(name)?;
        if self.names.contains(name) {
            return Err(ArchiveError::Input(format!(
                "{name:?} is already in the bundle"
            )));
        }
        let encoder = self.taken()?;
        let (reply, answer) = oneshot::channel();
        let cmd = Cmd::Append {
            name: name.to_string(),
            mtime: self.mtime,
            source,
            reply,
        };
        let answered = match encoder.send(cmd) {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        match answered {
            Some(Ok(entry)) => {
                self.encoder = Some(encoder);
                self.names.insert(entry.name.clone());
                self.files.push(entry);
                Ok(())
            }
            Some(Err(Failure::Before(e))) => {
                self.encoder = Some(encoder);
                Err(e)
            }
            // The thread has ended and dropped the encoder.
            Some(Err(failure)) => Err(self.fail(failure).await),
            None => Err(self
                .fail(Failure::Input("the archiving thread stopped".into()))
                .await),
        }
    }

    /// Gives the bundle up: the encoder goes (its thread ends and closes the channel), the
    /// uploader aborts the multipart upload, and only then is the error returned, so no
    /// partial object remains.
    async fn fail(&mut self, failure: Failure) -> ArchiveError {
        self.abandoned.store(true, Ordering::SeqCst);
        self.encoder = None;
        let uploaded = match self.uploader.take() {
            Some(h) => joined_upload(h.await),
            None => Ok(()),
        };
        match failure {
            Failure::Before(e) => e,
            Failure::Input(msg) => ArchiveError::Input(msg),
            Failure::Sink => uploaded.err().unwrap_or_else(|| {
                ArchiveError::Upload(format!("{}: the upload stopped", self.location))
            }),
        }
    }
}

impl Drop for BundleWriter {
    fn drop(&mut self) {
        // An unfinished bundle: make the encoder's trailers fail fast; the dropped channel
        // then tells the uploader to abort.
        self.abandoned.store(true, Ordering::SeqCst);
    }
}

fn joined_upload(
    r: Result<Result<(), ArchiveError>, tokio::task::JoinError>,
) -> Result<(), ArchiveError> {
    r.unwrap_or_else(|_| Err(ArchiveError::Upload("the upload task stopped".into())))
}

/// Receives the encoded bundle and uploads it in parts; aborts the multipart upload on any
/// error, or when the channel closes without `Finish` (the writer gave up or was dropped).
async fn upload(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    mut rx: mpsc::Receiver<Msg>,
    location: String,
) -> Result<(), ArchiveError> {
    let failed =
        |e: &object_store::Error| ArchiveError::Upload(format!("{location}: {}", describe(e)));
    let up = store.put_multipart(&path).await.map_err(|e| failed(&e))?;
    let mut w = WriteMultipart::new_with_chunk_size(up, PART_SIZE);
    loop {
        match rx.recv().await {
            Some(Msg::Data(bytes)) => {
                if let Err(e) = w.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    let _ = w.abort().await;
                    return Err(failed(&e));
                }
                w.put(bytes);
            }
            // finish() aborts the upload itself when a part or the completion fails.
            Some(Msg::Finish) => return w.finish().await.map(|_| ()).map_err(|e| failed(&e)),
            None => {
                let _ = w.abort().await;
                return Err(ArchiveError::Upload(format!(
                    "{location}: the bundle was not completed"
                )));
            }
        }
    }
}

/// A file name inside a bundle: relative, `/`-separated, no `.`/`..`/empty parts, no
/// control characters (a newline would break `SHA256SUMS`), not the manifest's name.
pub(crate) fn check_name(name: &str) -> Result<(), ArchiveError> {
    let bad = |why: &str| Err(ArchiveError::Input(format!("file name {name:?} {why}")));
    if name == MANIFEST {
        return bad("is reserved for the manifest");
    }
    if name.is_empty() || name.len() > 1024 {
        return bad("must have 1 to 1024 bytes");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return bad("has a control character or a backslash");
    }
    if name.starts_with('/')
        || name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("must be a relative path without empty, . or .. parts");
    }
    Ok(())
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

fn append_blocking(
    b: &mut Builder,
    name: &str,
    mtime: u64,
    source: Source,
) -> Result<FileEntry, Failure> {
    let broken = |b: &Builder, e: io::Error| {
        if b.get_ref().get_ref().sink_failed {
            Failure::Sink
        } else {
            Failure::Input(format!("adding {name}: {e}"))
        }
    };
    match source {
        Source::Bytes(data) => {
            let sha256 = hex(&Sha256::digest(&data));
            let size = data.len() as u64;
            b.append_data(&mut header(size, mtime), name, &data[..])
                .map_err(|e| broken(b, e))?;
            Ok(FileEntry {
                name: name.to_string(),
                size,
                sha256,
            })
        }
        Source::File(path) => {
            let cannot = |e: io::Error| {
                Failure::Before(ArchiveError::Input(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            };
            let file = std::fs::File::open(&path).map_err(cannot)?;
            let meta = file.metadata().map_err(cannot)?;
            if !meta.is_file() {
                return Err(Failure::Before(ArchiveError::Input(format!(
                    "{} is not a regular file",
                    path.display()
                ))));
            }
            let size = meta.len();
            // At most `size` bytes: a file that grows would otherwise overrun its header.
            let mut reader = HashingReader {
                inner: file.take(size),
                sha: Sha256::new(),
                count: 0,
            };
            b.append_data(&mut header(size, mtime), name, &mut reader)
                .map_err(|e| broken(b, e))?;
            if reader.count != size {
                return Err(Failure::Input(format!(
                    "{} shrank while being archived ({} of {size} bytes)",
                    path.display(),
                    reader.count
                )));
            }
            Ok(FileEntry {
                name: name.to_string(),
                size,
                sha256: hex(&reader.sha.finalize()),
            })
        }
    }
}

/// Reads through and hashes what it reads.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

enum Msg {
    Data(Bytes),
    Finish,
}

/// The end of the encoder: hashes and counts the compressed bytes and hands them to the
/// uploader in [`CHUNK`]-sized messages, waiting when the channel is full (backpressure).
struct ChannelWriter {
    tx: Option<mpsc::Sender<Msg>>,
    buf: Vec<u8>,
    sha: Sha256,
    size: u64,
    abandoned: Arc<AtomicBool>,
    sink_failed: bool,
}

impl ChannelWriter {
    fn send(&mut self, msg: Msg) -> io::Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.blocking_send(msg).is_ok(),
            None => false,
        };
        if !sent {
            self.sink_failed = true;
            self.tx = None;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the upload stopped",
            ));
        }
        Ok(())
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.send(Msg::Data(Bytes::from(chunk)))
    }

    /// Sends what is left and the end mark; returns the object's SHA-256 and size.
    fn close(mut self) -> io::Result<(String, u64)> {
        self.send_buf()?;
        self.send(Msg::Finish)?;
        let sha = std::mem::take(&mut self.sha);
        Ok((hex(&sha.finalize()), self.size))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.abandoned.load(Ordering::SeqCst) {
            return Err(io::Error::other("the bundle was abandoned"));
        }
        if self.sink_failed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the upload stopped",
            ));
        }
        // Fill the chunk to exactly CHUNK so the buffer never reallocates.
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.sha.update(&data[..n]);
        self.size += n as u64;
        if self.buf.len() == CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks go when full or at close; a flush must not make small parts.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "report.json",
            "logs/build.log",
            "manifests/jobs/a-b.yaml",
            "é.txt",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "SHA256SUMS",
            "/abs",
            "a//b",
            "a/../b",
            "./a",
            "a/",
            "line\nbreak",
            "back\\slash",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
