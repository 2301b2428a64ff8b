//! The Prometheus text parser of node metric scrapes (`vigil::probe::prom`), on any bytes a
//! metrics endpoint may send, and the facts each chain family reads from the samples. Beyond
//! "never panics": every line is either a sample or counted as skipped, samples with plain
//! names survive `render` and a second parse unchanged (so a parsed value re-validates), and
//! the text a node's metrics put into an observation is one short printable line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil::probe::ProbeKind;
use vigil::probe::fuzzing;
use vigil::probe::prom::{self, Sample};

fuzz_target!(|data: &[u8]| {
    // The probe reads the body as UTF-8 and refuses anything else; lossy text also reaches
    // the parser with U+FFFD in names and label values.
    let text = String::from_utf8_lossy(data);
    let (samples, skipped) = prom::parse_counting(&text);
    let lines = text.split('\n').count();
    assert!(samples.len() + skipped <= lines, "more results than lines");

    for kind in [ProbeKind::Substrate, ProbeKind::Ethereum, ProbeKind::Cosmos] {
        for prefix in [None, Some("")] {
            let obs = fuzzing::metrics_facts(kind, &samples, prefix);
            // Version and network go into status and Events.
            for text in [&obs.version, &obs.network].into_iter().flatten() {
                assert!(
                    text.chars().count() <= 201,
                    "{} chars",
                    text.chars().count()
                );
                assert!(!text.chars().any(char::is_control), "{text:?}");
            }
            if let Some((addr, _)) = &obs.last_signed {
                assert!(addr.len() <= 64);
                assert!(
                    addr.bytes()
                        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
                );
            }
        }
    }

    // Quoted UTF-8 names are not written back quoted by `render`, so only plain names take
    // the round trip.
    let plain: Vec<Sample> = samples
        .into_iter()
        .filter(|s| plain_name(&s.name, true) && s.labels.iter().all(|(k, _)| plain_name(k, false)))
        .collect();
    let again = prom::render(&plain);
    let (reparsed, skipped) = prom::parse_counting(&again);
    assert_eq!(skipped, 0, "render wrote a line the parser skips:\n{again}");
    assert_eq!(reparsed.len(), plain.len());
    for (a, b) in reparsed.iter().zip(&plain) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.timestamp, b.timestamp);
        assert!(same_value(a.value, b.value), "{} != {}", a.value, b.value);
    }
});

/// The metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or label name (no `:`) grammar.
fn plain_name(s: &str, metric: bool) -> bool {
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (metric && c == ':');
    let ok_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':');
    let mut chars = s.chars();
    chars.next().is_some_and(ok_first) && chars.all(ok_rest)
}

fn same_value(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}
