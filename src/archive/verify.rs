//! Reading a bundle back: the object is streamed (bounded memory), its SHA-256 computed, and
//! every file hashed and compared with `SHA256SUMS`, on a blocking thread.

use super::store::Store;
use super::{ArchiveError, FileEntry, MANIFEST, describe, hex};
use bytes::Bytes;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufRead, Read, Write};
use tokio::sync::mpsc;

/// A manifest larger than this is not one Vigil wrote (it lists files at ~80 bytes a line).
const MANIFEST_LIMIT: u64 = 16 * 1024 * 1024;
/// Chunks of the download queued for the reader.
const CHANNEL_DEPTH: usize = 8;

/// A bundle that read back whole: every file matches `SHA256SUMS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Where it is.
    pub location: String,
    /// SHA-256 of the whole object, lowercase hex.
    pub sha256: String,
    /// Size of the object in bytes.
    pub size: u64,
    /// Every file, in bundle order (`SHA256SUMS` included).
    pub files: Vec<FileEntry>,
}

/// How one file compares with the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its hash is the one listed.
    Match,
    /// Its hash differs from the one listed.
    Mismatch {
        /// The listed hash.
        expected: String,
    },
    /// It is in the bundle but not in the manifest.
    NotListed,
    /// It is the manifest itself.
    Manifest,
}

/// One file of a bundle and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    /// Name, size and the hash of what was read.
    pub entry: FileEntry,
    /// How it compares with `SHA256SUMS`.
    pub verdict: Verdict,
}

/// Everything read from a bundle, matching or not (what `vigil archive verify` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Where it is.
    pub location: String,
    /// SHA-256 of the whole object, lowercase hex.
    pub sha256: String,
    /// Size of the object in bytes.
    pub size: u64,
    /// Every file, in bundle order.
    pub files: Vec<CheckedFile>,
    /// Files the manifest lists that the bundle lacks: (name, listed hash).
    pub missing: Vec<(String, String)>,
}

impl Inspection {
    /// Names of the files that do not match the manifest: differing or unlisted ones in
    /// bundle order, then missing ones. Empty when the bundle is intact.
    pub fn problems(&self) -> Vec<String> {
        let bad = self
            .files
            .iter()
            .filter(|f| matches!(f.verdict, Verdict::Mismatch { .. } | Verdict::NotListed));
        bad.map(|f| f.entry.name.clone())
            .chain(self.missing.iter().map(|(n, _)| n.clone()))
            .collect()
    }
}

/// Reads the bundle at `key` back and checks it: every file against `SHA256SUMS`, and the
/// whole object against `expect_sha256` when given (the hash recorded at upload).
pub async fn verify(
    store: &Store,
    key: &str,
    expect_sha256: Option<&str>,
) -> Result<Verified, ArchiveError> {
    let ins = inspect(store, key).await?;
    if let Some(file) = ins.problems().into_iter().next() {
        return Err(ArchiveError::ChecksumMismatch { file });
    }
    if let Some(want) = expect_sha256
        && !want.trim().eq_ignore_ascii_case(&ins.sha256)
    {
        return Err(ArchiveError::ChecksumMismatch {
            file: "<bundle>".into(),
        });
    }
    Ok(Verified {
        location: ins.location,
        sha256: ins.sha256,
        size: ins.size,
        files: ins.files.into_iter().map(|f| f.entry).collect(),
    })
}

/// Reads the bundle at `key` and reports every file against the manifest without stopping
/// at the first difference. Errors only when the object cannot be read or is not a bundle.
pub async fn inspect(store: &Store, key: &str) -> Result<Inspection, ArchiveError> {
    let path = store.path(key)?;
    let location = store.location(key);
    let got = match store.inner.get(&path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ArchiveError::NotFound { location });
        }
        Err(e) => {
            return Err(ArchiveError::Download(format!(
                "{location}: {}",
                describe(&e)
            )));
        }
    };
    let listed = got.meta.size;
    let (tx, rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let mut stream = got.into_stream();
    let pump = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| ArchiveError::Download(format!("{location}: {}", describe(&e))))?;
            if tx.send(chunk).await.is_err() {
                // The reader stopped (it found the bundle corrupt): no need to read on.
                break;
            }
        }
        drop(tx);
        Ok::<_, ArchiveError>(())
    };
    let reader = tokio::task::spawn_blocking(move || {
        read_bundle(ChannelReader {
            rx,
            cur: Bytes::new(),
            sha: Sha256::new(),
            size: 0,
        })
    });
    let (pumped, read) = tokio::join!(pump, reader);
    // A failed download explains whatever the reader saw (a stream cut short).
    pumped?;
    let raw = read.map_err(|_| ArchiveError::Corrupt("the reading thread stopped".into()))??;
    if raw.size != listed {
        return Err(ArchiveError::Download(format!(
            "{location}: read {} bytes of an object of {listed}",
            raw.size
        )));
    }
    let (files, missing) = compare(raw.files, raw.manifest.as_deref())?;
    Ok(Inspection {
        location,
        sha256: raw.sha256,
        size: raw.size,
        files,
        missing,
    })
}

/// What the reader found.
struct Raw {
    sha256: String,
    size: u64,
    files: Vec<FileEntry>,
    manifest: Option<Vec<u8>>,
}

fn corrupt(e: io::Error) -> ArchiveError {
    ArchiveError::Corrupt(format!("not a readable tar.gz ({e})"))
}

fn read_bundle(source: ChannelReader) -> Result<Raw, ArchiveError> {
    let buffered = io::BufReader::with_capacity(64 * 1024, source);
    let gz = flate2::bufread::GzDecoder::new(buffered);
    let mut archive = tar::Archive::new(gz);
    let mut files = Vec::new();
    let mut names = HashSet::new();
    let mut manifest = None;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            return Err(ArchiveError::Corrupt(format!(
                "{name} is not a regular file"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(ArchiveError::Corrupt(format!(
                "{name} is in the bundle twice"
            )));
        }
        let mut sink = HashingSink::default();
        if name == MANIFEST {
            let mut text = Vec::new();
            (&mut entry)
                .take(MANIFEST_LIMIT + 1)
                .read_to_end(&mut text)
                .map_err(corrupt)?;
            if text.len() as u64 > MANIFEST_LIMIT {
                return Err(ArchiveError::Corrupt(format!(
                    "{MANIFEST} is larger than {MANIFEST_LIMIT} bytes"
                )));
            }
            sink.write_all(&text).map_err(corrupt)?;
            manifest = Some(text);
        } else {
            io::copy(&mut entry, &mut sink).map_err(corrupt)?;
        }
        files.push(FileEntry {
            name,
            size: sink.count,
            sha256: hex(&sink.sha.finalize()),
        });
    }
    // Read to the gzip trailer (its CRC and length are checked there), then make sure
    // nothing follows it.
    let mut gz = archive.into_inner();
    io::copy(&mut gz, &mut io::sink()).map_err(corrupt)?;
    let mut buffered = gz.into_inner();
    let mut trailing = buffered.buffer().len() as u64;
    buffered.consume(trailing as usize);
    let mut source = buffered.into_inner();
    trailing += io::copy(&mut source, &mut io::sink()).map_err(corrupt)?;
    if trailing > 0 {
        return Err(ArchiveError::Corrupt(format!(
            "{trailing} bytes follow the end of the gzip stream"
        )));
    }
    Ok(Raw {
        sha256: hex(&source.sha.finalize()),
        size: source.size,
        files,
        manifest,
    })
}

/// Files listed in the manifest but absent from the bundle: (name, listed hash).
type Missing = Vec<(String, String)>;

/// Compares the files read with the manifest's lines.
fn compare(
    files: Vec<FileEntry>,
    manifest: Option<&[u8]>,
) -> Result<(Vec<CheckedFile>, Missing), ArchiveError> {
    let manifest =
        manifest.ok_or_else(|| ArchiveError::Corrupt(format!("the bundle has no {MANIFEST}")))?;
    let mut listed = parse_manifest(manifest)?;
    let checked = files
        .into_iter()
        .map(|entry| {
            let verdict = if entry.name == MANIFEST {
                Verdict::Manifest
            } else {
                match listed.remove(&entry.name) {
                    Some(h) if h == entry.sha256 => Verdict::Match,
                    Some(h) => Verdict::Mismatch { expected: h },
                    None => Verdict::NotListed,
                }
            };
            CheckedFile { entry, verdict }
        })
        .collect();
    Ok((checked, listed.into_iter().collect()))
}

/// `sha256sum` lines: 64 hex digits, two spaces (or space and `*`), the name.
pub fn parse_manifest(text: &[u8]) -> Result<BTreeMap<String, String>, ArchiveError> {
    let text = std::str::from_utf8(text)
        .map_err(|_| ArchiveError::Corrupt(format!("{MANIFEST} is not UTF-8")))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = || ArchiveError::Corrupt(format!("{MANIFEST} line {} is malformed", i + 1));
        if line.is_empty() {
            continue;
        }
        let (hash, rest) = line.split_at_checked(64).ok_or_else(bad)?;
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(bad)?;
        if !hash.bytes().all(|b| b.is_ascii_hexdigit()) || name.is_empty() {
            return Err(bad());
        }
        if out
            .insert(name.to_string(), hash.to_ascii_lowercase())
            .is_some()
        {
            return Err(ArchiveError::Corrupt(format!(
                "{MANIFEST} lists {name} twice"
            )));
        }
    }
    Ok(out)
}

#[derive(Default)]
struct HashingSink {
    sha: Sha256,
    count: u64,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sha.update(buf);
        self.count += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The download as a blocking `Read`, hashing and counting every byte of the object.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
    sha: Sha256,
    size: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => {
                    self.sha.update(&b);
                    self.size += b.len() as u64;
                    self.cur = b;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, sha: &str) -> FileEntry {
        FileEntry {
            name: name.into(),
            size: 1,
            sha256: sha.into(),
        }
    }

    #[test]
    fn manifest_comparison() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let m = format!("{a}  one\n{b}  two\n");
        let files = vec![
            entry("one", &a),
            entry("two", &a),
            entry("three", &a),
            entry(MANIFEST, &b),
        ];
        let (checked, missing) = compare(files, Some(m.as_bytes())).unwrap();
        let verdicts: Vec<_> = checked.iter().map(|c| c.verdict.clone()).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Match,
                Verdict::Mismatch {
                    expected: b.clone()
                },
                Verdict::NotListed,
                Verdict::Manifest
            ]
        );
        assert!(missing.is_empty());
        let (_, missing) = compare(vec![entry("one", &a)], Some(m.as_bytes())).unwrap();
        assert_eq!(missing, [("two".to_string(), b.clone())]);
    }

    #[test]
    fn malformed_manifests_are_corrupt() {
        let a = "a".repeat(64);
        let cases = [
            "short  x\n".to_string(),
            format!("{a} x\n"),
            format!("{}  x\n", "g".repeat(64)),
            format!("{a}  x\n{a}  x\n"),
            format!("{a}  \n"),
        ];
        for text in cases {
            assert!(
                matches!(
                    parse_manifest(text.as_bytes()),
                    Err(ArchiveError::Corrupt(_))
                ),
                "{text:?}"
            );
        }
        assert!(matches!(
            compare(vec![], None),
            Err(ArchiveError::Corrupt(_))
        ));
        let ok =
            parse_manifest(format!("{a} *bin\n\n{}  up\n", a.to_uppercase()).as_bytes()).unwrap();
        assert_eq!(ok["bin"], a);
        assert_eq!(ok["up"], a);
    }
}
