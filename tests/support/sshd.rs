//! A real OpenSSH server on a loopback port, for the SSH remediation tests.
//!
//! The binaries come from Debian's openssh-server package, unpacked per user by
//! `scripts/sshd-bins.sh` (its output directory is `VIGIL_TEST_SSHD_DIR`, which
//! `scripts/test.sh` sets; without it this harness runs the script itself). Each
//! [`Sshd::start`] makes a scratch directory with fresh keys (`ssh-keygen`), an
//! `authorized_keys` and an `sshd_config`, and runs `sshd -D -e` on a free port of 127.0.0.1.
//!
//! As root, sshd needs its privilege-separation user `sshd` and the directory `/run/sshd`:
//! the harness creates them when missing, as the Debian package's postinst does, and says so
//! on stderr. As any other user, sshd runs unprivileged (no privilege separation user) and
//! accepts logins of that user only — which is the user the tests log in as.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running sshd; killed on drop (its scratch directory is removed then too).
pub struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    client_key: String,
    other_key: String,
    host_key: String,
    other_public_key: String,
    log: PathBuf,
}

/// The directory with `usr/sbin/sshd` (from `VIGIL_TEST_SSHD_DIR` or `scripts/sshd-bins.sh`).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| super::cached_bins("VIGIL_TEST_SSHD_DIR", "sshd-bins.sh"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// As root: the privilege-separation user and directory sshd insists on (once per process).
fn root_prerequisites() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let exists = || {
            Command::new("getent")
                .args(["passwd", "sshd"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !exists() {
            eprintln!(
                "sshd harness: creating the privilege separation user 'sshd' as the openssh-server \
                 package does: useradd --system --no-create-home --home-dir /run/sshd --shell \
                 /usr/sbin/nologin sshd"
            );
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/run/sshd",
                    "--shell",
                    "/usr/sbin/nologin",
                    "sshd",
                ])
                .output()
                .expect("run useradd");
            // Another test binary may have created it at the same time.
            assert!(
                out.status.success() || exists(),
                "useradd sshd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let run = Path::new("/run/sshd");
        if !run.is_dir() {
            eprintln!("sshd harness: creating the privilege separation directory /run/sshd");
            std::fs::create_dir_all(run).expect("create /run/sshd");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o755))
            .expect("chmod /run/sshd");
    });
}

/// The name of the user this process runs as.
fn current_user() -> String {
    run_ok(Command::new("id").arg("-un")).trim().to_string()
}

/// `(major, minor)` of the sshd binary, from `sshd -V` ("OpenSSH_9.2p1 ...").
fn sshd_version(sshd: &Path, lib_path: &str) -> (u32, u32) {
    let out = Command::new(sshd)
        .arg("-V")
        .env("LD_LIBRARY_PATH", lib_path)
        .output()
        .expect("run sshd -V");
    let text = String::from_utf8_lossy(&out.stderr);
    let v = text
        .split("OpenSSH_")
        .nth(1)
        .unwrap_or_else(|| panic!("sshd -V said {text:?}"));
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// The unpacked packages' library directories (`usr/lib/x86_64-linux-gnu`, ...).
fn lib_path(bins: &Path) -> String {
    let mut dirs = Vec::new();
    for base in ["usr/lib", "lib"] {
        if let Ok(entries) = std::fs::read_dir(bins.join(base)) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with("-linux-gnu") {
                    dirs.push(e.path().display().to_string());
                }
            }
        }
    }
    dirs.join(":")
}

fn keygen(path: &Path, comment: &str) -> (String, String) {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    );
    let private = std::fs::read_to_string(path).unwrap();
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    (private, public.trim().to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// Starts sshd on `port` and waits until it listens; on failure, kills it and returns why.
fn spawn(
    sshd: &Path,
    lib_path: &str,
    config: &Path,
    log: &Path,
    port: u16,
) -> Result<Child, String> {
    let file = std::fs::File::create(log).unwrap();
    let mut child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(config)
        .env("LD_LIBRARY_PATH", lib_path)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("start sshd");
    let ready = format!("Server listening on 127.0.0.1 port {port}");
    let start = Instant::now();
    loop {
        let text = read_log(log);
        if text.contains(&ready) {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("sshd exited with {status}; its log:\n{text}"));
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("sshd not listening after 20s; its log:\n{text}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_log(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[allow(dead_code)]
impl Sshd {
    /// Generates keys and a config in a scratch directory, starts sshd and waits until it
    /// listens. Panics (with the server's log) if it does not start.
    pub fn start() -> Sshd {
        let bins = std::fs::canonicalize(bin_dir()).expect("sshd bin dir");
        let sshd = bins.join("usr/sbin/sshd");
        assert!(sshd.is_file(), "no sshd at {}", sshd.display());
        if is_root() {
            root_prerequisites();
        }
        let lib_path = lib_path(&bins);
        let version = sshd_version(&sshd, &lib_path);

        let dir = tempfile::Builder::new()
            .prefix("vigil-sshd-")
            .tempdir()
            .unwrap();
        let path = |name: &str| dir.path().join(name);
        let (_, host_key) = keygen(&path("host_ed25519"), "vigil-test-host");
        let (client_key, client_pub) = keygen(&path("client_ed25519"), "vigil-test-client");
        let (other_key, other_public_key) = keygen(&path("other_ed25519"), "vigil-test-other");
        std::fs::write(path("authorized_keys"), format!("{client_pub}\n")).unwrap();

        let log = path("sshd.log");
        for attempt in 0.. {
            let port = free_port();
            let mut config = format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {host}\n\
                 AuthorizedKeysFile {auth}\n\
                 PidFile {pid}\n\
                 StrictModes no\n\
                 UsePAM no\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n\
                 UseDNS no\n\
                 PrintMotd no\n\
                 PrintLastLog no\n\
                 LogLevel {level}\n",
                level = std::env::var("VIGIL_TEST_SSHD_LOGLEVEL").unwrap_or("VERBOSE".into()),
                host = path("host_ed25519").display(),
                auth = path("authorized_keys").display(),
                pid = path("sshd.pid").display(),
            );
            // OpenSSH 9.8 moved the per-connection code into helper binaries at compiled-in
            // paths, and penalizes addresses with failed logins (the tests fail some on
            // purpose): point at the unpacked helpers, and switch the penalties off.
            for (option, helper) in [
                ("SshdSessionPath", "usr/lib/openssh/sshd-session"),
                ("SshdAuthPath", "usr/lib/openssh/sshd-auth"),
            ] {
                if bins.join(helper).is_file() {
                    config.push_str(&format!("{option} {}\n", bins.join(helper).display()));
                }
            }
            if version >= (9, 8) {
                config.push_str("PerSourcePenalties no\n");
            }
            std::fs::write(path("sshd_config"), config).unwrap();

            match spawn(&sshd, &lib_path, &path("sshd_config"), &log, port) {
                Ok(child) => {
                    return Sshd {
                        child,
                        dir,
                        port,
                        user: current_user(),
                        client_key,
                        other_key,
                        host_key,
                        other_public_key,
                        log,
                    };
                }
                // Someone took the port between our probe and sshd's bind: try another.
                Err(why) if why.contains("Address already in use") && attempt < 5 => {}
                Err(why) => panic!("sshd did not start: {why}"),
            }
        }
        unreachable!()
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM first: sshd removes its pid file and exits.
            // SAFETY: kill with a pid of our own child and a valid signal number.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// The port sshd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as: the one running the tests.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The private key (OpenSSH format) that `authorized_keys` admits.
    pub fn client_private_key(&self) -> &str {
        &self.client_key
    }

    /// A valid private key that `authorized_keys` does not admit.
    pub fn other_private_key(&self) -> &str {
        &self.other_key
    }

    /// The server's public host key line: `ssh-ed25519 AAAA... vigil-test-host`.
    pub fn host_public_key(&self) -> &str {
        &self.host_key
    }

    /// An unrelated public key line (not the server's), for the mismatch tests.
    pub fn other_public_key(&self) -> &str {
        &self.other_public_key
    }

    /// A scratch directory, removed with the server (e.g. for marker files).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (`LogLevel VERBOSE`).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
