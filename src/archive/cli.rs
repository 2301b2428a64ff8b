//! `vigil archive verify <location>`: re-check a bundle months later, the way an auditor
//! would, without a cluster.

use super::store::{S3_ENV_HELP, Store};
use super::verify::{Inspection, Verdict, inspect};
use super::{ArchiveError, MANIFEST};

/// Exit code: every file matches.
pub const EXIT_OK: u8 = 0;
/// Exit code: a file or the whole object differs, or the object is not a bundle.
pub const EXIT_MISMATCH: u8 = 1;
/// Exit code: bad arguments, or the bundle could not be read (missing, store unreachable).
pub const EXIT_UNREADABLE: u8 = 2;

/// `vigil archive ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ArchiveCommand {
    /// Download a run's bundle and check every file against its SHA256SUMS.
    ///
    /// Checks the SHA-256 of every file against the bundle's SHA256SUMS (and of the whole
    /// object against --sha256 when given) and prints what the bundle holds. Exit code: 0
    /// all match, 1 a mismatch or a corrupt bundle, 2 bad arguments or the bundle could not
    /// be read (missing, store unreachable, access denied).
    #[command(after_help = S3_ENV_HELP)]
    Verify(VerifyArgs),
}

/// Arguments of `vigil archive verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The bundle: s3://bucket/key, file:///dir/name.tar.gz or a path (as in the run's
    /// status.archive.location).
    pub location: String,
    /// Also require the whole object to have this SHA-256 (the run's status.archive.sha256).
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
}

/// Runs `vigil archive ...` and returns the process exit code.
pub fn main(command: ArchiveCommand) -> u8 {
    match command {
        ArchiveCommand::Verify(args) => verify_main(&args),
    }
}

fn verify_main(args: &VerifyArgs) -> u8 {
    if let Some(h) = &args.sha256
        && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        eprintln!("error: --sha256 must be 64 hex digits");
        return EXIT_UNREADABLE;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_UNREADABLE;
        }
    };
    let result = rt.block_on(async {
        let (store, key) = Store::from_location(&args.location)?;
        inspect(&store, &key).await
    });
    let (text, code) = match result {
        Ok(ins) => render(&ins, args.sha256.as_deref()),
        Err(e) => {
            eprintln!("error: {e}");
            let code = match e {
                ArchiveError::Corrupt(_) | ArchiveError::ChecksumMismatch { .. } => EXIT_MISMATCH,
                _ => EXIT_UNREADABLE,
            };
            return code;
        }
    };
    // A closed pipe (`| head`) is not a verdict: keep the exit code.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    if code != EXIT_OK {
        eprintln!("error: the bundle does not match its checksums");
    }
    code
}

/// The printed report and the exit code.
pub fn render(ins: &Inspection, expect_sha256: Option<&str>) -> (String, u8) {
    let mut out = String::new();
    out.push_str(&format!("location  {}\n", ins.location));
    out.push_str(&format!("size      {} bytes\n", ins.size));
    let whole_ok = expect_sha256.is_none_or(|h| h.eq_ignore_ascii_case(&ins.sha256));
    match expect_sha256 {
        Some(h) if !whole_ok => out.push_str(&format!(
            "sha256    {}  MISMATCH (expected {})\n",
            ins.sha256,
            h.to_ascii_lowercase()
        )),
        Some(_) => out.push_str(&format!("sha256    {}  OK\n", ins.sha256)),
        None => out.push_str(&format!("sha256    {}\n", ins.sha256)),
    }
    out.push_str(&format!("files     {}\n\n", ins.files.len()));
    let width = ins
        .files
        .iter()
        .map(|f| f.entry.size.to_string().len())
        .max()
        .unwrap_or(1);
    for f in &ins.files {
        let (verdict, note) = match &f.verdict {
            Verdict::Match => ("OK", String::new()),
            Verdict::Manifest => ("OK", "  (the manifest)".to_string()),
            Verdict::Mismatch { expected } => {
                ("MISMATCH", format!("  ({MANIFEST} says {expected})"))
            }
            Verdict::NotListed => ("MISMATCH", format!("  (not in {MANIFEST})")),
        };
        out.push_str(&format!(
            "{verdict:<9} {:>width$}  {}  {}{note}\n",
            f.entry.size, f.entry.sha256, f.entry.name
        ));
    }
    for (name, expected) in &ins.missing {
        out.push_str(&format!(
            "{:<9} {:>width$}  {expected}  {name}  (in {MANIFEST}, not in the bundle)\n",
            "MISMATCH", "-"
        ));
    }
    let problems = ins.problems();
    let checked = ins
        .files
        .iter()
        .filter(|f| f.verdict != Verdict::Manifest)
        .count();
    if problems.is_empty() && whole_ok {
        out.push_str(&format!(
            "\nresult    OK: {checked} files match {MANIFEST}\n"
        ));
        (out, EXIT_OK)
    } else {
        let mut what = problems;
        if !whole_ok {
            what.insert(0, "<bundle>".into());
        }
        out.push_str(&format!("\nresult    MISMATCH: {}\n", what.join(", ")));
        (out, EXIT_MISMATCH)
    }
}
