//! Server-Sent Events: an incremental parser for provider streams and the encoder for ours.
//!
//! Only `data:` fields matter to chat streams; `event:`, `id:`, `retry:` and comments are read
//! and dropped. Lines end with `\n` or `\r\n`. Bounded: a line or an event longer than the limit
//! is an error, never an unbounded buffer.

/// Why a stream could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an SSE event is longer than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("an SSE event is not UTF-8")]
    NotUtf8,
}

/// Incremental SSE parser: feed bytes as they arrive, get the `data` of each complete event.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
    limit: usize,
}

impl SseParser {
    /// A parser refusing lines and events longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            line: Vec::new(),
            data: None,
            limit,
        }
    }

    /// Feeds `bytes`; returns the data of every event completed by them, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            self.line.extend_from_slice(head);
            rest = tail.get(1..).unwrap_or_default();
            // INVARIANT (chunking-blind): a complete line is held to the same limit as a partial
            // one (both counted with any `\r`), so the answer never depends on how the bytes
            // were split.
            if self.line.len() > self.limit {
                return Err(SseError::TooLarge { limit: self.limit });
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = std::mem::take(&mut self.line);
            if let Some(data) = self.take_line(&line)? {
                events.push(data);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > self.limit {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        Ok(events)
    }

    /// The stream ended: the data of an event left without its blank line, if any.
    pub fn finish(mut self) -> Result<Option<String>, SseError> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.take_line(&line)?;
        }
        Ok(self.data.take())
    }

    fn take_line(&mut self, line: &[u8]) -> Result<Option<String>, SseError> {
        if line.is_empty() {
            return Ok(self.data.take());
        }
        let Some(value) = line.strip_prefix(b"data:") else {
            // `event:`, `id:`, `retry:`, comments and unknown fields are not used.
            return Ok(None);
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let value = std::str::from_utf8(value).map_err(|_| SseError::NotUtf8)?;
        let data = self.data.get_or_insert_with(String::new);
        if !data.is_empty() {
            data.push('\n');
        }
        data.push_str(value);
        if data.len() > self.limit {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        Ok(None)
    }
}

/// One SSE event carrying `data` (which must not contain a newline: JSON without pretty
/// printing never does).
pub fn encode(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 8);
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    out
}

/// The end-of-stream marker of OpenAI's chat streams.
pub const DONE: &str = "[DONE]";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let wire = "data: {\"a\":1}\n\n: comment\nevent: x\ndata: one\r\ndata: two\r\n\r\ndata: [DONE]\n\n";
        for split in 0..wire.len() {
            let (left, right) = wire.split_at(split);
            let mut parser = SseParser::new(1024);
            let mut events = parser.push(left.as_bytes()).unwrap();
            events.extend(parser.push(right.as_bytes()).unwrap());
            assert_eq!(parser.finish().unwrap(), None);
            assert_eq!(
                events,
                ["{\"a\":1}", "one\ntwo", "[DONE]"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn limits_and_unterminated_events() {
        let mut parser = SseParser::new(8);
        assert_eq!(
            parser.push(b"data: 0123456789"),
            Err(SseError::TooLarge { limit: 8 })
        );
        let mut parser = SseParser::new(64);
        assert!(parser.push(b"data: tail").unwrap().is_empty());
        assert_eq!(parser.finish().unwrap().as_deref(), Some("tail"));
        assert_eq!(encode("{}"), "data: {}\n\n");
        // A long line is refused whether it arrives whole or in pieces.
        let mut parser = SseParser::new(8);
        assert_eq!(
            parser.push(b": 0123456789\n\n"),
            Err(SseError::TooLarge { limit: 8 })
        );
    }
}
