//! A TCP proxy between the operator and the API server, to take the API away or slow it
//! down without touching the control plane the other tests share. TLS passes through
//! unchanged (the API server's certificate names 127.0.0.1), so to the operator an outage
//! here is the API server being gone: connections cut, new ones closed at once.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Cut every connection and close new ones at once.
    Down,
    /// Forward each chunk after this delay, in both directions.
    Delay(Duration),
}

struct State {
    mode: Mutex<Mode>,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// A running proxy; stopped (every connection cut) on drop.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Pass),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                if *st.mode.lock().unwrap() == Mode::Down {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut conns = st.conns.lock().unwrap();
                    conns.retain(|c| c.peer_addr().is_ok());
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let st = st.clone();
                    std::thread::spawn(move || pump(from, to, &st));
                }
            }
        });
        Proxy { addr, state }
    }

    /// Changes the mode; `Down` also cuts every open connection.
    pub fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
        if mode == Mode::Down {
            cut_all(&self.state);
        }
    }
}

fn cut_all(state: &State) {
    for c in state.conns.lock().unwrap().drain(..) {
        let _ = c.shutdown(Shutdown::Both);
    }
}

/// Forwards `from` to `to`. A delay is latency, not a throttle: each chunk leaves its delay
/// after it arrived, while later chunks keep arriving (as with a slow etcd behind the API
/// server, where many requests wait at once).
fn pump(mut from: TcpStream, mut to: TcpStream, state: &Arc<State>) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = {
        let (from, state) = (from.try_clone().unwrap(), state.clone());
        std::thread::spawn(move || {
            for (due, chunk) in rx {
                if *state.mode.lock().unwrap() == Mode::Down {
                    break;
                }
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let due = match *state.mode.lock().unwrap() {
            Mode::Down => break,
            Mode::Delay(d) => Instant::now() + d,
            Mode::Pass => Instant::now(),
        };
        if tx.send((due, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
        cut_all(&self.state);
    }
}
