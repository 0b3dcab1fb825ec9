//! `portcullis capsule ...`: offline capsule keys, signing, verification and inspection.
//!
//! Every command works on files and arguments only; none talks to a gateway. Secret keys are
//! written 0600 and never printed; tokens and bodies are printed only where the command's purpose
//! is to print them (`sign`, `inspect`, `template`).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use jiff::Timestamp;
use rand_core::{OsRng, RngCore as _};
use serde_json::{Value, json};

use portcullis_capsule::{
    Algorithm, CapsuleLimits, IssuerEntry, KeyFile, NodeEntry, Scope, SigningKey, TrustStore,
    VerifyError,
};
use portcullis_core::{Clock as _, SystemClock};

/// Largest body or token file read.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum CapsuleCommand {
    /// Generate a key pair: writes DIR/<kid>.key (secret, 0600) and DIR/<kid>.pub.json (the
    /// trust-store entry), and prints the entry.
    Keygen {
        #[arg(long, value_enum)]
        alg: AlgArg,
        /// Key id: 1-64 of [A-Za-z0-9._-], not starting with a dot.
        #[arg(long)]
        kid: String,
        /// Directory for the two files (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Issuer or node id for the trust-store entry (default: the kid).
        #[arg(long)]
        id: Option<String>,
        /// Print a relaying-node entry instead of an issuer entry.
        #[arg(long)]
        node: bool,
        /// Scopes the issuer may sign, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "none,children,peers,all")]
        scopes: Vec<ScopeArg>,
        /// Gate-key patterns the issuer may deny, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        patterns: Vec<String>,
    },
    /// Print a capsule body template (every field, example values, `iat` = now).
    Template,
    /// Sign a body (JSON file, or `-` for stdin) and print the token.
    Sign {
        /// Secret key file written by `capsule keygen`.
        #[arg(long)]
        key: PathBuf,
        /// The key id; must match the key file and the body's `kid`.
        #[arg(long)]
        kid: String,
        /// The body as JSON (any formatting); canonicalized before signing.
        body: PathBuf,
    },
    /// Verify a token against a trust store; prints a JSON verdict, exits non-zero on refusal.
    Verify {
        /// Trust-store JSON file.
        #[arg(long)]
        trust: PathBuf,
        /// The token, `-` for stdin, or `@FILE`.
        token: String,
        /// Verify as of this instant (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Decode a token and print its body and hop records WITHOUT verifying anything.
    Inspect {
        /// The token, `-` for stdin, or `@FILE`.
        token: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AlgArg {
    Ed25519,
    Secp256k1,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScopeArg {
    None,
    Children,
    Peers,
    All,
}

pub fn run(cmd: CapsuleCommand) -> anyhow::Result<ExitCode> {
    let outcome = execute(cmd, SystemClock.now())?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", outcome.output)?;
    Ok(if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What a command prints and whether it succeeded; `Err` is reserved for unusable input.
#[derive(Debug)]
struct Outcome {
    output: String,
    success: bool,
}

impl Outcome {
    fn ok(output: String) -> Self {
        Self {
            output,
            success: true,
        }
    }
}

fn execute(cmd: CapsuleCommand, now: Timestamp) -> anyhow::Result<Outcome> {
    match cmd {
        CapsuleCommand::Keygen {
            alg,
            kid,
            out,
            id,
            node,
            scopes,
            patterns,
        } => {
            let key = generate_key(alg.into())?;
            let entry = public_entry(&key, &kid, id, node, &scopes, patterns);
            keygen(&key, &kid, &out, &entry).map(Outcome::ok)
        }
        CapsuleCommand::Template => Ok(Outcome::ok(serde_json::to_string_pretty(
            &portcullis_capsule::template(now),
        )?)),
        CapsuleCommand::Sign { key, kid, body } => {
            let key = read_key(&key, &kid)?;
            let body = read_input(&body)?;
            let token = portcullis_capsule::sign_capsule(&body, &kid, &key)
                .context("cannot sign this body")?;
            Ok(Outcome::ok(token))
        }
        CapsuleCommand::Verify { trust, token, at } => {
            let trust_bytes =
                read_limited(&trust, portcullis_capsule::MAX_TRUST_STORE_BYTES as u64)?;
            let trust = TrustStore::from_json(&trust_bytes)
                .with_context(|| format!("cannot load trust store `{}`", trust.display()))?;
            let at = match at {
                Some(text) => text
                    .parse::<Timestamp>()
                    .with_context(|| format!("`{text}` is not an RFC 3339 time"))?,
                None => now,
            };
            let token = read_token(&token)?;
            Ok(verify(&token, &trust, at))
        }
        CapsuleCommand::Inspect { token } => Ok(inspect(&read_token(&token)?)),
    }
}

fn verify(token: &[u8], trust: &TrustStore, at: Timestamp) -> Outcome {
    match portcullis_capsule::verify(token, trust, &CapsuleLimits::default(), at) {
        Ok(verified) => Outcome::ok(
            json!({
                "ok": true,
                "reason": null,
                "id": verified.id(),
                "kid": verified.kid(),
                "iss": verified.issuer_id(),
                "expires_at": rfc3339(verified.expires_at()),
                "scope": verified.scope(),
                "hops": verified.hops().len(),
                "hash": verified.hash_hex(),
            })
            .to_string(),
        ),
        Err(reason) => refusal(token, reason),
    }
}

/// The refusal verdict; names what the token claims when it can be read at all.
fn refusal(token: &[u8], reason: VerifyError) -> Outcome {
    let claimed = portcullis_capsule::inspect(token).ok();
    let claimed = claimed.as_ref();
    Outcome {
        output: json!({
            "ok": false,
            "reason": reason.code(),
            "id": claimed.map(|c| c.body.id.as_str()),
            "kid": claimed.map(|c| c.body.kid.as_str()),
            "iss": claimed.map(|c| c.body.iss.as_str()),
            "expires_at": claimed.map(|c| rfc3339(c.expires_at)),
        })
        .to_string(),
        success: false,
    }
}

fn inspect(token: &[u8]) -> Outcome {
    match portcullis_capsule::inspect(token) {
        Ok(inspection) => Outcome::ok(
            serde_json::to_string_pretty(&json!({
                "verified": false,
                "hash": inspection.hash_hex,
                "expires_at": rfc3339(inspection.expires_at),
                "body": inspection.body_json,
                "hops": inspection.hops,
            }))
            .unwrap_or_default(),
        ),
        Err(reason) => Outcome {
            output: json!({"ok": false, "reason": reason.code()}).to_string(),
            success: false,
        },
    }
}

fn rfc3339(secs: u64) -> Value {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| Timestamp::from_second(secs).ok())
        .map_or(Value::Null, |at| Value::String(at.to_string()))
}

fn generate_key(alg: Algorithm) -> anyhow::Result<SigningKey> {
    // A random 32-byte string is a valid secp256k1 scalar except with probability ~2^-128.
    for _ in 0..8 {
        let mut secret = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut secret)
            .context("the system random number generator failed")?;
        if let Some(key) = SigningKey::from_secret_bytes(alg, &secret) {
            return Ok(key);
        }
    }
    bail!("could not generate a valid key")
}

fn public_entry(
    key: &SigningKey,
    kid: &str,
    id: Option<String>,
    node: bool,
    scopes: &[ScopeArg],
    patterns: Vec<String>,
) -> Value {
    let id = id.unwrap_or_else(|| kid.to_owned());
    let key_b64 = portcullis_capsule::encode_b64(&key.public_key().to_bytes());
    let alg = key.algorithm();
    let kid = kid.to_owned();
    if node {
        json!(NodeEntry {
            id,
            kid,
            alg,
            key_b64,
            revoked: false
        })
    } else {
        json!(IssuerEntry {
            id,
            kid,
            alg,
            key_b64,
            scopes: scopes.iter().map(|scope| Scope::from(*scope)).collect(),
            patterns,
            revoked: false,
        })
    }
}

/// Writes the two files and returns the entry as printed.
fn keygen(key: &SigningKey, kid: &str, out: &Path, entry: &Value) -> anyhow::Result<String> {
    let safe_kid = !kid.is_empty()
        && kid.len() <= 64
        && !kid.starts_with('.')
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !safe_kid {
        bail!("the kid must be 1-64 of [A-Za-z0-9._-] and not start with a dot");
    }
    // Validate the entry the way a gateway will load it before writing anything.
    let store = match entry.get("scopes") {
        Some(_) => json!({"issuers": [entry]}),
        None => json!({"nodes": [entry]}),
    };
    TrustStore::from_json(store.to_string().as_bytes())
        .context("the generated trust-store entry is invalid")?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create directory `{}`", out.display()))?;
    let key_file = KeyFile {
        kid: kid.to_owned(),
        key: key.clone(),
    };
    let key_path = out.join(format!("{kid}.key"));
    write_secret(&key_path, key_file.to_json().as_bytes())?;
    let entry_text = serde_json::to_string_pretty(entry)?;
    let pub_path = out.join(format!("{kid}.pub.json"));
    std::fs::write(&pub_path, format!("{entry_text}\n"))
        .with_context(|| format!("cannot write `{}`", pub_path.display()))?;
    Ok(entry_text)
}

/// Creates `path` 0600, refusing to overwrite an existing key.
fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot create key file `{}` (it must not exist yet)",
            path.display()
        )
    })?;
    file.write_all(bytes)?;
    file.write_all(b"\n")?;
    Ok(())
}

fn read_key(path: &Path, kid: &str) -> anyhow::Result<SigningKey> {
    let bytes = read_limited(path, portcullis_capsule::MAX_KEY_FILE_BYTES as u64)?;
    let file = KeyFile::parse(&bytes)
        .with_context(|| format!("`{}` is not a usable capsule key file", path.display()))?;
    if file.kid != kid {
        bail!("the key file is for kid `{}`, not `{kid}`", file.kid);
    }
    Ok(file.key)
}

fn read_token(arg: &str) -> anyhow::Result<Vec<u8>> {
    let raw = if arg == "-" {
        read_input(Path::new("-"))?
    } else if let Some(path) = arg.strip_prefix('@') {
        read_limited(Path::new(path), MAX_INPUT_BYTES)?
    } else {
        arg.as_bytes().to_vec()
    };
    // Tokens are ASCII; a trailing newline from a file or a pipe is not part of the token.
    let trimmed = raw.trim_ascii();
    Ok(trimmed.to_vec())
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut res = Vec::new();
        std::io::stdin()
            .take(MAX_INPUT_BYTES + 1)
            .read_to_end(&mut res)?;
        if res.len() as u64 > MAX_INPUT_BYTES {
            bail!("standard input is larger than {MAX_INPUT_BYTES} bytes");
        }
        return Ok(res);
    }
    read_limited(path, MAX_INPUT_BYTES)
}

fn read_limited(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut res = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut res)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    if res.len() as u64 > limit {
        bail!("`{}` is larger than {limit} bytes", path.display());
    }
    Ok(res)
}

impl From<AlgArg> for Algorithm {
    fn from(alg: AlgArg) -> Self {
        match alg {
            AlgArg::Ed25519 => Algorithm::Ed25519,
            AlgArg::Secp256k1 => Algorithm::Secp256k1,
        }
    }
}

impl From<ScopeArg> for Scope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::None => Scope::None,
            ScopeArg::Children => Scope::Children,
            ScopeArg::Peers => Scope::Peers,
            ScopeArg::All => Scope::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-capsule-cli-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_767_225_600).unwrap()
    }

    #[track_caller]
    fn run_ok(cmd: CapsuleCommand) -> String {
        let outcome = execute(cmd, now()).unwrap();
        assert!(outcome.success, "{}", outcome.output);
        outcome.output
    }

    fn keygen_cmd(alg: AlgArg, kid: &str, out: &Path) -> CapsuleCommand {
        CapsuleCommand::Keygen {
            alg,
            kid: kid.into(),
            out: out.into(),
            id: Some("ops".into()),
            node: false,
            scopes: vec![ScopeArg::Peers, ScopeArg::None],
            patterns: vec!["tools:*".into()],
        }
    }

    #[track_caller]
    fn check_round_trip(alg: AlgArg, name: &str) {
        let dir = scratch(name);
        let kid = format!("ops-{name}");
        let entry: Value = serde_json::from_str(&run_ok(keygen_cmd(alg, &kid, &dir))).unwrap();
        assert_eq!(entry["kid"], kid.as_str());
        assert!(entry.get("secret_b64").is_none());
        let written: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{kid}.pub.json"))).unwrap())
                .unwrap();
        assert_eq!(written, entry);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(format!("{kid}.key")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = execute(keygen_cmd(alg, &kid, &dir), now());
        assert!(again.is_err(), "keygen must not overwrite a key");

        let trust = dir.join("trust.json");
        std::fs::write(&trust, json!({"issuers": [entry]}).to_string()).unwrap();
        let mut body: Value = serde_json::from_str(&run_ok(CapsuleCommand::Template)).unwrap();
        body["kid"] = json!(kid);
        body["iss"] = json!("ops");
        let body_path = dir.join("body.json");
        std::fs::write(&body_path, serde_json::to_string_pretty(&body).unwrap()).unwrap();
        let key = dir.join(format!("{kid}.key"));
        let token = run_ok(CapsuleCommand::Sign {
            key: key.clone(),
            kid: kid.clone(),
            body: body_path.clone(),
        });
        assert!(token.starts_with("v1."));

        let verdict: Value = serde_json::from_str(&run_ok(CapsuleCommand::Verify {
            trust: trust.clone(),
            token: token.clone(),
            at: None,
        }))
        .unwrap();
        assert_eq!(verdict["ok"], true);
        assert_eq!(verdict["reason"], Value::Null);
        assert_eq!(verdict["id"], "example-capsule-1");
        assert_eq!(verdict["expires_at"], "2026-01-01T01:00:00Z");

        let token_file = dir.join("token.txt");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let late = execute(
            CapsuleCommand::Verify {
                trust: trust.clone(),
                token: format!("@{}", token_file.display()),
                at: Some("2026-01-01T01:00:00Z".into()),
            },
            now(),
        )
        .unwrap();
        assert!(!late.success);
        let late: Value = serde_json::from_str(&late.output).unwrap();
        assert_eq!(late["reason"], "capsule_expired");
        assert_eq!(late["kid"], kid.as_str());

        let inspected: Value = serde_json::from_str(&run_ok(CapsuleCommand::Inspect {
            token: token.clone(),
        }))
        .unwrap();
        assert_eq!(inspected["verified"], false);
        assert_eq!(inspected["body"]["kid"], kid.as_str());
        assert_eq!(inspected["hash"], verdict["hash"]);

        // A deny outside the issuer's patterns signs fine but is refused by verification.
        body["denies"] = json!(["net:host:*"]);
        std::fs::write(&body_path, body.to_string()).unwrap();
        let wide = run_ok(CapsuleCommand::Sign {
            key: key.clone(),
            kid: kid.clone(),
            body: body_path.clone(),
        });
        let refused = execute(
            CapsuleCommand::Verify {
                trust,
                token: wide,
                at: None,
            },
            now(),
        )
        .unwrap();
        assert!(!refused.success);
        assert!(
            refused.output.contains("capsule_pattern_not_allowed"),
            "{}",
            refused.output
        );

        assert!(
            execute(
                CapsuleCommand::Sign {
                    key,
                    kid: "other".into(),
                    body: body_path
                },
                now()
            )
            .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trip_ed25519() {
        check_round_trip(AlgArg::Ed25519, "ed");
    }

    #[test]
    fn round_trip_secp256k1() {
        check_round_trip(AlgArg::Secp256k1, "k1");
    }

    #[test]
    fn refuses_unsafe_kids_and_bad_bodies() {
        let dir = scratch("bad");
        for kid in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(
                execute(keygen_cmd(AlgArg::Ed25519, kid, &dir), now()).is_err(),
                "{kid:?}"
            );
        }
        run_ok(keygen_cmd(AlgArg::Ed25519, "k", &dir));
        let body_path = dir.join("body.json");
        let key = dir.join("k.key");
        for body in [r#"{"v":1,"v":1}"#, r#"{"v":1.0}"#, "[", r#"{"kid":"k"}"#] {
            std::fs::write(&body_path, body).unwrap();
            let res = execute(
                CapsuleCommand::Sign {
                    key: key.clone(),
                    kid: "k".into(),
                    body: body_path.clone(),
                },
                now(),
            );
            assert!(res.is_err(), "{body}");
        }
        let garbage = execute(
            CapsuleCommand::Inspect {
                token: "v1.AAAA".into(),
            },
            now(),
        )
        .unwrap();
        assert!(!garbage.success);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
