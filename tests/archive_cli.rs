//! `vigil archive verify` the way an auditor runs it: on a good bundle, a tampered one, a
//! corrupt one and a missing one, with the verdict in the output and in the exit code.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use vigil::archive::{BundleWriter, Store, Written};

fn vigil(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.args(args);
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run vigil");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_bundle(dir: &Path) -> (Written, std::path::PathBuf) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Store::filesystem(dir).unwrap();
    let log = dir.join("build.log");
    std::fs::write(&log, "compiling...\nok\n".repeat(100)).unwrap();
    let written = rt.block_on(async {
        let mut w = BundleWriter::start(&store, "ci/nightly-0f3c9a2e.tar.gz").unwrap();
        w.add_bytes("report.json", br#"{"schemaVersion":1}"#.to_vec())
            .await
            .unwrap();
        w.add_bytes(
            "report.md",
            b"# PipelineRun ci/nightly: Succeeded\n".to_vec(),
        )
        .await
        .unwrap();
        w.add_file("logs/build.log", &log).await.unwrap();
        w.finish().await.unwrap()
    });
    (written, dir.join("ci/nightly-0f3c9a2e.tar.gz"))
}

/// The bundle at `from` with one byte of `file` changed, as a valid tar.gz.
fn tamper(from: &Path, to: &Path, file: &str) {
    let bytes = std::fs::read(from).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if name == file {
            data[0] ^= 0x20;
        }
        let mut h = e.header().clone();
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    std::fs::write(to, b.into_inner().unwrap().finish().unwrap()).unwrap();
}

#[test]
fn good_tampered_corrupt_and_missing_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let (written, path) = write_bundle(dir.path());
    let p = path.to_str().unwrap();

    // Good: every file listed OK, exit 0; the same through a file:// URL and with --sha256.
    let (code, out, err) = vigil(&["archive", "verify", p], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("sha256    {}", written.sha256)),
        "{out}"
    );
    assert!(
        out.contains(&format!("size      {} bytes", written.size)),
        "{out}"
    );
    for f in &written.files {
        let line = out
            .lines()
            .find(|l| l.ends_with(&f.name) || l.contains(&format!("{}  (the manifest)", f.name)))
            .unwrap_or_else(|| panic!("{} not listed:\n{out}", f.name));
        assert!(line.starts_with("OK"), "{line}");
        assert!(line.contains(&f.sha256), "{line}");
        assert!(line.contains(&f.size.to_string()), "{line}");
    }
    assert!(
        out.contains("result    OK: 3 files match SHA256SUMS"),
        "{out}"
    );
    let url = format!("file://{p}");
    let (code, out, _) = vigil(
        &["archive", "verify", &url, "--sha256", &written.sha256],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{}  OK", written.sha256)), "{out}");

    // Intact but not the recorded object.
    let other = "0".repeat(64);
    let (code, out, _) = vigil(&["archive", "verify", p, "--sha256", &other], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("result    MISMATCH: <bundle>"), "{out}");

    // Tampered: a valid tar.gz whose log differs from its manifest line.
    let bad = dir.path().join("tampered.tar.gz");
    tamper(&path, &bad, "logs/build.log");
    let (code, out, err) = vigil(&["archive", "verify", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}{err}");
    let line = out.lines().find(|l| l.contains("logs/build.log")).unwrap();
    assert!(line.starts_with("MISMATCH"), "{line}");
    assert!(
        out.lines()
            .find(|l| l.ends_with("report.md"))
            .unwrap()
            .starts_with("OK")
    );
    assert!(out.contains("result    MISMATCH: logs/build.log"), "{out}");
    assert!(err.contains("does not match"), "{err}");

    // Corrupt: cut in half.
    let cut = dir.path().join("cut.tar.gz");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, err) = vigil(&["archive", "verify", cut.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("corrupt"), "{err}");

    // Missing object, missing directory.
    for missing in ["nothing.tar.gz", "no/dir/nothing.tar.gz"] {
        let m = dir.path().join(missing);
        let (code, _, err) = vigil(&["archive", "verify", m.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("no archive at"), "{err}");
    }
}

#[test]
fn bad_arguments_and_unreachable_stores() {
    let cases: [(&[&str], &str); 5] = [
        (&["archive", "verify"], "LOCATION"),
        (
            &["archive", "verify", "s3://bucket-only"],
            "s3://bucket/key",
        ),
        (
            &["archive", "verify", "s3://b/k.tar.gz"],
            "AWS_ACCESS_KEY_ID",
        ),
        (&["archive", "verify", "ftp://h/k"], "only s3://"),
        (
            &["archive", "verify", "/x.tar.gz", "--sha256", "abc"],
            "64 hex",
        ),
    ];
    for (args, says) in cases {
        let (code, _, err) = vigil(args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }

    // Nothing listens there: a readable error, and the secret nowhere.
    let (code, out, err) = vigil(
        &["archive", "verify", "s3://bucket/ci/run.tar.gz"],
        &[
            ("AWS_ACCESS_KEY_ID", "vigil-test"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t-never-shown"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("reading the archive back failed"), "{err}");
    assert!(!format!("{out}{err}").contains("s3cr3t"), "{err}");
}

#[test]
fn help_explains_the_environment() {
    let (code, out, _) = vigil(&["archive", "verify", "--help"], &[]);
    assert_eq!(code, 0);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "file://",
        "--sha256",
    ] {
        assert!(out.contains(var), "{var} not in:\n{out}");
    }
}
