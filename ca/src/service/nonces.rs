//! Anti-replay nonces (RFC 8555 §6.5). With SQLite the CA is one process, so nonces live in
//! memory; with PostgreSQL several processes share the table, so any of them can redeem a nonce
//! another issued.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Ca;
use crate::model::Account;
use crate::storage::{nonces as store, Backend};
use crate::{ids, Result, Track};

/// An upper bound on outstanding in-memory nonces; past it the oldest are dropped, and a client
/// holding one gets badNonce and retries with the fresh nonce that comes with it.
const MEMORY_LIMIT: usize = 200_000;

pub(super) enum NonceStore {
    Memory { lifetime: i64, issued: Mutex<HashMap<String, i64>> },
    Database { lifetime: i64 },
}

/// What `Ca::exchange_nonce` found and did.
pub struct NonceExchange {
    /// A new nonce, for the response.
    pub response_nonce: String,
    /// Whether the request's nonce was one this CA issued, unexpired and unused (now used).
    pub fresh: bool,
    /// For a fresh nonce and a `kid`: the account, or why there is none.
    pub account: Option<Result<Account>>,
}

impl NonceStore {
    pub(super) fn new(backend: Backend, lifetime: i64) -> NonceStore {
        match backend {
            Backend::Sqlite => NonceStore::Memory { lifetime, issued: Mutex::new(HashMap::new()) },
            Backend::Postgres => NonceStore::Database { lifetime },
        }
    }
}

impl Ca {
    /// Whether nonces live in this process's memory: then issuing and redeeming one never
    /// blocks, and callers on an async executor may call them in place.
    pub fn nonces_in_memory(&self) -> bool {
        matches!(self.nonces, NonceStore::Memory { .. })
    }

    pub fn new_nonce(&self) -> Result<String> {
        let nonce = ids::new_id();
        let now = self.clock.unix();
        match &self.nonces {
            NonceStore::Memory { lifetime, issued } => {
                let mut issued = issued.lock().unwrap_or_else(|p| p.into_inner());
                if issued.len() >= MEMORY_LIMIT {
                    issued.retain(|_, expires| *expires > now);
                    if issued.len() >= MEMORY_LIMIT {
                        let mut by_age: Vec<i64> = issued.values().copied().collect();
                        by_age.sort_unstable();
                        let cutoff = by_age[by_age.len() / 2];
                        issued.retain(|_, expires| *expires > cutoff);
                    }
                }
                issued.insert(nonce.clone(), now + lifetime);
            }
            NonceStore::Database { lifetime } => {
                self.storage.read(|conn| store::insert(conn, &nonce, now + lifetime))?;
            }
        }
        Ok(nonce)
    }

    /// Redeems a nonce: true exactly once for a nonce this CA issued and that has not expired.
    pub fn consume_nonce(&self, nonce: &str) -> Result<bool> {
        let now = self.clock.unix();
        match &self.nonces {
            NonceStore::Memory { issued, .. } => {
                let mut issued = issued.lock().unwrap_or_else(|p| p.into_inner());
                Ok(issued.remove(nonce).is_some_and(|expires| expires > now))
            }
            NonceStore::Database { .. } => self.storage.read(|conn| store::consume(conn, nonce, now)),
        }
    }

    /// With nonces in the database (PostgreSQL), what a JWS request needs of it in one round
    /// trip instead of three: a nonce for the response, whether the request's `nonce` was fresh
    /// (it is spent now), and, for a fresh nonce and a `kid`, the account it names (or the
    /// accountDoesNotExist error). With nonces in memory, `None`: issue and redeem in place.
    pub fn exchange_nonce(&self, nonce: &str, account: Option<(Track, &str)>) -> Option<Result<NonceExchange>> {
        let NonceStore::Database { lifetime } = &self.nonces else {
            return None;
        };
        let issued = ids::new_id();
        let now = self.clock.unix();
        let exchanged = self.storage.read(|conn| store::exchange(conn, nonce, now, &issued, now + lifetime, account));
        Some(exchanged.map(|(fresh, found)| {
            let account = match (fresh, account) {
                (true, Some((track, id))) => Some(found.ok_or_else(|| super::accounts::no_account(track, id))),
                _ => None,
            };
            NonceExchange { response_nonce: issued, fresh, account }
        }))
    }

    /// Drops expired nonces, from memory or from the table; a scheduled job calls this.
    pub fn purge_nonces(&self) -> Result<usize> {
        match &self.nonces {
            NonceStore::Memory { issued, .. } => {
                // Clients leave the last nonce of each exchange unused; without this they
                // would stay until the store is full.
                let now = self.clock.unix();
                let mut issued = issued.lock().unwrap_or_else(|p| p.into_inner());
                let before = issued.len();
                issued.retain(|_, expires| *expires > now);
                issued.shrink_to_fit();
                Ok(before - issued.len())
            }
            NonceStore::Database { .. } => {
                let now = self.clock.unix();
                self.storage.read(|conn| store::purge_expired(conn, now))
            }
        }
    }
}
