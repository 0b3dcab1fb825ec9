//! Secret detectors: provider token formats, keys in context, credentials in URLs, PEM blocks.

use regex::Regex;

use crate::config::PatternError;
use crate::detect::text::{contains_word, entropy};
use crate::detect::window::{ProviderAnchors, Regions};

/// Provider formats recognised by their own shape, most specific first. Names are for docs.
pub const PROVIDER_FORMATS: &[(&str, &str)] = &[
    (
        "anthropic",
        r"sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,120}",
    ),
    (
        "openai_project",
        r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}",
    ),
    ("openai_legacy", r"sk-[A-Za-z0-9]{48}"),
    (
        "github_fine_grained",
        r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
    ),
    ("github_classic", r"gh[pousr]_[A-Za-z0-9]{36}"),
    ("gitlab", r"gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,40}"),
    (
        "slack_webhook",
        r"hooks\.slack\.com/services/T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24}",
    ),
    ("slack_token", r"xox[abposr]-[A-Za-z0-9-]{10,120}"),
    (
        "slack_app",
        r"xapp-\d-[A-Z0-9]{8,12}-\d{10,14}-[a-f0-9]{32,64}",
    ),
    ("stripe_live", r"(?:sk|rk)_live_[A-Za-z0-9]{24,99}"),
    ("stripe_webhook", r"whsec_[A-Za-z0-9]{32,64}"),
    ("google_api_key", r"AIza[0-9A-Za-z_-]{35}"),
    ("aws_access_key_id", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"),
    (
        "jwt",
        r"eyJ[A-Za-z0-9_-]{10,2000}\.eyJ[A-Za-z0-9_-]{10,4000}\.[A-Za-z0-9_-]{10,1000}",
    ),
    ("twilio_api_key", r"SK[0-9a-f]{32}"),
    ("sendgrid", r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    ("npm", r"npm_[A-Za-z0-9]{36}"),
    ("pypi", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,300}"),
    ("hugging_face", r"hf_[A-Za-z]{34}"),
    (
        "discord_bot",
        r"[MN][A-Za-z0-9]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}",
    ),
    ("telegram_bot", r"\d{8,10}:AA[A-Za-z0-9_-]{33}"),
    ("shopify", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("digitalocean", r"do[por]_v1_[a-f0-9]{64}"),
    ("square", r"sq0(?:atp|csp)-[0-9A-Za-z_-]{22,43}"),
    ("mailgun", r"key-[0-9a-f]{32}"),
    ("linear", r"lin_api_[A-Za-z0-9]{40}"),
    ("groq", r"gsk_[A-Za-z0-9]{52}"),
    ("xai", r"xai-[A-Za-z0-9]{80}"),
];

/// Provider formats without a literal prefix, each compiled on its own so that the prefixed
/// formats above keep their literal prefilter (and the lazy DFA stays small).
pub const UNPREFIXED_FORMATS: &[(&str, &str)] = &[
    (
        "discord_bot",
        r"[MN][A-Za-z0-9]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}",
    ),
    ("telegram_bot", r"\d{8,10}:AA[A-Za-z0-9_-]{33}"),
    ("mailchimp", r"[0-9a-f]{32}-us\d{1,2}"),
];

/// Formats that need their context; capture group 1 is the secret.
pub const CONTEXT_FORMATS: &[(&str, &str)] = &[
    (
        "aws_secret_access_key",
        r#"(?i)aws_?secret_?(?:access_?)?key["']?\s{0,3}(?::|=|:=|=>)\s{0,3}["']?([A-Za-z0-9/+]{40})"#,
    ),
    ("azure_storage_key", r"AccountKey=([A-Za-z0-9+/]{86}==)"),
    (
        "datadog",
        r#"(?i)(?:dd|datadog)_?(?:api|app|application)_?key["']?\s{0,3}(?::|=)\s{0,3}["']?([a-f0-9]{32}|[a-f0-9]{40})"#,
    ),
    (
        "url_credentials",
        r#"[A-Za-z][A-Za-z0-9+.-]{1,15}://([^\s:/@"'<>]{1,64}:[^\s/@"'<>]{1,128})@"#,
    ),
];

/// A value assigned to a name like key, token, secret or password; group 1 is the name, group 2
/// the value.
// The name and value repetitions are unbounded on purpose: bounded ones before a keyword make the
// lazy DFA's states explode. Their lengths are checked in `assigned_secret`.
const ASSIGNMENT: &str = r#"((?i-u:[a-z0-9_.-]*(?:key|token|secret|password|passwd|pwd|pass|credentials?|auth)))["']?\s{0,3}(?::|=|:=|=>)\s{0,3}["']?([^\s"'`,;<>()\[\]{}]{6,})"#;

/// The words an assignment's name ends with, as in [`ASSIGNMENT`].
// INVARIANT (assignment-keywords): the same alternatives as the keyword group of `ASSIGNMENT`.
pub(crate) const ASSIGNMENT_KEYWORDS: &[&str] = &[
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "pass",
    "credential",
    "credentials",
    "auth",
];

/// Longest name and value taken by the assignment detector.
const MAX_NAME_BYTES: usize = 64;
const MAX_VALUE_BYTES: usize = 512;

const PEM_BEGIN: &str = "-----BEGIN ";
const PEM_END: &str = "-----END ";
/// The longest PEM block searched for its end line; past it the rest of the input is masked.
const PEM_MAX_BYTES: usize = 16 * 1024;

const PASSWORD_NAMES: &[&str] = &["password", "passwd", "pwd", "pass", "secret"];
const NOT_SECRET_NAMES: &[&str] = &[
    "idempotency",
    "cache",
    "sort",
    "partition",
    "primary",
    "foreign",
    "public",
    "dedup",
    "routing",
    "lookup",
    "object",
    "bucket",
    "max",
    "min",
    "count",
    "num",
    "next",
    "page",
    "pagination",
    "continuation",
    "cursor",
    "etag",
    "hash",
    "id",
    "uuid",
    "version",
    "type",
    "name",
    "expires",
];
const PLACEHOLDERS: &[&str] = &[
    "***",
    "xxx",
    "...",
    "${",
    "{{",
    "redacted",
    "example",
    "placeholder",
    "your_",
    "your-",
    "<",
    "null",
    "none",
    "undefined",
    "changeit",
    "env.",
    "process.",
];

/// The compiled secret detectors.
#[derive(Debug)]
pub(crate) struct SecretDetector {
    pub(crate) providers: Regex,
    pub(crate) provider_anchors: ProviderAnchors,
    unprefixed: Vec<Regex>,
    context: Vec<Regex>,
    pub(crate) assignment: Regex,
    pem_header: Regex,
}

impl SecretDetector {
    pub(crate) fn new() -> Result<Self, PatternError> {
        let joined = PROVIDER_FORMATS
            .iter()
            .map(|(_, pattern)| format!("(?:{pattern})"))
            .collect::<Vec<_>>()
            .join("|");
        let providers = compile("secret_providers", &joined)?;
        let ascii: Vec<(&str, String)> = PROVIDER_FORMATS
            .iter()
            .map(|(name, pattern)| (*name, crate::detect::ascii_classes(pattern)))
            .collect();
        let provider_anchors = ProviderAnchors::new(&ascii);
        let unprefixed = UNPREFIXED_FORMATS
            .iter()
            .map(|(name, pattern)| compile(name, pattern))
            .collect::<Result<Vec<_>, _>>()?;
        let context = CONTEXT_FORMATS
            .iter()
            .map(|(name, pattern)| compile(name, pattern))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SecretDetector {
            providers,
            provider_anchors,
            unprefixed,
            context,
            assignment: compile("secret_assignment", ASSIGNMENT)?,
            pem_header: compile(
                "pem_header",
                r"\A-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY-----",
            )?,
        })
    }

    /// Pushes `(start, end)` of every secret in `text`.
    pub(crate) fn find(&self, text: &str, out: &mut Vec<(usize, usize)>) {
        let bytes = text.as_bytes();
        // The joined provider regex runs only on windows after its anchors.
        let mut regions = Regions::default();
        regions.providers(text, &self.provider_anchors);
        regions.find_iter(&self.providers, text, |start, end| {
            if token_isolated(bytes, start, end) {
                out.push((start, end));
            }
        });
        for regex in &self.unprefixed {
            for found in regex.find_iter(text) {
                if token_isolated(bytes, found.start(), found.end()) {
                    out.push((found.start(), found.end()));
                }
            }
        }
        for (regex, (name, _)) in self.context.iter().zip(CONTEXT_FORMATS) {
            // Skip a pass when its required literal is absent (a cheap substring search).
            if !context_literal_present(name, text) {
                continue;
            }
            for caps in regex.captures_iter(text) {
                if let Some(value) = caps.get(1) {
                    out.push((value.start(), value.end()));
                }
            }
        }
        // The assignment regex runs only around separators after a key-like name.
        regions.assignment(text, ASSIGNMENT_KEYWORDS);
        regions.for_each(text, |offset, region| {
            for caps in self.assignment.captures_iter(region) {
                if let (Some(name), Some(value)) = (caps.get(1), caps.get(2))
                    && assigned_secret(name.as_str(), value.as_str())
                {
                    out.push((offset + value.start(), offset + value.end()));
                }
            }
        });
        self.find_pem(text, out);
    }

    fn find_pem(&self, text: &str, out: &mut Vec<(usize, usize)>) {
        let mut from = 0;
        while let Some(offset) = text.get(from..).and_then(|rest| rest.find(PEM_BEGIN)) {
            let start = from + offset;
            let Some(rest) = text.get(start..) else { break };
            if !self.pem_header.is_match(rest) {
                from = start + PEM_BEGIN.len();
                continue;
            }
            // INVARIANT (pem-fail-closed): a block without its end line is masked to the end of
            // the input (or the search limit), never left partly visible.
            let window_end = floor_char_boundary(text, start.saturating_add(PEM_MAX_BYTES));
            let window = text.get(start..window_end).unwrap_or(rest);
            let end = match window.find(PEM_END) {
                Some(end_offset) => {
                    let after_end = start + end_offset + PEM_END.len();
                    text.get(after_end..)
                        .and_then(|tail| tail.find("-----"))
                        .map_or(text.len(), |close| after_end + close + 5)
                }
                None => window_end,
            };
            out.push((start, end));
            from = end.max(start + 1);
        }
    }
}

/// False when `text` cannot hold a match of the context format `name`.
fn context_literal_present(name: &str, text: &str) -> bool {
    match name {
        "azure_storage_key" => text.contains("AccountKey="),
        "url_credentials" => text.contains("://"),
        _ => true,
    }
}

fn compile(name: &'static str, pattern: &str) -> Result<Regex, PatternError> {
    regex::RegexBuilder::new(&crate::detect::ascii_classes(pattern))
        .size_limit(32 << 20)
        .dfa_size_limit(crate::detect::LAZY_DFA_CACHE_BYTES)
        .build()
        .map_err(|_| PatternError { name })
}

/// A provider token must not be glued to more token characters on either side.
fn token_isolated(text: &[u8], start: usize, end: usize) -> bool {
    let is_token = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let before = start.checked_sub(1).and_then(|idx| text.get(idx));
    !before.is_some_and(is_token) && !text.get(end).is_some_and(is_token)
}

/// Decides whether `value`, assigned to `name`, looks like a real secret.
fn assigned_secret(name: &str, value: &str) -> bool {
    if name.len() > MAX_NAME_BYTES || value.len() > MAX_VALUE_BYTES {
        return false;
    }
    let name = name.to_ascii_lowercase();
    let lower = value.to_ascii_lowercase();
    if contains_word(&name.replace(['_', '-', '.'], " "), NOT_SECRET_NAMES)
        || PLACEHOLDERS.iter().any(|p| lower.contains(p))
        || value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || matches!(lower.as_str(), "true" | "false" | "required" | "optional")
    {
        return false;
    }
    let classes = [
        value.bytes().any(|b| b.is_ascii_lowercase()),
        value.bytes().any(|b| b.is_ascii_uppercase()),
        value.bytes().any(|b| b.is_ascii_digit()),
        value.bytes().any(|b| !b.is_ascii_alphanumeric()),
    ];
    let n_classes = classes.iter().filter(|c| **c).count();
    let is_password = PASSWORD_NAMES.iter().any(|p| name.ends_with(p));
    if is_password {
        value.len() >= 8 && n_classes >= 2
    } else {
        let n_alnum_classes = classes.iter().take(3).filter(|c| **c).count();
        value.len() >= 16 && n_alnum_classes >= 2 && entropy(value.as_bytes()) >= 3.0
    }
}

/// The largest char boundary at or below `idx`.
fn floor_char_boundary(text: &str, idx: usize) -> usize {
    let mut idx = idx.min(text.len());
    while idx > 0 && !text.is_char_boundary(idx) {
        idx -= 1;
    }
    idx
}
