//! Peak RSS growth of archiving and verifying under the allocator of the `vigil` binary
//! (mimalloc, `src/main.rs`), with the blocking pool kept busy the way the operator's probes
//! keep it (DNS lookups and file writes run there): the library's own memory test runs under
//! the system allocator on a quiet runtime, which hid the growth the archive benchmark saw.
//!
//! The 1 GiB case writes 1 GiB, so it is run by hand:
//! `cargo test --release --test archive_memory -- --ignored --nocapture`.

use std::io::Write;
use std::time::Duration;
use vigil::archive::{BundleWriter, Store, verify};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Archives and verifies 100 files of `total_mib / 100` MiB each (one step's log each, as in
/// the benchmark) while 20 other blocking tasks run beside every append, and returns the
/// growth of peak RSS in MiB.
async fn archive_beside_a_busy_pool(total_mib: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::filesystem(&dir.path().join("archive")).unwrap();
    let part = dir.path().join("part.bin");
    {
        // Text that gzip cannot shrink much (a cheap xorshift over 64 symbols).
        let mut f = std::io::BufWriter::new(std::fs::File::create(&part).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut line = Vec::with_capacity(101);
        for _ in 0..(total_mib << 20) / 100 / 101 {
            line.clear();
            for _ in 0..100 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                line.push(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                        [(x % 64) as usize],
                );
            }
            line.push(b'\n');
            f.write_all(&line).unwrap();
        }
    }
    let before = rss_kib("VmRSS:");
    let start = std::time::Instant::now();
    let mut w = BundleWriter::start(&store, "run.tar.gz").unwrap();
    for i in 0..100 {
        let noise: Vec<_> = (0..20)
            .map(|_| tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(30))))
            .collect();
        w.add_file(&format!("logs/{i}.log"), &part).await.unwrap();
        for n in noise {
            n.await.unwrap();
        }
    }
    let written = w.finish().await.unwrap();
    let wrote = start.elapsed();
    verify(&store, "run.tar.gz", Some(&written.sha256))
        .await
        .unwrap();
    let peak = rss_kib("VmHWM:");
    let growth = peak.saturating_sub(before) >> 10;
    println!(
        "archived {} MiB into {} MiB in {wrote:?}, verified in {:?}; RSS before {} MiB, peak {} MiB, growth +{growth} MiB",
        written.files.iter().map(|f| f.size).sum::<u64>() >> 20,
        written.size >> 20,
        start.elapsed() - wrote,
        before >> 10,
        peak >> 10,
    );
    growth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 1 GiB; run by hand"]
async fn archiving_a_gigabyte_under_mimalloc_stays_within_64_mib() {
    let growth = archive_beside_a_busy_pool(1000).await;
    assert!(growth < 64, "+{growth} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_beside_a_busy_blocking_pool_stays_flat() {
    // About +32 MiB (three 8 MiB parts, the channel, verify's buffers); +82 to +111 MiB when
    // the encoder ran on whichever pool thread was free (its chunks stayed resident).
    let growth = archive_beside_a_busy_pool(100).await;
    assert!(growth < 48, "+{growth} MiB");
}
