//! Bundles on a real S3-compatible server (SeaweedFS): written in parts through
//! `Store::s3`, read back and verified, re-checked by `vigil archive verify s3://...` with
//! credentials from the environment, tampered with through the server, refused with wrong
//! credentials, and cut off by the server stopping mid-upload (no object left).

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Command;
use support::s3::SeaweedFs;
use vigil::archive::{ArchiveError, BundleWriter, Store, Written, bundle_key, verify};

/// Incompressible bytes from a fixed seed (xorshift), so the upload takes several parts.
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

fn store(s3: &SeaweedFs, secret: &str) -> Store {
    Store::s3(
        &s3.bucket,
        "runs",
        Some(&s3.endpoint),
        "us-east-1",
        &s3.access_key,
        secret,
        true,
    )
    .unwrap()
}

async fn write(store: &Store, key: &str, big: &Path) -> Result<Written, ArchiveError> {
    let mut w = BundleWriter::start(store, key)?;
    w.add_bytes("report.json", br#"{"schemaVersion":1}"#.to_vec())
        .await?;
    w.add_file("artifacts/big.bin", big).await?;
    w.add_bytes("logs/test.log", b"ok\n".repeat(1000)).await?;
    w.finish().await
}

fn verify_cli(s3: &SeaweedFs, url: &str, secret: &str) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["archive", "verify", url])
        .env("AWS_ACCESS_KEY_ID", &s3.access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_ENDPOINT_URL", &s3.endpoint)
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run vigil");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

/// The bundle with one byte of `file` changed, as a valid tar.gz.
fn tampered(bytes: &[u8], file: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if name == file {
            data[0] ^= 1;
        }
        let mut h = e.header().clone();
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn bundles_on_a_real_s3_server() {
    let mut s3 = SeaweedFs::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    // Three 8 MiB parts and a bit.
    std::fs::write(&big, noise(20 << 20, 5)).unwrap();
    let st = store(&s3, &s3.secret_key);
    let key = bundle_key("", "ci", "nightly", "0f3c9a2e-1111");
    let full = format!("runs/{key}");

    // Written in parts, read back, the same object the server holds.
    let written = rt.block_on(write(&st, &key, &big)).unwrap();
    assert_eq!(
        written.location,
        format!("s3://{}/runs/ci/nightly-0f3c9a2e.tar.gz", s3.bucket)
    );
    let v = rt
        .block_on(verify(&st, &key, Some(&written.sha256)))
        .unwrap();
    assert_eq!(v.files, written.files);
    let held = s3.get(&full).expect("the object");
    assert_eq!(held.len() as u64, written.size);
    assert_eq!(vigil::archive::sha256_hex(&held), written.sha256);
    assert_eq!(s3.list("runs"), std::slice::from_ref(&full));

    // Written again (a retried archive): the same key, the same bytes, still one object.
    let again = rt.block_on(write(&st, &key, &big)).unwrap();
    assert_eq!(again.sha256, written.sha256);
    assert_eq!(s3.list("runs"), std::slice::from_ref(&full));

    // The CLI, credentials from the environment; the secret is never printed.
    let (code, out) = verify_cli(&s3, &written.location, &s3.secret_key);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&written.sha256), "{out}");
    assert!(
        out.contains("result    OK: 3 files match SHA256SUMS"),
        "{out}"
    );
    assert!(!out.contains(&s3.secret_key), "{out}");

    // Wrong credentials: refused, the reason named, the secret nowhere.
    let wrong = "not-the-secret-0123456789";
    match rt.block_on(verify(&store(&s3, wrong), &key, None)) {
        Err(e @ ArchiveError::Download(_)) => {
            let text = e.to_string();
            assert!(!text.contains(wrong), "{text}");
            assert!(
                text.contains("credentials")
                    || text.contains("HTTP 403")
                    || text.contains("denied"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let (code, out) = verify_cli(&s3, &written.location, wrong);
    assert_eq!(code, 2, "{out}");
    assert!(!out.contains(wrong), "{out}");

    // Tampered on the server: a valid tar.gz with one changed byte, named by the check.
    s3.put(&full, &tampered(&held, "artifacts/big.bin"));
    match rt.block_on(verify(&st, &key, None)) {
        Err(ArchiveError::ChecksumMismatch { file }) => assert_eq!(file, "artifacts/big.bin"),
        other => panic!("{other:?}"),
    }
    let (code, out) = verify_cli(&s3, &written.location, &s3.secret_key);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("result    MISMATCH: artifacts/big.bin"),
        "{out}"
    );

    // Deleted: gone, and deleting again is fine.
    rt.block_on(st.delete(&key)).unwrap();
    rt.block_on(st.delete(&key)).unwrap();
    assert!(matches!(
        rt.block_on(verify(&st, &key, None)),
        Err(ArchiveError::NotFound { .. })
    ));

    // The server stops mid-upload: an upload error, and no object once it is back.
    let cut = bundle_key("", "ci", "cut", "aaaaaaaa");
    let mut w = rt
        .block_on(async {
            let mut w = BundleWriter::start(&st, &cut)?;
            w.add_file("first.bin", &big).await?;
            Ok::<_, ArchiveError>(w)
        })
        .unwrap();
    s3.stop();
    let r = rt.block_on(async {
        w.add_file("second.bin", &big).await?;
        w.add_file("third.bin", &big).await?;
        w.finish().await
    });
    match r {
        Err(e @ ArchiveError::Upload(_)) => {
            assert!(e.retryable());
            assert_eq!(e.reason(), "UploadFailed");
            assert!(!e.to_string().contains(&s3.secret_key), "{e}");
        }
        other => panic!("{other:?}"),
    }
    s3.restart();
    assert_eq!(s3.list("runs"), Vec::<String>::new());
    assert!(matches!(
        rt.block_on(verify(&st, &cut, None)),
        Err(ArchiveError::NotFound { .. })
    ));
}
