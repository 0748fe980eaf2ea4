//! Portal sessions, kept in the database: they survive a restart and work on every server
//! on one database.
//!
//! A session is a 256-bit random token in the browser's cookie; the database holds only its
//! SHA-256 digest. Every request re-reads the session with its account, so a session ends
//! the moment its account is disabled, cancelled or blocked, or its row is deleted (sign-out,
//! password change). A session lives at most [`SESSION_LIFETIME_MS`] and ends after
//! [`SESSION_IDLE_MS`] without a request.
//!
//! "Log in as": a manager's session may act as one of its managed accounts until
//! [`ACTING_LIFETIME_MS`] has passed, the manager returns, signs out, or stops being an
//! approved manager, or the managed account is cancelled. The managed account is read
//! through [`accounts::repo::find_managed`] on every request, so acting never reaches another
//! manager's account. No axum here: the web side lives in the sibling modules.

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::accounts::{self, Account, AccountError, AccountId, AccountKind, AccountStatus};
use crate::db::Db;

/// Longest a session lives, however active: a stolen cookie is useful for a working day
/// at most.
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;

/// A session unused this long ends: a browser left open on a shared desk signs itself out.
pub const SESSION_IDLE_MS: i64 = 30 * 60 * 1000;

/// The last-seen time is written at most this often, so that page views are not each a
/// database write; the idle timeout is therefore exact to within this interval.
pub const SESSION_TOUCH_INTERVAL_MS: i64 = 60 * 1000;

/// Longest a manager acts as a managed account in one go; then it is back in its own.
pub const ACTING_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// Bytes of randomness in a session token (256 bits: unguessable, so a fast digest at
/// rest is enough).
const TOKEN_BYTES: usize = 32;

/// A session token as held by the browser. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        let mut bytes = [0_u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex(&bytes))
    }

    /// A token as sent back by a browser: exactly the shape [`SessionToken::generate`] makes.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == TOKEN_BYTES * 2 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(text.to_ascii_lowercase()))
    }

    /// The cookie value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the database stores.
    pub fn digest(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// The form token that proves a request came from a page of this session: derived from
    /// the token (which only the browser holds), so nothing more is stored.
    pub fn csrf_token(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"steward.portal.csrf\0");
        hasher.update(self.0.as_bytes());
        hex(&hasher.finalize())
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// A live session, as read for one request.
#[derive(Debug, Clone)]
pub struct Session {
    /// The signed-in account (the manager, when acting).
    pub account: Account,
    /// The managed account the manager acts as, if it does.
    pub acting: Option<Acting>,
}

/// A manager acting as one of its managed accounts.
#[derive(Debug, Clone)]
pub struct Acting {
    /// The managed account.
    pub account: Account,
    /// When acting ends at the latest, ms.
    pub until_ms: i64,
}

/// Why acting ended without the manager asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActingEnded {
    /// The time limit passed.
    TimeLimit,
    /// The signed-in account is no longer an approved manager.
    NoLongerManager,
    /// The managed account was cancelled (or is no longer the manager's).
    AccountGone,
}

impl ActingEnded {
    /// A sentence for the person.
    pub fn explain(self) -> &'static str {
        match self {
            Self::TimeLimit => "Acting as the managed account ended: the time limit passed.",
            Self::NoLongerManager => {
                "Acting as the managed account ended: this account is no longer an approved manager."
            }
            Self::AccountGone => "Acting as the managed account ended: the account was cancelled.",
        }
    }
}

/// Starts a session for `account` (which has just proven its password); returns its token.
pub async fn create(db: &Db, account: AccountId, now_ms: i64) -> Result<SessionToken, sqlx::Error> {
    let token = SessionToken::generate();
    let mut conn = db.write.acquire().await?;
    // Expired rows of anyone go now: sign-ins are rare enough to carry the purge.
    sqlx::query("DELETE FROM portal_sessions WHERE expires_at_ms <= $1 OR last_seen_at_ms <= $2")
        .bind(now_ms)
        .bind(now_ms - SESSION_IDLE_MS)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO portal_sessions (token_sha256, account_id, created_at_ms, last_seen_at_ms, \
         expires_at_ms) VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(token.digest())
    .bind(account.to_string())
    .bind(now_ms)
    .bind(now_ms + SESSION_LIFETIME_MS)
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

/// Ends a session (sign-out). Ending one that is gone changes nothing.
pub async fn destroy(db: &Db, token: &SessionToken) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM portal_sessions WHERE token_sha256 = $1")
        .bind(token.digest())
        .execute(&db.write)
        .await?;
    Ok(())
}

/// Ends every session of `account` but `keep` (after its password changed: whoever knew
/// the old one is signed out everywhere else).
pub async fn destroy_others(
    db: &Db,
    account: AccountId,
    keep: Option<&SessionToken>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM portal_sessions WHERE account_id = $1 AND token_sha256 <> $2")
        .bind(account.to_string())
        .bind(keep.map(SessionToken::digest).unwrap_or_default())
        .execute(&db.write)
        .await?;
    Ok(())
}

/// The session behind `token` as of `now_ms`, or `None` when it is unknown, expired, idle
/// too long, or its account may not sign in now. When acting had to end, the session comes
/// back without it, with the reason.
pub async fn resolve(
    db: &Db,
    token: &SessionToken,
    now_ms: i64,
) -> Result<Option<(Session, Option<ActingEnded>)>, AccountError> {
    let digest = token.digest();
    let mut conn = db.read.acquire().await?;
    let sql = format!(
        "SELECT {}, s.acting_as_account_id, s.acting_until_ms, s.last_seen_at_ms, s.expires_at_ms \
         FROM portal_sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_sha256 = $1",
        accounts::repo::ACCOUNT_COLUMNS
    );
    let Some(row) = sqlx::query(&sql)
        .bind(&digest)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let account = accounts::repo::account_from_row(&row)?;
    let acting_id: Option<String> = row.try_get("acting_as_account_id")?;
    let acting_until_ms: Option<i64> = row.try_get("acting_until_ms")?;
    let last_seen_at_ms: i64 = row.try_get("last_seen_at_ms")?;
    let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
    let expired = expires_at_ms <= now_ms || last_seen_at_ms <= now_ms - SESSION_IDLE_MS;
    if expired || account.status != AccountStatus::Active {
        drop(conn);
        destroy(db, token).await?;
        return Ok(None);
    }
    let mut ended = None;
    let mut acting = None;
    if let Some(id) = acting_id.as_deref().and_then(AccountId::parse) {
        let until_ms = acting_until_ms.unwrap_or(now_ms);
        let managed = accounts::repo::find_managed(&mut conn, account.id, id).await?;
        ended = if until_ms <= now_ms {
            Some(ActingEnded::TimeLimit)
        } else if account.kind != AccountKind::Manager {
            Some(ActingEnded::NoLongerManager)
        } else {
            match managed {
                Some((managed, _)) if managed.status != AccountStatus::Cancelled => {
                    acting = Some(Acting {
                        account: managed,
                        until_ms,
                    });
                    None
                }
                _ => Some(ActingEnded::AccountGone),
            }
        };
    }
    drop(conn);
    if ended.is_some() {
        set_acting(db, &digest, None, now_ms).await?;
    }
    if now_ms - last_seen_at_ms >= SESSION_TOUCH_INTERVAL_MS {
        sqlx::query("UPDATE portal_sessions SET last_seen_at_ms = $1 WHERE token_sha256 = $2")
            .bind(now_ms)
            .bind(&digest)
            .execute(&db.write)
            .await?;
    }
    Ok(Some((Session { account, acting }, ended)))
}

/// Makes the manager's session act as its managed account `target`. Another manager's
/// account is `NotFound`, like one that does not exist; a cancelled one cannot be entered.
pub async fn start_acting(
    db: &Db,
    token: &SessionToken,
    manager: &Account,
    target: AccountId,
    now_ms: i64,
) -> Result<Account, AccountError> {
    let (account, _) = accounts::managed_account(db, manager, target).await?;
    if account.status == AccountStatus::Cancelled {
        return Err(AccountError::Cancelled);
    }
    let until = (account.id, now_ms + ACTING_LIFETIME_MS);
    set_acting(db, &token.digest(), Some(until), now_ms).await?;
    Ok(account)
}

/// Back to the manager's own account.
pub async fn stop_acting(db: &Db, token: &SessionToken, now_ms: i64) -> Result<(), sqlx::Error> {
    set_acting(db, &token.digest(), None, now_ms).await
}

async fn set_acting(
    db: &Db,
    digest: &str,
    acting: Option<(AccountId, i64)>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE portal_sessions SET acting_as_account_id = $1, acting_until_ms = $2, \
         last_seen_at_ms = $3 WHERE token_sha256 = $4",
    )
    .bind(acting.map(|(id, _)| id.to_string()))
    .bind(acting.map(|(_, until)| until))
    .bind(now_ms)
    .bind(digest)
    .execute(&db.write)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_in_their_own_shape() {
        let token = SessionToken::generate();
        assert_eq!(SessionToken::parse(token.expose()), Some(token.clone()));
        assert!(SessionToken::parse("abc").is_none());
        assert!(SessionToken::parse(&"g".repeat(64)).is_none());
        assert_ne!(token.digest(), token.expose());
        assert_ne!(token.csrf_token(), token.digest());
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
