//! Bundles written to and read back from a directory store: round trips, tampering,
//! corruption, absence, a large streamed file, and aborted uploads.

use super::*;
use object_store::{ObjectStoreExt, PutPayload};
use std::io::{Read, Write};
use std::path::Path;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::filesystem(&dir.path().join("archive")).unwrap();
    (dir, store)
}

fn on_disk(store: &Store, key: &str) -> std::path::PathBuf {
    let loc = store.location(key);
    std::path::PathBuf::from(loc.strip_prefix("file://").unwrap())
}

/// Files of a bundle as (name, content), read without any checking.
fn unpack(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

async fn put_raw(store: &Store, key: &str, bytes: Vec<u8>) {
    let path = store.path(key).unwrap();
    store
        .inner
        .put(&path, PutPayload::from(bytes))
        .await
        .unwrap();
}

async fn get_raw(store: &Store, key: &str) -> Vec<u8> {
    let path = store.path(key).unwrap();
    let got = store.inner.get(&path).await.unwrap();
    got.bytes().await.unwrap().to_vec()
}

/// Writes a small bundle: two in-memory files, one from disk, an empty one, a long name.
async fn small_bundle(store: &Store, key: &str, scratch: &Path) -> Written {
    let log = scratch.join("step.log");
    std::fs::write(&log, "line 1\nline 2\n".repeat(1000)).unwrap();
    let long = format!("logs/{}.log", "x".repeat(150));
    let mut w = BundleWriter::start(store, key)
        .unwrap()
        .with_mtime(1_800_000_000);
    w.add_bytes("report.json", br#"{"schemaVersion":1}"#.to_vec())
        .await
        .unwrap();
    w.add_bytes("report.md", b"# run\n".to_vec()).await.unwrap();
    w.add_file("logs/build.log", &log).await.unwrap();
    w.add_bytes("events.json", Vec::new()).await.unwrap();
    w.add_bytes(&long, b"long name".to_vec()).await.unwrap();
    w.finish().await.unwrap()
}

#[tokio::test]
async fn a_bundle_reads_back_as_written() {
    let (dir, store) = store();
    let key = bundle_key("", "ns", "run", "0123456789");
    let written = small_bundle(&store, &key, dir.path()).await;

    let names: Vec<_> = written.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names[..4],
        ["report.json", "report.md", "logs/build.log", "events.json"]
    );
    assert_eq!(names.last(), Some(&MANIFEST));
    assert_eq!(written.files[2].size, 14_000);
    assert_eq!(written.files[3].sha256, sha256_hex(b""));
    assert_eq!(written.location, store.location(&key));

    // The object on disk is what was hashed, and nothing else was left beside it.
    let file = on_disk(&store, &key);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(written.sha256, sha256_hex(&bytes));
    assert_eq!(written.size, bytes.len() as u64);
    let siblings: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings.len(), 1, "{siblings:?}");

    // The manifest is `sha256sum` format over every other file, in order.
    let files = unpack(&bytes);
    let (last, manifest) = files.last().unwrap();
    assert_eq!(last, MANIFEST);
    let want: String = written.files[..written.files.len() - 1]
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.name))
        .collect();
    assert_eq!(String::from_utf8(manifest.clone()).unwrap(), want);

    let v = verify(&store, &key, Some(&written.sha256.to_uppercase()))
        .await
        .unwrap();
    assert_eq!(v.files, written.files);
    assert_eq!(
        (v.sha256.as_str(), v.size),
        (written.sha256.as_str(), written.size)
    );

    // Equal inputs, equal bundles: a retried archive is the same object.
    let again = small_bundle(&store, &key, dir.path()).await;
    assert_eq!(again.sha256, written.sha256);
}

#[tokio::test]
async fn tampering_is_named() {
    let (dir, store) = store();
    let key = "ns/run.tar.gz";
    let written = small_bundle(&store, key, dir.path()).await;
    let original = unpack(&get_raw(&store, key).await);

    type Edit = fn(&mut Vec<(String, Vec<u8>)>);
    let cases: [(&str, Edit, &str); 4] = [
        ("a changed byte", |f| f[2].1[5] ^= 1, "logs/build.log"),
        (
            "a removed file",
            |f| {
                f.remove(1);
            },
            "report.md",
        ),
        (
            "an added file",
            |f| {
                let m = f.pop().unwrap();
                f.push(("extra.txt".into(), b"x".to_vec()));
                f.push(m);
            },
            "extra.txt",
        ),
        (
            "an edited manifest",
            |f| {
                let m = &mut f.last_mut().unwrap().1;
                m[0] = if m[0] == b'0' { b'1' } else { b'0' };
            },
            "report.json",
        ),
    ];
    for (what, edit, file) in cases {
        let mut files = original.clone();
        edit(&mut files);
        put_raw(&store, key, pack(&files)).await;
        match verify(&store, key, None).await {
            Err(ArchiveError::ChecksumMismatch { file: f }) => assert_eq!(f, file, "{what}"),
            other => panic!("{what}: {other:?}"),
        }
        let ins = inspect(&store, key).await.unwrap();
        assert_eq!(ins.problems(), [file], "{what}");
    }

    // Intact files, but not the object that was recorded.
    put_raw(&store, key, pack(&original)).await;
    verify(&store, key, None).await.unwrap();
    match verify(&store, key, Some(&written.sha256)).await {
        Err(ArchiveError::ChecksumMismatch { file }) => assert_eq!(file, "<bundle>"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn broken_objects_are_corrupt() {
    let (dir, store) = store();
    let key = "good.tar.gz";
    small_bundle(&store, key, dir.path()).await;
    let good = get_raw(&store, key).await;
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let mut gz_text = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz_text.write_all(b"hello, not a tar").unwrap();
    let no_manifest = pack(&[("report.json".into(), b"{}".to_vec())]);

    let cases: [(&str, Vec<u8>); 8] = [
        ("empty", Vec::new()),
        ("garbage", b"this is not gzip at all".repeat(100)),
        ("truncated", good[..good.len() / 2].to_vec()),
        (
            "cut before the gzip trailer",
            good[..good.len() - 4].to_vec(),
        ),
        ("trailing bytes", trailing),
        ("a flipped byte", flipped),
        ("gzip but not tar", gz_text.finish().unwrap()),
        ("no manifest", no_manifest),
    ];
    for (what, bytes) in cases {
        put_raw(&store, "bad.tar.gz", bytes).await;
        match verify(&store, "bad.tar.gz", None).await {
            Err(ArchiveError::Corrupt(why)) => assert!(!why.is_empty(), "{what}"),
            // A flip inside stored (uncompressed) data can survive inflate; the CRC and the
            // manifest still catch it.
            Err(ArchiveError::ChecksumMismatch { .. }) if what == "a flipped byte" => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_bundle_is_not_found() {
    let (_dir, store) = store();
    for key in ["nothing.tar.gz", "no/such/dir.tar.gz"] {
        match verify(&store, key, None).await {
            Err(ArchiveError::NotFound { location }) => assert_eq!(location, store.location(key)),
            other => panic!("{key}: {other:?}"),
        }
    }
    store.delete("nothing.tar.gz").await.unwrap();
}

/// Incompressible bytes from a fixed seed (xorshift), so the upload takes many parts.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_streams_through() {
    let (dir, store) = store();
    let big = dir.path().join("big.bin");
    let data = noise(64 << 20, 7);
    let want = sha256_hex(&data);
    std::fs::write(&big, &data).unwrap();
    drop(data);
    let mut w = BundleWriter::start(&store, "big.tar.gz").unwrap();
    w.add_file("artifacts/big.bin", &big).await.unwrap();
    w.add_bytes("report.json", b"{}".to_vec()).await.unwrap();
    let written = w.finish().await.unwrap();
    assert!(written.size > 64 << 20, "{}", written.size);
    assert_eq!(written.files[0].sha256, want);
    let v = verify(&store, "big.tar.gz", Some(&written.sha256))
        .await
        .unwrap();
    assert_eq!(v.files, written.files);
    store.delete("big.tar.gz").await.unwrap();
    assert!(matches!(
        verify(&store, "big.tar.gz", None).await,
        Err(ArchiveError::NotFound { .. })
    ));
}

#[tokio::test]
async fn bad_inputs_leave_the_bundle_usable() {
    let (dir, store) = store();
    let mut w = BundleWriter::start(&store, "ns/r.tar.gz").unwrap();
    w.add_bytes("a.txt", b"a".to_vec()).await.unwrap();
    let cases = [
        w.add_file("missing.log", &dir.path().join("nope")).await,
        w.add_file("dir.log", dir.path()).await,
        w.add_bytes("a.txt", b"again".to_vec()).await,
        w.add_bytes("../escape", Vec::new()).await,
        w.add_bytes(MANIFEST, Vec::new()).await,
    ];
    for r in cases {
        assert!(matches!(r, Err(ArchiveError::Input(_))), "{r:?}");
    }
    w.add_bytes("why-no-log.txt", b"the pod was gone".to_vec())
        .await
        .unwrap();
    let written = w.finish().await.unwrap();
    let v = verify(&store, "ns/r.tar.gz", None).await.unwrap();
    assert_eq!(v.files, written.files);
    assert_eq!(v.files.len(), 3);
}

/// Leftovers of an upload in the store's directory: the object or its staging file.
fn leftovers(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_dropped_upload_leaves_nothing() {
    let (dir, store) = store();
    let root = on_disk(&store, "x");
    let root = root.parent().unwrap();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, noise(20 << 20, 3)).unwrap();

    // The store cannot create the object (a file stands where its directory should be).
    std::fs::write(root.join("blocker"), b"").unwrap();
    let mut w = BundleWriter::start(&store, "blocker/r.tar.gz").unwrap();
    let r = match w.add_file("big.bin", &big).await {
        Ok(()) => w.finish().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match r {
        Err(e @ ArchiveError::Upload(_)) => {
            assert!(e.to_string().contains("blocker/r.tar.gz"), "{e}");
            assert!(e.retryable());
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(root.join("blocker")).unwrap();

    // Given up half-way: the writer is dropped with parts already uploaded.
    let mut w = BundleWriter::start(&store, "ns/dropped.tar.gz").unwrap();
    w.add_file("big.bin", &big).await.unwrap();
    drop(w);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !leftovers(root).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {:?}",
            leftovers(root)
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Peak RSS growth while archiving and verifying 1 GiB (the benchmark's bound is 64 MiB).
/// Run alone: `cargo test --release --lib archive::roundtrip::memory -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 1 GiB; run by hand"]
async fn memory_stays_flat_for_a_gigabyte() {
    fn hwm_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
    let (dir, store) = store();
    let part = dir.path().join("part.bin");
    {
        // 1 GiB of log-like text in 16 files of 64 MiB, written in pieces.
        let mut f = std::fs::File::create(&part).unwrap();
        let line = noise(64 << 10, 11)
            .iter()
            .map(|b| (b'a' + b % 26) as char)
            .collect::<String>();
        for i in 0..(64 << 20) / line.len() + 1 {
            writeln!(f, "{i} {}", &line[..line.len() - 16]).unwrap();
        }
    }
    let before = hwm_kib();
    let start = std::time::Instant::now();
    let mut w = BundleWriter::start(&store, "gig.tar.gz").unwrap();
    for i in 0..16 {
        w.add_file(&format!("logs/{i}.log"), &part).await.unwrap();
    }
    let written = w.finish().await.unwrap();
    let wrote = start.elapsed();
    verify(&store, "gig.tar.gz", Some(&written.sha256))
        .await
        .unwrap();
    let after = hwm_kib();
    let input: u64 = written.files.iter().map(|f| f.size).sum();
    println!(
        "archived {} MiB into {} MiB in {:?}, verified in {:?}; peak RSS +{} MiB",
        input >> 20,
        written.size >> 20,
        wrote,
        start.elapsed() - wrote,
        (after.saturating_sub(before)) >> 10
    );
    assert!(after.saturating_sub(before) < 64 << 10);
}
