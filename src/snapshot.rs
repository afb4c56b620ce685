//! What one worker currently knows from remote sources: each provider's fetched keys
//! and the remote revocation list, with their health. The shell builds it from shared
//! data; the core only reads it. Inline configuration needs none of it.

use crate::config::Config;
use crate::key::Key;
use crate::revocation::RevocationList;
use std::sync::Arc;

/// The live keys of one provider.
#[derive(Debug, Clone)]
pub enum LiveKeys {
    /// Inline keys: read them from the configuration.
    Inline,
    /// Remote keys not fetched yet.
    Pending,
    /// Remote keys, and whether they are older than the provider's maximum staleness.
    Ready { keys: Arc<Vec<Key>>, stale: bool },
}

/// The health of the remote revocation list.
#[derive(Debug, Clone)]
pub enum LiveList {
    /// No remote list configured.
    None,
    Pending,
    Ready {
        list: Arc<RevocationList>,
        stale: bool,
    },
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// One entry per provider, in configuration order.
    pub keys: Vec<LiveKeys>,
    pub revocation: LiveList,
}

impl Snapshot {
    /// A snapshot before anything was fetched.
    pub fn new(cfg: &Config) -> Snapshot {
        Snapshot {
            keys: cfg
                .providers
                .iter()
                .map(|p| {
                    if p.remote.is_some() {
                        LiveKeys::Pending
                    } else {
                        LiveKeys::Inline
                    }
                })
                .collect(),
            revocation: if cfg.revocation.remote.is_some() {
                LiveList::Pending
            } else {
                LiveList::None
            },
        }
    }
}
