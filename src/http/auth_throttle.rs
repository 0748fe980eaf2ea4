//! Backing off clients that present bad keys.
//!
//! Keys carry 256 random bits, so no one guesses one; this is about scanners and the load
//! they put on the database (every presented key costs a lookup). An address that presents
//! [`FAILURES_PER_WINDOW_MAX`] bad keys within [`FAILURE_WINDOW_MS`] is refused with 429
//! for a backoff that starts at [`BACKOFF_INITIAL_MS`] and doubles with each further
//! backoff, up to [`BACKOFF_MAX_MS`]. While it lasts, a request from that address is let
//! through only if it presents a key that succeeded from the same address within
//! [`TRUSTED_KEY_TTL_MS`] (a valid client behind the same NAT as a scanner keeps working);
//! any other is refused before the database is asked.
//!
//! The state is per process and in memory: behind a load balancer each server keeps its
//! own count, so a scanner spread over N servers gets N times the allowance. That is
//! acceptable because nothing here protects money or quotas (the database arbitrates
//! those); it only sheds load. Memory is bounded by [`TRACKED_ADDRESSES_MAX`] and
//! [`TRUSTED_KEYS_PER_ADDRESS_MAX`]. Time comes from the application's clock, so tests
//! drive it with the manual clock. Only fingerprints of keys (a keyed hash, random per
//! process) are held, never keys.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};

/// Bad keys one address may present within a window before it is backed off. Generous
/// enough that a client with a mistyped or just-revoked key sees its 401s; a scanner is
/// stopped after this many lookups.
pub const FAILURES_PER_WINDOW_MAX: u32 = 20;

/// The window over which failures are counted.
pub const FAILURE_WINDOW_MS: i64 = 60_000;

/// The first backoff of an address.
pub const BACKOFF_INITIAL_MS: i64 = 10_000;

/// The longest backoff: an address that keeps failing is refused for this long at a time.
pub const BACKOFF_MAX_MS: i64 = 10 * 60_000;

/// After this long without a backoff, an address starts again from the first backoff.
pub const BACKOFF_MEMORY_MS: i64 = 60 * 60_000;

/// How long a key that succeeded from an address keeps passing while that address is
/// backed off.
pub const TRUSTED_KEY_TTL_MS: i64 = 60 * 60_000;

/// Keys remembered per address as having succeeded from it (a NAT of many clients keeps
/// its most recent ones).
pub const TRUSTED_KEYS_PER_ADDRESS_MAX: usize = 16;

/// Addresses tracked at once. At roughly 300 bytes each, 10,000 addresses are ~3 MB;
/// beyond it, entries that no longer matter are dropped first, then the least recently
/// seen.
pub const TRACKED_ADDRESSES_MAX: usize = 10_000;

/// What to do with a request that presents a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Look the key up.
    Check,
    /// Refuse without a lookup; retry after this many milliseconds.
    Refuse {
        /// Time left in the backoff.
        retry_after_ms: i64,
    },
}

/// The client a request counts against: an IPv4 address, or the /64 network of an IPv6
/// address (one host usually holds a whole /64, so single IPv6 addresses are free to
/// rotate through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    /// The client of a peer address.
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !u128::from(u64::MAX);
                    Self(IpAddr::V6(Ipv6Addr::from(network)))
                }
            },
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    window_started_ms: i64,
    failures_in_window: u32,
    backoff_until_ms: i64,
    backoff_level: u32,
    last_seen_ms: i64,
    /// Fingerprints of keys that succeeded from here, with when they last did.
    trusted: Vec<(u64, i64)>,
}

impl Record {
    fn in_backoff(&self, now_ms: i64) -> bool {
        now_ms < self.backoff_until_ms
    }

    /// True while the record still changes a decision.
    fn matters(&self, now_ms: i64) -> bool {
        self.in_backoff(now_ms)
            || now_ms - self.window_started_ms < FAILURE_WINDOW_MS
            || now_ms - self.backoff_until_ms < BACKOFF_MEMORY_MS
            || self
                .trusted
                .iter()
                .any(|(_, at)| now_ms - at < TRUSTED_KEY_TTL_MS)
    }

    fn trusts(&self, fingerprint: u64, now_ms: i64) -> bool {
        self.trusted
            .iter()
            .any(|(f, at)| *f == fingerprint && now_ms - at < TRUSTED_KEY_TTL_MS)
    }
}

/// The failure counts of the addresses seen; one per application.
#[derive(Debug, Default)]
pub struct AuthThrottle {
    records: Mutex<HashMap<Client, Record>>,
    fingerprints: RandomState,
}

/// A backoff that has just started, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffStarted {
    /// Its length.
    pub duration_ms: i64,
}

impl AuthThrottle {
    fn fingerprint(&self, presented_key: &str) -> u64 {
        self.fingerprints.hash_one(presented_key)
    }

    fn with_records<T>(&self, act: impl FnOnce(&mut HashMap<Client, Record>) -> T) -> T {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        act(&mut records)
    }

    /// Whether a request from `client` presenting `presented_key` may be looked up.
    pub fn verdict(&self, client: Client, presented_key: &str, now_ms: i64) -> Verdict {
        let fingerprint = self.fingerprint(presented_key);
        self.with_records(|records| match records.get(&client) {
            Some(record) if record.in_backoff(now_ms) && !record.trusts(fingerprint, now_ms) => {
                Verdict::Refuse {
                    retry_after_ms: record.backoff_until_ms - now_ms,
                }
            }
            _ => Verdict::Check,
        })
    }

    /// Notes a key that was looked up and found valid.
    pub fn record_success(&self, client: Client, presented_key: &str, now_ms: i64) {
        let fingerprint = self.fingerprint(presented_key);
        self.with_records(|records| {
            let record = entry(records, client, now_ms);
            record.last_seen_ms = now_ms;
            if let Some(known) = record.trusted.iter_mut().find(|(f, _)| *f == fingerprint) {
                known.1 = now_ms;
                return;
            }
            if record.trusted.len() >= TRUSTED_KEYS_PER_ADDRESS_MAX {
                // The least recently successful key makes room.
                if let Some(oldest) = (0..record.trusted.len())
                    .min_by_key(|i| record.trusted.get(*i).map_or(i64::MIN, |(_, at)| *at))
                {
                    record.trusted.swap_remove(oldest);
                }
            }
            record.trusted.push((fingerprint, now_ms));
        });
    }

    /// Notes a key that was looked up and refused; returns the backoff it starts, if any.
    pub fn record_failure(&self, client: Client, now_ms: i64) -> Option<BackoffStarted> {
        self.with_records(|records| {
            let record = entry(records, client, now_ms);
            record.last_seen_ms = now_ms;
            if now_ms - record.window_started_ms >= FAILURE_WINDOW_MS {
                record.window_started_ms = now_ms;
                record.failures_in_window = 0;
            }
            record.failures_in_window += 1;
            if record.failures_in_window < FAILURES_PER_WINDOW_MAX {
                return None;
            }
            if now_ms - record.backoff_until_ms >= BACKOFF_MEMORY_MS {
                record.backoff_level = 0;
            }
            let duration_ms = BACKOFF_INITIAL_MS
                .checked_shl(record.backoff_level)
                .map_or(BACKOFF_MAX_MS, |ms| ms.min(BACKOFF_MAX_MS));
            record.backoff_level = record.backoff_level.saturating_add(1).min(16);
            record.backoff_until_ms = now_ms + duration_ms;
            record.window_started_ms = now_ms;
            record.failures_in_window = 0;
            Some(BackoffStarted { duration_ms })
        })
    }
}

/// The record of `client`, made room for when the table is full.
fn entry(records: &mut HashMap<Client, Record>, client: Client, now_ms: i64) -> &mut Record {
    if !records.contains_key(&client) && records.len() >= TRACKED_ADDRESSES_MAX {
        records.retain(|_, record| record.matters(now_ms));
        if records.len() >= TRACKED_ADDRESSES_MAX
            && let Some(stalest) = records
                .iter()
                .min_by_key(|(_, r)| r.last_seen_ms)
                .map(|(c, _)| *c)
        {
            records.remove(&stalest);
        }
    }
    records.entry(client).or_insert_with(|| Record {
        // A new record's window is empty; start it long ago so the first failure opens one.
        window_started_ms: i64::MIN / 2,
        backoff_until_ms: i64::MIN / 2,
        ..Record::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(text: &str) -> Client {
        Client::of(text.parse().unwrap())
    }

    fn fail_until_backoff(throttle: &AuthThrottle, who: Client, now_ms: i64) -> BackoffStarted {
        for _ in 1..FAILURES_PER_WINDOW_MAX {
            assert_eq!(throttle.record_failure(who, now_ms), None);
        }
        throttle.record_failure(who, now_ms).unwrap()
    }

    #[test]
    fn backoffs_double_up_to_the_maximum_and_are_forgotten() {
        let throttle = AuthThrottle::default();
        let who = client("192.0.2.1");
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..8 {
            let started = fail_until_backoff(&throttle, who, now);
            lengths.push(started.duration_ms);
            now += started.duration_ms;
        }
        assert_eq!(lengths[..3], [10_000, 20_000, 40_000]);
        assert_eq!(*lengths.last().unwrap(), BACKOFF_MAX_MS);

        now += BACKOFF_MEMORY_MS;
        assert_eq!(
            fail_until_backoff(&throttle, who, now).duration_ms,
            BACKOFF_INITIAL_MS
        );
    }

    #[test]
    fn failures_spread_over_windows_never_back_off() {
        let throttle = AuthThrottle::default();
        let who = client("192.0.2.1");
        for window in 0..5 {
            for _ in 1..FAILURES_PER_WINDOW_MAX {
                assert_eq!(
                    throttle.record_failure(who, window * FAILURE_WINDOW_MS),
                    None
                );
            }
        }
        assert_eq!(
            throttle.verdict(who, "k", 5 * FAILURE_WINDOW_MS),
            Verdict::Check
        );
    }

    #[test]
    fn ipv6_clients_count_per_64_network() {
        assert_eq!(client("2001:db8::1"), client("2001:db8::ffff:1"));
        assert_ne!(client("2001:db8::1"), client("2001:db8:0:1::1"));
        assert_eq!(client("::ffff:192.0.2.1"), client("192.0.2.1"));
    }

    #[test]
    fn memory_is_bounded() {
        let throttle = AuthThrottle::default();
        for n in 0..(u32::try_from(TRACKED_ADDRESSES_MAX).unwrap() + 500) {
            let who = Client::of(IpAddr::from(std::net::Ipv4Addr::from(n)));
            throttle.record_failure(who, i64::from(n));
        }
        assert!(throttle.with_records(|r| r.len()) <= TRACKED_ADDRESSES_MAX);
    }
}
