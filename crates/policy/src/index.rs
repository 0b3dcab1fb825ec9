//! Pattern indexes: exact keys in a hash map, wildcard prefixes in a byte trie.

use std::collections::HashMap;

use portcullis_core::GatePattern;

/// Maps gate-key patterns to rule numbers. A lookup costs O(key length + matching rules), however
/// many patterns are indexed.
#[derive(Clone, Debug)]
pub struct PatternIndex {
    exact: HashMap<Box<str>, Vec<u32>>,
    // INVARIANT (trie-root): `trie` is never empty; node 0 is the root (the empty prefix).
    trie: Vec<TrieNode>,
    n_patterns: usize,
}

#[derive(Clone, Debug, Default)]
struct TrieNode {
    // INVARIANT (sorted-children): sorted by byte, so lookups binary-search.
    children: Vec<(u8, u32)>,
    rules: Vec<u32>,
}

impl Default for PatternIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl PatternIndex {
    pub fn new() -> Self {
        // INVARIANT (trie-root): kept by starting with the root node.
        Self {
            exact: HashMap::new(),
            trie: vec![TrieNode::default()],
            n_patterns: 0,
        }
    }

    /// Indexes `pattern` under the rule number `rule`.
    pub fn insert(&mut self, pattern: &GatePattern, rule: u32) {
        self.n_patterns += 1;
        if !pattern.is_wildcard() {
            self.exact
                .entry(pattern.as_str().into())
                .or_default()
                .push(rule);
            return;
        }
        let mut node = 0usize;
        for byte in pattern.prefix().bytes() {
            node = self.child_or_insert(node, byte);
        }
        if let Some(target) = self.trie.get_mut(node) {
            target.rules.push(rule);
        }
    }

    /// Calls `visit` with every rule whose pattern matches `key` (a rule may repeat when several
    /// of its patterns match).
    pub fn for_each_match(&self, key: &str, mut visit: impl FnMut(u32)) {
        if let Some(rules) = self.exact.get(key) {
            rules.iter().copied().for_each(&mut visit);
        }
        let mut bytes = key.bytes();
        let mut node = self.trie.first();
        while let Some(current) = node {
            current.rules.iter().copied().for_each(&mut visit);
            let Some(byte) = bytes.next() else { break };
            node = current
                .children
                .binary_search_by_key(&byte, |(child_byte, _)| *child_byte)
                .ok()
                .and_then(|pos| current.children.get(pos))
                .and_then(|(_, child)| self.trie.get(*child as usize));
        }
    }

    /// The lowest rule number that matches `key`.
    pub fn first_match(&self, key: &str) -> Option<u32> {
        let mut res: Option<u32> = None;
        self.for_each_match(key, |rule| {
            res = Some(res.map_or(rule, |best| best.min(rule)));
        });
        res
    }

    /// Every matching rule number, ascending and without repeats.
    pub fn matches(&self, key: &str) -> Vec<u32> {
        let mut res = Vec::new();
        self.for_each_match(key, |rule| res.push(rule));
        res.sort_unstable();
        res.dedup();
        res
    }

    pub fn n_patterns(&self) -> usize {
        self.n_patterns
    }

    fn child_or_insert(&mut self, node: usize, byte: u8) -> usize {
        let next_id = self.trie.len();
        let Some(current) = self.trie.get_mut(node) else {
            return 0;
        };
        match current
            .children
            .binary_search_by_key(&byte, |(child_byte, _)| *child_byte)
        {
            Ok(pos) => current
                .children
                .get(pos)
                .map_or(0, |(_, child)| *child as usize),
            Err(pos) => {
                // INVARIANT (sorted-children): insert at the binary-search position.
                current.children.insert(pos, (byte, next_id as u32));
                self.trie.push(TrieNode::default());
                next_id
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(patterns: &[&str], key: &str, expected: &[u32]) {
        let mut index = PatternIndex::new();
        for (rule, pattern) in patterns.iter().enumerate() {
            index.insert(&GatePattern::parse(pattern).unwrap(), rule as u32);
        }
        assert_eq!(index.matches(key), expected, "{patterns:?} vs {key}");
        // The index agrees with a linear scan.
        let scan: Vec<u32> = patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| GatePattern::parse(p).unwrap().matches_str(key))
            .map(|(rule, _)| rule as u32)
            .collect();
        assert_eq!(index.matches(key), scan);
    }

    #[test]
    fn exact_and_prefix() {
        check(&["tools:call"], "tools:call", &[0]);
        check(&["tools:call"], "tools:call:x", &[]);
        check(&["tools:*"], "tools:call:x", &[0]);
        check(&["*"], "net:port:1", &[0]);
        check(&["tools:call*"], "tools:call", &[0]);
        check(&["tools:call:*"], "tools:call", &[]);
        check(&["Tools:*"], "tools:call", &[]);
        check(
            &["tools:*", "tools:call:a", "net:*", "tools:call:*", "*"],
            "tools:call:a",
            &[0, 1, 3, 4],
        );
        check(
            &["net:host:api.*", "net:host:ap*"],
            "net:host:api.x",
            &[0, 1],
        );
    }
}
