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
//! An event that is well-formed but cannot be rated now (no price list, no rate, an account
//! id naming no account) is kept in [`suspense`] in that same transaction, unless its id
//! was charged before (then it is a duplicate, whatever pricing says today). Re-rating
//! ([`rerate_suspended`]) takes the same path, so a charge is a charge whoever makes it.
//!
//! Ingestion never refuses usage for want of credit or because the account was disabled
//! since: admission decides before usage starts, and admitted usage is always charged.

pub mod numbers;
pub mod repo;
pub mod rollups;
pub mod suspense;

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
pub use suspense::{SuspendReason, SuspenseFilter};

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
    /// Well-formed but not chargeable now: kept in suspense, to be charged by a re-rating.
    Suspended(SuspendReason),
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
    // A UUID naming no account is well-formed (kept in suspense); anything else is not.
    let account_id =
        AccountId::parse(account_id).ok_or("account_id must be an account id (a UUID)")?;
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

/// Why an event was not rated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unrated {
    /// Well-formed but not chargeable now: kept in suspense.
    Suspend(SuspendReason),
    /// Not chargeable, ever, as sent.
    Reject(String),
}

/// Rates one event for `payee` with `rates`.
fn rate(
    event: UsageEvent,
    payee: &repo::Payee,
    rates: &crate::pricing::Rates<'_>,
) -> Result<RatedRecord, Box<(UsageEvent, Unrated)>> {
    let Some(list) = rates.list_for(&payee.subject, event.occurred_at_ms) else {
        return Err(Box::new((
            event,
            Unrated::Suspend(SuspendReason::NoPriceList),
        )));
    };
    let Some(rate) = list.lookup(event.product, &event.destination) else {
        return Err(Box::new((event, Unrated::Suspend(SuspendReason::NoRate))));
    };
    let billable = rating::billable_quantity(event.product, event.quantity, rate.increments);
    let Some(cost) = rating::cost_nanos(event.product, rate.rate_nanos, billable) else {
        return Err(Box::new((
            event,
            Unrated::Reject("cost out of range".to_owned()),
        )));
    };
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
    let mut slots = Vec::with_capacity(raw.len());
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
            Ok(event) => {
                slots.push(slot);
                events.push(event);
            }
            Err(reason) => set(&mut outcomes, slot, Outcome::Rejected(reason)),
        }
    }
    let index = pricing.current(db, now_ms).await?;
    let settled = settle(
        db,
        pricing,
        &index,
        events,
        Sighting::Arrival,
        created_by,
        now_ms,
    )
    .await?;
    let mut leases = vec![None; raw.len()];
    for (slot, (outcome, lease)) in slots
        .into_iter()
        .zip(settled.outcomes.into_iter().zip(settled.leases))
    {
        set(&mut outcomes, slot, outcome);
        if let Some(place) = leases.get_mut(slot) {
            *place = lease;
        }
    }
    // A repeated id is a duplicate of a charged event, or refused like its first occurrence.
    for (slot, first) in repeats {
        let repeat = match outcomes.get(first) {
            Some(Outcome::Rejected(_)) => {
                Outcome::Rejected("repeats the id of a rejected event in this batch".to_owned())
            }
            Some(Outcome::Suspended(reason)) => Outcome::Suspended(*reason),
            _ => Outcome::Duplicate,
        };
        set(&mut outcomes, slot, repeat);
    }
    Ok(Ingested {
        outcomes,
        leases,
        charged_nanos: settled.charged_nanos,
    })
}

fn set(outcomes: &mut [Outcome], slot: usize, outcome: Outcome) {
    if let Some(place) = outcomes.get_mut(slot) {
        *place = outcome;
    }
}

/// Why events are being rated: they arrived (a sighting of each), or suspense is being
/// re-rated (no sighting: the seen figures stay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sighting {
    Arrival,
    Rerate,
}

/// What a set of checked events came to.
struct Settled {
    /// One per event, in order.
    outcomes: Vec<Outcome>,
    /// One per event, in order: what an event charged now did with its `lease_id`.
    leases: Vec<Option<LeaseEnd>>,
    /// The amount charged now.
    charged_nanos: i64,
}

/// The one charge path, for ingestion and re-rating alike: rates checked events with
/// distinct ids, then in one transaction charges the new ones, keeps those that cannot be
/// rated in suspense (unless their id was charged before: a duplicate, whatever today's
/// pricing says) and takes charged ids out of suspense.
async fn settle(
    db: &Db,
    pricing: &PricingCache,
    index: &crate::pricing::PricingIndex,
    events: Vec<UsageEvent>,
    sighting: Sighting,
    created_by: &str,
    now_ms: i64,
) -> Result<Settled, sqlx::Error> {
    let mut outcomes = vec![Outcome::Accepted; events.len()];
    let account_ids: Vec<AccountId> = events
        .iter()
        .map(|e| e.account_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let payees = if account_ids.is_empty() {
        HashMap::new()
    } else {
        let mut conn = db.read.acquire().await?;
        repo::find_payees(&mut conn, &account_ids).await?
    };
    let rates = pricing
        .rates(
            db,
            index,
            events.iter().filter_map(|e| {
                let payee = payees.get(&e.account_id)?;
                Some((&payee.subject, e.occurred_at_ms))
            }),
        )
        .await?;
    let mut rated = Vec::with_capacity(events.len());
    let mut unrated: Vec<(usize, UsageEvent, SuspendReason)> = Vec::new();
    // One batch is one journal entry, and an entry carries at most AMOUNT_ABS_MAX_NANOS:
    // events beyond that are refused alone, in request order, to be sent again later.
    let mut batch_cost_nanos: i64 = 0;
    for (slot, event) in events.into_iter().enumerate() {
        let Some(payee) = payees.get(&event.account_id) else {
            unrated.push((slot, event, SuspendReason::UnknownAccount));
            continue;
        };
        match rate(event, payee, &rates) {
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
                    Outcome::Rejected(BATCH_BOUND_REASON.to_owned()),
                ),
            },
            Err(unrated_event) => match *unrated_event {
                (event, Unrated::Suspend(reason)) => unrated.push((slot, event, reason)),
                (_, Unrated::Reject(reason)) => set(&mut outcomes, slot, Outcome::Rejected(reason)),
            },
        }
    }
    let (done, rated, unrated) = charge(db, rated, unrated, sighting, created_by, now_ms).await?;
    let mut charged_nanos: i64 = 0;
    let mut leases = vec![None; outcomes.len()];
    for (slot, record) in &rated {
        if done.charged.contains(record.event.id.as_str()) {
            // Bounded: the batch's total was checked against AMOUNT_ABS_MAX_NANOS above.
            charged_nanos = charged_nanos.saturating_add(record.cost_nanos);
            if let (Some(lease_id), Some(place)) =
                (record.event.lease_id.as_ref(), leases.get_mut(*slot))
            {
                *place = done
                    .lease_ends
                    .get(&(lease_id.clone(), record.event.account_id))
                    .copied();
            }
        } else {
            set(&mut outcomes, *slot, Outcome::Duplicate);
        }
    }
    for (slot, event, reason) in &unrated {
        let outcome = if done.charged_before.contains(event.id.as_str()) {
            Outcome::Duplicate
        } else {
            Outcome::Suspended(*reason)
        };
        set(&mut outcomes, *slot, outcome);
    }
    Ok(Settled {
        outcomes,
        leases,
        charged_nanos,
    })
}

/// The refusal of an event beyond one batch's bound.
const BATCH_BOUND_REASON: &str =
    "the batch's charges would exceed 100000000.00 in all; send this event in another batch";

/// What the charging transaction did.
#[derive(Debug, Default)]
struct Charged {
    /// Ids charged now (the other rated ones had been charged before).
    charged: HashSet<String>,
    /// Ids among the unrated ones that had been charged before.
    charged_before: HashSet<String>,
    /// What each event charged now did with its `lease_id`, by (lease id, account).
    lease_ends: HashMap<(String, AccountId), LeaseEnd>,
}

/// Rated events and their slots.
type RatedSlots = Vec<(usize, RatedRecord)>;
/// Unrated events, their slots and why.
type UnratedSlots = Vec<(usize, UsageEvent, SuspendReason)>;

/// Charges `rated` and keeps `unrated` in suspense (see [`charge_in_tx`]) in a write that
/// may share its transaction with concurrent batches (group commit); hands both back.
async fn charge(
    db: &Db,
    rated: RatedSlots,
    unrated: UnratedSlots,
    sighting: Sighting,
    created_by: &str,
    now_ms: i64,
) -> Result<(Charged, RatedSlots, UnratedSlots), sqlx::Error> {
    if rated.is_empty() && unrated.is_empty() {
        return Ok((Charged::default(), rated, unrated));
    }
    let created_by = created_by.to_owned();
    db.write_grouped(move |conn| {
        Box::pin(async move {
            let charged = {
                let records: Vec<&RatedRecord> = rated.iter().map(|(_, r)| r).collect();
                let suspended: Vec<(&UsageEvent, SuspendReason)> =
                    unrated.iter().map(|(_, e, r)| (e, *r)).collect();
                charge_in_tx(conn, &records, &suspended, sighting, &created_by, now_ms).await?
            };
            Ok((charged, rated, unrated))
        })
    })
    .await
}

/// In the caller's transaction: inserts the rated records and charges the new ones, takes
/// what is charged out of suspense and keeps the unrated events there (those whose id was
/// never charged).
async fn charge_in_tx(
    tx: &mut sqlx::AnyConnection,
    records: &[&RatedRecord],
    unrated: &[(&UsageEvent, SuspendReason)],
    sighting: Sighting,
    created_by: &str,
    now_ms: i64,
) -> Result<Charged, sqlx::Error> {
    let mut lease_ends = HashMap::new();
    let entry_id = uuid::Uuid::now_v7().to_string();
    let inserted = if records.is_empty() {
        HashSet::new()
    } else {
        // First, before any row lock: which days are closed stays put until this commits.
        rollups::hold_closed_days(&mut *tx, false).await?;
        repo::insert_records(&mut *tx, records, &entry_id, now_ms).await?
    };
    let new: Vec<&RatedRecord> = records
        .iter()
        .copied()
        .filter(|r| inserted.contains(r.event.id.as_str()))
        .collect();
    if !new.is_empty() {
        let entry = usage_entry(&entry_id, &new, created_by)?;
        rollups::add_in_tx(&mut *tx, &new).await?;
        ledger::repo::post_in_tx(&mut *tx, &entry, now_ms)
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
        lease_ends = repo::end_leases(&mut *tx, &leases, now_ms).await?;
        // The auto-recharge outbox: written with the charge, so a crash cannot lose it.
        crate::payments::auto_recharge::stage_triggers(
            &mut *tx,
            new.iter().map(|r| r.payer),
            now_ms,
        )
        .await?;
    }
    // Written before anything is read, so that on SQLite the transaction holds the write
    // lock from its first statement (a read first could not be upgraded after another
    // process wrote).
    match sighting {
        Sighting::Arrival => suspense::record_arrivals(&mut *tx, unrated, now_ms).await?,
        Sighting::Rerate => suspense::update_reasons(&mut *tx, unrated).await?,
    }
    let unrated_ids: Vec<&str> = unrated.iter().map(|(e, _)| e.id.as_str()).collect();
    let charged_before = suspense::charged_among(&mut *tx, &unrated_ids).await?;
    // Whatever is charged, now or before, has no place in suspense.
    let mut leaving: Vec<&str> = match sighting {
        // An arriving id is in suspense only if an earlier arrival could not be rated.
        Sighting::Arrival => new.iter().map(|r| r.event.id.as_str()).collect(),
        Sighting::Rerate => records.iter().map(|r| r.event.id.as_str()).collect(),
    };
    leaving.extend(charged_before.iter().map(String::as_str));
    leaving.sort_unstable();
    suspense::remove_charged(&mut *tx, &leaving).await?;
    // A suspended call has ended all the same: its channel is free now, not when its lease
    // expires. (An account id naming no account holds no lease.)
    let ended: Vec<(&str, AccountId)> = unrated
        .iter()
        .filter(|(e, reason)| {
            *reason != SuspendReason::UnknownAccount && !charged_before.contains(e.id.as_str())
        })
        .filter_map(|(e, _)| Some((e.lease_id.as_deref()?, e.account_id)))
        .collect();
    // Only the lease's own account's event ends it, as for a charged call.
    repo::end_leases(&mut *tx, &ended, now_ms).await?;
    Ok(Charged {
        charged: inserted,
        charged_before,
        lease_ends,
    })
}

/// What a re-rating of suspense came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RerateReport {
    /// Events read from suspense.
    pub examined: u64,
    /// Charged now, each once.
    pub charged: u64,
    /// The amount charged now, in nano-units.
    pub charged_nanos: i64,
    /// Found charged already (by a resend or another re-rating): left suspense, charged
    /// nothing now.
    pub already_charged: u64,
    /// Still not chargeable, by their new reason.
    pub still_suspended: BTreeMap<&'static str, u64>,
    /// Left in suspense untouched for a later run: beyond one charge's bound together, or
    /// a cost out of range.
    pub deferred: u64,
}

/// Events re-rated per transaction.
const RERATE_CHUNK_EVENTS: u32 = 1_000;

/// Re-rates what waits in suspense (all of it, or one reason's, or one account's) through
/// the ingestion path: each event is charged exactly once, or stays with its new reason.
/// Safe beside ingestion and beside another re-rating: `usage_records`' key decides who
/// charges an id, and the loser finds it charged.
pub async fn rerate_suspended(
    db: &Db,
    pricing: &PricingCache,
    clock: &ClockHandle,
    filter: &SuspenseFilter,
    created_by: &str,
) -> Result<RerateReport, sqlx::Error> {
    let mut report = RerateReport {
        still_suspended: SuspendReason::ALL
            .into_iter()
            .map(|r| (r.as_str(), 0))
            .collect(),
        ..RerateReport::default()
    };
    // Rows whose id was charged meanwhile go first (see the suspense module's note).
    let leftovers = {
        let mut conn = db.read.acquire().await?;
        suspense::charged_leftovers(&mut conn, filter).await?
    };
    if !leftovers.is_empty() {
        let mut tx = db.begin_write().await?;
        let ids: Vec<&str> = leftovers.iter().map(String::as_str).collect();
        suspense::remove(&mut tx, &ids).await?;
        tx.commit().await?;
    }
    let index = pricing.current(db, to_epoch_ms(clock.now())).await?;
    let mut after: Option<String> = None;
    let mut carried: Vec<UsageEvent> = Vec::new();
    loop {
        let chunk = {
            let mut conn = db.read.acquire().await?;
            suspense::next_chunk(&mut conn, filter, after.as_deref(), RERATE_CHUNK_EVENTS).await?
        };
        let Some(last) = chunk.last() else {
            break;
        };
        after = Some(last.event_id.clone());
        report.examined += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        let mut events: Vec<UsageEvent> = std::mem::take(&mut carried);
        events.extend(chunk.iter().filter_map(suspense::SuspendedEvent::to_event));
        carried =
            rerate_events(db, pricing, &index, clock, events, created_by, &mut report).await?;
    }
    // What one charge could not hold goes in charges of its own, while any progress is made.
    while !carried.is_empty() {
        let before = carried.len();
        carried =
            rerate_events(db, pricing, &index, clock, carried, created_by, &mut report).await?;
        if carried.len() == before {
            break;
        }
    }
    report.deferred = u64::try_from(carried.len()).unwrap_or(u64::MAX);
    Ok(report)
}

/// Re-rates one set of events; returns those refused now, to try again in another charge.
async fn rerate_events(
    db: &Db,
    pricing: &PricingCache,
    index: &crate::pricing::PricingIndex,
    clock: &ClockHandle,
    events: Vec<UsageEvent>,
    created_by: &str,
    report: &mut RerateReport,
) -> Result<Vec<UsageEvent>, sqlx::Error> {
    let now_ms = to_epoch_ms(clock.now());
    let settled = settle(
        db,
        pricing,
        index,
        events.clone(),
        Sighting::Rerate,
        created_by,
        now_ms,
    )
    .await?;
    report.charged_nanos = report.charged_nanos.saturating_add(settled.charged_nanos);
    let mut refused = Vec::new();
    for (event, outcome) in events.into_iter().zip(settled.outcomes) {
        match outcome {
            Outcome::Accepted => report.charged += 1,
            Outcome::Duplicate => report.already_charged += 1,
            Outcome::Suspended(reason) => {
                *report.still_suspended.entry(reason.as_str()).or_insert(0) += 1;
            }
            Outcome::Rejected(_) => refused.push(event),
        }
    }
    Ok(refused)
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
            (|r| r.account_id = Some("nope".into()), "a UUID"),
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
