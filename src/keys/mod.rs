//! API keys: minted at random, shown once, stored only as a SHA-256 digest.
//!
//! This module holds the key format and the service keys (operator, ingest); account keys
//! are part of the accounts aggregate (`accounts::api_keys`).
//!
//! A key reads `KEY<32 hex>_<64 hex>`. The part before `_` is the key's public identifier:
//! safe to list, log and return where the Telnyx schema wants an `api_key` on a later read.
//! The whole key is 256 bits of randomness after the identifier, so a plain SHA-256 digest
//! is enough at rest (a slow password hash would only slow every request).

pub mod service;

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A freshly minted key: the only moment the secret exists outside the caller's hands.
pub struct MintedKey {
    id: String,
    secret: String,
}

impl MintedKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let mut public = [0_u8; 16];
        let mut secret = [0_u8; 32];
        rng.fill_bytes(&mut public);
        rng.fill_bytes(&mut secret);
        let id = format!("KEY{}", hex_upper(&public));
        let secret = format!("{id}_{}", hex_lower(&secret));
        Self { id, secret }
    }

    /// The public identifier.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The whole key, to be shown once.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The digest stored at rest.
    pub fn digest(&self) -> String {
        digest(&self.secret)
    }
}

impl fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MintedKey({})", self.id)
    }
}

/// The SHA-256 digest of a presented key, hex.
pub fn digest(presented: &str) -> String {
    hex_lower(&Sha256::digest(presented.as_bytes()))
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Longest bearer token looked up; anything longer cannot be one of ours.
pub const PRESENTED_KEY_LENGTH_MAX: usize = 256;

/// Whether `presented` could be a key at all (worth hashing and looking up).
pub fn plausible(presented: &str) -> bool {
    !presented.is_empty() && presented.len() <= PRESENTED_KEY_LENGTH_MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_carry_their_public_id() {
        let a = MintedKey::generate();
        let b = MintedKey::generate();
        assert_ne!(a.secret(), b.secret());
        assert!(a.secret().starts_with(&format!("{}_", a.id())));
        assert_eq!(a.secret().len(), 3 + 32 + 1 + 64);
        assert_eq!(a.digest(), digest(a.secret()));
        assert!(!format!("{a:?}").contains(a.secret()));
    }
}
