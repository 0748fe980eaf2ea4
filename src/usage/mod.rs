//! Usage: ingesting events from network elements, rating them, charging them once.
//!
//! A batch goes through, in order: parse every event (a bad one is rejected alone), drop
//! repeats within the batch, load the accounts it names (one query), rate each event against
//! the in-memory pricing index (no query per event), then in one transaction insert the
//! rated records keyed by event id (`ON CONFLICT DO NOTHING`: an id already charged, by this
//! or any earlier batch, is a duplicate), post one journal entry with one posting per
//! (payer, spender) and update each payer's balance once. A retried batch, whether or not
//! the first attempt committed, therefore charges nothing twice.
//!
//! Ingestion never refuses usage for want of credit or because the account was disabled
//! since: admission decides before usage starts, and admitted usage is always charged.

pub mod numbers;
pub mod repo;
pub mod rollups;

pub use repo::LeaseEnd;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::DateTime;
use serde::Deserialize;

use crate::accounts::AccountId;
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;
use crate::ledger::{self, Book, Entry, EntryHeader, EntryKind, Posting};
use crate::money::{AMOUNT_ABS_MAX_NANOS, Money};
use crate::pricing::{PricingCache, Product};
use crate::rating;

/// Events accepted in one request.
pub const BATCH_EVENTS_MAX: usize = 10_000;

/// Longest event id accepted.
pub const EVENT_ID_LENGTH_MAX: usize = 128;

/// How far in the future an event may claim to have occurred (switch clocks drift).
const FUTURE_SKEW_MS: i64 = 24 * 3600 * 1000;

/// An event as a network element sends it; every field is checked before use.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawEvent {
    /// Unique event id (the idempotency key of the charge).
    pub id: Option<String>,
    /// The account that used the service.
    pub account_id: Option<String>,
    /// One of the product names.
    pub product: Option<String>,
    /// E.164 number called, messaged or rented.
    pub destination: Option<String>,
    /// Seconds, message parts or months (an integer ≥ 0).
    pub quantity: Option<serde_json::Value>,
    /// RFC 3339 instant.
    pub occurred_at: Option<String>,
    /// The admission lease of the call, if any; charging it releases the lease.
    pub lease_id: Option<String>,
}

impl RawEvent {
    /// Reads one event of a batch. A value that is not an event object, or has a field of
    /// the wrong type, is that event's rejection, not the batch's.
    pub fn from_json(value: &serde_json::Value) -> Result<RawEvent, String> {
        RawEvent::deserialize(value).map_err(|e| format!("malformed event: {e}"))
    }
}

/// A checked event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEvent {
    /// Event id.
    pub id: String,
    /// The account.
    pub account_id: AccountId,
    /// The product.
    pub product: Product,
    /// E.164 digits, without `+`.
    pub destination: String,
    /// Quantity in the product's unit.
    pub quantity: i64,
    /// When it happened.
    pub occurred_at_ms: i64,
    /// Admission lease.
    pub lease_id: Option<String>,
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Rated and charged now.
    Accepted,
    /// Already charged before (or earlier in this batch): nothing charged now.
    Duplicate,
    /// Not charged; the reason says why.
    Rejected(String),
}

/// A usage record as rated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedRecord {
    /// The event.
    pub event: UsageEvent,
    /// Whose balance pays.
    pub payer: AccountId,
    /// Quantity after billing increments.
    pub billable_quantity: i64,
    /// The price list that rated it.
    pub price_list_id: String,
    /// The prefix that matched.
    pub rate_prefix: String,
    /// The rate applied, nano-units per rate unit.
    pub rate_nanos: i64,
    /// The cost charged.
    pub cost_nanos: i64,
    /// The destination's country and number type (stored with the record for reports).
    pub destination: numbers::Classification,
}

/// E.164 digits of a number (`+` optional), or `None`.
pub fn e164_digits(text: &str) -> Option<&str> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// Checks one raw event.
pub fn parse_event(raw: &RawEvent, now_ms: i64) -> Result<UsageEvent, String> {
    let id = raw.id.as_deref().ok_or("id is required")?;
    if id.is_empty() || id.len() > EVENT_ID_LENGTH_MAX || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "id must be 1 to {EVENT_ID_LENGTH_MAX} visible ASCII characters"
        ));
    }
    let account_id = raw.account_id.as_deref().ok_or("account_id is required")?;
    let account_id = AccountId::parse(account_id).ok_or("unknown account")?;
    let product = raw.product.as_deref().ok_or("product is required")?;
    let product = Product::parse(product).ok_or_else(|| format!("unknown product '{product}'"))?;
    let destination = raw
        .destination
        .as_deref()
        .ok_or("destination is required")?;
    let destination = e164_digits(destination).ok_or("destination must be an E.164 number")?;
    let quantity = raw
        .quantity
        .as_ref()
        .ok_or("quantity is required")?
        .as_i64()
        .filter(|q| (0..=product.quantity_max()).contains(q))
        .ok_or_else(|| {
            format!(
                "bad quantity: {} must be a whole number of {} from 0 to {}",
                product.as_str(),
                product.quantity_unit(),
                product.quantity_max()
            )
        })?;
    let occurred_at = raw
        .occurred_at
        .as_deref()
        .ok_or("occurred_at is required")?;
    let occurred_at_ms = DateTime::parse_from_rfc3339(occurred_at)
        .map_err(|_| "occurred_at must be an RFC 3339 instant".to_owned())?
        .timestamp_millis();
    if occurred_at_ms > now_ms.saturating_add(FUTURE_SKEW_MS) {
        return Err("occurred_at is in the future".to_owned());
    }
    Ok(UsageEvent {
        id: id.to_owned(),
        account_id,
        product,
        destination: destination.to_owned(),
        quantity,
        occurred_at_ms,
        lease_id: raw.lease_id.clone(),
    })
}

/// Rates one event for `payee` with the index.
fn rate(
    event: UsageEvent,
    payee: &repo::Payee,
    index: &crate::pricing::PricingIndex,
) -> Result<RatedRecord, String> {
    let list = index
        .list_for(&payee.subject, event.occurred_at_ms)
        .ok_or("no price list applies to this account at occurred_at")?;
    let rate = list
        .lookup(event.product, &event.destination)
        .ok_or("no rate for the destination")?;
    let billable = rating::billable_quantity(event.product, event.quantity, rate.increments);
    let cost =
        rating::cost_nanos(event.product, rate.rate_nanos, billable).ok_or("cost out of range")?;
    Ok(RatedRecord {
        payer: payee.payer,
        billable_quantity: billable,
        price_list_id: list.id.clone(),
        rate_prefix: rate.prefix.clone(),
        rate_nanos: rate.rate_nanos,
        cost_nanos: cost,
        destination: numbers::classify(&event.destination),
        event,
    })
}

/// What one batch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// One outcome per event, in request order.
    pub outcomes: Vec<Outcome>,
    /// Per event, in request order: what its `lease_id` did, for events charged now that
    /// carried one.
    pub leases: Vec<Option<LeaseEnd>>,
    /// The amount charged for the events accepted now.
    pub charged_nanos: i64,
}

/// Ingests one batch; outcomes come back in request order.
#[tracing::instrument(name = "steward.usage.ingest", skip_all, fields(events = raw.len()))]
pub async fn ingest(
    db: &Db,
    pricing: &PricingCache,
    clock: &ClockHandle,
    raw: &[Result<RawEvent, String>],
    created_by: &str,
) -> Result<Ingested, sqlx::Error> {
    let now_ms = to_epoch_ms(clock.now());
    let mut outcomes = vec![Outcome::Accepted; raw.len()];
    // Event id -> slot of its first occurrence in this batch.
    let mut first_slot: HashMap<&str, usize> = HashMap::new();
    let mut repeats = Vec::new();
    let mut events = Vec::with_capacity(raw.len());
    for (slot, raw) in raw.iter().enumerate() {
        let raw = match raw {
            Ok(raw) => raw,
            Err(reason) => {
                set(&mut outcomes, slot, Outcome::Rejected(reason.clone()));
                continue;
            }
        };
        if let Some(first) = raw.id.as_deref().and_then(|id| first_slot.get(id)) {
            repeats.push((slot, *first));
            continue;
        }
        if let Some(id) = raw.id.as_deref() {
            first_slot.insert(id, slot);
        }
        match parse_event(raw, now_ms) {
            Ok(event) => events.push((slot, event)),
            Err(reason) => set(&mut outcomes, slot, Outcome::Rejected(reason)),
        }
    }
    let account_ids: Vec<AccountId> = events
        .iter()
        .map(|(_, e)| e.account_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let payees = {
        let mut conn = db.read.acquire().await?;
        repo::find_payees(&mut conn, &account_ids).await?
    };
    let index = pricing.current(db).await?;
    let mut rated = Vec::with_capacity(events.len());
    // One batch is one journal entry, and an entry carries at most AMOUNT_ABS_MAX_NANOS:
    // events beyond that are refused alone, in request order, to be sent again later.
    let mut batch_cost_nanos: i64 = 0;
    for (slot, event) in events {
        let Some(payee) = payees.get(&event.account_id) else {
            set(
                &mut outcomes,
                slot,
                Outcome::Rejected("unknown account".to_owned()),
            );
            continue;
        };
        match rate(event, payee, &index) {
            Ok(record) => match batch_cost_nanos
                .checked_add(record.cost_nanos)
                .filter(|total| *total <= AMOUNT_ABS_MAX_NANOS)
            {
                Some(total) => {
                    batch_cost_nanos = total;
                    rated.push((slot, record));
                }
                None => set(
                    &mut outcomes,
                    slot,
                    Outcome::Rejected(
                        "the batch's charges would exceed 100000000.00 in all; send this event in another batch"
                            .to_owned(),
                    ),
                ),
            },
            Err(reason) => set(&mut outcomes, slot, Outcome::Rejected(reason)),
        }
    }
    let charged = charge(
        db,
        &rated.iter().map(|(_, r)| r).collect::<Vec<_>>(),
        created_by,
        now_ms,
    )
    .await?;
    let mut charged_nanos: i64 = 0;
    let mut leases = vec![None; outcomes.len()];
    for (slot, record) in &rated {
        if charged.new_ids.contains(record.event.id.as_str()) {
            // Bounded: the batch's total was checked against AMOUNT_ABS_MAX_NANOS above.
            charged_nanos = charged_nanos.saturating_add(record.cost_nanos);
            if let (Some(lease_id), Some(place)) =
                (record.event.lease_id.as_ref(), leases.get_mut(*slot))
            {
                *place = charged
                    .lease_ends
                    .get(&(lease_id.clone(), record.event.account_id))
                    .copied();
            }
        } else {
            set(&mut outcomes, *slot, Outcome::Duplicate);
        }
    }
    // A repeated id is a duplicate of a charged event, or refused like its first occurrence.
    for (slot, first) in repeats {
        let repeat = match outcomes.get(first) {
            Some(Outcome::Rejected(_)) => {
                Outcome::Rejected("repeats the id of a rejected event in this batch".to_owned())
            }
            _ => Outcome::Duplicate,
        };
        set(&mut outcomes, slot, repeat);
    }
    Ok(Ingested {
        outcomes,
        leases,
        charged_nanos,
    })
}

fn set(outcomes: &mut [Outcome], slot: usize, outcome: Outcome) {
    if let Some(place) = outcomes.get_mut(slot) {
        *place = outcome;
    }
}

/// What one charge transaction did.
#[derive(Debug, Default)]
struct Charged {
    /// The event ids that were new (the others had been charged before).
    new_ids: HashSet<String>,
    /// What each new event's `lease_id` did, by (lease id, account).
    lease_ends: HashMap<(String, AccountId), LeaseEnd>,
}

/// Inserts the records and charges the new ones in one transaction.
async fn charge(
    db: &Db,
    records: &[&RatedRecord],
    created_by: &str,
    now_ms: i64,
) -> Result<Charged, sqlx::Error> {
    if records.is_empty() {
        return Ok(Charged::default());
    }
    let mut lease_ends = HashMap::new();
    let entry_id = uuid::Uuid::now_v7().to_string();
    let mut tx = db.write.begin().await?;
    let inserted = repo::insert_records(&mut tx, records, &entry_id, now_ms).await?;
    let new: Vec<&RatedRecord> = records
        .iter()
        .copied()
        .filter(|r| inserted.contains(r.event.id.as_str()))
        .collect();
    if !new.is_empty() {
        let entry = usage_entry(&entry_id, &new, created_by)?;
        rollups::add_in_tx(&mut tx, &new).await?;
        ledger::repo::post_in_tx(&mut tx, &entry, now_ms)
            .await
            .map_err(|e| match e {
                ledger::PostError::Database(e) => e,
                // Unreachable in practice (a balance near 9 billion units); fails the batch
                // loudly rather than store a wrong balance.
                e @ ledger::PostError::BalanceOutOfRange => sqlx::Error::Protocol(e.to_string()),
            })?;
        let leases: Vec<(&str, AccountId)> = new
            .iter()
            .filter_map(|r| Some((r.event.lease_id.as_deref()?, r.event.account_id)))
            .collect();
        lease_ends = repo::end_leases(&mut tx, &leases, now_ms).await?;
        // The auto-recharge outbox: written with the charge, so a crash cannot lose it.
        crate::payments::auto_recharge::stage_triggers(
            &mut tx,
            new.iter().map(|r| r.payer),
            now_ms,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Charged {
        new_ids: inserted,
        lease_ends,
    })
}

/// One entry for the batch: each payer's balance debited once per spender (a rollup
/// manager's charges stay tagged with the managed account that spent them), revenue credited.
fn usage_entry(
    entry_id: &str,
    records: &[&RatedRecord],
    created_by: &str,
) -> Result<Entry, sqlx::Error> {
    let overflow = || sqlx::Error::Protocol("usage batch total out of range".to_owned());
    let mut by_payer: BTreeMap<(AccountId, Option<AccountId>), i64> = BTreeMap::new();
    for record in records {
        let spender = (record.payer != record.event.account_id).then_some(record.event.account_id);
        let slot = by_payer.entry((record.payer, spender)).or_insert(0);
        *slot = slot.checked_add(record.cost_nanos).ok_or_else(overflow)?;
    }
    let mut total: i64 = 0;
    let mut postings = Vec::with_capacity(by_payer.len() + 1);
    for ((payer, spender), cost) in &by_payer {
        total = total.checked_add(*cost).ok_or_else(overflow)?;
        postings.push(Posting {
            book: Book::Balance(*payer),
            amount: Money::from_nanos(cost.checked_neg().ok_or_else(overflow)?),
            spender: *spender,
        });
    }
    postings.push(Posting {
        book: Book::PlatformRevenue,
        amount: Money::from_nanos(total),
        spender: None,
    });
    let payers: HashSet<AccountId> = by_payer.keys().map(|(payer, _)| *payer).collect();
    let account = (payers.len() == 1)
        .then(|| payers.into_iter().next())
        .flatten();
    let header = EntryHeader {
        id: entry_id.to_owned(),
        kind: EntryKind::Usage,
        account,
        reason: None,
        created_by: created_by.to_owned(),
    };
    Entry::new(header, postings).map_err(|e| sqlx::Error::Protocol(e.to_string()))
}

/// How records are grouped for reading back.
pub fn products_of(record_type: &str) -> Option<Vec<Product>> {
    match record_type {
        "sip-trunking" => Some(vec![Product::VoiceOutbound, Product::VoiceInbound]),
        "messaging" => Some(vec![
            Product::SmsOutbound,
            Product::SmsInbound,
            Product::MmsOutbound,
            Product::MmsInbound,
        ]),
        "number-rental" => Some(vec![Product::NumberRental]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawEvent {
        RawEvent {
            id: Some("e1".into()),
            account_id: Some(AccountId::generate().to_string()),
            product: Some("voice_outbound".into()),
            destination: Some("+14155550100".into()),
            quantity: Some(serde_json::json!(61)),
            occurred_at: Some("2026-01-01T00:00:00Z".into()),
            lease_id: None,
        }
    }

    #[test]
    fn good_events_parse() {
        let event = parse_event(&raw(), 1_800_000_000_000).unwrap();
        assert_eq!(event.destination, "14155550100");
        assert_eq!(event.quantity, 61);
    }

    #[test]
    fn bad_events_say_why() {
        let now = 1_800_000_000_000;
        type Change = fn(&mut RawEvent);
        let cases: [(Change, &str); 7] = [
            (|r| r.quantity = Some(serde_json::json!(-1)), "bad quantity"),
            (
                |r| r.quantity = Some(serde_json::json!(1.5)),
                "bad quantity",
            ),
            (
                |r| r.quantity = Some(serde_json::json!("61")),
                "bad quantity",
            ),
            (|r| r.product = Some("fax".into()), "unknown product"),
            (|r| r.destination = Some("12ab".into()), "E.164"),
            (|r| r.occurred_at = Some("yesterday".into()), "RFC 3339"),
            (|r| r.account_id = Some("nope".into()), "unknown account"),
        ];
        for (change, expected) in cases {
            let mut event = raw();
            change(&mut event);
            let reason = parse_event(&event, now).unwrap_err();
            assert!(reason.contains(expected), "{reason}");
        }
        let mut future = raw();
        future.occurred_at = Some("2100-01-01T00:00:00Z".into());
        assert!(parse_event(&future, now).unwrap_err().contains("future"));
    }
}
