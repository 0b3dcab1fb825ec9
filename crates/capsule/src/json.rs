//! A strict, bounded JSON parser and the RFC 8785 canonical form used for every signed byte string.
//!
//! Hand-written because `serde_json` silently keeps the last of two duplicate keys, accepts
//! fractions, exponents and negative numbers into its `Value`, and only bounds nesting with a fixed
//! recursion limit; none of those can be detected after the fact. This parser refuses each of them
//! with its own reason code while it reads, and stops early at the depth, item and string limits,
//! so no outside input can make it allocate or recurse without bound. Canonical output is produced
//! by `serde_jcs`, and [`parse_canonical`] compares the received bytes with it.

use serde_json::{Map, Number, Value};

use crate::reason::VerifyError;

/// Deepest nesting of arrays and objects (the top-level object counts as 1).
pub const MAX_DEPTH: usize = 8;
/// Most items in one array or members in one object.
pub const MAX_ITEMS: usize = 64;
/// Longest string (key or value), in bytes after unescaping.
pub const MAX_STRING_BYTES: usize = 512;
/// Largest integer accepted: 2^53 - 1, the largest every JSON implementation reads exactly.
pub const MAX_INTEGER: u64 = (1 << 53) - 1;

/// Parses `bytes` strictly and checks that they are exactly their own RFC 8785 canonical form.
pub fn parse_canonical(bytes: &[u8]) -> Result<Value, VerifyError> {
    let value = parse_strict(bytes)?;
    if canonical_bytes(&value)? != bytes {
        return Err(VerifyError::NotCanonical);
    }
    Ok(value)
}

/// Parses `bytes` strictly (UTF-8, no duplicate keys, integers only, bounded), allowing any
/// insignificant whitespace and escape spelling. Used on operator input before canonicalizing it.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, VerifyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyError::BadJson)?;
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    parser.skip_whitespace();
    let value = parser.value(1)?;
    parser.skip_whitespace();
    if parser.pos != parser.bytes.len() {
        return Err(VerifyError::BadJson);
    }
    Ok(value)
}

/// The RFC 8785 canonical bytes of a value built by this crate or by [`parse_strict`].
pub fn canonical_bytes(value: &Value) -> Result<Vec<u8>, VerifyError> {
    // `serde_jcs` fails only on non-finite floats, which neither this parser nor this crate builds.
    serde_jcs::to_vec(value).map_err(|_| VerifyError::BadJson)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, wanted: u8) -> Result<(), VerifyError> {
        match self.next() {
            Some(byte) if byte == wanted => Ok(()),
            _ => Err(VerifyError::BadJson),
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// `depth` is the nesting level a container starting here would have.
    fn value(&mut self, depth: usize) -> Result<Value, VerifyError> {
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b'0'..=b'9') => self.integer(),
            Some(b'-') => Err(VerifyError::BadNumber),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            _ => Err(VerifyError::BadJson),
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, VerifyError> {
        for wanted in word {
            self.expect(*wanted)?;
        }
        Ok(value)
    }

    fn object(&mut self, depth: usize) -> Result<Value, VerifyError> {
        if depth > MAX_DEPTH {
            return Err(VerifyError::LimitExceeded);
        }
        self.expect(b'{')?;
        let mut map = Map::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(VerifyError::BadJson);
            }
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let item = self.value(depth + 1)?;
            if map.len() >= MAX_ITEMS {
                return Err(VerifyError::LimitExceeded);
            }
            // INVARIANT (no-duplicate-keys): keys compare after unescaping, so `"a"` and
            // `"\u0061"` are the same key and the second one is refused.
            if map.insert(key, item).is_some() {
                return Err(VerifyError::DuplicateKey);
            }
            self.skip_whitespace();
            match self.next() {
                Some(b',') => {}
                Some(b'}') => return Ok(Value::Object(map)),
                _ => return Err(VerifyError::BadJson),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, VerifyError> {
        if depth > MAX_DEPTH {
            return Err(VerifyError::LimitExceeded);
        }
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_whitespace();
            let item = self.value(depth + 1)?;
            if items.len() >= MAX_ITEMS {
                return Err(VerifyError::LimitExceeded);
            }
            items.push(item);
            self.skip_whitespace();
            match self.next() {
                Some(b',') => {}
                Some(b']') => return Ok(Value::Array(items)),
                _ => return Err(VerifyError::BadJson),
            }
        }
    }

    /// Integers only: `0` or a non-zero digit followed by digits, at most [`MAX_INTEGER`].
    fn integer(&mut self) -> Result<Value, VerifyError> {
        let mut res: u64 = 0;
        let mut n_digits = 0usize;
        let first = self.peek();
        while let Some(byte @ b'0'..=b'9') = self.peek() {
            self.pos += 1;
            n_digits += 1;
            res = res
                .checked_mul(10)
                .and_then(|res| res.checked_add(u64::from(byte - b'0')))
                .filter(|res| *res <= MAX_INTEGER)
                .ok_or(VerifyError::BadNumber)?;
        }
        if first == Some(b'0') && n_digits > 1 {
            return Err(VerifyError::BadNumber);
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(VerifyError::BadNumber);
        }
        Ok(Value::Number(Number::from(res)))
    }

    fn string(&mut self) -> Result<String, VerifyError> {
        self.expect(b'"')?;
        let mut res = String::new();
        loop {
            if res.len() > MAX_STRING_BYTES {
                return Err(VerifyError::LimitExceeded);
            }
            // The input is valid UTF-8 (checked up front), so unescaped runs are copied whole.
            let start = self.pos;
            while matches!(self.peek(), Some(byte) if byte != b'"' && byte != b'\\' && byte >= 0x20)
            {
                self.pos += 1;
            }
            let run = self
                .bytes
                .get(start..self.pos)
                .and_then(|run| std::str::from_utf8(run).ok())
                .ok_or(VerifyError::BadJson)?;
            res.push_str(run);
            if res.len() > MAX_STRING_BYTES {
                return Err(VerifyError::LimitExceeded);
            }
            match self.next() {
                Some(b'"') => return Ok(res),
                Some(b'\\') => res.push(self.escape()?),
                _ => return Err(VerifyError::BadJson), // raw control character or end of input
            }
        }
    }

    fn escape(&mut self) -> Result<char, VerifyError> {
        let decoded = match self.next() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let high = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&high) {
                    self.expect(b'\\')?;
                    self.expect(b'u')?;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(VerifyError::BadJson);
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                // Lone low surrogates are not characters and are refused here.
                char::from_u32(code).ok_or(VerifyError::BadJson)?
            }
            _ => return Err(VerifyError::BadJson),
        };
        Ok(decoded)
    }

    fn hex4(&mut self) -> Result<u32, VerifyError> {
        let mut res = 0u32;
        for _ in 0..4 {
            let digit = self
                .next()
                .and_then(|byte| char::from(byte).to_digit(16))
                .ok_or(VerifyError::BadJson)?;
            res = (res << 4) | digit;
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests;
