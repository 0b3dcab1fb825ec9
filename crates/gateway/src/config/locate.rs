//! Finds the line of a key path (`agents[1].token_sha256`) in the configuration text.

/// 1-based line of byte `offset` in `text`.
pub fn line_at(text: &str, offset: usize) -> usize {
    text.bytes().take(offset).filter(|b| *b == b'\n').count() + 1
}

/// 1-based line where the value at `path` is written, if the file has it.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let document = toml_edit::Document::parse(text).ok()?;
    let mut item = document.as_item();
    for segment in segments(path) {
        item = match segment {
            Segment::Key(key) => item.get(key)?,
            Segment::Index(idx) => item.get(idx)?,
        };
    }
    let span = match item {
        toml_edit::Item::Table(table) => table.span(),
        toml_edit::Item::ArrayOfTables(tables) => tables.span(),
        other => other.span(),
    }?;
    Some(line_at(text, span.start))
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut res = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|key| !key.is_empty()) {
            res.push(Segment::Key(key));
        }
        for index in pieces {
            if let Ok(idx) = index.trim_end_matches(']').parse() {
                res.push(Segment::Index(idx));
            }
        }
    }
    res
}
