//! Peak RSS growth of archiving and verifying 1 GiB under the allocator of the `vigil`
//! binary (mimalloc, `src/main.rs`): the library's own memory test runs under the system
//! allocator, which hid the growth the archive benchmark saw. Writes 1 GiB, so it is run by
//! hand: `cargo test --release --test archive_memory -- --ignored --nocapture`.

use std::io::Write;
use vigil::archive::{BundleWriter, Store, verify};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes 1 GiB; run by hand"]
async fn archiving_a_gigabyte_under_mimalloc_stays_within_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::filesystem(&dir.path().join("archive")).unwrap();
    let part = dir.path().join("part.bin");
    {
        // 64 MiB of text that gzip cannot shrink much (a cheap xorshift over 64 symbols).
        let mut f = std::io::BufWriter::new(std::fs::File::create(&part).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut line = Vec::with_capacity(101);
        for _ in 0..(64 << 20) / 101 {
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
    let mut w = BundleWriter::start(&store, "gig.tar.gz").unwrap();
    for i in 0..16 {
        w.add_file(&format!("logs/{i}.log"), &part).await.unwrap();
    }
    let written = w.finish().await.unwrap();
    let wrote = start.elapsed();
    verify(&store, "gig.tar.gz", Some(&written.sha256))
        .await
        .unwrap();
    let peak = rss_kib("VmHWM:");
    println!(
        "archived {} MiB into {} MiB in {wrote:?}, verified in {:?}; RSS before {} MiB, peak {} MiB, growth +{} MiB",
        written.files.iter().map(|f| f.size).sum::<u64>() >> 20,
        written.size >> 20,
        start.elapsed() - wrote,
        before >> 10,
        peak >> 10,
        peak.saturating_sub(before) >> 10
    );
    assert!(peak.saturating_sub(before) < 64 << 10);
}
