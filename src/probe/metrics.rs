//! Turning a Prometheus scrape into observation facts, per chain family.
//!
//! Node metric names carry a prefix that forks change (`substrate_`, `polkadot_`,
//! `cometbft_`, `tendermint_`), so a lookup tries, in order: the configured prefix only
//! (when one is set); else the family's well-known prefixes; else any single-word prefix
//! (`kusama_block_height`); else the bare name. The single-word rule keeps
//! `cometbft_consensus_latest_block_height` from passing for a Substrate
//! `*_block_height`.

use reqwest::Url;

use super::http::{self, Ctx};
use super::prom::{self, Sample};
use super::{Observation, ProbeError};

/// The metric names one chain family uses.
#[derive(Debug)]
pub(crate) struct Family {
    pub prefixes: &'static [&'static str],
    best: &'static [Lookup],
    finalized: &'static [Lookup],
    target: &'static [Lookup],
    peers: &'static [Lookup],
    syncing: &'static [Lookup],
    /// `(metric base, label)` holding the node version.
    version: Option<(&'static str, &'static str)>,
    /// Label of the best-height series holding the network / chain id.
    network_label: Option<&'static str>,
    /// Blocks the node authored (validator duty).
    authored: &'static [Lookup],
    /// The node's roles bitmask (4: authority).
    roles: &'static [Lookup],
    /// The last height the node's own validator signed, labelled with its address.
    last_signed: &'static [Lookup],
}

/// A metric base name and an optional required label.
#[derive(Debug)]
struct Lookup {
    base: &'static str,
    label: Option<(&'static str, &'static str)>,
}

const fn l(base: &'static str) -> Lookup {
    Lookup { base, label: None }
}

const fn status(base: &'static str, value: &'static str) -> Lookup {
    Lookup {
        base,
        label: Some(("status", value)),
    }
}

/// Substrate / Polkadot SDK nodes (`:9615/metrics`). `block_height_number` is the name
/// used by 2020-era nodes; `sync_peers` replaces `sub_libp2p_peers_count` on newer ones.
pub(crate) const SUBSTRATE: Family = Family {
    prefixes: &["substrate", "polkadot"],
    best: &[
        status("block_height", "best"),
        status("block_height_number", "best"),
    ],
    finalized: &[
        status("block_height", "finalized"),
        status("block_height_number", "finalized"),
    ],
    target: &[
        status("block_height", "sync_target"),
        status("block_height_number", "sync_target"),
    ],
    peers: &[l("sub_libp2p_peers_count"), l("sync_peers")],
    syncing: &[l("sub_libp2p_is_major_syncing")],
    version: Some(("build_info", "version")),
    network_label: None,
    authored: &[l("proposer_block_constructed_count")],
    roles: &[l("node_roles")],
    last_signed: &[],
};

/// CometBFT / Tendermint (`:26660/metrics`). Committed CometBFT blocks are final, so
/// the latest committed height is also the finalized one.
pub(crate) const COSMOS: Family = Family {
    prefixes: &["cometbft", "tendermint"],
    best: &[l("consensus_latest_block_height")],
    finalized: &[l("consensus_latest_block_height")],
    target: &[],
    peers: &[l("p2p_peers")],
    syncing: &[l("blocksync_syncing"), l("consensus_fast_syncing")],
    version: None,
    network_label: Some("chain_id"),
    authored: &[],
    roles: &[],
    last_signed: &[l("consensus_validator_last_signed_height")],
};

/// Ethereum execution clients exposing the EIP-2159 names.
pub(crate) const ETHEREUM: Family = Family {
    prefixes: &["ethereum"],
    best: &[l("blockchain_height")],
    finalized: &[],
    target: &[l("best_known_block_number")],
    peers: &[l("peer_count")],
    syncing: &[],
    version: None,
    network_label: None,
    authored: &[],
    roles: &[],
    last_signed: &[],
};

/// Finds the first sample for one of `lookups`, honouring the prefix rules above.
fn find<'a>(
    samples: &'a [Sample],
    family: &Family,
    prefix: Option<&str>,
    lookups: &[Lookup],
) -> Option<&'a Sample> {
    lookups.iter().find_map(|lk| {
        let label_ok = |s: &Sample| lk.label.is_none_or(|(k, v)| s.label(k) == Some(v));
        let with_prefix = |p: &str| {
            samples.iter().find(|s| {
                s.name.len() == p.len() + 1 + lk.base.len()
                    && s.name.starts_with(p)
                    && s.name[p.len()..].starts_with('_')
                    && s.name.ends_with(lk.base)
                    && label_ok(s)
            })
        };
        if let Some(p) = prefix {
            let p = p.trim_end_matches('_');
            return if p.is_empty() {
                samples.iter().find(|s| s.name == lk.base && label_ok(s))
            } else {
                with_prefix(p)
            };
        }
        family
            .prefixes
            .iter()
            .find_map(|p| with_prefix(p))
            .or_else(|| {
                samples.iter().find(|s| {
                    s.name
                        .strip_suffix(lk.base)
                        .and_then(|head| head.strip_suffix('_'))
                        .is_some_and(|head| {
                            !head.is_empty() && head.bytes().all(|b| b.is_ascii_alphanumeric())
                        })
                        && label_ok(s)
                })
            })
            .or_else(|| samples.iter().find(|s| s.name == lk.base && label_ok(s)))
    })
}

/// A gauge as a block height or count: finite, non-negative, and within `u64`.
fn as_count(v: f64) -> Option<u64> {
    // 2^64 is exactly representable; anything at or above it does not fit.
    if v.is_finite() && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
        Some(v.round() as u64)
    } else {
        None
    }
}

/// Why a block-height sample's value is not a height (NaN, negative, infinite or past
/// `u64`): said plainly, so the series is not reported as missing.
fn not_a_height(s: &Sample) -> String {
    let what = if s.value.is_nan() {
        "NaN".to_string()
    } else if s.value < 0.0 {
        "negative".to_string()
    } else {
        "too large".to_string()
    };
    format!(
        "`{}` is {what}, not a block height",
        crate::text::printable(&s.name, 100)
    )
}

/// Extracts the facts a family's metrics carry. Absent series leave fields `None`.
pub(crate) fn facts(samples: &[Sample], family: &Family, prefix: Option<&str>) -> Observation {
    let value =
        |lookups: &[Lookup]| find(samples, family, prefix, lookups).and_then(|s| as_count(s.value));
    let best_sample = find(samples, family, prefix, family.best);
    let version = family.version.and_then(|(base, label)| {
        find(samples, family, prefix, &[l(base)])
            .and_then(|s| s.label(label))
            .map(|v| crate::text::printable(v, 200))
            .filter(|v| !v.is_empty())
    });
    Observation {
        best_block: best_sample.and_then(|s| as_count(s.value)),
        finalized_block: value(family.finalized),
        target_block: value(family.target),
        peers: value(family.peers).map(super::jsonrpc::to_u32),
        syncing: find(samples, family, prefix, family.syncing)
            .filter(|s| !s.value.is_nan())
            .map(|s| s.value != 0.0),
        version,
        // A label value is the node's text: cut to printable 200 characters like any.
        network: family
            .network_label
            .and_then(|k| best_sample.and_then(|s| s.label(k)))
            .map(|v| crate::text::printable(v, 200))
            .filter(|v| !v.is_empty()),
        authored: value(family.authored),
        // Substrate's roles bitmask: 1 full, 2 light, 4 authority.
        authority: value(family.roles).map(|r| r & 4 != 0),
        last_signed: find(samples, family, prefix, family.last_signed).and_then(|s| {
            let addr = s.label("validator_address")?;
            let height = as_count(s.value)?;
            (addr.len() <= 64 && addr.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (addr.to_ascii_uppercase(), height))
        }),
        ..Observation::default()
    }
}

/// What one scrape may hold: 15 times the samples of the largest real exposition seen
/// (3,400 lines), and far more of the series Vigil reads than any node has.
pub(crate) const SCRAPE_LIMITS: prom::Limits = prom::Limits {
    max_lines: 50_000,
    max_kept: 1_000,
};
/// A kept sample's memory beyond its text, by estimate.
const SAMPLE_COST: u64 = 128;

/// Whether a metric name can matter to `family`: it ends with one of the base names the
/// family reads. Everything else in a scrape is parsed and dropped at once.
fn relevant(name: &str, family: &Family) -> bool {
    [
        family.best,
        family.finalized,
        family.target,
        family.peers,
        family.syncing,
        family.authored,
        family.roles,
        family.last_signed,
    ]
    .into_iter()
    .flatten()
    .map(|lk| lk.base)
    .chain(family.version.map(|(base, _)| base))
    .any(|base| name.ends_with(base))
}

/// The samples of an exposition that `family` reads, within [`SCRAPE_LIMITS`]. An
/// exposition without a single valid sample is not one.
pub(crate) fn samples_for(text: &str, family: &Family) -> Result<Vec<Sample>, ProbeError> {
    match prom::parse_limited(text, SCRAPE_LIMITS, |name| relevant(name, family)) {
        Ok(p) if p.lines == p.skipped => Err(ProbeError::Malformed(
            "the metrics endpoint returned no Prometheus samples".into(),
        )),
        Ok(p) => Ok(p.samples),
        Err(prom::Overflow::Lines(n)) => Err(ProbeError::Malformed(format!(
            "the metrics endpoint returned more than {n} samples; Vigil reads at most that many from a node's own metrics"
        ))),
        Err(prom::Overflow::Kept(n)) => Err(ProbeError::Malformed(format!(
            "the metrics endpoint returned more than {n} samples of the block height, peer and version series Vigil reads"
        ))),
    }
}

/// Scrapes `raw_url` and extracts the family's facts. A scrape without a block height
/// is an error: the endpoint is not the node's metrics (or the prefix is wrong).
pub(crate) async fn scrape(
    ctx: &Ctx<'_>,
    url: &Url,
    family: &Family,
    prefix: Option<&str>,
) -> Result<Observation, ProbeError> {
    let req = ctx.client.get(url.clone()).header(
        reqwest::header::ACCEPT,
        "text/plain;version=0.0.4;q=0.9,*/*;q=0.1",
    );
    let (status, body) = http::fetch(ctx, req, url).await?;
    http::require_success(status)?;
    let text = http::utf8(&body)?;
    // The kept samples copy at most the body's text, plus their own overhead.
    ctx.reserve(body.len() as u64 + (SCRAPE_LIMITS.max_kept as u64) * SAMPLE_COST)
        .await?;
    let samples = samples_for(text, family)?;
    let obs = facts(&samples, family, prefix);
    if obs.best_block.is_none()
        && let Some(s) = find(&samples, family, prefix, family.best)
    {
        return Err(ProbeError::Malformed(not_a_height(s)));
    }
    if obs.best_block.is_none() {
        let hint = match prefix {
            Some(p) => format!("with the configured prefix `{p}`"),
            None => format!(
                "(tried prefixes {:?} and any single-word prefix)",
                family.prefixes
            ),
        };
        return Err(ProbeError::Malformed(format!(
            "the metrics have no `*_{}` series {hint}",
            family.best.first().map_or("", |lk| lk.base)
        )));
    }
    Ok(obs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::test_support::fixture_text;

    /// (exposition, family, outcome: Ok(kept sample names) or the error's words)
    #[test]
    fn scrape_limits() {
        let flood = "x 1\n".repeat(SCRAPE_LIMITS.max_lines + 1);
        let heights =
            "substrate_block_height{status=\"best\"} 1\n".repeat(SCRAPE_LIMITS.max_kept + 1);
        let many_labels = format!(
            "substrate_block_height{{status=\"best\",{}}} 7\nsubstrate_block_height{{status=\"best\"}} 8\n",
            (0..40)
                .map(|i| format!("l{i}=\"v\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        type Want = Result<Vec<&'static str>, &'static str>;
        let cases: Vec<(&str, &Family, Want)> = vec![
            (&flood, &SUBSTRATE, Err("more than 50000 samples")),
            (
                &heights,
                &SUBSTRATE,
                Err("more than 1000 samples of the block height"),
            ),
            (
                "polkadot_block_height{status=\"best\"} 5\nprocess_cpu_seconds_total 3\nsubstrate_build_info{version=\"1\"} 1\n",
                &SUBSTRATE,
                Ok(vec!["polkadot_block_height", "substrate_build_info"]),
            ),
            (&many_labels, &SUBSTRATE, Ok(vec!["substrate_block_height"])),
            (
                "<html>not metrics</html>\n",
                &COSMOS,
                Err("no Prometheus samples"),
            ),
            ("go_goroutines 12\n", &COSMOS, Ok(vec![])),
        ];
        for (text, family, want) in cases {
            let got = samples_for(text, family);
            match (got, want) {
                (Ok(s), Ok(names)) => assert_eq!(
                    s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
                    names,
                    "{}",
                    &text[..text.len().min(80)]
                ),
                (Err(e), Err(words)) => {
                    assert_eq!(e.class(), "malformed");
                    assert!(e.to_string().contains(words), "{e}");
                }
                (got, want) => panic!("{got:?} != {want:?}"),
            }
        }
        // The sample with 40 labels is skipped, the one after it kept.
        let s = samples_for(&many_labels, &SUBSTRATE).unwrap();
        assert_eq!(s[0].value, 8.0);
    }

    /// (best-height value, message)
    #[test]
    fn heights_that_are_not_heights_say_so() {
        for (v, words) in [
            ("NaN", "is NaN"),
            ("-5", "is negative"),
            ("1e30", "is too large"),
            ("+Inf", "is too large"),
        ] {
            let s = prom::parse(&format!("polkadot_block_height{{status=\"best\"}} {v}\n"));
            assert_eq!(facts(&s, &SUBSTRATE, None).best_block, None, "{v}");
            let msg = not_a_height(&s[0]);
            assert!(msg.contains(words), "{v}: {msg}");
            assert!(msg.contains("not a block height"), "{msg}");
        }
    }

    #[test]
    fn network_labels_are_cut_to_printable_text() {
        let long = "c".repeat(5000);
        let s = prom::parse(&format!(
            "cometbft_consensus_latest_block_height{{chain_id=\"{long}\\n\"}} 9\n"
        ));
        let o = facts(&s, &COSMOS, None);
        assert_eq!(o.best_block, Some(9));
        let net = o.network.unwrap();
        assert!(
            net.chars().count() <= 201,
            "200 and the ellipsis: {}",
            net.len()
        );
        assert!(!net.contains('\n'));
    }

    fn from_fixture(name: &str, family: &Family, prefix: Option<&str>) -> Observation {
        facts(&prom::parse(&fixture_text(name)), family, prefix)
    }

    #[test]
    fn rococo_v1_1_0() {
        let o = from_fixture(
            "substrate_metrics_polkadot_v1.1.0_rococo_local.txt",
            &SUBSTRATE,
            None,
        );
        assert_eq!(o.best_block, Some(13));
        assert_eq!(o.finalized_block, Some(10));
        assert_eq!(o.target_block, Some(13));
        assert_eq!(o.peers, Some(2));
        assert_eq!(o.syncing, Some(false));
        assert_eq!(o.version.as_deref(), Some("1.1.0-9b6e241ab63"));
        // Duty: the blocks it authored, and its authority role (roles bitmask 4).
        assert_eq!((o.authored, o.authority), (Some(5), Some(true)));
    }

    #[test]
    fn chainflip_without_chain_label() {
        let o = from_fixture("substrate_metrics_chainflip_2021.txt", &SUBSTRATE, None);
        assert_eq!(o.best_block, Some(140_434));
        assert_eq!(o.finalized_block, Some(140_431));
        assert_eq!(o.target_block, Some(140_434));
        assert_eq!(o.peers, Some(43));
        assert_eq!(o.syncing, Some(false));
        assert_eq!(
            o.version.as_deref(),
            Some("0.1.0-2b496be2-x86_64-linux-gnu")
        );
        assert_eq!(o.authored, Some(657));
    }

    #[test]
    fn a_hostile_version_label_is_cut_to_printable_text() {
        let long = "9".repeat(5000);
        let text = format!(
            "substrate_build_info{{name=\"n\",version=\"1.0\\n\\u202e{long}\"}} 1\nsubstrate_block_height{{status=\"best\"}} 5\n"
        );
        let o = facts(&prom::parse(&text), &SUBSTRATE, None);
        let v = o.version.unwrap();
        assert!(v.starts_with("1.0"), "{v}");
        assert!(v.chars().count() <= 201 && !v.contains('\n'), "{v}");
    }

    #[test]
    fn cometbft_reports_its_validators_last_signed_height() {
        let o = from_fixture("cometbft_metrics_biyachain_peers.txt", &COSMOS, None);
        assert_eq!(
            o.last_signed,
            Some(("7764F2E6B8CF70E8BF8BE7C8B48595DCE483C6EF".into(), 508_434))
        );
    }

    #[test]
    fn zeitgeist_polkadot_prefix_zero_peers() {
        let f = "substrate_metrics_zeitgeist_v0.2.1_polkadot_prefixed.txt";
        for prefix in [None, Some("polkadot"), Some("polkadot_")] {
            let o = from_fixture(f, &SUBSTRATE, prefix);
            assert_eq!(o.best_block, Some(267_509), "{prefix:?}");
            assert_eq!(o.finalized_block, Some(267_501));
            assert_eq!(o.target_block, None, "this scrape has no sync_target");
            assert_eq!(o.peers, Some(0));
            assert_eq!(o.syncing, Some(false));
            assert_eq!(o.version.as_deref(), Some("0.2.1-a9ff969-x86_64-linux-gnu"));
        }
        // A wrong configured prefix finds nothing rather than guessing.
        let o = from_fixture(f, &SUBSTRATE, Some("substrate"));
        assert_eq!(o.best_block, None);
    }

    #[test]
    fn kusama_v0_7_28_major_syncing_old_names() {
        let o = from_fixture(
            "substrate_metrics_polkadot_v0.7.28_kusama_syncing_prefixed.txt",
            &SUBSTRATE,
            None,
        );
        assert_eq!(o.best_block, Some(1196));
        assert_eq!(o.finalized_block, Some(1024));
        assert_eq!(o.target_block, Some(1_667_996));
        assert_eq!(o.peers, Some(22));
        assert_eq!(o.syncing, Some(true));
        assert_eq!(o.version.as_deref(), Some("0.7.28"));
    }

    #[test]
    fn cosmos_metrics_fixtures() {
        let o = from_fixture("cometbft_metrics_biyachain_peers.txt", &COSMOS, None);
        assert_eq!(o.best_block, Some(508_434));
        assert_eq!(o.finalized_block, Some(508_434));
        assert_eq!(o.peers, Some(5));
        assert_eq!(o.syncing, Some(false));
        assert_eq!(o.network.as_deref(), Some("biyachain-1"));

        let o = from_fixture("cometbft_metrics_injective.txt", &COSMOS, None);
        assert_eq!(o.best_block, Some(343_858));
        assert_eq!(o.peers, None, "no p2p_peers series in this scrape");
        assert_eq!(o.network.as_deref(), Some("injective-666"));

        let o = from_fixture(
            "cometbft_metrics_evmos_tendermint_prefix.txt",
            &COSMOS,
            None,
        );
        assert_eq!(o.best_block, Some(1520));
        assert_eq!(o.network.as_deref(), Some("evmos_9000-1"));
        let o = from_fixture(
            "cometbft_metrics_evmos_tendermint_prefix.txt",
            &COSMOS,
            Some("tendermint"),
        );
        assert_eq!(o.best_block, Some(1520));
    }

    #[test]
    fn substrate_rules_do_not_match_cometbft_names() {
        let o = from_fixture("cometbft_metrics_biyachain_peers.txt", &SUBSTRATE, None);
        assert_eq!(o.best_block, None);
    }

    #[test]
    fn ethereum_eip2159_names() {
        let s = prom::parse(
            "ethereum_blockchain_height 19000000\nethereum_peer_count 25\n\
             ethereum_best_known_block_number 19000010\n",
        );
        let o = facts(&s, &ETHEREUM, None);
        assert_eq!(o.best_block, Some(19_000_000));
        assert_eq!(o.peers, Some(25));
        assert_eq!(o.target_block, Some(19_000_010));
    }

    #[test]
    fn odd_values_are_ignored() {
        let s = prom::parse(
            "substrate_block_height{status=\"best\"} NaN\nsubstrate_block_height{status=\"finalized\"} -1\n\
             substrate_sub_libp2p_peers_count +Inf\nsubstrate_sub_libp2p_is_major_syncing NaN\n",
        );
        let o = facts(&s, &SUBSTRATE, None);
        assert_eq!(o.best_block, None);
        assert_eq!(o.finalized_block, None);
        assert_eq!(o.peers, None);
        assert_eq!(o.syncing, None);
        assert_eq!(as_count(1e30), None);
        assert_eq!(as_count(2.0f64.powi(64)), None);
        assert_eq!(as_count(5e9), Some(5_000_000_000));
    }
}
