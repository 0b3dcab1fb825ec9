//! Strict parsing of egress targets: absolute `http(s)` URLs and CONNECT authorities.
//!
//! Hand-written on purpose. The `url` crate implements the WHATWG parser, whose job is to
//! *repair* input (backslashes become slashes, tabs and newlines vanish, `%2e` is decoded in
//! hosts, userinfo is accepted, empty ports mean the default). A gate must instead refuse every
//! input on which two parsers could disagree, so this parser accepts a small, unambiguous subset
//! and decodes IPv4 hosts exactly as WHATWG does (see `host::parse_whatwg_ipv4`).

use crate::host::{Host, parse_host};
use crate::reason::Reason;

/// Longest target accepted, in bytes.
pub const MAX_TARGET_LEN: usize = 8192;

/// How the target reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// An absolute URL (`http://host[:port]/path`), as in a proxy's absolute-form request.
    Url,
    /// A CONNECT authority (`host:port`); the port is required.
    Connect,
}

/// A target request as it arrives: the raw text and its form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRequest<'a> {
    pub raw: &'a str,
    pub form: TargetForm,
}

impl<'a> TargetRequest<'a> {
    pub fn url(raw: &'a str) -> Self {
        Self {
            raw,
            form: TargetForm::Url,
        }
    }

    pub fn connect(raw: &'a str) -> Self {
        Self {
            raw,
            form: TargetForm::Connect,
        }
    }
}

/// A parsed target: the host, classified, and the port (explicit or the scheme's default).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

/// Parses a target strictly; any refusal carries a `BadRequest`-class reason.
pub fn parse_target(request: TargetRequest<'_>) -> Result<Target, Reason> {
    let raw = request.raw;
    if raw.is_empty() || raw.len() > MAX_TARGET_LEN {
        return Err(Reason::BadTarget);
    }
    // INVARIANT (printable-ascii): past this loop every byte is printable ASCII other than `\`,
    // so no later step meets controls, spaces, NUL, non-ASCII or backslashes.
    for byte in raw.bytes() {
        if !byte.is_ascii_graphic() || byte == b'\\' {
            return Err(Reason::BadEncoding);
        }
    }
    match request.form {
        TargetForm::Url => parse_url(raw),
        TargetForm::Connect => parse_connect(raw),
    }
}

fn parse_url(raw: &str) -> Result<Target, Reason> {
    let (scheme, rest) = raw.split_once("://").ok_or(Reason::BadTarget)?;
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("https") {
        443
    } else if scheme
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !scheme.is_empty()
    {
        return Err(Reason::BadScheme);
    } else {
        return Err(Reason::BadTarget);
    };
    // The authority ends at the first `/`, `?` or `#`, exactly where a WHATWG parser ends it
    // for special schemes once backslashes are gone.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, _path) = rest.split_at_checked(end).ok_or(Reason::BadTarget)?;
    parse_authority(authority, Some(default_port))
}

fn parse_connect(raw: &str) -> Result<Target, Reason> {
    if raw.contains(['/', '?', '#']) {
        return Err(Reason::BadTarget);
    }
    parse_authority(raw, None)
}

fn parse_authority(authority: &str, default_port: Option<u16>) -> Result<Target, Reason> {
    if authority.contains('@') {
        return Err(Reason::Userinfo);
    }
    if authority.is_empty() {
        return Err(Reason::BadTarget);
    }
    let (host_text, port_text) = split_host_port(authority)?;
    if host_text.is_empty() {
        return Err(Reason::BadHost);
    }
    if host_text.contains('%') {
        return Err(if host_text.starts_with('[') {
            Reason::ZoneId
        } else {
            Reason::BadEncoding
        });
    }
    let port = match (port_text, default_port) {
        (Some(text), _) => parse_port(text)?,
        (None, Some(port)) => port,
        (None, None) => return Err(Reason::PortRequired),
    };
    let host = parse_host(host_text)?;
    Ok(Target { host, port })
}

/// Splits `host[:port]`; an IPv6 host is bracketed so its colons are not the port separator.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), Reason> {
    if authority.starts_with('[') {
        let close = authority.find(']').ok_or(Reason::BadHost)?;
        let (host, after) = authority
            .split_at_checked(close + 1)
            .ok_or(Reason::BadHost)?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(Reason::BadHost),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) => {
            if port.contains(':') {
                // Unbracketed IPv6 or a doubled port.
                return Err(Reason::BadHost);
            }
            Ok((host, Some(port)))
        }
        None => Ok((authority, None)),
    }
}

/// A port is 1 to 5 ASCII digits with a value in 1..=65535: no sign, no empty port.
fn parse_port(text: &str) -> Result<u16, Reason> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reason::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(Reason::BadPort),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(request: TargetRequest<'_>, expected: Result<&str, Reason>) {
        let got = parse_target(request).map(|t| format!("{}:{}", t.host, t.port));
        assert_eq!(got.as_deref().map_err(|r| *r), expected, "{request:?}");
    }

    #[test]
    fn urls() {
        let u = TargetRequest::url;
        check(u("http://example.com/"), Ok("example.com:80"));
        check(u("HTTPS://Example.com"), Ok("example.com:443"));
        check(u("https://example.com:8443/x?y#z"), Ok("example.com:8443"));
        check(u("http://example.com?x"), Ok("example.com:80"));
        check(u("http://example.com#@evil.com"), Ok("example.com:80"));
        check(u("http://[::1]:8080/"), Ok("[::1]:8080"));
        check(u("ftp://example.com/"), Err(Reason::BadScheme));
        check(u("/just/a/path"), Err(Reason::BadTarget));
        check(u("//example.com/"), Err(Reason::BadTarget));
        check(u("http:/example.com/"), Err(Reason::BadTarget));
        check(u("http://"), Err(Reason::BadTarget));
        check(u("http:///x"), Err(Reason::BadTarget));
        check(u("http://:80/"), Err(Reason::BadHost));
        check(u("http://user@example.com/"), Err(Reason::Userinfo));
        check(u("http://a.com:80@b.com/"), Err(Reason::Userinfo));
        check(u("http://a.com\\@b.com/"), Err(Reason::BadEncoding));
        check(u("http://exa%6dple.com/"), Err(Reason::BadEncoding));
        check(u("http://example.com/%2e%2e/"), Ok("example.com:80"));
        check(u("http://exa mple.com/"), Err(Reason::BadEncoding));
        check(
            u("http://example.com\0.evil.com/"),
            Err(Reason::BadEncoding),
        );
        check(u("http://example.com:/"), Err(Reason::BadPort));
        check(u("http://example.com:+80/"), Err(Reason::BadPort));
        check(u("http://example.com:-1/"), Err(Reason::BadPort));
        check(u("http://example.com:0/"), Err(Reason::BadPort));
        check(u("http://example.com:65536/"), Err(Reason::BadPort));
        check(u("http://example.com:080/"), Ok("example.com:80"));
        check(u("http://example.com:80:80/"), Err(Reason::BadHost));
        check(u("http://::1/"), Err(Reason::BadHost));
    }

    #[test]
    fn connect_authorities() {
        let c = TargetRequest::connect;
        check(c("example.com:443"), Ok("example.com:443"));
        check(c("example.com"), Err(Reason::PortRequired));
        check(c("[2001:db8::1]:443"), Ok("[2001:db8::1]:443"));
        check(c("[2001:db8::1]"), Err(Reason::PortRequired));
        check(c("[2001:db8::1]x:443"), Err(Reason::BadHost));
        check(c("example.com:443/"), Err(Reason::BadTarget));
        check(c("http://example.com:443"), Err(Reason::BadTarget));
        check(c("u:p@example.com:443"), Err(Reason::Userinfo));
        check(c(":443"), Err(Reason::BadHost));
        check(c("example.com:"), Err(Reason::BadPort));
        check(c(""), Err(Reason::BadTarget));
    }
}
