//! Checking an email and password for the portal's sign-in.
//!
//! The answer never says whether an email exists when the password is wrong: an unknown
//! email and a wrong password take the same argon2 work (a dummy hash stands in for the
//! missing one) and give the same outcome. Only a correct password learns more (that the
//! account is disabled, say); an account without a password is told to ask for one, which
//! the product requires.

use std::sync::LazyLock;

use anyhow::Context;

use super::{Account, AccountError, AccountId, AccountStatus, Email, Password, repo};
use crate::db::Db;

/// What a sign-in attempt found.
#[derive(Debug)]
pub enum SignIn {
    /// The password is right and the account may sign in.
    Verified(Account),
    /// The email is unknown or the password wrong (which of the two is not said).
    WrongCredentials,
    /// The account has no password yet; its manager (or the operator) sets one.
    NoPassword,
    /// The password is right but the account may not sign in (disabled, cancelled, blocked).
    NotAllowed(AccountStatus),
}

/// A hash of no one's password, verified against when the email is unknown, so that an
/// unknown email costs as much time as a known one.
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    Password::parse("no account has this password")
        .ok()
        .and_then(|p| p.hash().ok())
});

/// Checks `email` and `password` as typed into the sign-in form.
#[tracing::instrument(name = "steward.accounts.sign_in", skip_all)]
pub async fn check_password(db: &Db, email: &str, password: &str) -> Result<SignIn, AccountError> {
    // Text that is not an address or not a possible password matches no account; the work
    // is done all the same.
    let email = Email::parse(email).ok();
    let password = Password::parse(password).ok();
    let found = match &email {
        Some(email) => {
            let mut conn = db.read.acquire().await?;
            repo::find_for_sign_in(&mut conn, &email.normalized()).await?
        }
        None => None,
    };
    let (account, hash) = match found {
        Some((account, Some(hash))) => (Some(account), hash),
        Some((_, None)) => return Ok(SignIn::NoPassword),
        None => (None, DUMMY_HASH.clone().unwrap_or_default()),
    };
    let matches = match password {
        Some(password) => tokio::task::spawn_blocking(move || password.verify(&hash))
            .await
            .context("Failed to run password verification")?,
        None => false,
    };
    Ok(match account {
        Some(account) if matches => match account.status {
            AccountStatus::Active => SignIn::Verified(account),
            status => SignIn::NotAllowed(status),
        },
        _ => SignIn::WrongCredentials,
    })
}

/// Whether `password` is the account's current password (to change it, one must know it).
/// An account without a password has no current one to match.
pub async fn password_matches(
    db: &Db,
    id: AccountId,
    password: &str,
) -> Result<bool, AccountError> {
    let hash = {
        let mut conn = db.read.acquire().await?;
        repo::password_hash(&mut conn, id).await?
    };
    let (Some(hash), Ok(password)) = (hash, Password::parse(password)) else {
        return Ok(false);
    };
    Ok(tokio::task::spawn_blocking(move || password.verify(&hash))
        .await
        .context("Failed to run password verification")?)
}
