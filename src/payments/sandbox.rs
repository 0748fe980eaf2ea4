//! The sandbox gateway: a stand-in for a card processor that accepts only its published test
//! cards, keeps its own state in the database (tokens, charges and refunds by idempotency
//! key, as a processor would on its side), and answers after a processor-like latency.
//!
//! It stores the token, brand, last four digits, expiry, fingerprint and test behaviour of a
//! card: never its number or security code.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::Row;

use super::card::CardNumber;
use super::config::{FingerprintKey, PaymentsConfig};
use super::gateway::{
    CardDetails, CardEntry, ChargeOutcome, ChargeRequest, DeclineCode, GatewayError, GatewayFuture,
    PaymentGateway, RefundOutcome, RefundRequest, TokenizedCard,
};
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;
use crate::money::Money;

/// What a test card does when charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The charge succeeds.
    Success,
    /// The issuer declines.
    Decline(DeclineCode),
    /// The charge succeeds at the processor, but its answer is lost on the way back: the
    /// caller sees a timeout.
    LostAnswer,
    /// The charge succeeds at the processor, which answers only after the configured slow
    /// delay (`--sandbox-slow-charge-ms`).
    SlowSuccess,
    /// The processor fails before charging: nothing is charged.
    ProcessorError,
}

impl Behaviour {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Decline(code) => code.as_str(),
            Self::LostAnswer => "lost_answer",
            Self::SlowSuccess => "slow_success",
            Self::ProcessorError => "processor_error",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "success" => Self::Success,
            "lost_answer" => Self::LostAnswer,
            "slow_success" => Self::SlowSuccess,
            "processor_error" => Self::ProcessorError,
            decline => Self::Decline(DeclineCode::parse(decline)),
        }
    }
}

/// A published test card.
#[derive(Debug, Clone, Copy)]
pub struct TestCard {
    /// The number (any future expiry and any well-formed CVC work with it).
    pub number: &'static str,
    /// What charging it does.
    pub behaviour: Behaviour,
}

/// The sandbox's test cards: the only numbers it accepts.
pub const TEST_CARDS: [TestCard; 11] = [
    TestCard {
        number: "4242424242424242",
        behaviour: Behaviour::Success,
    },
    TestCard {
        number: "5555555555554444",
        behaviour: Behaviour::Success,
    },
    TestCard {
        number: "378282246310005",
        behaviour: Behaviour::Success,
    },
    TestCard {
        number: "6011111111111117",
        behaviour: Behaviour::Success,
    },
    TestCard {
        number: "4000000000009995",
        behaviour: Behaviour::Decline(DeclineCode::InsufficientFunds),
    },
    TestCard {
        number: "4000000000009979",
        behaviour: Behaviour::Decline(DeclineCode::StolenCard),
    },
    TestCard {
        number: "4000000000000069",
        behaviour: Behaviour::Decline(DeclineCode::ExpiredCard),
    },
    TestCard {
        number: "4000000000000127",
        behaviour: Behaviour::Decline(DeclineCode::IncorrectCvc),
    },
    TestCard {
        number: "4000000000007700",
        behaviour: Behaviour::LostAnswer,
    },
    TestCard {
        number: "4000000000008807",
        behaviour: Behaviour::SlowSuccess,
    },
    TestCard {
        number: "4000000000000119",
        behaviour: Behaviour::ProcessorError,
    },
];

/// Random bytes in a token: unguessable.
const TOKEN_RANDOM_BYTES: usize = 16;

/// Hex characters of a fingerprint kept (128 bits: collisions are out of reach).
const FINGERPRINT_HEX_LENGTH: usize = 32;

/// The sandbox gateway.
#[derive(Debug, Clone)]
pub struct SandboxGateway {
    db: Db,
    clock: ClockHandle,
    latency_ms: u64,
    slow_charge_ms: u64,
    fingerprint_key: FingerprintKey,
}

impl SandboxGateway {
    /// A sandbox keeping its state in `db`.
    pub fn new(db: Db, clock: ClockHandle, config: &PaymentsConfig) -> Self {
        Self {
            db,
            clock,
            latency_ms: config.sandbox_latency_ms,
            slow_charge_ms: config.sandbox_slow_charge_ms,
            fingerprint_key: config.sandbox_fingerprint_key.clone(),
        }
    }

    async fn pause(&self, ms: u64) {
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    fn fingerprint(&self, number: &CardNumber) -> Result<String, GatewayError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.fingerprint_key.bytes())
            .map_err(|e| anyhow::anyhow!("Failed to key the fingerprint: {e}"))?;
        mac.update(number.digits().as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok(hex.get(..FINGERPRINT_HEX_LENGTH).unwrap_or(&hex).to_owned())
    }

    async fn tokenize_card(&self, card: CardEntry) -> Result<TokenizedCard, GatewayError> {
        self.pause(self.latency_ms).await;
        let behaviour = TEST_CARDS
            .iter()
            .find(|t| t.number == card.number.digits())
            .map(|t| t.behaviour)
            .ok_or_else(|| {
                GatewayError::InvalidCard(
                    "the sandbox gateway accepts only its test cards; no real card can be charged here"
                        .to_owned(),
                )
            })?;
        let details = CardDetails {
            brand: card.number.brand().to_owned(),
            last4: card.number.last4().to_owned(),
            exp_month: card.expiry.month(),
            exp_year: card.expiry.year(),
            fingerprint: self.fingerprint(&card.number)?,
        };
        let random: [u8; TOKEN_RANDOM_BYTES] = rand::random();
        let token = format!(
            "tok_sandbox_{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        sqlx::query(
            "INSERT INTO sandbox_cards (token, brand, last4, exp_month, exp_year, fingerprint, behaviour, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&token)
        .bind(&details.brand)
        .bind(&details.last4)
        .bind(i64::from(details.exp_month))
        .bind(i64::from(details.exp_year))
        .bind(&details.fingerprint)
        .bind(behaviour.as_str())
        .bind(to_epoch_ms(self.clock.now()))
        .execute(&self.db.write)
        .await
        .map_err(database)?;
        Ok(TokenizedCard {
            token,
            card: details,
        })
    }

    async fn find_card(
        &self,
        token: &str,
    ) -> Result<Option<(CardDetails, Behaviour)>, GatewayError> {
        let row = sqlx::query(
            "SELECT brand, last4, exp_month, exp_year, fingerprint, behaviour FROM sandbox_cards WHERE token = $1",
        )
        .bind(token)
        .fetch_optional(&self.db.read)
        .await
        .map_err(database)?;
        row.map(|row| {
            let month: i64 = row.try_get("exp_month")?;
            let year: i64 = row.try_get("exp_year")?;
            let behaviour: String = row.try_get("behaviour")?;
            Ok((
                CardDetails {
                    brand: row.try_get("brand")?,
                    last4: row.try_get("last4")?,
                    exp_month: u32::try_from(month).unwrap_or(0),
                    exp_year: i32::try_from(year).unwrap_or(0),
                    fingerprint: row.try_get("fingerprint")?,
                },
                Behaviour::parse(&behaviour),
            ))
        })
        .transpose()
        .map_err(database)
    }

    async fn find_charge(&self, key: &str) -> Result<Option<ChargeOutcome>, GatewayError> {
        let row = sqlx::query(
            "SELECT charge_id, outcome, decline_code FROM sandbox_charges WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.db.read)
        .await
        .map_err(database)?;
        row.map(|row| {
            let outcome: String = row.try_get("outcome")?;
            Ok(if outcome == "succeeded" {
                ChargeOutcome::Succeeded {
                    charge_id: row.try_get("charge_id")?,
                }
            } else {
                let code: Option<String> = row.try_get("decline_code")?;
                ChargeOutcome::Declined {
                    code: DeclineCode::parse(code.as_deref().unwrap_or_default()),
                }
            })
        })
        .transpose()
        .map_err(database)
    }

    /// Records the outcome of a charge once per key; a concurrent charge with the same key
    /// keeps the first record, which is then answered.
    async fn record_charge(
        &self,
        request: &ChargeRequest,
        decline: Option<DeclineCode>,
    ) -> Result<ChargeOutcome, GatewayError> {
        sqlx::query(
            "INSERT INTO sandbox_charges (idempotency_key, charge_id, token, amount_nanos, outcome, decline_code, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&request.idempotency_key)
        .bind(format!("ch_sandbox_{}", uuid::Uuid::now_v7().simple()))
        .bind(&request.token)
        .bind(request.amount.nanos())
        .bind(if decline.is_some() { "declined" } else { "succeeded" })
        .bind(decline.map(DeclineCode::as_str))
        .bind(to_epoch_ms(self.clock.now()))
        .execute(&self.db.write)
        .await
        .map_err(database)?;
        self.find_charge(&request.idempotency_key)
            .await?
            .ok_or_else(|| {
                GatewayError::Other(anyhow::anyhow!("the charge just recorded is missing"))
            })
    }

    async fn charge_card(&self, request: ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        self.pause(self.latency_ms).await;
        if let Some(first) = self.find_charge(&request.idempotency_key).await? {
            return Ok(first);
        }
        let Some((card, behaviour)) = self.find_card(&request.token).await? else {
            return Ok(ChargeOutcome::Failed);
        };
        if request.amount.nanos() <= 0 {
            return Ok(ChargeOutcome::Failed);
        }
        use chrono::Datelike;
        let today = self.clock.now().date_naive();
        let expired = (card.exp_year, card.exp_month) < (today.year(), today.month());
        let outcome = match behaviour {
            _ if expired => {
                self.record_charge(&request, Some(DeclineCode::ExpiredCard))
                    .await?
            }
            Behaviour::ProcessorError => return Ok(ChargeOutcome::Failed),
            Behaviour::Decline(code) => self.record_charge(&request, Some(code)).await?,
            Behaviour::Success | Behaviour::LostAnswer | Behaviour::SlowSuccess => {
                self.record_charge(&request, None).await?
            }
        };
        match behaviour {
            Behaviour::LostAnswer => Err(GatewayError::Timeout),
            Behaviour::SlowSuccess => {
                self.pause(self.slow_charge_ms).await;
                Ok(outcome)
            }
            _ => Ok(outcome),
        }
    }

    async fn refund_charge(&self, request: RefundRequest) -> Result<RefundOutcome, GatewayError> {
        self.pause(self.latency_ms).await;
        if request.amount <= Money::ZERO {
            return Ok(RefundOutcome::Refused(
                "a refund must be a positive amount".to_owned(),
            ));
        }
        let mut tx = self.db.begin_write().await.map_err(database)?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT refund_id FROM sandbox_refunds WHERE idempotency_key = $1")
                .bind(&request.idempotency_key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(database)?;
        if let Some(refund_id) = existing {
            return Ok(RefundOutcome::Succeeded { refund_id });
        }
        // Takes the charge's row lock: concurrent refunds of one charge are serialised.
        let refundable = sqlx::query(
            "UPDATE sandbox_charges SET refunded_nanos = refunded_nanos + $1 \
             WHERE charge_id = $2 AND outcome = 'succeeded' AND refunded_nanos + $1 <= amount_nanos",
        )
        .bind(request.amount.nanos())
        .bind(&request.charge_id)
        .execute(&mut *tx)
        .await
        .map_err(database)?
        .rows_affected()
            == 1;
        if !refundable {
            return Ok(RefundOutcome::Refused(
                "the charge does not exist, did not succeed, or has less left to refund".to_owned(),
            ));
        }
        let refund_id = format!("re_sandbox_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(
            "INSERT INTO sandbox_refunds (idempotency_key, refund_id, charge_id, amount_nanos, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&request.idempotency_key)
        .bind(&refund_id)
        .bind(&request.charge_id)
        .bind(request.amount.nanos())
        .bind(to_epoch_ms(self.clock.now()))
        .execute(&mut *tx)
        .await
        .map_err(database)?;
        tx.commit().await.map_err(database)?;
        Ok(RefundOutcome::Succeeded { refund_id })
    }
}

fn database(error: sqlx::Error) -> GatewayError {
    GatewayError::Other(
        anyhow::Error::new(error).context("The sandbox gateway failed to use its database"),
    )
}

impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn tokenize(&self, card: CardEntry) -> GatewayFuture<'_, TokenizedCard> {
        Box::pin(self.tokenize_card(card))
    }

    fn card(&self, token: &str) -> GatewayFuture<'_, Option<CardDetails>> {
        let token = token.to_owned();
        Box::pin(async move {
            self.pause(self.latency_ms).await;
            Ok(self.find_card(&token).await?.map(|(card, _)| card))
        })
    }

    fn charge(&self, request: ChargeRequest) -> GatewayFuture<'_, ChargeOutcome> {
        Box::pin(self.charge_card(request))
    }

    fn lookup(&self, idempotency_key: &str) -> GatewayFuture<'_, Option<ChargeOutcome>> {
        let key = idempotency_key.to_owned();
        Box::pin(async move {
            self.pause(self.latency_ms).await;
            self.find_charge(&key).await
        })
    }

    fn refund(&self, request: RefundRequest) -> GatewayFuture<'_, RefundOutcome> {
        Box::pin(self.refund_charge(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_card_is_a_valid_card_number_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for card in TEST_CARDS {
            assert!(CardNumber::parse(card.number).is_ok(), "{}", card.number);
            assert!(seen.insert(card.number));
            assert_eq!(Behaviour::parse(card.behaviour.as_str()), card.behaviour);
        }
    }
}
