//! The real CometBFT test network itself (tests/support/cometbft.rs): 4 validators on
//! loopback; a stopped validator is absent from every commit while the chain goes on, and a
//! validator restarted with another key follows the chain as a full node yet stays absent.

mod support;

use std::time::{Duration, Instant};
use support::cometbft::{Testnet, VALIDATORS};

const T: Duration = Duration::from_secs(60);

/// Waits until node `i` has moved `blocks` past `from`.
fn advance(net: &Testnet, i: usize, from: u64, blocks: u64) -> u64 {
    net.wait_height(i, from + blocks, T)
}

#[test]
fn a_stopped_validator_is_absent_and_one_with_a_new_key_follows_as_a_full_node() {
    let mut net = Testnet::start();
    let addrs: Vec<String> = (0..VALIDATORS).map(|i| net.address(i)).collect();
    for (i, a) in addrs.iter().enumerate() {
        assert_eq!(a.len(), 40, "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
            "{a}"
        );
        let status = net.status(i).expect("status");
        assert_eq!(status["validator_info"]["address"], a.as_str());
        // `cometbft testnet` gives every validator a power of 1.
        assert_eq!(status["validator_info"]["voting_power"], "1");
        assert!(net.rpc(i).starts_with("http://127."), "{}", net.rpc(i));
    }
    // Four distinct loopback addresses, and every node sees the other three.
    let ips: std::collections::BTreeSet<_> = (0..VALIDATORS).map(|i| net.ip(i)).collect();
    assert_eq!(ips.len(), VALIDATORS);
    for i in 0..VALIDATORS {
        let peers = support::eventually(T, "three peers", || {
            let n = net.get(i, "/net_info")?["result"]["n_peers"]
                .as_str()?
                .parse::<u64>()
                .ok()?;
            (n == 3).then_some(n)
        });
        assert_eq!(peers, 3);
    }

    // Healthy: a recent commit has every validator's signature.
    let h = net.height(0);
    let flags = support::eventually(T, "a commit signed by all four", || {
        let flags = net.signature_flags(0, h)?;
        flags.values().all(|f| *f == 2).then_some(flags)
    });
    assert_eq!(flags.len(), VALIDATORS);
    let metrics = support::eventually(T, "metrics", || {
        let addr = net.metrics(0).trim_start_matches("http://").to_string();
        let (addr, path) = addr.split_once('/')?;
        let (status, body) = support::simulator::http(addr, "GET", &format!("/{path}"), None)?;
        (status == 200).then_some(body)
    });
    assert!(
        metrics.contains("cometbft_consensus_height"),
        "{}",
        &metrics[..metrics.len().min(2000)]
    );

    // Stop node 3: the chain goes on with 3 of 4, and node 3 is absent from every commit.
    net.stop(3);
    assert!(!net.running(3));
    assert!(net.status(3).is_none(), "a stopped node does not answer");
    let stopped_at = net.height(0);
    let later = advance(&net, 0, stopped_at, 5);
    for height in stopped_at + 2..=later {
        let flags = net
            .signature_flags(0, height)
            .expect("commit and validators");
        assert_eq!(flags[&addrs[3]], 1, "height {height}: {flags:?}");
        for a in &addrs[..3] {
            assert_eq!(flags[a], 2, "height {height}: {flags:?}");
        }
        // CometBFT names no one for an absent signature.
        let commit = net.commit(0, height).unwrap();
        let sigs = commit["signed_header"]["commit"]["signatures"]
            .as_array()
            .unwrap();
        let absent: Vec<_> = sigs.iter().filter(|s| s["block_id_flag"] == 1).collect();
        assert_eq!(absent.len(), 1, "{commit}");
        assert_eq!(absent[0]["validator_address"], "");
        assert_eq!(
            commit["signed_header"]["header"]["height"],
            height.to_string()
        );
    }

    // Restart node 3 with a new key: it catches up and follows node 0 as a full node, while
    // its old validator address stays absent.
    net.restart_with_new_key(3);
    assert_ne!(net.key_address(3), addrs[3]);
    assert_eq!(net.address(3), addrs[3]);
    let start = Instant::now();
    loop {
        let (h0, h3) = (net.height(0), net.height(3));
        // Block sync reaches the head before the node switches to consensus and stops
        // reporting catching_up: wait for both.
        let caught_up = net
            .status(3)
            .is_some_and(|s| s["sync_info"]["catching_up"] == false);
        if h3 + 2 >= h0 && h3 > later && caught_up {
            break;
        }
        assert!(
            start.elapsed() < T,
            "node 3 did not catch up: {h3} vs {h0}\n{}",
            net.log_tails()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = net.status(3).unwrap();
    assert_eq!(status["sync_info"]["catching_up"], false);
    assert_eq!(status["validator_info"]["address"], net.key_address(3));
    assert_eq!(status["validator_info"]["voting_power"], "0");
    let from = net.height(3);
    advance(&net, 3, from, 3);
    for height in from..from + 3 {
        // Read through the restarted node itself, and through node 0.
        for reader in [3, 0] {
            let flags = net.signature_flags(reader, height).expect("commit");
            assert_eq!(
                flags[&addrs[3]], 1,
                "height {height} via {reader}: {flags:?}"
            );
            assert!(!flags.contains_key(&net.key_address(3)));
        }
    }
    // Its height keeps following node 0.
    let h0 = net.height(0);
    assert!(net.wait_height(3, h0, T) >= h0);

    // Old heights are served; a height beyond the tip is an error.
    assert!(net.commit(0, 1).is_some());
    let far = net.height(0) + 1000;
    assert!(net.commit(0, far).is_none());
}

#[test]
fn two_testnets_in_one_process_do_not_collide() {
    let a = Testnet::start();
    let b = Testnet::start();
    let ips_a: Vec<_> = (0..VALIDATORS).map(|i| a.ip(i)).collect();
    let ips_b: Vec<_> = (0..VALIDATORS).map(|i| b.ip(i)).collect();
    assert!(ips_a.iter().all(|ip| !ips_b.contains(ip)));
    // Two separate chains: distinct validators, each node with only its own 3 peers.
    assert_ne!(a.address(0), b.address(0));
    for net in [&a, &b] {
        let h = net.height(0);
        net.wait_height(0, h + 2, T);
        let n = net.get(0, "/net_info").unwrap()["result"]["n_peers"].clone();
        assert_eq!(n, "3");
    }
}
