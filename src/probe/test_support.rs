//! Test helpers: the real payloads captured from nodes and APIs live outside the repository
//! (`../shared/fixtures/real-payloads`, or `$VIGIL_FIXTURES`); tests read them from there.

use std::path::PathBuf;

/// The directory of the captured payloads.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("VIGIL_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real-payloads"),
    }
}

/// One fixture's bytes.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// One fixture as text.
pub fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture_bytes(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// One fixture as JSON.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture_bytes(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}
