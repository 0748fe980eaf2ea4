//! Signed links: a URL that works without an API key until it expires, as a browser
//! download link needs (report files, invoice documents).
//!
//! A link carries `expires` (Unix seconds) and `signature`, an HMAC-SHA256 over the path and
//! the expiry under a platform secret. The secret is generated once and kept in the
//! database, so every server on it signs and verifies alike; it never leaves the database.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use sqlx::AnyConnection;

/// Name of the signing secret in `platform_secrets`.
const LINK_SECRET_NAME: &str = "link_signing";

/// Bytes of randomness in the secret.
const SECRET_BYTES: usize = 32;

/// Why a signed link was refused; the text is safe to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The signature does not match (tampered with, or for another path).
    #[error("the link's signature is not valid; ask for a new link")]
    BadSignature,
    /// The link is older than its lifetime.
    #[error("the link has expired; ask for a new link")]
    Expired,
}

/// Signs and verifies links with the platform's secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer([redacted])")
    }
}

impl Signer {
    /// The platform's signer: reads its secret, creating it on first use (concurrent first
    /// uses agree, as only one insert wins).
    pub async fn load(conn: &mut AnyConnection, now_ms: i64) -> Result<Self, sqlx::Error> {
        let mut fresh = [0_u8; SECRET_BYTES];
        rand::thread_rng().fill_bytes(&mut fresh);
        sqlx::query(
            "INSERT INTO platform_secrets (name, secret, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(LINK_SECRET_NAME)
        .bind(hex(&fresh))
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        let stored: String =
            sqlx::query_scalar("SELECT secret FROM platform_secrets WHERE name = $1")
                .bind(LINK_SECRET_NAME)
                .fetch_one(&mut *conn)
                .await?;
        Ok(Self {
            secret: stored.into_bytes(),
        })
    }

    #[expect(clippy::expect_used, reason = "HMAC takes keys of any length")]
    fn mac(&self, path: &str, expires_s: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC takes keys of any length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires_s.to_string().as_bytes());
        mac
    }

    /// The query string (`expires=…&signature=…`) that makes `path` work until `expires_s`.
    pub fn query_for(&self, path: &str, expires_s: i64) -> String {
        let signature = hex(&self.mac(path, expires_s).finalize().into_bytes());
        format!("expires={expires_s}&signature={signature}")
    }

    /// Checks a link's signature (in constant time) and expiry.
    pub fn verify(
        &self,
        path: &str,
        expires_s: i64,
        signature: &str,
        now_s: i64,
    ) -> Result<(), LinkError> {
        let bytes = unhex(signature).ok_or(LinkError::BadSignature)?;
        self.mac(path, expires_s)
            .verify_slice(&bytes)
            .map_err(|_| LinkError::BadSignature)?;
        if now_s >= expires_s {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer {
            secret: b"test secret".to_vec(),
        }
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_only_for_its_path() {
        let signer = signer();
        let query = signer.query_for("/files/a.pdf", 1_000);
        let signature = query.split("signature=").nth(1).unwrap();
        assert_eq!(signer.verify("/files/a.pdf", 1_000, signature, 999), Ok(()));
        assert_eq!(
            signer.verify("/files/a.pdf", 1_000, signature, 1_000),
            Err(LinkError::Expired)
        );
        assert_eq!(
            signer.verify("/files/b.pdf", 1_000, signature, 1),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify("/files/a.pdf", 2_000, signature, 1),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify("/files/a.pdf", 1_000, "zz", 1),
            Err(LinkError::BadSignature)
        );
    }
}
