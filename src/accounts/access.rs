//! Authenticated keys, cached per process, and the database counter that invalidates them.
//!
//! Each server keeps the account behind recently presented API keys in memory (bounded by
//! `--auth-cache-entries`), so that an authenticated read costs no key lookup. What makes
//! that safe is one rule: every change to an account or key that bears on access moves
//! `access_generation` in the change's own transaction ([`commit`]). Then:
//!
//! - the process that made the change drops its cache as soon as the change commits;
//! - every other process reads the counter every [`GENERATION_POLL_MS`] ([`watch`]) and drops
//!   its cache when it moved; and a cache whose last successful read started more than
//!   [`CACHE_FRESH_MS`] ago serves nothing (a stalled watcher cannot make refusals late);
//! - a lookup started before a drop never fills the cache after it (the epoch check in
//!   [`KeyCache::insert`]), so an entry is never older than the last drop.
//!
//! So a revoked key, a disabled, cancelled or blocked account, a withdrawn manager approval
//! is refused at once where it was changed and within [`CACHE_FRESH_MS`] everywhere else.
//! Unknown keys are never cached: a new key works at once, and a refusal is never cached.
//! Entries are keyed by the key's SHA-256 digest (what the database stores), never the key.
//! Service keys (ingest, operator) are cached under the same rule beside account keys:
//! revoking one moves the counter too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use super::Account;
use crate::db::Db;
use crate::keys::service::ServiceKind;

/// Default of `--auth-cache-entries`.
pub const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// How often a server reads `access_generation`.
pub const GENERATION_POLL_MS: u64 = 200;

/// The bound on how late another server's change is seen: a cache serves only while its
/// last read of the counter started at most this long ago.
pub const CACHE_FRESH_MS: u64 = 250;

/// The SHA-256 of a presented key: the cache's key for it.
pub type KeyDigest = [u8; 32];

/// The digest a presented key is cached under.
pub fn key_digest(presented: &str) -> KeyDigest {
    Sha256::digest(presented.as_bytes()).into()
}

/// What a cached key authenticates as: its account and the key's public id.
type Entry = Arc<(Account, String)>;

/// This process's authenticated keys.
#[derive(Debug)]
pub struct KeyCache {
    capacity: usize,
    inner: RwLock<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// How often the cache answered a presented key, and how often the key had to be read from
/// the database instead (not held, or the cache not fresh enough to answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLookups {
    /// Answered from memory.
    pub hits: u64,
    /// Read from the database.
    pub misses: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// Moves at every drop; a lookup fills the cache only if it has not moved meanwhile.
    epoch: u64,
    /// The counter as last read (None: never read).
    generation: Option<i64>,
    /// When the last successful read of the counter started.
    checked_at: Option<Instant>,
    entries: HashMap<KeyDigest, Entry>,
    /// Service keys: the key's id, by digest and kind.
    services: HashMap<(KeyDigest, ServiceKind), String>,
}

impl Inner {
    fn fresh(&self) -> bool {
        self.checked_at
            .is_some_and(|at| at.elapsed() <= Duration::from_millis(CACHE_FRESH_MS))
    }

    fn held(&self) -> usize {
        self.entries.len() + self.services.len()
    }

    fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        self.entries.clear();
        self.services.clear();
    }
}

impl crate::db::AccessObserver for KeyCache {
    fn access_changed(&self) {
        self.drop_all();
    }
}

impl KeyCache {
    /// A cache of at most `capacity` keys; 0 caches nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: RwLock::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Lookups so far (none are counted when the cache holds nothing by setting).
    pub fn lookups(&self) -> CacheLookups {
        CacheLookups {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    fn count<T>(&self, found: Option<T>) -> Option<T> {
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The most keys it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys held now (account and service keys).
    pub fn len(&self) -> usize {
        self.read().held()
    }

    /// True when it holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock leaves nothing half-done worth refusing over.
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached account behind `digest`, if the cache is fresh enough to answer.
    pub fn get(&self, digest: &KeyDigest) -> Option<(Account, String)> {
        if self.capacity == 0 {
            return None;
        }
        let entry = {
            let inner = self.read();
            let held = inner.entries.get(digest).filter(|_| inner.fresh());
            self.count(held.map(Arc::clone))?
        };
        Some((entry.0.clone(), entry.1.clone()))
    }

    /// The epoch to hand to [`KeyCache::insert`] after a lookup: read it before looking up.
    pub fn epoch(&self) -> u64 {
        self.read().epoch
    }

    /// Keeps what a lookup started at `epoch` found, unless the cache was dropped since
    /// (the lookup may have read what the drop was about). When full, one entry gives way.
    pub fn insert(&self, epoch: u64, digest: KeyDigest, found: (Account, String)) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.write();
        if inner.epoch != epoch {
            return;
        }
        if inner.held() >= self.capacity && !inner.entries.contains_key(&digest) {
            make_room(&mut inner);
        }
        inner.entries.insert(digest, Arc::new(found));
    }

    /// The id of the cached service key of `kind` behind `digest`, if the cache is fresh
    /// enough to answer.
    pub fn get_service(&self, digest: &KeyDigest, kind: ServiceKind) -> Option<String> {
        if self.capacity == 0 {
            return None;
        }
        let inner = self.read();
        let held = inner
            .services
            .get(&(*digest, kind))
            .filter(|_| inner.fresh());
        self.count(held.cloned())
    }

    /// [`KeyCache::insert`] for a service key of `kind` and its id.
    pub fn insert_service(&self, epoch: u64, digest: KeyDigest, kind: ServiceKind, id: String) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.write();
        if inner.epoch != epoch {
            return;
        }
        if inner.held() >= self.capacity && !inner.services.contains_key(&(digest, kind)) {
            make_room(&mut inner);
        }
        inner.services.insert((digest, kind), id);
    }

    /// Drops every entry (this process changed access).
    pub fn drop_all(&self) {
        self.write().clear();
    }

    /// Records a read of the counter that started at `started`: drops every entry if it
    /// moved since the last read (or was never read), and keeps the cache serving.
    fn observe(&self, generation: i64, started: Instant) {
        let mut inner = self.write();
        if inner.generation != Some(generation) {
            inner.clear();
            inner.generation = Some(generation);
        }
        if inner.checked_at.is_none_or(|at| at < started) {
            inner.checked_at = Some(started);
        }
    }
}

/// Lets one entry go, of either kind: any will do, a key used again is looked up again.
fn make_room(inner: &mut Inner) {
    if let Some(evicted) = inner.entries.keys().next().copied() {
        inner.entries.remove(&evicted);
    } else if let Some(evicted) = inner.services.keys().next().copied() {
        inner.services.remove(&evicted);
    }
}

impl Default for KeyCache {
    /// Caches nothing (processes that serve no API: the operator's verbs).
    fn default() -> Self {
        Self::new(0)
    }
}

/// Moves the counter: call in the transaction of a change that bears on access, as its last
/// statement (it holds the counter's row lock until commit on PostgreSQL).
async fn bump(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE access_generation SET generation = generation + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// Commits a transaction that changed access (a key, an account's status, kind, anything an
/// authenticated caller's account carries): moves the counter in it, commits, and drops this
/// process's cache at once. With `changed` false it only commits.
pub async fn commit(
    db: &Db,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    changed: bool,
) -> Result<(), sqlx::Error> {
    if changed {
        bump(&mut tx).await?;
    }
    tx.commit().await?;
    if changed {
        db.access_changed();
    }
    Ok(())
}

/// The id of the live service key of `kind` matching `presented`, through this process's
/// cache (see the module's rule); `None` for an unknown, revoked or wrong-kind key.
pub async fn authenticate_service(
    db: &Db,
    cache: &KeyCache,
    presented: &str,
    kind: ServiceKind,
) -> Result<Option<String>, sqlx::Error> {
    if !crate::keys::plausible(presented) {
        return Ok(None);
    }
    let digest = key_digest(presented);
    if let Some(id) = cache.get_service(&digest, kind) {
        return Ok(Some(id));
    }
    // Read before the lookup: a drop while it runs keeps what it found out of the cache.
    let epoch = cache.epoch();
    let found = crate::keys::service::authenticate(db, presented, kind).await?;
    if let Some(id) = &found {
        cache.insert_service(epoch, digest, kind, id.clone());
    }
    Ok(found)
}

/// Revokes the service key `key_id` (an ingest or operator key) and moves the counter, so
/// that every server refuses it within the bound. False if there is no such live key.
pub async fn revoke_service_key(db: &Db, key_id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let revoked = crate::keys::service::revoke(&mut tx, key_id, now_ms).await?;
    commit(db, tx, revoked).await?;
    Ok(revoked)
}

/// The counter as it stands.
async fn read_generation(db: &Db) -> Result<i64, sqlx::Error> {
    let mut conn = db.read.acquire().await?;
    sqlx::query_scalar("SELECT generation FROM access_generation WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
}

/// Reads the counter every [`GENERATION_POLL_MS`] until `stop`, dropping `cache` when it
/// moved. Does nothing for a cache of no entries.
pub async fn watch(db: Db, cache: Arc<KeyCache>, mut stop: tokio::sync::watch::Receiver<bool>) {
    if cache.capacity() == 0 {
        return;
    }
    let mut interval = tokio::time::interval(Duration::from_millis(GENERATION_POLL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let started = Instant::now();
        match read_generation(&db).await {
            Ok(generation) => {
                cache.observe(generation, started);
                failing = false;
            }
            Err(error) => {
                // The cache stops serving by itself; say so once per outage.
                if !failing {
                    tracing::warn!(error = %error, "Failed to read the access generation; keys are looked up in the database until it can be read: {error}");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountId, AccountKind, AccountStatus};

    fn account() -> Account {
        Account {
            id: AccountId::parse("0190e6a0-0000-7000-8000-000000000001").unwrap(),
            email: "a@example.com".to_owned(),
            organization_name: "A".to_owned(),
            kind: AccountKind::Standard,
            manager_id: None,
            status: AccountStatus::Active,
            managed_account_allow_custom_pricing: false,
            rollup_billing: false,
            max_managed_accounts: 0,
            allocatable_channels: 0,
            channel_limit: 0,
            has_password: false,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn found() -> (Account, String) {
        (account(), "key".to_owned())
    }

    #[test]
    fn serves_only_after_a_fresh_read_of_the_counter() {
        let cache = KeyCache::new(4);
        let digest = key_digest("k1");
        let epoch = cache.epoch();
        cache.insert(epoch, digest, found());
        // Filled before the counter was ever read: dropped by the first read.
        assert!(cache.get(&digest).is_none());
        cache.observe(7, Instant::now());
        assert!(cache.is_empty());
        cache.insert(cache.epoch(), digest, found());
        assert!(cache.get(&digest).is_some());
        // The same generation keeps it; a moved one drops it.
        cache.observe(7, Instant::now());
        assert!(cache.get(&digest).is_some());
        cache.observe(8, Instant::now());
        assert!(cache.get(&digest).is_none());
    }

    #[test]
    fn lookups_are_counted_as_hits_and_misses() {
        let cache = KeyCache::new(4);
        let digest = key_digest("k1");
        cache.observe(7, Instant::now());
        assert!(cache.get(&digest).is_none());
        cache.insert(cache.epoch(), digest, found());
        assert!(cache.get(&digest).is_some());
        assert!(cache.get(&digest).is_some());
        assert!(cache.get_service(&digest, ServiceKind::Ingest).is_none());
        assert_eq!(cache.lookups(), CacheLookups { hits: 2, misses: 2 });

        let off = KeyCache::new(0);
        assert!(off.get(&digest).is_none());
        assert_eq!(off.lookups(), CacheLookups { hits: 0, misses: 0 });
    }

    #[test]
    fn a_stale_read_stops_serving() {
        let cache = KeyCache::new(4);
        let digest = key_digest("k1");
        let long_ago = Instant::now()
            .checked_sub(Duration::from_millis(CACHE_FRESH_MS + 50))
            .unwrap();
        cache.observe(1, long_ago);
        cache.insert(cache.epoch(), digest, found());
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&digest).is_none());
    }

    #[test]
    fn a_lookup_across_a_drop_does_not_fill() {
        let cache = KeyCache::new(4);
        cache.observe(1, Instant::now());
        let epoch = cache.epoch();
        cache.drop_all();
        cache.insert(epoch, key_digest("k1"), found());
        assert!(cache.is_empty());
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let cache = KeyCache::new(3);
        cache.observe(1, Instant::now());
        for n in 0..10 {
            cache.insert(cache.epoch(), key_digest(&format!("k{n}")), found());
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        let off = KeyCache::new(0);
        off.observe(1, Instant::now());
        off.insert(off.epoch(), key_digest("k"), found());
        assert!(off.is_empty());
        assert!(off.get(&key_digest("k")).is_none());
    }

    #[test]
    fn service_keys_are_held_by_kind_under_the_same_rule() {
        let cache = KeyCache::new(3);
        cache.observe(1, Instant::now());
        let digest = key_digest("ingest");
        cache.insert_service(
            cache.epoch(),
            digest,
            ServiceKind::Ingest,
            "KEY1".to_owned(),
        );
        assert_eq!(
            cache.get_service(&digest, ServiceKind::Ingest).as_deref(),
            Some("KEY1")
        );
        // An ingest key is not an operator key, and is no account's key.
        assert!(cache.get_service(&digest, ServiceKind::Operator).is_none());
        assert!(cache.get(&digest).is_none());
        // Both kinds share the capacity.
        for n in 0..5 {
            cache.insert(cache.epoch(), key_digest(&format!("k{n}")), found());
            assert!(cache.len() <= 3);
        }
        cache.insert_service(
            cache.epoch(),
            digest,
            ServiceKind::Ingest,
            "KEY1".to_owned(),
        );
        assert_eq!(cache.len(), 3);
        // A moved counter drops them; a lookup across a drop does not fill.
        cache.observe(2, Instant::now());
        assert!(cache.get_service(&digest, ServiceKind::Ingest).is_none());
        let epoch = cache.epoch();
        cache.drop_all();
        cache.insert_service(epoch, digest, ServiceKind::Ingest, "KEY1".to_owned());
        assert!(cache.is_empty());
    }
}
