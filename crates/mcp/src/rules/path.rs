//! `path` rules: a path (or a `file://` URI's path) must lie within a root; the checked form is
//! the normalized absolute path, which is what gets forwarded.

use std::path::{Component, Path, PathBuf};

/// A compiled root.
#[derive(Debug)]
pub(super) struct Root {
    pub(super) lexical: PathBuf,
    /// The canonical form, for symlink checks, when the root is local and exists.
    pub(super) canonical: Option<PathBuf>,
    pub(super) local: bool,
}

impl Root {
    /// `None` when `root` is not absolute or holds `..`.
    pub(super) fn compile(root: &Path, local: bool) -> Option<Root> {
        if !root.is_absolute() || has_parent_component(root) {
            return None;
        }
        let lexical = lexical_normalize(root);
        let canonical = if local {
            std::fs::canonicalize(&lexical).ok()
        } else {
            None
        };
        Some(Root {
            lexical,
            canonical,
            local,
        })
    }
}

/// Checks `text` against `roots` and answers the path to forward: absolute, without `.`
/// components or repeated separators.
///
/// INVARIANT (checked-is-forwarded): the answer is exactly the path that was found within a
/// root, so the upstream cannot resolve it against a working directory of its own. Normalizing
/// the answer again gives the answer (a fixed point), which `ArgumentRules` relies on.
pub(super) fn check_path(text: &str, roots: &[Root]) -> Result<String, &'static str> {
    if text.is_empty() || text.contains('\0') {
        return Err("the path is empty or holds a NUL byte");
    }
    let path = Path::new(text);
    if has_parent_component(path) {
        return Err("the path holds a `..` component");
    }
    let first = roots.first().ok_or("no root is configured")?;
    let absolute = if path.is_absolute() {
        lexical_normalize(path)
    } else {
        // INVARIANT (relative-to-first-root): a relative path is taken relative to the first root.
        lexical_normalize(&first.lexical.join(path))
    };
    let Some(root) = roots
        .iter()
        .find(|root| absolute.starts_with(&root.lexical))
    else {
        return Err("the path lies outside the allowed roots");
    };
    if root.local {
        let canonical_root = match &root.canonical {
            Some(canonical) => canonical.clone(),
            None => std::fs::canonicalize(&root.lexical)
                .map_err(|_| "the allowed root does not exist")?,
        };
        let resolved =
            canonicalize_existing_prefix(&absolute).ok_or("the path cannot be resolved")?;
        if !resolved.starts_with(&canonical_root) {
            return Err("the path leaves the allowed roots through a symbolic link");
        }
    }
    absolute
        .into_os_string()
        .into_string()
        .map_err(|_| "the path cannot be forwarded as text")
}

/// The path of a `file:` URI (`file:///p` or `file://localhost/p`), percent-decoded.
pub(super) fn file_uri_path(uri: &str) -> Result<String, &'static str> {
    const NOT_FILE: &str = "the URI is not a plain file:// URI";
    let (scheme, rest) = uri.split_once(':').ok_or(NOT_FILE)?;
    if !scheme.eq_ignore_ascii_case("file") {
        return Err(NOT_FILE);
    }
    let rest = rest.strip_prefix("//").ok_or(NOT_FILE)?;
    let slash = rest.find('/').ok_or(NOT_FILE)?;
    let (authority, path) = rest.split_at(slash);
    if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
        return Err("the file:// URI names another host");
    }
    if path.contains(['?', '#']) {
        return Err("the file:// URI holds a query or fragment");
    }
    percent_decode(path).ok_or("the file:// URI holds a malformed escape")
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
pub(super) fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        if byte == b'%' {
            let high = hex_value(input.next()?)?;
            let low = hex_value(input.next()?)?;
            bytes.push((high << 4) | low);
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).ok()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn has_parent_component(path: &Path) -> bool {
    path.components().any(|c| matches!(c, Component::ParentDir))
}

/// Removes `.` components and repeated separators; never touches `..` (refused earlier).
fn lexical_normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Canonicalizes the longest existing prefix of `path` and appends the rest unchanged.
fn canonicalize_existing_prefix(path: &Path) -> Option<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(&existing) {
            Ok(canonical) => {
                let mut res = canonical;
                for part in rest.iter().rev() {
                    res.push(part);
                }
                return Some(res);
            }
            Err(_) => {
                let name = existing.file_name()?.to_owned();
                rest.push(name);
                if !existing.pop() {
                    return None;
                }
            }
        }
    }
}
