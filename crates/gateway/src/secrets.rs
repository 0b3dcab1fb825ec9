//! Secrets Portcullis holds for upstreams and providers, referenced by name from the
//! configuration, and the redactor that keeps their values out of everything agents, logs and the
//! ledger see.
//!
//! Two sources, both read once at start-up:
//! - the secrets file (`[secrets] file`): a TOML table of `name = "value"` strings, refused unless
//!   it is a regular file readable by its owner only (no group or other permission bits);
//! - `[secrets.env]`: `name = "ENV_VAR"`, the value of an environment variable of the gateway.
//!
//! A name defined by both is a start-up error, so which value is in force is never a guess.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, MatchKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a redacted secret value is replaced with.
pub const REDACTED: &str = "[REDACTED_SECRET]";
/// Largest secrets file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most secrets in all.
pub const MAX_SECRETS: usize = 1024;
/// Shortest secret value accepted: shorter values would redact ordinary text.
pub const MIN_VALUE_LEN: usize = 8;
/// Longest secret value accepted.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// `[secrets]`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Secrets file: a TOML table of `name = "value"`. It must be a regular file with mode 0600
    /// (or stricter); anything readable by group or others is refused at start-up. Relative paths
    /// are read from the configuration file's directory.
    pub file: Option<PathBuf>,
    /// Secrets read from the gateway's environment: `name = "ENV_VAR"`. A missing variable is a
    /// start-up error.
    pub env: BTreeMap<String, String>,
}

/// A secret's value. Its `Debug` and `Display` never show it; only [`SecretValue::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// The value, for injection into an upstream's environment or a provider request.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Why the secrets could not be loaded or a reference not resolved. Never carries a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secrets file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the secrets file {path} is readable by group or others (mode {mode:o}); run `chmod 600` on it"
    )]
    Insecure { path: PathBuf, mode: u32 },
    #[error("the secrets file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("the secrets file {path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("the secrets file {path} is not a TOML table of strings: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "secret name `{name}` is invalid: use 1-64 characters among letters, digits, `_`, `-` and `.`"
    )]
    BadName { name: String },
    #[error("secret `{name}` is defined both in the secrets file and in secrets.env")]
    Duplicate { name: String },
    #[error("secret `{name}` names the environment variable `{var}`, which is not set")]
    MissingEnv { name: String, var: String },
    #[error("secret `{name}` is shorter than {MIN_VALUE_LEN} or longer than {MAX_VALUE_LEN} bytes")]
    BadLength { name: String },
    #[error("more than {MAX_SECRETS} secrets are defined")]
    TooMany,
    #[error("secret `{name}` is not defined (neither in the secrets file nor in secrets.env)")]
    Unknown { name: String },
}

/// The loaded secrets and a redactor over all their values.
#[derive(Clone, Default)]
pub struct Secrets {
    values: BTreeMap<String, SecretValue>,
    /// Matches every value; `None` when there are no secrets.
    matcher: Option<AhoCorasick>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// Loads the secrets `config` defines. `file` is the secrets file path already resolved
    /// against the configuration's directory; `env` looks up an environment variable.
    pub fn load(
        config: &SecretsConfig,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, SecretsError> {
        let mut values = match file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        for (name, var) in &config.env {
            check_name(name)?;
            if values.contains_key(name) {
                return Err(SecretsError::Duplicate { name: name.clone() });
            }
            let value = env(var).ok_or_else(|| SecretsError::MissingEnv {
                name: name.clone(),
                var: var.clone(),
            })?;
            values.insert(name.clone(), value);
        }
        Self::from_values(values)
    }

    /// Secrets from `name -> value` pairs (tests and embedders).
    pub fn from_values(values: BTreeMap<String, String>) -> Result<Self, SecretsError> {
        if values.len() > MAX_SECRETS {
            return Err(SecretsError::TooMany);
        }
        let mut checked = BTreeMap::new();
        for (name, value) in values {
            check_name(&name)?;
            if !(MIN_VALUE_LEN..=MAX_VALUE_LEN).contains(&value.len()) {
                return Err(SecretsError::BadLength { name });
            }
            checked.insert(name, SecretValue(value));
        }
        let matcher = if checked.is_empty() {
            None
        } else {
            // Leftmost-longest: a value that contains another is redacted whole.
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(checked.values().map(SecretValue::expose))
                .ok()
        };
        Ok(Self {
            values: checked,
            matcher,
        })
    }

    /// The secret `name`, or an error naming it (never its value).
    pub fn require(&self, name: &str) -> Result<&SecretValue, SecretsError> {
        self.values.get(name).ok_or_else(|| SecretsError::Unknown {
            name: name.to_owned(),
        })
    }

    /// The secret `name`, when defined.
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.values.get(name)
    }

    /// Names of every defined secret, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Whether no secret is defined.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by [`REDACTED`]; borrowed when nothing matched.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.matcher {
            Some(matcher) if matcher.is_match(text) => {
                Cow::Owned(matcher.replace_all(text, &vec![REDACTED; self.values.len()]))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Whether `text` holds any secret value.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|matcher| matcher.is_match(text))
    }

    /// Redacts every string (keys included) inside a JSON value, in place; returns how many
    /// strings changed.
    pub fn redact_json(&self, value: &mut serde_json::Value) -> usize {
        if self.matcher.is_none() {
            return 0;
        }
        let mut changed = 0;
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                serde_json::Value::String(text) => {
                    if let Cow::Owned(clean) = self.redact(text) {
                        *text = clean;
                        changed += 1;
                    }
                }
                serde_json::Value::Array(items) => stack.extend(items.iter_mut()),
                serde_json::Value::Object(map) => {
                    if map.keys().any(|key| self.contains_secret(key)) {
                        let old = std::mem::take(map);
                        for (key, item) in old {
                            let key = match self.redact(&key) {
                                Cow::Owned(clean) => {
                                    changed += 1;
                                    clean
                                }
                                Cow::Borrowed(_) => key,
                            };
                            map.insert(key, item);
                        }
                    }
                    stack.extend(map.values_mut());
                }
                _ => {}
            }
        }
        changed
    }
}

/// The key that keeps synthetic values and hashes stable: the value of the secret `key_secret`
/// names (`[pii] key_secret`), else a random key for this process.
pub fn pii_key(secrets: &Secrets, key_secret: Option<&str>) -> Result<Vec<u8>, SecretsError> {
    match key_secret {
        Some(name) => Ok(secrets.require(name)?.expose().as_bytes().to_vec()),
        None => {
            let mut key = vec![0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
            Ok(key)
        }
    }
}

/// Whether `name` is a valid secret name: 1-64 letters, digits, `_`, `-` or `.`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn check_name(name: &str) -> Result<(), SecretsError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(SecretsError::BadName {
            name: name.to_owned(),
        })
    }
}

/// Why a private file (secrets, a node key) was not read. Never carries the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("it is not a regular file")]
    NotAFile,
    #[error("it is readable by group or others (mode {mode:o}); run `chmod 600` on it")]
    Insecure { mode: u32 },
    #[error("it is larger than {max} bytes")]
    TooLarge { max: u64 },
}

/// Reads a file that holds secrets: it must be a regular file with no group or other permission
/// bits (on Unix) and at most `max` bytes.
pub fn read_private_file(path: &Path, max: u64) -> Result<String, PrivateFileError> {
    let meta = std::fs::metadata(path).map_err(PrivateFileError::Read)?;
    if !meta.is_file() {
        return Err(PrivateFileError::NotAFile);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(PrivateFileError::Insecure { mode });
        }
    }
    if meta.len() > max {
        return Err(PrivateFileError::TooLarge { max });
    }
    std::fs::read_to_string(path).map_err(PrivateFileError::Read)
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>, SecretsError> {
    let text = read_private_file(path, MAX_FILE_BYTES).map_err(|err| match err {
        PrivateFileError::Read(source) => SecretsError::Read {
            path: path.to_owned(),
            source,
        },
        PrivateFileError::NotAFile => SecretsError::NotAFile {
            path: path.to_owned(),
        },
        PrivateFileError::Insecure { mode } => SecretsError::Insecure {
            path: path.to_owned(),
            mode,
        },
        PrivateFileError::TooLarge { .. } => SecretsError::TooLarge {
            path: path.to_owned(),
        },
    })?;
    // The parser's message may quote a line of the file, which can hold a value: keep only its
    // position.
    let table: BTreeMap<String, String> =
        toml::from_str(&text).map_err(|err: toml::de::Error| SecretsError::Parse {
            path: path.to_owned(),
            message: match err.span() {
                Some(span) => format!("error at byte {}", span.start),
                None => "not a table of strings".to_owned(),
            },
        })?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn write(dir: &Path, body: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("secrets.toml");
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn file_and_env_secrets_load_and_redact() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "github = \"ghp_0123456789abcdef\"\n", 0o600);
        let config = SecretsConfig {
            file: Some(path.clone()),
            env: BTreeMap::from([("openai".to_owned(), "MY_OPENAI".to_owned())]),
        };
        let env = |var: &str| (var == "MY_OPENAI").then(|| "sk-live-secret-value".to_owned());
        let secrets = Secrets::load(&config, Some(&path), &env).unwrap();
        assert_eq!(secrets.names().collect::<Vec<_>>(), ["github", "openai"]);
        assert_eq!(
            secrets.require("openai").unwrap().expose(),
            "sk-live-secret-value"
        );
        assert_eq!(
            secrets.redact("a ghp_0123456789abcdef b sk-live-secret-value"),
            "a [REDACTED_SECRET] b [REDACTED_SECRET]"
        );
        assert!(matches!(secrets.redact("clean"), Cow::Borrowed("clean")));
        let debug = format!("{secrets:?} {:?}", secrets.require("github").unwrap());
        assert!(!debug.contains("ghp_"), "{debug}");
        assert!(matches!(
            secrets.require("nope"),
            Err(SecretsError::Unknown { .. })
        ));
    }

    #[test]
    fn json_redaction_reaches_nested_strings_and_keys() {
        let secrets = Secrets::from_values(BTreeMap::from([(
            "k".to_owned(),
            "s3cr3t-value".to_owned(),
        )]))
        .unwrap();
        let mut value = serde_json::json!({
            "a": ["x s3cr3t-value y", {"s3cr3t-value": 1}],
            "b": "clean",
        });
        assert_eq!(secrets.redact_json(&mut value), 2);
        assert!(!value.to_string().contains("s3cr3t-value"), "{value}");
    }

    #[test]
    fn a_group_readable_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a = \"0123456789\"\n", 0o640);
        let err = Secrets::load(&SecretsConfig::default(), Some(&path), &|_| None).unwrap_err();
        assert!(
            matches!(err, SecretsError::Insecure { mode: 0o640, .. }),
            "{err}"
        );
    }

    #[test]
    fn bad_files_and_references_name_the_problem_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a = \"hunter2-hunter2\"\nb = 5\n", 0o600);
        let err = Secrets::load(&SecretsConfig::default(), Some(&path), &|_| None).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let path = write(dir.path(), "a = \"short\"\n", 0o600);
        assert!(matches!(
            Secrets::load(&SecretsConfig::default(), Some(&path), &|_| None),
            Err(SecretsError::BadLength { .. })
        ));
        let config = SecretsConfig {
            file: None,
            env: BTreeMap::from([("x".to_owned(), "UNSET_VAR".to_owned())]),
        };
        assert!(matches!(
            Secrets::load(&config, None, &|_| None),
            Err(SecretsError::MissingEnv { .. })
        ));
        let config = SecretsConfig {
            file: None,
            env: BTreeMap::from([("bad name".to_owned(), "V".to_owned())]),
        };
        assert!(matches!(
            Secrets::load(&config, None, &|_| Some("0123456789".into())),
            Err(SecretsError::BadName { .. })
        ));
    }
}
