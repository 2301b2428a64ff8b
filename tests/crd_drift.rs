//! The checked-in CRDs under `crds/` (and the chart's copy) must be exactly what `vigil crd`
//! generates.

#[test]
fn checked_in_crds_match_the_rust_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [root.join("crds"), root.join("charts/vigil/crds")] {
        let mut stale = Vec::new();
        for (file, crd) in vigil::crd::all() {
            let want = vigil::crd::to_yaml(&crd).expect("CRD serializes");
            let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            if want != have {
                stale.push(file);
            }
        }
        assert!(
            stale.is_empty(),
            "{} is out of date for {stale:?}; regenerate with `cargo run -- crd --out-dir crds --out-dir charts/vigil/crds`",
            dir.display()
        );
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(
            files,
            vigil::crd::all().len(),
            "{} holds files `vigil crd` does not generate",
            dir.display()
        );
    }
}
