//! TCP reachability: a connect within the probe deadline (e.g. a p2p port).

use super::ProbeError;
use super::http::Ctx;

/// Checks that `addr` has the `host:port` shape (`[::1]:30333` for IPv6).
pub(crate) fn validate(addr: &str) -> Result<(), ProbeError> {
    let bad = || {
        ProbeError::Config(format!(
            "TCP target `{}` is not host:port",
            addr.chars().take(80).collect::<String>()
        ))
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return Err(bad());
    }
    Ok(())
}

/// Connects to `addr` (resolving the name) and closes the connection again.
pub(crate) async fn connect(ctx: &Ctx<'_>, addr: &str) -> Result<(), ProbeError> {
    let addr = addr.trim();
    validate(addr)?;
    ctx.bounded(async {
        tokio::net::TcpStream::connect(addr)
            .await
            .map(drop)
            .map_err(|e| {
                ProbeError::Connect(format!(
                    "cannot connect to tcp://{addr}: {e}; check that the node runs and the port is open"
                ))
            })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_shapes() {
        assert!(validate("127.0.0.1:30333").is_ok());
        assert!(validate("node-0.validators.svc:30333").is_ok());
        assert!(validate("[::1]:30333").is_ok());
        for bad in [
            "",
            "host",
            "host:",
            ":30333",
            "host:0",
            "host:70000",
            "host:x",
        ] {
            assert_eq!(validate(bad).unwrap_err().class(), "config", "{bad}");
        }
    }
}
