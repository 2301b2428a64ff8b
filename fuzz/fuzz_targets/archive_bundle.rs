//! Reading run archives back (`vigil::archive`), as `vigil archive verify` and the operator do
//! before anything is deleted: the `SHA256SUMS` reader, and whole bundles read from a
//! directory store. Each input is tried four ways: as the manifest's text; as the stored
//! object itself (gzip layer fuzzed); gzipped, as the tar inside it (tar layer fuzzed); and
//! split at 0xFF bytes into file names and contents, written by the operator's own
//! `BundleWriter` and verified back. Beyond "never panics": the manifest reader keeps its
//! grammar and round-trips, a bundle that reads has the object's true size and SHA-256 and
//! verdicts that agree with an independent hash of each file, and what the writer wrote
//! always verifies.

#![no_main]

use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::sync::OnceLock;
use vigil::archive::verify::{self, Verdict};
use vigil::archive::{ArchiveError, BundleWriter, MANIFEST, Store};

/// One runtime and one store for the whole run: a fresh one per input would cost more than
/// the input. The store lives in memory-backed /dev/shm when there is one (the filesystem
/// store fsyncs every write).
fn env() -> &'static (tokio::runtime::Runtime, Store, tempfile::TempDir) {
    static ENV: OnceLock<(tokio::runtime::Runtime, Store, tempfile::TempDir)> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let store = Store::filesystem(dir.path()).expect("a directory store");
        (rt, store, dir)
    })
}

fuzz_target!(|data: &[u8]| {
    manifest(data);
    let (rt, store, dir) = env();
    // The costly ways only for inputs that can take them: a gzip member, file parts.
    rt.block_on(async {
        if data.starts_with(&[0x1f, 0x8b]) {
            stored(store, dir.path(), data).await;
        }
        stored(store, dir.path(), &gzip(data)).await;
        if data.contains(&0xFF) {
            written(store, data).await;
        }
    });
});

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// `SHA256SUMS` lines: a name at most once, 64 lowercase hex digits each, and the map
/// written back as `sha256sum` writes it reads the same.
fn manifest(text: &[u8]) {
    let Ok(map) = verify::parse_manifest(text) else {
        return;
    };
    let lines = String::from_utf8_lossy(text).lines().count();
    assert!(map.len() <= lines, "{} names from {lines} lines", map.len());
    let mut again = String::new();
    for (name, hash) in &map {
        assert!(!name.is_empty() && !name.contains('\n'));
        assert!(
            hash.len() == 64
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        again.push_str(&format!("{hash}  {name}\n"));
    }
    // A last line's bare `\r` would be eaten by the `\r\n` written back.
    if map.keys().all(|n| !n.ends_with('\r')) {
        assert_eq!(verify::parse_manifest(again.as_bytes()).unwrap(), map);
    }
}

/// `object` stored as a bundle and inspected.
async fn stored(store: &Store, dir: &std::path::Path, object: &[u8]) {
    let key = "fuzz/stored.tar.gz";
    std::fs::create_dir_all(dir.join("fuzz")).expect("a directory");
    std::fs::write(dir.join(key), object).expect("writing the object");
    let ins = match verify::inspect(store, key).await {
        Ok(ins) => ins,
        Err(e) => {
            assert!(
                matches!(e, ArchiveError::Corrupt(_)),
                "a stored object that does not read is corrupt, not {e:?}"
            );
            return;
        }
    };
    assert_eq!(ins.size, object.len() as u64);
    assert_eq!(ins.sha256, sha256_hex(object));

    // The verdicts, from an independent read of the same tar.
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(object)
        .read_to_end(&mut tar)
        .expect("the reader's gzip reads");
    let mut contents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().expect("the reader's tar reads") {
        let mut entry = entry.expect("the reader's tar entry reads");
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let mut body = Vec::new();
        entry
            .read_to_end(&mut body)
            .expect("the reader's file reads");
        contents.insert(name, body);
    }
    let listed = verify::parse_manifest(&contents[MANIFEST]).expect("a manifest that was read");
    let mut names = HashSet::new();
    for f in &ins.files {
        assert!(names.insert(f.entry.name.clone()), "{} twice", f.entry.name);
        let body = &contents[&f.entry.name];
        assert_eq!(f.entry.size, body.len() as u64);
        assert_eq!(f.entry.sha256, sha256_hex(body));
        let expect = if f.entry.name == MANIFEST {
            Verdict::Manifest
        } else {
            match listed.get(&f.entry.name) {
                Some(h) if *h == f.entry.sha256 => Verdict::Match,
                Some(h) => Verdict::Mismatch {
                    expected: h.clone(),
                },
                None => Verdict::NotListed,
            }
        };
        assert_eq!(f.verdict, expect, "{}", f.entry.name);
    }
    for (name, hash) in &ins.missing {
        assert!(!names.contains(name) && listed[name] == *hash);
    }
    let intact = ins.problems().is_empty();
    let verified = verify::verify(store, key, Some(&ins.sha256)).await;
    assert_eq!(verified.is_ok(), intact, "{verified:?}");
}

/// The operator's writer, then its verifier: what was written verifies, file by file.
async fn written(store: &Store, data: &[u8]) {
    let key = "fuzz/written.tar.gz";
    let mut w = BundleWriter::start(store, key).expect("a bundle starts");
    let mut parts = data.split(|b| *b == 0xFF);
    while let (Some(name), Some(body)) = (parts.next(), parts.next()) {
        let name = String::from_utf8_lossy(name);
        match w.add_bytes(&name, body.to_vec()).await {
            Ok(()) => {}
            // Names the writer refuses (control characters, `..`, the manifest's, twice).
            Err(ArchiveError::Input(_)) => {}
            Err(e) => panic!("adding {name:?}: {e:?}"),
        }
    }
    let done = w.finish().await.expect("the bundle is written");
    let v = verify::verify(store, key, Some(&done.sha256))
        .await
        .unwrap_or_else(|e| panic!("what was written does not verify: {e:?}"));
    assert_eq!(
        (v.sha256, v.size, v.files),
        (done.sha256, done.size, done.files)
    );
}
