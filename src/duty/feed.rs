//! The block follower of each CometBFT duty RPC: one task per endpoint reads every new
//! block's commit once (`/commit?height=H`) and the validator set when it changes, into a
//! bounded [`Ring`] that every validator read from that endpoint shares. So 1,000
//! validators watched through one sentry cost one read per block, not 1,000.
//!
//! Memory only: after a restart the ring is filled again from the node (up to the widest
//! window asked for, a bounded number of reads per tick).

use super::commits::{self, Ring, Signing};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Longest answer read from a duty RPC.
const MAX_BODY: usize = 4 << 20;
/// Most commits read per tick (catching up after a start or an outage is spread out).
const MAX_READS_PER_TICK: u64 = 50;
/// A feed nobody asked for this long stops.
const IDLE: Duration = Duration::from_secs(300);
/// Validators per `/validators` page.
const PER_PAGE: u64 = 100;
/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a feed knows now.
struct State {
    ring: Ring,
    /// Why the last tick could not read the endpoint (no answer text in it).
    error: Option<String>,
    /// Fastest polling asked for.
    every: Duration,
    used: Instant,
    running: bool,
}

/// One endpoint's follower.
pub struct Feed {
    url: String,
    state: Mutex<State>,
}

/// Every feed of this process, by endpoint.
pub struct Hub {
    client: reqwest::Client,
    feeds: Mutex<HashMap<String, Arc<Feed>>>,
    /// Cosmos SDK standings (jailed, tombstoned, bonded), read in the background.
    standings: Polled<super::cosmos_api::CosmosStanding>,
    /// Beacon validators and their liveness, read in the background.
    beacons: Polled<BeaconDuty>,
    /// Requests sent to duty RPCs (the benchmark's measure of sharing).
    pub requests: Arc<AtomicU64>,
}

/// A beacon validator's duty as last read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeaconDuty {
    /// Its record (status, slashed, balances).
    pub validator: super::beacon::BeaconValidator,
    /// Completed epochs without an attestation, in a row up to the newest read.
    pub missed_in_a_row: u64,
    /// Missed epochs in the window.
    pub missed_in_window: u64,
    /// Epochs read in the window.
    pub window: u64,
    /// The last epoch it attested in.
    pub last_live_epoch: Option<u64>,
}

/// Values read in the background every so often, by key: a reader asks for the last value
/// (never waiting on the network), which also keeps its refresher alive.
struct Polled<T> {
    map: Arc<Mutex<HashMap<String, PolledEntry<T>>>>,
}

struct PolledEntry<T> {
    value: Option<Result<T, String>>,
    used: Instant,
}

impl<T> Default for Polled<T> {
    fn default() -> Self {
        Polled {
            map: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<T: Clone + Send + 'static> Polled<T> {
    /// The last value of `key` (`None` before the first read); starts its refresher, which
    /// runs `read` every `every` until nobody asked for [`IDLE`].
    fn get<F, Fut>(&self, key: &str, every: Duration, read: F) -> Option<Result<T, String>>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, String>> + Send,
    {
        let mut map = self.map.lock().expect("duty polled");
        if let Some(e) = map.get_mut(key) {
            e.used = Instant::now();
            return e.value.clone();
        }
        map.insert(
            key.to_string(),
            PolledEntry {
                value: None,
                used: Instant::now(),
            },
        );
        let (map2, key) = (self.map.clone(), key.to_string());
        tokio::spawn(async move {
            loop {
                let v = read().await;
                {
                    let mut m = map2.lock().expect("duty polled");
                    match m.get_mut(&key) {
                        Some(e) if e.used.elapsed() <= IDLE => e.value = Some(v),
                        _ => {
                            m.remove(&key);
                            return;
                        }
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        None
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(
            crate::egress::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        )
    }
}

impl Hub {
    /// A hub sending through `client`.
    pub fn new(client: reqwest::Client) -> Hub {
        Hub {
            client,
            feeds: Mutex::new(HashMap::new()),
            standings: Polled::default(),
            beacons: Polled::default(),
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// What the blocks read from `rpc` say of `address` (uppercase hex) over `window`
    /// blocks; starts following `rpc` (polling every `every`) if nobody did yet. `Err`: why
    /// the endpoint cannot be read.
    pub fn signing(
        self: &Arc<Self>,
        rpc: &str,
        address: &str,
        window: u64,
        every: Duration,
    ) -> Result<Signing, String> {
        let url = rpc.trim_end_matches('/').to_string();
        let feed = {
            let mut feeds = self.feeds.lock().expect("duty feeds");
            feeds
                .entry(url.clone())
                .or_insert_with(|| {
                    Arc::new(Feed {
                        url: url.clone(),
                        state: Mutex::new(State {
                            ring: Ring::new(window as usize),
                            error: None,
                            every,
                            used: Instant::now(),
                            running: false,
                        }),
                    })
                })
                .clone()
        };
        let start = {
            let mut st = feed.state.lock().expect("duty feed");
            st.ring.widen(window as usize);
            st.every = st.every.min(every).max(Duration::from_millis(500));
            st.used = Instant::now();
            let start = !st.running;
            st.running = true;
            start
        };
        if start {
            let (hub, f) = (self.clone(), feed.clone());
            tokio::spawn(async move { hub.follow(f).await });
        }
        let st = feed.state.lock().expect("duty feed");
        if st.ring.newest().is_none() {
            return match &st.error {
                Some(e) => Err(e.clone()),
                None => Ok(Signing::default()),
            };
        }
        match &st.error {
            // Blocks read earlier are still true, but a dead endpoint is news.
            Some(e) => Err(e.clone()),
            None => Ok(st.ring.signing(address, window)),
        }
    }

    /// The validator's standing on the Cosmos SDK REST API at `api` as last read (every
    /// `every`), `None` before the first read.
    pub fn standing(
        &self,
        api: &str,
        valcons: Option<&str>,
        valoper: Option<&str>,
        every: Duration,
    ) -> Option<Result<super::cosmos_api::CosmosStanding, String>> {
        let key = format!("{api} {valcons:?} {valoper:?}");
        let (client, api) = (self.client.clone(), api.to_string());
        let (valcons, valoper) = (valcons.map(String::from), valoper.map(String::from));
        let requests = self.requests.clone();
        self.standings.get(&key, every, move || {
            let (client, api, valcons, valoper) = (
                client.clone(),
                api.clone(),
                valcons.clone(),
                valoper.clone(),
            );
            requests.fetch_add(2, Ordering::Relaxed);
            async move {
                super::cosmos_api::standing(
                    &client,
                    &api,
                    valcons.as_deref(),
                    valoper.as_deref(),
                    MAX_BODY,
                )
                .await
                .map_err(|e| e.to_string())
            }
        })
    }

    /// Beacon validator `id` on the beacon node at `beacon` as last read (every `every`,
    /// liveness kept for `window` epochs), `None` before the first read.
    pub fn beacon(
        &self,
        beacon: &str,
        id: &str,
        window: u64,
        every: Duration,
    ) -> Option<Result<BeaconDuty, String>> {
        let key = format!("{beacon} {id} {window}");
        let (client, beacon, id) = (self.client.clone(), beacon.to_string(), id.to_string());
        let track = Arc::new(tokio::sync::Mutex::new(super::beacon::LivenessTrack::new(
            window as usize,
        )));
        let requests = self.requests.clone();
        self.beacons.get(&key, every, move || {
            let (client, beacon, id, track) =
                (client.clone(), beacon.clone(), id.clone(), track.clone());
            requests.fetch_add(3, Ordering::Relaxed);
            async move {
                let mut t = track.lock().await;
                let v = super::beacon::read(&client, &beacon, &id, &mut t, MAX_BODY)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(BeaconDuty {
                    validator: v,
                    missed_in_a_row: t.missed_in_a_row(),
                    missed_in_window: t.missed_in_window(window),
                    window: t.recorded_in_window(window),
                    last_live_epoch: t.last_live_epoch(),
                })
            }
        })
    }

    async fn follow(self: Arc<Self>, feed: Arc<Feed>) {
        loop {
            let every = {
                let mut st = feed.state.lock().expect("duty feed");
                if st.used.elapsed() > IDLE {
                    st.running = false;
                    return;
                }
                st.every
            };
            let result = self.tick(&feed).await;
            {
                let mut st = feed.state.lock().expect("duty feed");
                st.error = result.err();
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Reads what is new: the latest height, then each new canonical commit once.
    async fn tick(&self, feed: &Feed) -> Result<(), String> {
        let status = self.get(&format!("{}/status", feed.url)).await?;
        let latest = commits::decode_latest_height(&status).map_err(|e| e.to_string())?;
        // The latest block's commit is not canonical yet: read up to the one before.
        let last = latest.saturating_sub(1);
        let (newest, capacity) = {
            let st = feed.state.lock().expect("duty feed");
            (st.ring.newest(), st.ring_capacity())
        };
        let first = match newest {
            Some(n) => n + 1,
            None => last.saturating_sub(capacity.saturating_sub(1)).max(1),
        };
        // Far behind (an outage): skip to the window's start instead of reading all.
        let first = first.max(last.saturating_sub(capacity.saturating_sub(1)).max(1));
        let end = last.min(first.saturating_add(MAX_READS_PER_TICK - 1));
        for h in first..=end {
            let body = self.get(&format!("{}/commit?height={h}", feed.url)).await?;
            let block = commits::decode_commit(&body).map_err(|e| e.to_string())?;
            let stale = feed
                .state
                .lock()
                .expect("duty feed")
                .ring
                .set_is_stale(&block);
            let every_hundred = h % 100 == 0;
            if stale || every_hundred {
                let set = self.validators(&feed.url, h).await?;
                feed.state
                    .lock()
                    .expect("duty feed")
                    .ring
                    .set_validators(set, h);
            }
            feed.state.lock().expect("duty feed").ring.push(block);
        }
        Ok(())
    }

    async fn validators(&self, url: &str, height: u64) -> Result<Vec<(String, u64)>, String> {
        let mut all = Vec::new();
        for page in 1..=100u64 {
            let body = self
                .get(&format!(
                    "{url}/validators?height={height}&page={page}&per_page={PER_PAGE}"
                ))
                .await?;
            let (set, total) = commits::decode_validators(&body).map_err(|e| e.to_string())?;
            let n = set.len() as u64;
            all.extend(set);
            if n == 0 || all.len() as u64 >= total {
                break;
            }
        }
        Ok(all)
    }

    /// One GET, bounded in time and size; errors say what went wrong, never the answer.
    ///
    /// A GET whose connection failed is sent once more: the first request of a tick goes
    /// out on a kept-alive connection that sat idle for the whole polling interval, and a
    /// server may close it just then (CometBFT closes a connection idle for its read
    /// timeout, 10 s by default: the same as a 10 s probe interval, so the two race). The
    /// request then meets a closed or reset connection; the second try opens a new one.
    /// Without it, that one lost request failed the whole tick and showed every validator
    /// read through this endpoint as Signing=Unknown for an interval, and the blocks it
    /// missed were read in a burst at the next tick.
    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let url =
            reqwest::Url::parse(url).map_err(|_| "the duty RPC URL is not usable".to_string())?;
        match self.get_once(&url).await {
            Err(super::read::DutyReadError::Unreachable(_)) => self.get_once(&url).await,
            r => r,
        }
        .map_err(|e| e.to_string())
    }

    async fn get_once(&self, url: &reqwest::Url) -> Result<Vec<u8>, super::read::DutyReadError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            super::read::get_json_capped(&self.client, url, MAX_BODY),
        )
        .await
        .unwrap_or(Err(super::read::DutyReadError::Timeout))
    }
}

impl State {
    fn ring_capacity(&self) -> u64 {
        self.ring.capacity() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CometBFT-like node on loopback: 4 validators, D never signs; counts requests.
    async fn node(height: Arc<AtomicU64>, hits: Arc<AtomicU64>) -> String {
        use axum::extract::{Query, State as S};
        use axum::routing::get;
        #[derive(serde::Deserialize)]
        struct H {
            height: Option<u64>,
        }
        type St = (Arc<AtomicU64>, Arc<AtomicU64>);
        let app = axum::Router::new()
            .route(
                "/status",
                get(|S((h, n)): S<St>| async move {
                    n.fetch_add(1, Ordering::Relaxed);
                    format!(
                        r#"{{"result":{{"sync_info":{{"latest_block_height":"{}"}}}}}}"#,
                        h.load(Ordering::Relaxed)
                    )
                }),
            )
            .route(
                "/commit",
                get(|S((_, n)): S<St>, Query(q): Query<H>| async move {
                    n.fetch_add(1, Ordering::Relaxed);
                    let h = q.height.unwrap_or(0);
                    format!(
                        r#"{{"result":{{"signed_header":{{"header":{{"height":"{h}"}},"commit":{{"signatures":[
                        {{"block_id_flag":2,"validator_address":"AA"}},{{"block_id_flag":2,"validator_address":"BB"}},
                        {{"block_id_flag":2,"validator_address":"CC"}},{{"block_id_flag":1,"validator_address":"DD"}}]}}}}}}}}"#
                    )
                }),
            )
            .route(
                "/validators",
                get(|S((_, n)): S<St>| async move {
                    n.fetch_add(1, Ordering::Relaxed);
                    r#"{"result":{"validators":[{"address":"AA","voting_power":"1"},{"address":"BB","voting_power":"1"},{"address":"CC","voting_power":"1"},{"address":"DD","voting_power":"1"}],"total":"4"}}"#
                }),
            )
            .with_state((height, hits));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn many_validators_share_one_read_per_block() {
        let height = Arc::new(AtomicU64::new(20));
        let hits = Arc::new(AtomicU64::new(0));
        let url = node(height.clone(), hits.clone()).await;
        let hub = Arc::new(Hub::default());
        let every = Duration::from_millis(500);
        // 200 validators ask, again and again, while 10 blocks come.
        let mut last = Signing::default();
        for round in 0..10 {
            for v in 0..200 {
                let who = if v == 0 { "DD" } else { "AA" };
                let s = hub.signing(&url, who, 10, every).unwrap();
                if v == 0 {
                    last = s;
                }
            }
            height.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(600)).await;
            let _ = round;
        }
        assert!(last.missed_in_a_row >= 5, "{last:?}");
        assert_eq!(last.active, Some(true));
        assert_eq!(
            last.solo_missed, last.missed,
            "the others signed every block"
        );
        // About one commit read per block plus a status poll per tick: far below 200 per block.
        let n = hits.load(Ordering::Relaxed);
        assert!(n < 80, "{n} requests for 10 blocks and 200 validators");
        assert_eq!(hub.requests.load(Ordering::Relaxed), n);
    }

    /// A TCP proxy to `upstream` that takes the first `drop` requests and closes their
    /// connection without an answer (as a server closing an idle kept-alive connection just
    /// as a request arrives); later connections are passed through.
    async fn dropping_proxy(upstream: &str, drop: u64) -> String {
        use tokio::io::AsyncReadExt;
        let upstream = upstream.trim_start_matches("http://").to_string();
        let left = Arc::new(AtomicU64::new(drop));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let (left, upstream) = (left.clone(), upstream.clone());
                tokio::spawn(async move {
                    let dropping = left
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok();
                    if dropping {
                        let mut buf = [0u8; 4096];
                        let _ = c.read(&mut buf).await;
                        return; // closed without an answer
                    }
                    let mut u = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                });
            }
        });
        format!("http://{addr}")
    }

    /// A tick whose first request meets a closed connection still reads its blocks: the
    /// request is sent again (on a new connection) instead of failing the tick, which
    /// showed every validator of the endpoint as Signing=Unknown for a whole interval.
    #[tokio::test]
    async fn a_request_on_a_closed_connection_is_sent_again() {
        let height = Arc::new(AtomicU64::new(12));
        let hits = Arc::new(AtomicU64::new(0));
        let node_url = node(height.clone(), hits.clone()).await;
        let url = dropping_proxy(&node_url, 1).await;
        let hub = Arc::new(Hub::default());
        let feed = Feed {
            url: url.clone(),
            state: Mutex::new(State {
                ring: Ring::new(10),
                error: None,
                every: Duration::from_secs(10),
                used: Instant::now(),
                running: true,
            }),
        };
        hub.tick(&feed)
            .await
            .expect("the dropped /status is asked again");
        let newest = feed.state.lock().unwrap().ring.newest();
        assert_eq!(newest, Some(11), "commits up to latest - 1 are read");
        // The node saw: /status once, /commit for 2..=11 (the window of 10), /validators once.
        assert_eq!(hits.load(Ordering::Relaxed), 1 + 10 + 1);
        // The hub counts the request that was lost too.
        assert_eq!(hub.requests.load(Ordering::Relaxed), 1 + 1 + 10 + 1);
        // A request that fails twice fails the tick.
        let feed2 = Feed {
            url: dropping_proxy(&node_url, 2).await,
            state: Mutex::new(State {
                ring: Ring::new(10),
                error: None,
                every: Duration::from_secs(10),
                used: Instant::now(),
                running: true,
            }),
        };
        let e = hub.tick(&feed2).await.unwrap_err();
        assert!(e.starts_with("the request to http://127.0.0.1:"), "{e}");
    }

    #[tokio::test]
    async fn a_dead_endpoint_is_an_error_not_a_panic() {
        let hub = Arc::new(Hub::default());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        drop(l);
        let _ = hub.signing(&url, "AA", 10, Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let e = hub
            .signing(&url, "AA", 10, Duration::from_millis(500))
            .unwrap_err();
        assert!(e.starts_with("cannot connect to http://127.0.0.1:"), "{e}");
    }
}
