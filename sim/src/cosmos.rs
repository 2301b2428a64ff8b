//! A CometBFT node: `GET /status`, `GET /net_info`, `GET /health`, `GET /commit`,
//! `GET /validators` (and the same as JSON-RPC POST calls) on `:26657`, Prometheus text on
//! `:26660/metrics`, and the two Cosmos SDK REST queries of validator duty
//! (`/cosmos/slashing/v1beta1/signing_infos/{valcons}`,
//! `/cosmos/staking/v1beta1/validators/{valoper}`) on the same port. The shapes follow
//! CometBFT 0.38 / 1.0 and Cosmos SDK 0.50.

use std::fmt::Write;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::duty::{
    self, Cosmos, CosmosState, DOWNTIME_JAIL_SECONDS, HeightError, SIGNED_BLOCKS_WINDOW,
    UNBONDING_SECONDS, VOTING_POWER,
};
use super::ids;
use super::jsonrpc::RpcError;
use super::view::{self, View};

/// Bech32 prefix of operator addresses.
pub const VALOPER_PREFIX: &str = "cosmosvaloper";
/// Bech32 prefix of consensus addresses.
pub const VALCONS_PREFIX: &str = "cosmosvalcons";
/// Salt of commit signatures.
const SIG_SALT: u64 = 0x5167_0000_0000_0003;
/// SHA-256 of nothing: CometBFT's hash of empty data, results and evidence.
const EMPTY_HASH: &str = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
/// The time CometBFT writes for an absent signature.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// The time Cosmos SDK writes for "never" (`jailed_until`, `unbonding_time`).
const UNIX_EPOCH: &str = "1970-01-01T00:00:00Z";

/// Chain id (`node_info.network`, the `chain_id` metric label).
pub const NETWORK: &str = "simnet-1";
/// CometBFT version (`node_info.version`).
pub const VERSION: &str = "0.38.12";
/// Salt of this chain's block hashes.
const SALT: u64 = 0xc05e_0000_0000_0003;
/// The P2P channels a 0.38 node advertises.
const CHANNELS: &str = "40202122233038606100";

/// Upper-case hex, as CometBFT writes hashes and addresses.
fn upper_hex(bytes: &[u8]) -> String {
    ids::hex(bytes).to_ascii_uppercase()
}

/// The node id: 20 bytes of hex, derived from the node key.
fn node_id(seed: u64) -> String {
    ids::hex(&ids::bytes(seed ^ 0x1d, 20))
}

/// The `node_info` object shared by `/status` and the peers of `/net_info`.
fn node_info(id: &str, moniker: &str, listen_addr: &str) -> Value {
    json!({
        "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
        "id": id,
        "listen_addr": listen_addr,
        "network": NETWORK,
        "version": VERSION,
        "channels": CHANNELS,
        "moniker": moniker,
        "other": {"tx_index": "on", "rpc_address": "tcp://0.0.0.0:26657"},
    })
}

/// The `result` of `/status`.
pub fn status(v: &View<'_>) -> Value {
    let f = &v.facts;
    let block = i128::try_from(v.params.block).unwrap_or(0);
    let earliest = v.params.base.saturating_sub(1);
    let earliest_at = -(i128::from(earliest) * block);
    let seed = v.seed();
    json!({
        "node_info": node_info(&node_id(seed), &v.node.name, "tcp://0.0.0.0:26656"),
        "sync_info": {
            "latest_block_hash": upper_hex(&ids::block_hash(SALT, f.best)),
            "latest_app_hash": upper_hex(&ids::digest(SALT, f.best, 4)),
            "latest_block_height": f.best.to_string(),
            "latest_block_time": v.wall(f.best_at).to_string(),
            "earliest_block_hash": upper_hex(&ids::block_hash(SALT, 1)),
            "earliest_app_hash": upper_hex(&ids::digest(SALT, 1, 4)),
            "earliest_block_height": "1",
            "earliest_block_time": v.wall(earliest_at).to_string(),
            "catching_up": f.syncing,
        },
        "validator_info": {
            "address": validator_address(seed),
            "pub_key": {
                "type": "tendermint/PubKeyEd25519",
                "value": validator_pub_key(seed),
            },
            // A jailed validator is out of the set: no power.
            "voting_power": if v.duty.jailed { "0".to_string() } else { VOTING_POWER.to_string() },
        },
    })
}

/// The consensus address of the node with `seed`: 20 bytes.
pub fn validator_address_bytes(seed: u64) -> Vec<u8> {
    ids::bytes(seed ^ 0xad, 20)
}

fn validator_address(seed: u64) -> String {
    upper_hex(&validator_address_bytes(seed))
}

/// The Ed25519 consensus public key of the node with `seed`, base64.
pub fn validator_pub_key(seed: u64) -> String {
    ids::base64(&ids::bytes(seed ^ 0x9b, 32))
}

/// The operator account of the node with `seed`: 20 bytes.
pub fn operator_bytes(seed: u64) -> Vec<u8> {
    ids::bytes(seed ^ 0x0e, 20)
}

/// Peers of `/net_info`, rendered once at start so that answering costs string copies,
/// not JSON serialisation: a 0.38 node sends about 1.5 KiB per peer.
#[derive(Debug, Clone, Default)]
pub struct PeerPool {
    peers: Vec<String>,
}

impl PeerPool {
    /// A pool from which every node can take `peers` distinct peers.
    pub fn new(peers: u32) -> PeerPool {
        // A few spare entries, so neighbouring nodes list different peer sets.
        let size = peers as usize + usize::from(peers > 0) * 8;
        let peers = (0..size).map(|i| render_peer(i as u64)).collect();
        PeerPool { peers }
    }

    /// The `result` of `/net_info` for `v`, as JSON text.
    pub fn net_info(&self, v: &View<'_>) -> String {
        let n = (v.facts.peers as usize).min(self.peers.len());
        let mut s = String::with_capacity(160 + n * 1600);
        let _ = write!(
            s,
            "{{\"listening\":true,\"listeners\":[\"Listener(@tcp://{ip}:26656)\"],\"n_peers\":\"{n}\",\"peers\":[",
            ip = v.node.ip
        );
        let start = if self.peers.is_empty() {
            0
        } else {
            v.node.index % self.peers.len()
        };
        for k in 0..n {
            if k > 0 {
                s.push(',');
            }
            s.push_str(&self.peers[(start + k) % self.peers.len()]);
        }
        s.push_str("]}");
        s
    }
}

fn render_peer(i: u64) -> String {
    let seed = i ^ 0x7ee7_0000;
    let ip = format!(
        "10.{}.{}.{}",
        (i >> 16) & 255,
        (i >> 8) & 255,
        (i & 255).max(1)
    );
    let monitor = |bytes: u64| {
        json!({
            "Active": true,
            "Start": "2024-11-05T09:12:41.52Z",
            "Duration": "3350640000000",
            "Idle": "1820000000",
            "Bytes": bytes.to_string(),
            "Samples": "1473",
            "InstRate": "0",
            "CurRate": "1823",
            "AvgRate": "10918",
            "PeakRate": "106300",
            "BytesRem": "0",
            "TimeRem": "0",
            "Progress": 0,
        })
    };
    let channels: Vec<Value> = [
        (48, 1, 5),
        (64, 1000, 10),
        (32, 100, 5),
        (33, 100, 10),
        (34, 100, 5),
        (35, 2, 1),
        (56, 1, 5),
        (0, 10, 1),
    ]
    .iter()
    .map(|(id, cap, prio)| {
        json!({
            "ID": id,
            "SendQueueCapacity": cap.to_string(),
            "SendQueueSize": "0",
            "Priority": prio.to_string(),
            "RecentlySent": "0",
        })
    })
    .collect();
    json!({
        "node_info": node_info(
            &node_id(seed),
            &format!("peer-{i}"),
            &format!("tcp://{ip}:26656"),
        ),
        "is_outbound": !i.is_multiple_of(3),
        "connection_status": {
            "Duration": "3350648332604",
            "SendMonitor": monitor(209_809 + i * 17),
            "RecvMonitor": monitor(222_732 + i * 13),
            "Channels": channels,
        },
        "remote_ip": ip,
    })
    .to_string()
}

/// A CometBFT reply envelope around a result, with the id of a URI (GET) request.
pub fn envelope(result: &str) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":-1,\"result\":{result}}}")
}

/// A CometBFT error reply to a URI (GET) request: `Internal error` with the reason in
/// `data`, as CometBFT answers a height it does not have (with HTTP 500).
pub fn error_envelope(code: i64, message: &str, data: &str) -> String {
    json!({"jsonrpc": "2.0", "id": -1, "error": {"code": code, "message": message, "data": data}})
        .to_string()
}

/// The `Internal error` of a height or page CometBFT cannot serve.
pub fn internal(e: &HeightError) -> RpcError {
    RpcError::new(-32603, "Internal error").with_data(e.0.clone())
}

/// The closing part of a `/commit` reply after [`render_commit`]: the latest block's
/// commit is the node's "seen" commit, not yet canonical.
pub fn commit_tail(canonical: bool) -> &'static [u8] {
    if canonical { b"true}}" } else { b"false}}" }
}

/// Runs one JSON-RPC method (POST to `/`).
pub fn call(
    v: &View<'_>,
    pool: &PeerPool,
    chain: Option<&Cosmos>,
    method: &str,
    params: &Value,
) -> Result<Value, RpcError> {
    match (method, chain) {
        ("status", _) => Ok(status(v)),
        ("net_info", _) => serde_json::from_str(&pool.net_info(v))
            .map_err(|e| RpcError::new(-32603, format!("Internal error: {e}"))),
        ("health", _) => Ok(json!({})),
        ("commit", Some(chain)) => {
            let h = int_param(params, "height", 0)?;
            let h = duty::check_height(h.map(|h| h.max(0) as u64), v.facts.best)
                .map_err(|e| internal(&e))?;
            let head = chain.commit(h, |st| render_commit(chain, st, h, v.start_wall));
            let doc: Value =
                serde_json::from_slice(&[&head[..], commit_tail(h < v.facts.best)].concat())
                    .map_err(|e| RpcError::new(-32603, format!("Internal error: {e}")))?;
            Ok(doc["result"].clone())
        }
        ("validators", Some(chain)) => {
            let h = int_param(params, "height", 0)?;
            let page = int_param(params, "page", 1)?;
            let per_page = int_param(params, "per_page", 2)?;
            let h = duty::check_height(h.map(|h| h.max(0) as u64), v.facts.best)
                .map_err(|e| internal(&e))?;
            let text = render_validators(chain, &chain.state(), h, page, per_page)
                .map_err(|e| internal(&e))?;
            serde_json::from_str(&text)
                .map_err(|e| RpcError::new(-32603, format!("Internal error: {e}")))
        }
        _ => Err(RpcError::method_not_found()),
    }
}

/// An integer parameter of a CometBFT call, by name (object) or position (array): a JSON
/// number or a decimal string, as CometBFT takes 64-bit integers.
fn int_param(params: &Value, name: &str, index: usize) -> Result<Option<i64>, RpcError> {
    let v = match params {
        Value::Object(m) => m.get(name),
        Value::Array(a) => a.get(index),
        _ => None,
    };
    let parsed = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    parsed.map(Some).ok_or_else(|| {
        RpcError::new(-32602, "Invalid params").with_data(format!(
            "error converting json params to arguments: {name}: {} is not a 64-bit integer",
            v.map(Value::to_string).unwrap_or_default()
        ))
    })
}

/// An integer of a URI query (`height=5` or `height="5"`), or the CometBFT error for it.
pub fn query_int(query: Option<&str>, name: &str) -> Result<Option<i64>, String> {
    let Some(raw) = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then_some(v)
    }) else {
        return Ok(None);
    };
    let v = raw
        .trim_matches('"')
        .trim_start_matches("%22")
        .trim_end_matches("%22");
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        format!(
            "error converting http params to arguments: invalid 64-bit integer encoding \"{v}\", expected string"
        )
    })
}

/// When (in `e` time) the network reached block `h`: a block's header time.
fn block_e(chain: &Cosmos, h: u64) -> i128 {
    let block = i128::try_from(chain.params.block).unwrap_or(i128::MAX);
    (i128::from(h) - i128::from(chain.params.base) - 1).saturating_mul(block)
}

/// The reply to `/commit?height=h` up to its `canonical` value (see [`commit_tail`]): the
/// header of block `h` and one signature per member of the validator set, in set order;
/// an absent validator's signature has `block_id_flag` 1 and no address, as CometBFT
/// writes it. Renders every validator: called once per block (then cached).
pub fn render_commit(chain: &Cosmos, st: &CosmosState, h: u64, start_wall: Timestamp) -> String {
    let set = st.set_at(h);
    let n = set.len();
    let signs = |m: usize| st.hist[m].at(h).signs();
    let proposer = if n == 0 {
        ""
    } else {
        let first = (h % n as u64) as usize;
        let m = (0..n)
            .map(|k| set[(first + k) % n])
            .find(|m| signs(*m))
            .unwrap_or(set[first]);
        chain.vals[m].address.as_str()
    };
    let t = block_e(chain, h);
    let half = i128::try_from(chain.params.block / 2).unwrap_or(0);
    let hash = |height: u64| upper_hex(&ids::block_hash(SALT, height));
    let digest = |height: u64, purpose: u64| upper_hex(&ids::digest(SALT, height, purpose));
    let mut s = String::with_capacity(1500 + n * 200);
    let _ = write!(
        s,
        "{{\"jsonrpc\":\"2.0\",\"id\":-1,\"result\":{{\"signed_header\":{{\"header\":{{\
         \"version\":{{\"block\":\"11\",\"app\":\"0\"}},\"chain_id\":\"{NETWORK}\",\"height\":\"{h}\",\
         \"time\":\"{time}\",\"last_block_id\":{{\"hash\":\"{prev}\",\"parts\":{{\"total\":1,\"hash\":\"{prev_parts}\"}}}},\
         \"last_commit_hash\":\"{last_commit}\",\"data_hash\":\"{EMPTY_HASH}\",\
         \"validators_hash\":\"{vals}\",\"next_validators_hash\":\"{next_vals}\",\
         \"consensus_hash\":\"{consensus}\",\"app_hash\":\"{app}\",\
         \"last_results_hash\":\"{EMPTY_HASH}\",\"evidence_hash\":\"{EMPTY_HASH}\",\
         \"proposer_address\":\"{proposer}\"}},\
         \"commit\":{{\"height\":\"{h}\",\"round\":0,\"block_id\":{{\"hash\":\"{this}\",\
         \"parts\":{{\"total\":1,\"hash\":\"{parts}\"}}}},\"signatures\":[",
        time = view::wall(start_wall, t),
        prev = hash(h.saturating_sub(1)),
        prev_parts = digest(h.saturating_sub(1), 6),
        last_commit = digest(h, 7),
        vals = digest(st.set_since(h), 8),
        next_vals = digest(st.set_since(h + 1), 8),
        consensus = digest(0, 9),
        app = digest(h, 4),
        this = hash(h),
        parts = digest(h, 6),
    );
    for (k, &m) in set.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        if signs(m) {
            // Precommits arrive about half a block after the block, a little apart.
            let at = view::wall(start_wall, t + half + (m as i128 % 1000) * 1_000_000);
            let sig = ids::base64(&ids::bytes(
                SIG_SALT ^ ids::mix64(h) ^ (m as u64).rotate_left(32),
                64,
            ));
            let _ = write!(
                s,
                "{{\"block_id_flag\":2,\"validator_address\":\"{}\",\"timestamp\":\"{at}\",\"signature\":\"{sig}\"}}",
                chain.vals[m].address
            );
        } else {
            let _ = write!(
                s,
                "{{\"block_id_flag\":1,\"validator_address\":\"\",\"timestamp\":\"{ZERO_TIME}\",\"signature\":null}}"
            );
        }
    }
    s.push_str("]}},\"canonical\":");
    s
}

/// The `result` of `/validators?height=h&page=P&per_page=N` as JSON text: the set at `h`,
/// paged as CometBFT pages it (30 a page unless asked, at most 100).
pub fn render_validators(
    chain: &Cosmos,
    st: &CosmosState,
    h: u64,
    page: Option<i64>,
    per_page: Option<i64>,
) -> Result<String, HeightError> {
    let set = st.set_at(h);
    let per = match per_page {
        Some(p) if p >= 1 => p.min(100) as usize,
        _ => 30,
    };
    let total = set.len();
    let pages = total.saturating_sub(1) / per + 1;
    let page = page.unwrap_or(1);
    if page < 1 || page as u64 > pages as u64 {
        return Err(HeightError(format!(
            "page should be within [1, {pages}] range, given {page}"
        )));
    }
    let skip = (page as usize - 1) * per;
    let items = &set[skip.min(total)..(skip + per).min(total)];
    let mut s = String::with_capacity(100 + items.len() * 200);
    let _ = write!(s, "{{\"block_height\":\"{h}\",\"validators\":[");
    for (k, m) in items.iter().enumerate() {
        if k > 0 {
            s.push(',');
        }
        s.push_str(&chain.vals[*m].entry);
    }
    let _ = write!(s, "],\"count\":\"{}\",\"total\":\"{total}\"}}", items.len());
    Ok(s)
}

/// A gRPC-gateway error of the Cosmos SDK REST API: its HTTP status and body.
pub fn rest_error(code: u16, message: &str) -> (u16, String) {
    let http = match code {
        3 => 400,
        5 => 404,
        _ => 500,
    };
    (
        http,
        json!({"code": code, "message": message, "details": []}).to_string(),
    )
}

/// Finds the validator of a bech32 address with `prefix`, or the REST error for it.
fn lookup(
    addr: &str,
    prefix: &str,
    find: impl Fn(&str) -> Option<usize>,
    not_found: impl Fn(&str) -> String,
) -> Result<usize, (u16, String)> {
    if let Some(r) = find(addr) {
        return Ok(r);
    }
    match ids::bech32_decode(addr) {
        Err(e) => Err(rest_error(3, &e)),
        Ok((hrp, _)) if hrp != prefix => Err(rest_error(
            3,
            &format!("invalid Bech32 prefix; expected {prefix}, got {hrp}"),
        )),
        Ok(_) => Err(rest_error(5, &not_found(addr))),
    }
}

/// `GET /cosmos/slashing/v1beta1/signing_infos/{valcons}` as of block `best` (Cosmos SDK
/// 0.50): `jailed_until` is the jailing time plus `downtime_jail_duration` (and stays after
/// an unjail, as in the SDK), `missed_blocks_counter` counts the absent blocks of the
/// signing window since `start_height` (reset while jailed).
pub fn signing_info(
    chain: &Cosmos,
    valcons: &str,
    best: u64,
    start_wall: Timestamp,
) -> Result<Value, (u16, String)> {
    let r = lookup(
        valcons,
        VALCONS_PREFIX,
        |a| chain.by_valcons(a),
        |a| format!("SigningInfo not found for validator {a}: key not found"),
    )?;
    let st = chain.state();
    let hist = &st.hist[r];
    let start = st.start_heights[r];
    let jailed_until = st.jails[r].map_or_else(
        || UNIX_EPOCH.to_string(),
        |j| {
            let at = view::wall(start_wall, i128::try_from(j.e).unwrap_or(i128::MAX));
            at.checked_add(SignedDuration::from_secs(DOWNTIME_JAIL_SECONDS))
                .unwrap_or(at)
                .to_string()
        },
    );
    let missed = if hist.at(best).jailed {
        0
    } else {
        let lo = best
            .saturating_sub(SIGNED_BLOCKS_WINDOW)
            .max(start.saturating_sub(1));
        hist.count(lo, best, |s| !s.jailed && !s.signs())
    };
    Ok(json!({"val_signing_info": {
        "address": chain.vals[r].valcons,
        "start_height": start.to_string(),
        "index_offset": hist.count(start, best, |s| !s.jailed).to_string(),
        "jailed_until": jailed_until,
        "tombstoned": false,
        "missed_blocks_counter": missed.to_string(),
    }}))
}

/// `GET /cosmos/staking/v1beta1/validators/{valoper}` as of block `best` (Cosmos SDK 0.50):
/// bonded, or jailed and unbonding.
pub fn staking_validator(
    chain: &Cosmos,
    valoper: &str,
    best: u64,
    start_wall: Timestamp,
) -> Result<Value, (u16, String)> {
    let r = lookup(
        valoper,
        VALOPER_PREFIX,
        |a| chain.by_valoper(a),
        |a| format!("validator {a} not found"),
    )?;
    let st = chain.state();
    let jailed = st.hist[r].at(best).jailed;
    let (unbonding_height, unbonding_time) = st.jails[r].map_or_else(
        || ("0".to_string(), UNIX_EPOCH.to_string()),
        |j| {
            let at = view::wall(start_wall, i128::try_from(j.e).unwrap_or(i128::MAX));
            let done = at
                .checked_add(SignedDuration::from_secs(UNBONDING_SECONDS))
                .unwrap_or(at);
            (j.height.to_string(), done.to_string())
        },
    );
    let genesis = view::wall(start_wall, block_e(chain, 1));
    let v = &chain.vals[r];
    let tokens = VOTING_POWER * 1_000_000;
    Ok(json!({"validator": {
        "operator_address": v.valoper,
        "consensus_pubkey": {"@type": "/cosmos.crypto.ed25519.PubKey", "key": v.pub_key},
        "jailed": jailed,
        "status": if jailed { "BOND_STATUS_UNBONDING" } else { "BOND_STATUS_BONDED" },
        "tokens": tokens.to_string(),
        "delegator_shares": format!("{tokens}.000000000000000000"),
        "description": {
            "moniker": v.name,
            "identity": "",
            "website": "",
            "security_contact": "",
            "details": "",
        },
        "unbonding_height": unbonding_height,
        "unbonding_time": unbonding_time,
        "commission": {
            "commission_rates": {
                "rate": "0.100000000000000000",
                "max_rate": "0.200000000000000000",
                "max_change_rate": "0.010000000000000000",
            },
            "update_time": genesis.to_string(),
        },
        "min_self_delegation": "1",
        "unbonding_on_hold_ref_count": "0",
        "unbonding_ids": [],
    }}))
}

/// What the metrics say about the node's own validator and the set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signing {
    /// Blocks its validator missed while the node ran (`stopSigning`), since the node
    /// started; the node's own downtime adds [`crate::model::Facts::missed`].
    pub missed: u64,
    /// The last block its validator signed (0: none since the start).
    pub last_signed: u64,
    /// Whether its validator is in the set.
    pub in_set: bool,
    /// Validators in the set.
    pub validators: u64,
}

impl Signing {
    /// The facts of node `node` at block `best`, counting since block `starting`.
    pub fn of(chain: &Cosmos, node: usize, starting: u64, best: u64) -> Signing {
        let Some(r) = chain.rank(node) else {
            return Signing::default();
        };
        let st = chain.state();
        let hist = &st.hist[r];
        Signing {
            missed: hist.count(starting, best, |s| s.misses_while_up()),
            last_signed: hist.last_where(best, |s| s.signs()).unwrap_or(0),
            in_set: !hist.at(best).jailed,
            validators: st.set_at(best).len() as u64,
        }
    }
}

/// The Prometheus exposition of `:26660/metrics`.
pub fn metrics(v: &View<'_>, sig: &Signing) -> String {
    let f = &v.facts;
    let c = NETWORK;
    let mut s = String::with_capacity(1024);
    let _ = write!(
        s,
        "# HELP cometbft_blocksync_syncing Whether or not a node is block syncing. 1 if yes, 0 if no.\n\
         # TYPE cometbft_blocksync_syncing gauge\n\
         cometbft_blocksync_syncing{{chain_id=\"{c}\"}} {syncing}\n\
         # HELP cometbft_consensus_height Height of the chain.\n\
         # TYPE cometbft_consensus_height gauge\n\
         cometbft_consensus_height{{chain_id=\"{c}\"}} {height}\n\
         # HELP cometbft_consensus_latest_block_height The latest block height.\n\
         # TYPE cometbft_consensus_latest_block_height gauge\n\
         cometbft_consensus_latest_block_height{{chain_id=\"{c}\"}} {latest}\n\
         # HELP cometbft_consensus_validator_missed_blocks Amount of blocks missed per validator.\n\
         # TYPE cometbft_consensus_validator_missed_blocks gauge\n\
         cometbft_consensus_validator_missed_blocks{{chain_id=\"{c}\",validator_address=\"{addr}\"}} {missed}\n\
         # HELP cometbft_consensus_validator_last_signed_height Last signed height for a validator\n\
         # TYPE cometbft_consensus_validator_last_signed_height gauge\n\
         cometbft_consensus_validator_last_signed_height{{chain_id=\"{c}\",validator_address=\"{addr}\"}} {last_signed}\n\
         # HELP cometbft_consensus_validator_power Power of a validator.\n\
         # TYPE cometbft_consensus_validator_power gauge\n\
         cometbft_consensus_validator_power{{chain_id=\"{c}\",validator_address=\"{addr}\"}} {power}\n\
         # HELP cometbft_consensus_validators Number of validators.\n\
         # TYPE cometbft_consensus_validators gauge\n\
         cometbft_consensus_validators{{chain_id=\"{c}\"}} {validators}\n\
         # HELP cometbft_p2p_peers Number of peers.\n\
         # TYPE cometbft_p2p_peers gauge\n\
         cometbft_p2p_peers{{chain_id=\"{c}\"}} {peers}\n",
        syncing = u8::from(f.syncing),
        // The height being decided is one past the last committed block.
        height = f.best + 1,
        latest = f.best,
        addr = validator_address(v.seed()),
        missed = f.missed + sig.missed,
        last_signed = sig.last_signed,
        power = if sig.in_set { VOTING_POWER } else { 0 },
        validators = sig.validators,
        peers = f.peers,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Fault, FaultOptions, NodeState, Params, SimChain};
    use crate::view::with_test_view;
    use std::time::Duration;

    fn with_view<T>(state: &NodeState, f: impl FnOnce(&View<'_>) -> T) -> T {
        with_test_view(
            SimChain::Cosmos,
            5,
            Duration::from_secs(6),
            3,
            60_000_000_000,
            state,
            f,
        )
    }

    #[test]
    fn status_has_the_real_shape() {
        with_view(&NodeState::new(), |v| {
            let doc: Value = serde_json::from_str(&envelope(&status(v).to_string())).unwrap();
            assert_eq!(doc["id"], -1);
            let r = &doc["result"];
            assert_eq!(r["node_info"]["network"], NETWORK);
            assert_eq!(r["node_info"]["moniker"], "sim-5");
            assert_eq!(r["node_info"]["id"].as_str().unwrap().len(), 40);
            let si = &r["sync_info"];
            assert_eq!(si["latest_block_height"], v.facts.best.to_string());
            assert_eq!(si["catching_up"], false);
            let t: jiff::Timestamp = si["latest_block_time"].as_str().unwrap().parse().unwrap();
            assert!(
                t.as_second() <= 1_700_000_060 && t.as_second() > 1_700_000_050,
                "{t}"
            );
            let early: jiff::Timestamp =
                si["earliest_block_time"].as_str().unwrap().parse().unwrap();
            assert!(early < t);
            assert_eq!(si["latest_block_hash"].as_str().unwrap().len(), 64);
            assert_eq!(r["validator_info"]["voting_power"], "10");
            assert_eq!(r["validator_info"]["address"].as_str().unwrap().len(), 40);
            assert_eq!(
                r["validator_info"]["pub_key"]["value"]
                    .as_str()
                    .unwrap()
                    .len(),
                44
            );
        });
    }

    #[test]
    fn rest_queries_find_validators_by_bech32() {
        let chains = [SimChain::Cosmos, SimChain::Cosmos];
        let p = Params::new(SimChain::Cosmos, Duration::from_secs(6), 3, 0);
        let chain = Cosmos::new(&chains, p).unwrap();
        let wall = Timestamp::from_second(1_700_000_000).unwrap();
        let v = chain.validator(1).unwrap().clone();
        let info = signing_info(&chain, &v.valcons, p.base + 10, wall).unwrap();
        assert_eq!(info["val_signing_info"]["address"], v.valcons.as_str());
        assert_eq!(
            info["val_signing_info"]["index_offset"],
            (p.base + 10).to_string()
        );
        let doc = staking_validator(&chain, &v.valoper, p.base, wall).unwrap();
        assert_eq!(
            doc["validator"]["consensus_pubkey"]["key"],
            v.pub_key.as_str()
        );
        // Well-formed but unknown: 404 NotFound; wrong prefix or checksum: 400.
        let unknown = ids::bech32(VALCONS_PREFIX, &[7; 20]);
        let (status, body) = signing_info(&chain, &unknown, p.base, wall).unwrap_err();
        assert_eq!(status, 404);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], 5);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("SigningInfo not found")
        );
        let (status, body) = staking_validator(&chain, &v.valcons, p.base, wall).unwrap_err();
        assert_eq!(status, 400);
        assert!(body.contains("expected cosmosvaloper"), "{body}");
        assert_eq!(
            staking_validator(&chain, "x", p.base, wall).unwrap_err().0,
            400
        );
    }

    #[test]
    fn queries_of_uri_requests() {
        assert_eq!(query_int(Some("height=5&page=2"), "page"), Ok(Some(2)));
        assert_eq!(query_int(Some("height=\"5\""), "height"), Ok(Some(5)));
        assert_eq!(query_int(Some("height=%225%22"), "height"), Ok(Some(5)));
        assert_eq!(query_int(Some("block_height=5"), "height"), Ok(None));
        assert_eq!(query_int(None, "height"), Ok(None));
        assert!(
            query_int(Some("height=x"), "height")
                .unwrap_err()
                .contains("\"x\"")
        );
    }

    #[test]
    fn net_info_lists_the_peers() {
        let pool = PeerPool::new(3);
        with_view(&NodeState::new(), |v| {
            let doc: Value = serde_json::from_str(&envelope(&pool.net_info(v))).unwrap();
            let r = &doc["result"];
            assert_eq!(r["n_peers"], "3");
            let peers = r["peers"].as_array().unwrap();
            assert_eq!(peers.len(), 3);
            assert_eq!(peers[0]["node_info"]["network"], NETWORK);
            assert!(peers[0]["connection_status"]["SendMonitor"]["Bytes"].is_string());
            assert_eq!(
                call(v, &pool, None, "net_info", &json!([])).unwrap()["n_peers"],
                "3"
            );
            assert_eq!(
                call(v, &pool, None, "health", &json!([])).unwrap(),
                json!({})
            );
            assert_eq!(
                call(v, &pool, None, "genesis", &json!([]))
                    .unwrap_err()
                    .code,
                -32601
            );
        });
        let mut state = NodeState::new();
        let p = Params::new(SimChain::Cosmos, Duration::from_secs(6), 3, 5);
        state.apply(Fault::DropPeers, FaultOptions::default(), &p, 0);
        state.apply(Fault::Syncing, FaultOptions::default(), &p, 0);
        with_view(&state, |v| {
            let doc: Value = serde_json::from_str(&pool.net_info(v)).unwrap();
            assert_eq!(doc["n_peers"], "0");
            assert_eq!(doc["peers"], json!([]));
            assert_eq!(status(v)["sync_info"]["catching_up"], true);
            let m = metrics(v, &Signing::default());
            assert!(
                m.contains("cometbft_blocksync_syncing{chain_id=\"simnet-1\"} 1\n"),
                "{m}"
            );
            assert!(m.contains("cometbft_p2p_peers{chain_id=\"simnet-1\"} 0\n"));
            assert!(m.contains(&format!(
                "cometbft_consensus_height{{chain_id=\"simnet-1\"}} {}\n",
                v.facts.best + 1
            )));
        });
        // An empty pool (zero peers configured) is fine too.
        with_view(&NodeState::new(), |v| {
            let doc: Value = serde_json::from_str(&PeerPool::new(0).net_info(v)).unwrap();
            assert_eq!(doc["n_peers"], "0");
        });
    }
}
