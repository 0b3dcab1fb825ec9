//! Agents by token hash, remembered between requests.
//!
//! Every authenticated request looks its agent up by token hash; without this each one would be
//! a read transaction on the database (a blocking-pool hop, shared-memory locks, page reads).
//! Only agents that exist are remembered (an unknown token always reads the database, so random
//! tokens cannot fill memory), at most [`MAX_ENTRIES`] of them.
//!
//! INVARIANT (no stale agent): the store is the only writer of its data dir, and it calls
//! [`AgentCache::forget`] after every delete. A lookup that read the database before a delete
//! and comes back after it must not put the deleted agent back: every `forget` bumps a
//! generation, and [`AgentCache::remember`] only stores what was read under the current one.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::StoredAgent;

/// Most agents remembered; past it the cache starts over.
pub(crate) const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct AgentCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    agents: HashMap<[u8; 32], StoredAgent>,
}

impl AgentCache {
    /// The remembered agent of `token_sha256`, or the generation a database read starts under.
    pub(crate) fn get(&self, token_sha256: &[u8; 32]) -> Result<StoredAgent, u64> {
        let inner = self.lock();
        inner
            .agents
            .get(token_sha256)
            .cloned()
            .ok_or(inner.generation)
    }

    /// Remembers `agent`, read from the database under `generation`, unless an agent was
    /// forgotten since.
    pub(crate) fn remember(&self, generation: u64, agent: &StoredAgent) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.agents.len() >= MAX_ENTRIES {
            inner.agents.clear();
        }
        inner.agents.insert(agent.token_sha256, agent.clone());
    }

    /// Forgets the agent `id` (after it was deleted).
    pub(crate) fn forget(&self, id: &str) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.agents.retain(|_, agent| agent.id != id);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is a single map operation or a counter bump: a panic cannot leave it torn.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn agent(id: &str, token: u8) -> StoredAgent {
        StoredAgent {
            id: id.to_owned(),
            token_sha256: [token; 32],
            roles: Vec::new(),
            tags: Vec::new(),
            project: None,
            allow: vec!["tools:call:*".to_owned()],
            may_assert_identity: false,
            catalog: "full".to_owned(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn remembers_found_agents_and_forgets_deleted_ones() {
        let cache = AgentCache::default();
        let generation = cache.get(&[1; 32]).unwrap_err();
        cache.remember(generation, &agent("a", 1));
        assert_eq!(cache.get(&[1; 32]).unwrap().id, "a");
        cache.forget("a");
        assert!(cache.get(&[1; 32]).is_err());
    }

    #[test]
    fn a_read_from_before_a_delete_is_not_remembered() {
        let cache = AgentCache::default();
        let generation = cache.get(&[1; 32]).unwrap_err();
        // The read saw the agent, then the agent was deleted before the read came back.
        cache.forget("a");
        cache.remember(generation, &agent("a", 1));
        assert!(cache.get(&[1; 32]).is_err());
    }
}
