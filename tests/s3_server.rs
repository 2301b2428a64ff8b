//! The S3 test server (tests/support/s3.rs) works: a real SeaweedFS on loopback takes signed
//! PUTs, GETs and LISTs, fails requests at once while stopped, keeps its objects across a
//! restart on the same ports, and several run side by side.

mod support;

use std::time::{Duration, Instant};
use support::s3::SeaweedFs;

#[test]
fn put_get_list_survive_a_restart() {
    let mut s3 = SeaweedFs::start();
    assert!(
        s3.endpoint.starts_with("http://127.0.0.1:"),
        "{}",
        s3.endpoint
    );
    assert_eq!(s3.list(""), Vec::<String>::new(), "a fresh bucket is empty");

    let body: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    s3.put("runs/a/bundle.tar.gz", &body);
    s3.put("runs/a/report.json", b"{\"ok\":true}");
    s3.put("runs/b/bundle.tar.gz", b"other");
    assert_eq!(s3.get("runs/a/bundle.tar.gz").as_deref(), Some(&body[..]));
    assert_eq!(s3.get("runs/missing"), None);
    assert_eq!(s3.try_get("runs/missing"), Ok(None));
    assert_eq!(
        s3.list("runs/a"),
        ["runs/a/bundle.tar.gz", "runs/a/report.json"]
    );
    assert_eq!(s3.list("").len(), 3);

    // Overwrite (how a test tampers with an archive).
    s3.put("runs/b/bundle.tar.gz", b"tampered");
    assert_eq!(
        s3.get("runs/b/bundle.tar.gz").as_deref(),
        Some(&b"tampered"[..])
    );

    s3.stop();
    let t = Instant::now();
    assert_eq!(s3.get("runs/a/report.json"), None);
    let err = s3.try_get("runs/a/report.json").unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a stopped server must fail requests at once, took {:?}: {err}",
        t.elapsed()
    );

    let endpoint = s3.endpoint.clone();
    s3.restart();
    assert_eq!(s3.endpoint, endpoint, "same port after a restart");
    assert_eq!(s3.get("runs/a/bundle.tar.gz").as_deref(), Some(&body[..]));
    assert_eq!(
        s3.get("runs/b/bundle.tar.gz").as_deref(),
        Some(&b"tampered"[..])
    );
    assert_eq!(s3.list("").len(), 3, "{:?}", s3.list(""));
}

#[test]
fn two_servers_run_side_by_side() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(SeaweedFs::start);
        let b = s.spawn(SeaweedFs::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.endpoint, b.endpoint);
    a.put("k", b"from a");
    b.put("k", b"from b");
    assert_eq!(a.get("k").as_deref(), Some(&b"from a"[..]));
    assert_eq!(b.get("k").as_deref(), Some(&b"from b"[..]));
    // Each server's credentials are its own.
    assert_ne!(a.access_key, b.access_key);
}
