//! Response bodies: whole ones, and the multi-MiB `oversized` ones streamed from one
//! shared chunk so that a request costs no memory beyond hyper's write buffer.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Size of one streamed chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks in an oversized body: 8 MiB, well above any sane probe cap (Vigil's is 1 MiB).
const OVERSIZED_CHUNKS: usize = 128;

/// A response body.
#[derive(Debug)]
pub enum SimBody {
    /// One piece, sent at once (`None` once sent).
    Full(Option<Bytes>),
    /// `head`, then `left` copies of `chunk`, then `tail`.
    Repeat {
        /// Sent first.
        head: Option<Bytes>,
        /// Sent `left` more times; clones share one buffer.
        chunk: Bytes,
        /// Chunks still to send.
        left: usize,
        /// Sent last.
        tail: Option<Bytes>,
    },
}

impl SimBody {
    /// A body of `b`.
    pub fn full(b: impl Into<Bytes>) -> SimBody {
        SimBody::Full(Some(b.into()))
    }

    /// An empty body.
    pub fn empty() -> SimBody {
        SimBody::Full(None)
    }

    /// `head` then `tail`, without copying either (a cached body and its last bytes).
    pub fn pair(head: Bytes, tail: &'static [u8]) -> SimBody {
        SimBody::Repeat {
            head: Some(head),
            chunk: Bytes::new(),
            left: 0,
            tail: Some(Bytes::from_static(tail)),
        }
    }

    /// A body of several MiB. JSON endpoints get one valid but huge JSON-RPC reply (a
    /// string of `x`), metrics endpoints a huge run of comment lines; `non_utf8` fills
    /// it with bytes that are not UTF-8 instead.
    pub fn oversized(json: bool, non_utf8: bool) -> SimBody {
        static TEXT: OnceLock<Bytes> = OnceLock::new();
        static LINES: OnceLock<Bytes> = OnceLock::new();
        static BINARY: OnceLock<Bytes> = OnceLock::new();
        let chunk = if non_utf8 {
            BINARY.get_or_init(|| Bytes::from(vec![0xffu8; CHUNK]))
        } else if json {
            TEXT.get_or_init(|| Bytes::from(vec![b'x'; CHUNK]))
        } else {
            LINES.get_or_init(|| {
                let mut line = vec![b'#'; 1024];
                line[1] = b' ';
                line[1023] = b'\n';
                Bytes::from(line.repeat(CHUNK / 1024))
            })
        };
        let (head, tail): (&'static [u8], &'static [u8]) = if json {
            (b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"", b"\"}")
        } else {
            (b"# HELP padding An oversized exposition.\n", b"")
        };
        SimBody::Repeat {
            head: Some(Bytes::from_static(head)),
            chunk: chunk.clone(),
            left: OVERSIZED_CHUNKS,
            tail: Some(Bytes::from_static(tail)),
        }
    }

    fn remaining(&self) -> u64 {
        match self {
            SimBody::Full(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            SimBody::Repeat {
                head,
                chunk,
                left,
                tail,
            } => {
                let edge = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
                edge(head) + chunk.len() as u64 * *left as u64 + edge(tail)
            }
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.get_mut() {
            SimBody::Full(b) => b.take(),
            SimBody::Repeat {
                head,
                chunk,
                left,
                tail,
            } => {
                if let Some(h) = head.take() {
                    Some(h)
                } else if *left > 0 {
                    *left -= 1;
                    Some(chunk.clone())
                } else {
                    tail.take()
                }
            }
        };
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn drain(mut b: SimBody) -> Vec<u8> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut b).poll_frame(&mut cx) {
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
            }
        }
        assert!(b.is_end_stream());
        out
    }

    #[test]
    fn bodies() {
        assert_eq!(drain(SimBody::full("abc")), b"abc");
        assert!(SimBody::empty().is_end_stream());
        let big = SimBody::oversized(true, false);
        let hint = big.size_hint().exact().unwrap();
        let bytes = drain(big);
        assert_eq!(bytes.len() as u64, hint);
        assert!(bytes.len() > 4 * 1024 * 1024);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], 1);
        let text = drain(SimBody::oversized(false, false));
        assert!(
            std::str::from_utf8(&text)
                .unwrap()
                .lines()
                .all(|l| l.starts_with('#'))
        );
        assert!(std::str::from_utf8(&drain(SimBody::oversized(true, true))).is_err());
    }
}
