//! The `ssh` remediation action: run one allow-listed command on a remote machine over SSH.
//!
//! A pure-Rust client (russh, ring crypto) that does exactly one thing per call:
//!
//! 1. connect to `host:port`, and verify the server's host key against the **pinned** key
//!    (`SshTarget.hostKey`, a `known_hosts` line without the host name) during the key
//!    exchange. A different key aborts the connection before authentication: nothing is
//!    sent, nothing runs ([`SshError::HostKeyMismatch`]). There is no trust on first use.
//! 2. log in with the private key from the validator's Secret (public key authentication
//!    only; no password, no agent, no keyboard-interactive).
//! 3. send one `exec` request with [`quote_argv`] of the allow-listed argv: every argument is
//!    single-quoted, so the remote shell runs the program with exactly those arguments and
//!    never interprets `;`, `$(...)`, backticks, `|`, `&&`, quotes or newlines in them.
//! 4. collect stdout, stderr (each capped at [`OUTPUT_LIMIT`] bytes) and the exit status.
//!
//! Connection, handshake and login share one deadline (`connect_timeout`); the command has
//! its own (`command_timeout`), after which Vigil asks the server to send `SIGTERM` to the
//! command's process group, closes the channel and disconnects. The signal is best effort:
//! OpenSSH honours it only for logins with post-authentication privilege separation (not for
//! root logins); otherwise the command keeps running with its output pipes closed, until it
//! ends or next writes (`SIGPIPE`). A non-zero exit status is an
//! [`SshOutcome`], not an error: the caller decides what it means. Nothing the server sends
//! can make this module panic.
//!
//! The remote login shell must be POSIX-compatible (sh, bash, dash, zsh, ksh): sshd hands the
//! command line to it with `-c`.

use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::keys::{PublicKeyOrCertificate, decode_secret_key};
use russh::{AlgorithmKind, ChannelMsg, Disconnect, Preferred, Sig};
use tokio::time::{Instant, timeout_at};

/// At most this many bytes of stdout, and as many of stderr, are kept; the rest is counted
/// and dropped, and the kept text ends with a truncation marker.
pub const OUTPUT_LIMIT: usize = 8 * 1024;

/// How long closing the channel and disconnecting may take after a command timed out or
/// finished; the connection is dropped after that in any case.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// One command to run on one machine. Its `Debug` leaves the private key out.
#[derive(Clone, Copy)]
pub struct SshRequest<'a> {
    /// Host name or IP address (an IPv6 address may be given with or without brackets).
    pub host: &'a str,
    /// TCP port of the SSH server.
    pub port: u16,
    /// Login user.
    pub user: &'a str,
    /// The OpenSSH private key text (as stored in the Secret): `-----BEGIN OPENSSH PRIVATE
    /// KEY-----` (also PKCS#1 RSA and PKCS#8 PEM). Keys protected by a passphrase are refused.
    pub private_key: &'a str,
    /// The pinned public host key: `ssh-ed25519 AAAA... [comment]` (a `known_hosts` line
    /// without the host name, as printed by `ssh-keyscan`).
    pub host_key: &'a str,
    /// The program and its arguments; each element is quoted separately (see [`quote_argv`]).
    pub argv: &'a [String],
    /// Time allowed for TCP connect, SSH handshake and authentication together.
    pub connect_timeout: Duration,
    /// Time allowed for the command, from opening the session channel to its exit.
    pub command_timeout: Duration,
}

impl std::fmt::Debug for SshRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshRequest")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("private_key", &"<redacted>")
            .field("host_key", &self.host_key)
            .field("argv", &self.argv)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

/// What a command that ran did. A non-zero exit status is an outcome, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshOutcome {
    /// The command's exit status, if the server reported one (it does not when the command
    /// was killed by a signal: see `exit_signal`).
    pub exit_status: Option<u32>,
    /// The signal that ended the command (`TERM`, `KILL`, ...), if the server reported one.
    pub exit_signal: Option<String>,
    /// Standard output: lossy UTF-8, at most [`OUTPUT_LIMIT`] bytes, then a truncation marker.
    pub stdout: String,
    /// Standard error: lossy UTF-8, at most [`OUTPUT_LIMIT`] bytes, then a truncation marker.
    pub stderr: String,
    /// The command line that was sent: [`quote_argv`] of the argv.
    pub command: String,
}

impl SshOutcome {
    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }
}

/// Why a command could not be run (or did not finish).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// The private key text does not parse, is protected by a passphrase, or is of an
    /// unsupported type.
    #[error("the SSH private key cannot be used: {0}")]
    BadPrivateKey(String),
    /// The pinned host key does not parse.
    #[error("the pinned SSH host key is not valid: {0}")]
    BadHostKey(String),
    /// The server presented another host key than the pinned one (or offered none of its
    /// type). The connection was aborted before authentication: nothing ran.
    #[error(
        "SSH host key mismatch: the pinned key is {expected}, the server presented {got}; \
         refusing to log in (nothing was run)"
    )]
    HostKeyMismatch {
        /// The pinned key: its type and SHA256 fingerprint.
        expected: String,
        /// What the server presented: its type and SHA256 fingerprint.
        got: String,
    },
    /// The argv cannot be sent (it is empty, or an argument contains a NUL byte).
    #[error("the SSH command cannot be sent: {0}")]
    BadCommand(String),
    /// No TCP connection could be made (refused, unreachable, name not resolved), or it was
    /// closed during the SSH handshake.
    #[error("cannot connect over SSH: {0}")]
    Connect(String),
    /// The server refused the login with this user and key.
    #[error("SSH authentication rejected: {0}")]
    AuthRejected(String),
    /// Connect, handshake and authentication did not complete within `connect_timeout`.
    #[error("SSH connection not established within {after:?} (stuck at {stage})")]
    ConnectTimeout {
        /// The `connect_timeout` that ran out.
        after: Duration,
        /// Where it was stuck: `TCP connect`, `SSH handshake` or `authentication`.
        stage: &'static str,
    },
    /// The command did not finish within `command_timeout`; the channel was closed (after
    /// asking the server to send it SIGTERM, which OpenSSH ignores for root logins). It may
    /// still be running on the machine.
    #[error(
        "the SSH command did not finish within {after:?}; output so far: {stdout:?}, stderr: {stderr:?}"
    )]
    CommandTimeout {
        /// The `command_timeout` that ran out.
        after: Duration,
        /// Standard output received until then (capped like [`SshOutcome::stdout`]).
        stdout: String,
        /// Standard error received until then (capped like [`SshOutcome::stderr`]).
        stderr: String,
    },
    /// Anything else the SSH protocol refused or broke: no common algorithm, the server
    /// denied the session or the exec request, the connection dropped mid-command.
    #[error("SSH protocol error: {0}")]
    Protocol(String),
}

/// The placeholders an allow-listed argv may use.
pub const PLACEHOLDERS: [&str; 7] = [
    "request",
    "validator",
    "namespace",
    "chain",
    "host",
    "reason",
    "token",
];

/// Longest value a placeholder may stand for.
pub const PLACEHOLDER_LIMIT: usize = 512;

/// How much of a command's stdout or stderr is shown in conditions and Events (characters,
/// printable only).
pub const SHOWN_OUTPUT: usize = 300;

/// Checks an allow-listed argv (at policy validation): the script of a shell's `-c` (the
/// element after `-c`, `-lc`, `-ec`, ...) may hold no placeholder, because the shell would
/// interpret the value; pass values as positional arguments after the script (`sh -c
/// '... "$1"' sh '{validator}'`), where they stay data.
pub fn check_argv(argv: &[String]) -> Result<(), String> {
    let shell_c = |a: &str| {
        a.strip_prefix('-')
            .is_some_and(|f| f.ends_with('c') && f.chars().all(|c| c.is_ascii_lowercase()))
    };
    for (i, pair) in argv.windows(2).enumerate() {
        if shell_c(&pair[0])
            && let Some(p) = PLACEHOLDERS
                .iter()
                .find(|p| pair[1].contains(&format!("{{{p}}}")))
        {
            return Err(format!(
                "argv[{}] is the script of {} and holds {{{p}}}: a shell would interpret the value; pass it as an argument after the script and use \"$1\"",
                i + 1,
                pair[0]
            ));
        }
    }
    Ok(())
}

/// Whether a placeholder value may be passed: not empty-looking as an option (no leading
/// `-`), printable, at most [`PLACEHOLDER_LIMIT`] bytes.
fn check_value(name: &str, value: &str) -> Result<(), SshError> {
    let why = if value.starts_with('-') {
        "starts with '-' (it could be taken for an option)"
    } else if value.len() > PLACEHOLDER_LIMIT {
        "is longer than 512 bytes"
    } else if value.chars().any(char::is_control) {
        "holds control characters"
    } else {
        return Ok(());
    };
    Err(SshError::BadCommand(format!(
        "the value of {{{name}}} {why}; nothing was run"
    )))
}

/// The argv of an allow-listed command for one attempt, its `{placeholders}` replaced.
/// Each element stays one element: it is quoted on its own before it reaches the shell. A
/// value that could be taken for an option or is not printable refuses the attempt.
pub fn argv(
    command: &crate::policy::SshCommand,
    req: &super::Request<'_>,
    host: &str,
) -> Result<Vec<String>, SshError> {
    let request = match req.trigger {
        super::guard::Trigger::Manual(t) => t.as_str(),
        super::guard::Trigger::Policy | super::guard::Trigger::Advice(_) => "",
    };
    let s = &req.subject;
    let values = [
        ("request", request),
        ("validator", s.name),
        ("namespace", s.namespace),
        ("chain", s.chain.as_str()),
        ("host", host),
        ("reason", s.reason.0),
        ("token", req.token),
    ];
    for (name, value) in &values {
        if command
            .argv
            .iter()
            .any(|a| a.contains(&format!("{{{name}}}")))
        {
            check_value(name, value)?;
        }
    }
    Ok(command
        .argv
        .iter()
        .map(|a| substitute(a, &values))
        .collect())
}

/// Replaces `{name}` placeholders in one argv element.
pub fn substitute(arg: &str, values: &[(&str, &str)]) -> String {
    let mut out = arg.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Quotes an argv for a POSIX shell: every element in single quotes (a `'` inside becomes
/// `'\''`), separated by single spaces. `["echo", "a b", "it's", ""]` becomes
/// `'echo' 'a b' 'it'\''s' ''`. The shell turns it back into exactly these words, and
/// interprets nothing inside them.
pub fn quote_argv(argv: &[String]) -> String {
    let mut out = String::with_capacity(argv.iter().map(|a| a.len() + 3).sum());
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push('\'');
        for c in arg.chars() {
            if c == '\'' {
                out.push_str("'\\''");
            } else {
                out.push(c);
            }
        }
        out.push('\'');
    }
    out
}

/// Parses a pinned host key line (`ssh-ed25519 AAAA... [comment]`) and returns its type
/// and SHA256 fingerprint as printed in errors and logs (`ssh-ed25519 SHA256:...`), e.g. to
/// check a `hostKey` before anything connects.
pub fn host_key_fingerprint(host_key: &str) -> Result<String, SshError> {
    parse_host_key(host_key).map(|k| describe_key(&k))
}

/// Connects, verifies the pinned host key, logs in, runs the command and returns what it did.
pub async fn run(req: &SshRequest<'_>) -> Result<SshOutcome, SshError> {
    let command = checked_command(req.argv)?;
    let pinned = parse_host_key(req.host_key)?;
    let key = parse_private_key(req.private_key)?;
    let host = req
        .host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(req.host);
    let addr = display_addr(host, req.port);

    let config = Arc::new(client::Config {
        preferred: Preferred {
            key: host_key_algorithms(&pinned)?.into(),
            ..Preferred::default()
        },
        // The session task ends by itself at the latest after this much silence, even if a
        // server stalls mid-handshake after our deadline gave up on it.
        inactivity_timeout: Some(
            req.connect_timeout
                .saturating_add(req.command_timeout)
                .saturating_add(CLOSE_GRACE),
        ),
        nodelay: true,
        ..client::Config::default()
    });

    // Connect, handshake, authenticate: one deadline.
    let deadline = deadline_after(req.connect_timeout);
    let expired = |stage| SshError::ConnectTimeout {
        after: req.connect_timeout,
        stage,
    };
    let tcp = timeout_at(deadline, tokio::net::TcpStream::connect((host, req.port)))
        .await
        .map_err(|_| expired("TCP connect"))?
        .map_err(|e| SshError::Connect(format!("{addr}: {e}")))?;
    let handler = PinnedHostKey {
        expected: pinned.clone(),
    };
    let mut session = timeout_at(deadline, client::connect_stream(config, tcp, handler))
        .await
        .map_err(|_| expired("SSH handshake"))?
        .map_err(|e| handshake_error(e, &addr, &pinned))?;
    timeout_at(deadline, authenticate(&mut session, req.user, key))
        .await
        .map_err(|_| expired("authentication"))??;
    tracing::debug!(%addr, user = req.user, "ssh: logged in");

    // The command: its own deadline.
    let deadline = deadline_after(req.command_timeout);
    let result = exec(&session, &command, deadline).await;
    // Disconnect, and wait (briefly) until the session task has written everything queued
    // (the signal and close requests after a timeout included) and ended.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = session
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        let _ = session.await;
    })
    .await;
    match result {
        Ok((exit_status, exit_signal, stdout, stderr)) => {
            tracing::info!(%addr, %command, ?exit_status, ?exit_signal, "ssh: command finished");
            Ok(SshOutcome {
                exit_status,
                exit_signal,
                stdout,
                stderr,
                command,
            })
        }
        Err(Interrupted::Timeout { stdout, stderr }) => {
            tracing::warn!(%addr, %command, timeout = ?req.command_timeout, "ssh: command timed out");
            Err(SshError::CommandTimeout {
                after: req.command_timeout,
                stdout: crate::text::printable(&stdout, SHOWN_OUTPUT),
                stderr: crate::text::printable(&stderr, SHOWN_OUTPUT),
            })
        }
        Err(Interrupted::Error(e)) => Err(e),
    }
}

/// Now plus `d`, capped at a year (an absurd timeout must not overflow the clock).
fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600))
}

/// The command line to send, after refusing what cannot be sent faithfully.
fn checked_command(argv: &[String]) -> Result<String, SshError> {
    if argv.is_empty() {
        return Err(SshError::BadCommand("the argv is empty".into()));
    }
    if let Some(i) = argv.iter().position(|a| a.contains('\0')) {
        return Err(SshError::BadCommand(format!(
            "argument {i} contains a NUL byte, which no remote program can receive"
        )));
    }
    Ok(quote_argv(argv))
}

/// `host:port`, with brackets around an IPv6 address.
fn display_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses `<type> <base64> [comment]`. The type may also be an RSA signature algorithm name
/// (`rsa-sha2-256`, `rsa-sha2-512`) for an `ssh-rsa` key.
fn parse_host_key(line: &str) -> Result<PublicKey, SshError> {
    let mut words = line.split_whitespace();
    let (Some(kind), Some(data)) = (words.next(), words.next()) else {
        return Err(SshError::BadHostKey(format!(
            "expected '<type> <base64 key> [comment]' (e.g. 'ssh-ed25519 AAAAC3Nz...'), got {:?}",
            abbreviate(line)
        )));
    };
    if kind.contains("-cert-") {
        return Err(SshError::BadHostKey(format!(
            "{kind} is a certificate type; pin the server's plain host key instead"
        )));
    }
    let known = [
        "ssh-ed25519",
        "ssh-rsa",
        "rsa-sha2-256",
        "rsa-sha2-512",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    ];
    if !known.contains(&kind) {
        let hint = if known.contains(&data) {
            " (this looks like a known_hosts line: remove the host name in front)"
        } else {
            ""
        };
        return Err(SshError::BadHostKey(format!(
            "unsupported key type {:?}{hint}; expected one of {}",
            abbreviate(kind),
            known.join(", ")
        )));
    }
    let kind = if kind.starts_with("rsa-sha2-") {
        "ssh-rsa"
    } else {
        kind
    };
    let key = PublicKey::from_openssh(&format!("{kind} {data}")).map_err(|e| {
        SshError::BadHostKey(format!(
            "cannot decode the {kind} key {:?}: {e} (is the base64 complete, and of that type?)",
            abbreviate(data)
        ))
    })?;
    Ok(key)
}

/// The host key algorithms to offer: only those of the pinned key, so that a server with
/// several host keys presents the pinned one. RSA keys are accepted with SHA-2 signatures only.
fn host_key_algorithms(pinned: &PublicKey) -> Result<Vec<Algorithm>, SshError> {
    match pinned.algorithm() {
        Algorithm::Rsa { .. } => Ok(vec![
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ]),
        a @ (Algorithm::Ed25519 | Algorithm::Ecdsa { .. }) => Ok(vec![a]),
        other => Err(SshError::BadHostKey(format!(
            "unsupported host key type {}",
            other.as_str()
        ))),
    }
}

/// `ssh-ed25519 SHA256:...`
fn describe_key(key: &PublicKey) -> String {
    format!(
        "{} {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

/// At most 40 characters of something for an error message.
fn abbreviate(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().nth(40).is_some() {
        out.push_str("...");
    }
    out
}

fn parse_private_key(text: &str) -> Result<PrivateKey, SshError> {
    // Secrets pasted into YAML often carry indentation or CRLF line ends.
    let normalized: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .flat_map(|l| [l, "\n"])
        .collect();
    if normalized.is_empty() {
        return Err(SshError::BadPrivateKey("the key text is empty".into()));
    }
    if normalized.starts_with("ssh-") || normalized.starts_with("ecdsa-") {
        return Err(SshError::BadPrivateKey(
            "this is a public key; the Secret must hold the private key".into(),
        ));
    }
    let key = decode_secret_key(&normalized, None).map_err(|e| {
        SshError::BadPrivateKey(match e {
            russh::keys::Error::KeyIsEncrypted => {
                "the key is protected by a passphrase, which is not supported".to_string()
            }
            russh::keys::Error::CouldNotReadKey => {
                "no '-----BEGIN OPENSSH PRIVATE KEY-----' (or PEM) block found".to_string()
            }
            e => e.to_string(),
        })
    })?;
    if key.is_encrypted() {
        return Err(SshError::BadPrivateKey(
            "the key is protected by a passphrase, which is not supported".into(),
        ));
    }
    Ok(key)
}

/// Handler errors: russh's own, or the pinned host key check.
#[derive(Debug)]
enum HandshakeError {
    Ssh(russh::Error),
    HostKeyMismatch { got: String },
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Ssh(e)
    }
}

/// Accepts exactly the pinned host key (same type, same key bytes).
struct PinnedHostKey {
    expected: PublicKey,
}

impl client::Handler for PinnedHostKey {
    type Error = HandshakeError;

    async fn check_server_key(
        &mut self,
        presented: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match presented {
            PublicKeyOrCertificate::PublicKey { key, .. }
                if key.key_data() == self.expected.key_data() =>
            {
                Ok(true)
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => Err(HandshakeError::HostKeyMismatch {
                got: describe_key(key),
            }),
            // Never asked for (no certificate algorithms are offered), never trusted.
            PublicKeyOrCertificate::Certificate(cert) => Err(HandshakeError::HostKeyMismatch {
                got: format!(
                    "a host certificate ({} {})",
                    cert.algorithm().as_str(),
                    cert.public_key().fingerprint(HashAlg::Sha256)
                ),
            }),
        }
    }
}

fn handshake_error(e: HandshakeError, addr: &str, pinned: &PublicKey) -> SshError {
    match e {
        HandshakeError::HostKeyMismatch { got } => {
            tracing::warn!(%addr, expected = %describe_key(pinned), %got, "ssh: host key mismatch");
            SshError::HostKeyMismatch {
                expected: describe_key(pinned),
                got,
            }
        }
        HandshakeError::Ssh(russh::Error::NoCommonAlgo {
            kind: AlgorithmKind::Key,
            theirs,
            ..
        }) => SshError::HostKeyMismatch {
            expected: describe_key(pinned),
            got: format!(
                "no {} host key (it offers {})",
                pinned.algorithm().as_str(),
                theirs.join(", ")
            ),
        },
        HandshakeError::Ssh(russh::Error::IO(e)) => SshError::Connect(format!(
            "{addr}: connection lost during the SSH handshake: {e}"
        )),
        HandshakeError::Ssh(
            russh::Error::Disconnect | russh::Error::HUP | russh::Error::ConnectionTimeout,
        ) => SshError::Connect(format!(
            "{addr}: the server closed the connection during the SSH handshake"
        )),
        HandshakeError::Ssh(e) => {
            SshError::Protocol(format!("SSH handshake with {addr} failed: {e}"))
        }
    }
}

async fn authenticate(
    session: &mut client::Handle<PinnedHostKey>,
    user: &str,
    key: PrivateKey,
) -> Result<(), SshError> {
    let rsa_hash = if key.algorithm().is_rsa() {
        match session.best_supported_rsa_hash().await {
            Ok(Some(hash)) => hash,
            // The server did not say (no server-sig-algs): SHA-2 is what current servers take.
            Ok(None) | Err(_) => Some(HashAlg::Sha512),
        }
    } else {
        None
    };
    let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
    let result = session
        .authenticate_publickey(user, key)
        .await
        .map_err(|e| SshError::Protocol(format!("during authentication: {e}")))?;
    match result {
        client::AuthResult::Success => Ok(()),
        client::AuthResult::Failure {
            remaining_methods,
            partial_success,
        } => {
            let methods: Vec<String> = remaining_methods.iter().map(|m| format!("{m:?}")).collect();
            let more = if partial_success {
                "the key was accepted but the server requires a further method"
            } else {
                "the server did not accept this key for this user"
            };
            Err(SshError::AuthRejected(format!(
                "user {user:?}: {more} (methods it would take: {})",
                if methods.is_empty() {
                    "none".to_string()
                } else {
                    methods.join(", ")
                }
            )))
        }
    }
}

/// Output of one stream, capped at [`OUTPUT_LIMIT`] bytes.
#[derive(Default)]
struct Capture {
    kept: Vec<u8>,
    dropped: u64,
}

impl Capture {
    fn push(&mut self, data: &[u8]) {
        let room = OUTPUT_LIMIT.saturating_sub(self.kept.len());
        let (keep, drop) = data.split_at(room.min(data.len()));
        self.kept.extend_from_slice(keep);
        self.dropped = self.dropped.saturating_add(drop.len() as u64);
    }

    fn text(&self) -> String {
        let mut kept = self.kept.as_slice();
        let mut dropped = self.dropped;
        if dropped > 0 {
            // Do not end on half a UTF-8 character cut by the limit.
            if let Err(e) = std::str::from_utf8(kept)
                && e.error_len().is_none()
            {
                let (whole, half) = kept.split_at(e.valid_up_to());
                dropped = dropped.saturating_add(half.len() as u64);
                kept = whole;
            }
        }
        let mut text = String::from_utf8_lossy(kept).into_owned();
        if dropped > 0 {
            text.push_str(&format!("\n[... truncated: {dropped} more bytes]"));
        }
        text
    }
}

enum Interrupted {
    Timeout { stdout: String, stderr: String },
    Error(SshError),
}

type Finished = (Option<u32>, Option<String>, String, String);

async fn exec(
    session: &client::Handle<PinnedHostKey>,
    command: &str,
    deadline: Instant,
) -> Result<Finished, Interrupted> {
    let (mut stdout, mut stderr) = (Capture::default(), Capture::default());
    let timed_out = |stdout: &Capture, stderr: &Capture| Interrupted::Timeout {
        stdout: stdout.text(),
        stderr: stderr.text(),
    };
    let mut channel = match timeout_at(deadline, session.channel_open_session()).await {
        Err(_) => return Err(timed_out(&stdout, &stderr)),
        Ok(Err(e)) => {
            return Err(Interrupted::Error(SshError::Protocol(format!(
                "the server did not open a session channel: {e}"
            ))));
        }
        Ok(Ok(channel)) => channel,
    };
    match timeout_at(deadline, channel.exec(true, command.as_bytes())).await {
        Err(_) => return Err(timed_out(&stdout, &stderr)),
        Ok(Err(e)) => {
            return Err(Interrupted::Error(SshError::Protocol(format!(
                "cannot send the exec request: {e}"
            ))));
        }
        Ok(Ok(())) => {}
    }
    let (mut exit_status, mut exit_signal) = (None, None);
    loop {
        let msg = match timeout_at(deadline, channel.wait()).await {
            Ok(msg) => msg,
            Err(_) => {
                // Best effort: ask sshd to signal the command, then close the channel.
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    let _ = channel.signal(Sig::TERM).await;
                    let _ = channel.close().await;
                })
                .await;
                return Err(timed_out(&stdout, &stderr));
            }
        };
        match msg {
            Some(ChannelMsg::Data { data }) => stdout.push(&data),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.push(&data),
            Some(ChannelMsg::ExitStatus { exit_status: s }) => exit_status = Some(s),
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                ..
            }) => {
                let mut name = match signal_name {
                    Sig::Custom(name) => name,
                    sig => format!("{sig:?}"),
                };
                if core_dumped {
                    name.push_str(" (core dumped)");
                }
                exit_signal = Some(name);
            }
            Some(ChannelMsg::Failure) => {
                return Err(Interrupted::Error(SshError::Protocol(
                    "the server refused to run the command (exec request denied)".into(),
                )));
            }
            Some(ChannelMsg::Close) => break,
            Some(_) => {}
            None if exit_status.is_some() || exit_signal.is_some() => break,
            None => {
                return Err(Interrupted::Error(SshError::Protocol(format!(
                    "the connection was lost before the command finished; stdout so far: {:?}",
                    crate::text::printable(&stdout.text(), SHOWN_OUTPUT)
                ))));
            }
        }
    }
    Ok((exit_status, exit_signal, stdout.text(), stderr.text()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn placeholders_stay_one_argument() {
        let v = [("validator", "v1"), ("token", "$(touch /tmp/pwned); echo")];
        assert_eq!(substitute("restart-{validator}", &v), "restart-v1");
        let arg = substitute("--token={token}", &v);
        assert_eq!(arg, "--token=$(touch /tmp/pwned); echo");
        assert_eq!(quote_argv(&[arg]), "'--token=$(touch /tmp/pwned); echo'");
        assert_eq!(substitute("{unknown}", &v), "{unknown}");
    }

    /// (argv, accepted)
    #[test]
    fn no_placeholder_in_a_shell_script() {
        let cases: &[(&[&str], bool)] = &[
            (&["systemctl", "restart", "{validator}"], true),
            (
                &["sh", "-c", "systemctl restart \"$1\"", "sh", "{validator}"],
                true,
            ),
            (&["sh", "-c", "systemctl restart {validator}"], false),
            (&["bash", "-lc", "echo {request}"], false),
            (&["sh", "-ec", "x={token}; echo $x"], false),
            (&["sh", "-c", "echo {unknown}"], true),
            (&["-c"], true),
            (&["tool", "-c", "conf-{chain}.toml"], false),
        ];
        for (argv, ok) in cases {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            assert_eq!(check_argv(&argv).is_ok(), *ok, "{argv:?}");
        }
    }

    /// (value, accepted)
    #[test]
    fn placeholder_values_are_checked() {
        let long = "a".repeat(513);
        let cases: &[(&str, bool)] = &[
            ("t-1", true),
            ("x;touch /tmp/p $(id) 'q\"", true),
            ("", true),
            ("-oProxyCommand=sh", false),
            ("--force", false),
            ("a\nb", false),
            ("a\u{1b}[2J", false),
            (&long, false),
        ];
        for (v, ok) in cases {
            assert_eq!(check_value("request", v).is_ok(), *ok, "{v:?}");
        }
    }

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEVDuRVhtLcmuWRzGi1g7gdK5oTnyb+kWshslKi25Cis host@example";
    const ED25519_FP: &str = "SHA256:YCW8Ahi+BBj+wvkIlkvrvLpYUqPh4nvM400NBF8XdG4";
    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBIz6H3ZRb7zkzVpNH3hBBEg7k4xFYaigvuS8ZfnPYrqyu+N3jQBy3bHwnj8bmd44v+52Uzq1Lq928DqL1HyURZ8=";
    const ECDSA_FP: &str = "SHA256:43wzIKVJKIVb/U7cJVyBDpITh0NZ0zuV2Dy2UvOgQrY";
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCru1F65WlAvYOIk4qfwwwunuEuFw9r6M8WGadQGtRTSR0WIX78jv9JNx0GYuoD1R0Zl8HxWpf6asRGYuOA+aA7JkifPFLcTx+ynLWL/sIG79Aha2LgciF80KUVi0NEFUZVDulnVRzFvNLtAyvIfXqsV37Cgmu4SqSh0OEjuqAb5c4Wv2K0VJxRlrjz+HtRm7pmsEtujT4nFoCarW6G3WrEcZvkockUIjG11w7KnyQpjwkHjP0m7gn10PnPKMMgd3lIfIYSA2jttWXX7kXErK5Mp8lAQSiHDfOQcHNxnWBWwrERk8JWNv0T/JM1w4DH0woJ6PF6Poa8DzR7R2iKXxBl rsa";
    const RSA_FP: &str = "SHA256:RTHL6nAvus3s+dS8sApgQoczueZEWMwa8nda9gVdo6U";

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn quotes_every_element() {
        assert_eq!(quote_argv(&argv(&["ls"])), "'ls'");
        assert_eq!(quote_argv(&argv(&["echo", "a b"])), "'echo' 'a b'");
        assert_eq!(quote_argv(&argv(&["it's"])), r"'it'\''s'");
        assert_eq!(quote_argv(&argv(&[""])), "''");
        assert_eq!(quote_argv(&argv(&["a", "", "b"])), "'a' '' 'b'");
        assert_eq!(quote_argv(&argv(&["''"])), r"''\'''\'''");
        assert_eq!(
            quote_argv(&argv(&["; touch /tmp/x", "$(id)", "`id`", "a\nb"])),
            "'; touch /tmp/x' '$(id)' '`id`' 'a\nb'"
        );
        assert_eq!(quote_argv(&[]), "");
    }

    /// Runs `printf '%s\n' <quoted>` in the local /bin/sh and returns its lines.
    fn sh_words(items: &[String]) -> Vec<String> {
        let script = format!("printf '%s\\n' {}", quote_argv(items));
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("run /bin/sh");
        assert!(out.status.success(), "{script}: {out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn shell_sees_metacharacters_literally() {
        let items = argv(&[
            "; touch /tmp/vigil-never",
            "$(touch /tmp/vigil-never)",
            "`touch /tmp/vigil-never`",
            "| cat",
            "&& true",
            "\"double\"",
            "'single'",
            "$HOME",
            "*",
            "~",
            "a\\b",
            "",
            "  spaced  ",
        ]);
        assert_eq!(sh_words(&items), items);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn shell_round_trip(items in proptest::collection::vec("[^\n\r\0]{0,12}", 1..6)) {
            // printf reuses its format for each word: one line per word, in order.
            prop_assert_eq!(sh_words(&items), items);
        }

        #[test]
        fn quoted_has_one_word_per_element(items in proptest::collection::vec(any::<String>(), 0..6)) {
            // Without quotes inside, the quoted form is just the elements wrapped in quotes.
            let plain: Vec<String> = items.iter().map(|s| s.replace('\'', "")).collect();
            let expected: Vec<String> = plain.iter().map(|s| format!("'{s}'")).collect();
            prop_assert_eq!(quote_argv(&plain), expected.join(" "));
        }
    }

    #[test]
    fn parses_pinned_keys() {
        assert_eq!(
            host_key_fingerprint(ED25519).unwrap(),
            format!("ssh-ed25519 {ED25519_FP}")
        );
        assert_eq!(
            host_key_fingerprint(ECDSA).unwrap(),
            format!("ecdsa-sha2-nistp256 {ECDSA_FP}")
        );
        assert_eq!(
            host_key_fingerprint(RSA).unwrap(),
            format!("ssh-rsa {RSA_FP}")
        );
        // Without a comment, with surrounding whitespace, with a signature algorithm as type.
        let bare = ED25519.rsplit_once(' ').unwrap().0;
        assert!(host_key_fingerprint(&format!("  {bare}\n")).is_ok());
        let sha2 = RSA.replacen("ssh-rsa", "rsa-sha2-512", 1);
        assert_eq!(
            host_key_fingerprint(&sha2).unwrap(),
            format!("ssh-rsa {RSA_FP}")
        );
    }

    #[test]
    fn offers_only_the_pinned_algorithm() {
        let ed = parse_host_key(ED25519).unwrap();
        assert_eq!(host_key_algorithms(&ed).unwrap(), vec![Algorithm::Ed25519]);
        let rsa = parse_host_key(RSA).unwrap();
        let algs = host_key_algorithms(&rsa).unwrap();
        assert!(algs.iter().all(|a| matches!(a, Algorithm::Rsa { .. })) && algs.len() == 2);
        assert!(!algs.contains(&Algorithm::Rsa { hash: None }), "no SHA-1");
    }

    fn bad_host_key(line: &str) -> String {
        match host_key_fingerprint(line) {
            Err(SshError::BadHostKey(msg)) => msg,
            other => panic!("{line:?}: expected BadHostKey, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_pinned_keys() {
        assert!(bad_host_key("").contains("expected '<type> <base64 key>"));
        assert!(bad_host_key("ssh-ed25519").contains("expected"));
        assert!(bad_host_key("ssh-ed25519 not-base64!").contains("cannot decode"));
        // Truncated base64.
        let (kind, data) = ED25519.split_once(' ').unwrap();
        assert!(bad_host_key(&format!("{kind} {}", &data[..30])).contains("cannot decode"));
        // The type says ed25519, the blob is ECDSA.
        let ecdsa_blob = ECDSA.split(' ').nth(1).unwrap();
        assert!(bad_host_key(&format!("ssh-ed25519 {ecdsa_blob}")).contains("cannot decode"));
        assert!(bad_host_key("ssh-dss AAAAB3NzaC1kc3M=").contains("unsupported key type"));
        assert!(bad_host_key(&format!("node1.example {ED25519}")).contains("remove the host name"));
        assert!(bad_host_key("ssh-ed25519-cert-v01@openssh.com AAAA").contains("certificate type"));
    }

    fn bad_private_key(text: &str) -> String {
        match parse_private_key(text) {
            Err(SshError::BadPrivateKey(msg)) => msg,
            Err(other) => panic!("expected BadPrivateKey, got {other:?}"),
            Ok(_) => panic!("expected BadPrivateKey, got a key"),
        }
    }

    /// A throwaway Ed25519 key from a fixed seed, in OpenSSH format.
    fn test_private_key() -> String {
        let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[7; 32]);
        let key = PrivateKey::from(pair);
        key.to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .unwrap()
            .to_string()
    }

    #[test]
    fn parses_private_keys() {
        let text = test_private_key();
        assert!(parse_private_key(&text).is_ok());
        // Indented (as pasted into YAML) and with CRLF line ends.
        let indented: String = text.lines().map(|l| format!("    {l}\r\n")).collect();
        assert!(parse_private_key(&indented).is_ok());

        assert!(bad_private_key("").contains("empty"));
        assert!(bad_private_key("hello").contains("BEGIN OPENSSH PRIVATE KEY"));
        assert!(bad_private_key(ED25519).contains("public key"));
        let mangled = text.replacen("AAAA", "AAAB", 1);
        assert!(!bad_private_key(&mangled).is_empty());
    }

    #[test]
    fn refuses_unsendable_commands() {
        assert!(matches!(checked_command(&[]), Err(SshError::BadCommand(_))));
        assert!(matches!(
            checked_command(&argv(&["echo", "a\0b"])),
            Err(SshError::BadCommand(m)) if m.contains("argument 1")
        ));
        assert_eq!(checked_command(&argv(&["true"])).unwrap(), "'true'");
    }

    #[test]
    fn caps_output() {
        let mut c = Capture::default();
        c.push(b"hello ");
        c.push("wörld".as_bytes());
        assert_eq!(c.text(), "hello wörld");

        let mut c = Capture::default();
        c.push(&vec![b'a'; OUTPUT_LIMIT - 1]);
        c.push("é and more".as_bytes()); // 'é' is cut in half by the limit
        let text = c.text();
        assert!(text.starts_with(&"a".repeat(OUTPUT_LIMIT - 1)));
        assert!(!text.contains('\u{FFFD}'), "no half character");
        assert!(text.ends_with("[... truncated: 11 more bytes]"), "{text}");

        let mut c = Capture::default();
        c.push(&[0xff, b'x']);
        assert_eq!(c.text(), "\u{FFFD}x");
    }

    #[test]
    fn absurd_timeouts_do_not_overflow() {
        let d = deadline_after(Duration::MAX);
        assert!(d > Instant::now() + Duration::from_secs(3600));
    }

    #[test]
    fn formats_addresses() {
        assert_eq!(display_addr("10.0.0.1", 22), "10.0.0.1:22");
        assert_eq!(display_addr("::1", 2222), "[::1]:2222");
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let argv = vec!["systemctl".to_string(), "restart".to_string()];
        let r = SshRequest {
            host: "10.1.2.3",
            port: 22,
            user: "ops",
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nCANARY-KEY-BYTES\n",
            host_key: "ssh-ed25519 AAAA",
            argv: &argv,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
        };
        let text = format!("{r:?} {r:#?}");
        assert!(
            !text.contains("CANARY-KEY-BYTES") && !text.contains("PRIVATE KEY"),
            "{text}"
        );
        assert!(text.contains("<redacted>") && text.contains("10.1.2.3"));
    }
}
