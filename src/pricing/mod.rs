//! Price lists, their assignment to accounts, and the in-memory index rating reads.
//!
//! Who rates with which list, at instant `t`:
//! - a standard or manager account: its own assignment in force at `t`, else the platform
//!   default in force at `t`;
//! - a managed account: its own assignment only if `managed_account_allow_custom_pricing`
//!   is on and the operator assigned it one; otherwise whatever its manager rates with.
//!
//! Assignments are append-only rows with an effective-from instant, so a change never
//! touches usage already rated (rated records keep the list and rate that produced them).
//! Servers keep the index in memory and reload it when the database's pricing generation
//! moves; the generation is read once per batch, so every process sees a change from its
//! next batch on. The index holds the rates of the lists that can still apply; a list only
//! late usage reaches is read when needed, and a few are kept (see [`COLD_LISTS_KEPT`]).

pub mod csv;
mod index;
mod product;
pub mod repo;

use std::collections::HashMap;
use std::sync::Arc;

pub use index::{PricingIndex, RateEntry, RateTable};
pub use product::Product;

use crate::accounts::{AccountId, AccountKind};
use crate::audit;
use crate::clock::{ClockHandle, to_epoch_ms};
use crate::db::Db;

/// Voice billing increments: an initial block, then subsequent blocks, in seconds (≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Increments {
    initial_s: u32,
    subsequent_s: u32,
}

impl Increments {
    /// Both must be at least one second.
    pub fn new(initial_s: u32, subsequent_s: u32) -> Option<Self> {
        (initial_s >= 1 && subsequent_s >= 1).then_some(Self {
            initial_s,
            subsequent_s,
        })
    }

    /// The first block.
    pub fn initial_s(self) -> u32 {
        self.initial_s
    }

    /// Each later block.
    pub fn subsequent_s(self) -> u32 {
        self.subsequent_s
    }
}

/// One rate of a price list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRow {
    /// Product.
    pub product: Product,
    /// Destination prefix, digits; empty is the catch-all.
    pub prefix: String,
    /// Per minute, per part or per month, in nano-units.
    pub rate_nanos: i64,
    /// Voice increments.
    pub increments: Option<Increments>,
}

/// Where an assignment applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignTo {
    /// Every account without one of its own.
    PlatformDefault,
    /// One account.
    Account(AccountId),
}

/// A price list as stored (without its rates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceList {
    /// Id.
    pub id: String,
    /// Operator's name for it.
    pub name: String,
    /// ISO 4217 currency of its rates.
    pub currency: String,
    /// Usage before this instant is not rated with it.
    pub effective_from_ms: i64,
    /// Rates it holds.
    pub rate_count: i64,
}

/// Why a pricing operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// The CSV had bad lines; nothing was imported.
    #[error("the price list has {} bad line(s); nothing was imported", .0.len())]
    BadFile(Vec<csv::LineError>),
    /// No such price list or account.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Something about the request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// A cancelled account takes no change (no price list is assigned to it).
    #[error("the account is cancelled and takes no further changes")]
    Cancelled,
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// What an import is given.
#[derive(Debug)]
pub struct NewPriceList {
    /// Name.
    pub name: String,
    /// Currency (the platform bills in USD only, for now).
    pub currency: String,
    /// From when it applies.
    pub effective_from_ms: i64,
    /// Where to assign it right away, if anywhere.
    pub assign_to: Option<AssignTo>,
}

/// Imports a parsed price list, assigns it if asked, and bumps the pricing generation, in
/// one transaction.
#[tracing::instrument(name = "steward.pricing.import", skip_all, fields(rates = rows.len()))]
pub async fn import(
    db: &Db,
    clock: &ClockHandle,
    new: NewPriceList,
    rows: &[RateRow],
    actor: &audit::Actor,
) -> Result<PriceList, PricingError> {
    if new.currency != crate::billing::CURRENCY {
        return Err(PricingError::Invalid(format!(
            "the platform bills in {}; a price list in {} cannot be used",
            crate::billing::CURRENCY,
            new.currency
        )));
    }
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(PricingError::Invalid(
            "the name must be 1 to 255 characters".to_owned(),
        ));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    repo::insert_list(
        &mut tx,
        &id,
        name,
        &new.currency,
        new.effective_from_ms,
        now_ms,
    )
    .await?;
    repo::insert_rates(&mut tx, &id, rows).await?;
    if let Some(target) = new.assign_to {
        assign_in_tx(&mut tx, actor, &id, target, new.effective_from_ms, now_ms).await?;
    }
    repo::bump_generation(&mut tx).await?;
    let event = audit::Event {
        account: None,
        change_type: "price_list.import",
        resource_id: id.clone(),
        changes: vec![
            audit::Change::new("name", serde_json::Value::Null, name),
            audit::Change::new("rates", serde_json::Value::Null, rows.len()),
        ],
    };
    audit::record(&mut tx, actor, &event, now_ms).await?;
    tx.commit().await?;
    Ok(PriceList {
        id,
        name: name.to_owned(),
        currency: new.currency,
        effective_from_ms: new.effective_from_ms,
        rate_count: i64::try_from(rows.len()).unwrap_or(i64::MAX),
    })
}

async fn assign_in_tx(
    tx: &mut sqlx::AnyConnection,
    actor: &audit::Actor,
    price_list_id: &str,
    target: AssignTo,
    effective_from_ms: i64,
    now_ms: i64,
) -> Result<(), PricingError> {
    if let AssignTo::Account(account_id) = target {
        let account = crate::accounts::repo::find(tx, account_id)
            .await?
            .ok_or(PricingError::NotFound("account"))?;
        if account.status == crate::accounts::AccountStatus::Cancelled {
            return Err(PricingError::Cancelled);
        }
    }
    let account = match target {
        AssignTo::PlatformDefault => None,
        AssignTo::Account(id) => Some(id),
    };
    repo::insert_assignment(tx, account, price_list_id, effective_from_ms, now_ms).await?;
    // On an account's trail the event says only that pricing changed, and from when:
    // which list (and so which rates) stays with the operator.
    let event = audit::Event {
        account,
        change_type: "pricing.change",
        resource_id: account.map_or_else(|| price_list_id.to_owned(), |a| a.to_string()),
        changes: vec![audit::Change::new(
            "pricing",
            serde_json::Value::Null,
            serde_json::json!({"effective_from": crate::clock::to_wire(crate::clock::from_epoch_ms(effective_from_ms))}),
        )],
    };
    audit::record(tx, actor, &event, now_ms).await?;
    Ok(())
}

/// Assigns an existing list from `effective_from_ms` on.
#[tracing::instrument(name = "steward.pricing.assign", skip_all)]
pub async fn assign(
    db: &Db,
    clock: &ClockHandle,
    price_list_id: &str,
    target: AssignTo,
    effective_from_ms: i64,
    actor: &audit::Actor,
) -> Result<(), PricingError> {
    let now_ms = to_epoch_ms(clock.now());
    let mut tx = db.begin_write().await?;
    repo::find_list(&mut tx, price_list_id)
        .await?
        .ok_or(PricingError::NotFound("price list"))?;
    assign_in_tx(
        &mut tx,
        actor,
        price_list_id,
        target,
        effective_from_ms,
        now_ms,
    )
    .await?;
    repo::bump_generation(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// What rating needs to know about an account to find its list.
#[derive(Debug, Clone, Copy)]
pub struct PricingSubject {
    /// The account.
    pub id: AccountId,
    /// Its kind.
    pub kind: AccountKind,
    /// Its manager, for managed accounts.
    pub manager_id: Option<AccountId>,
    /// Custom pricing flag.
    pub allow_custom_pricing: bool,
}

impl From<&crate::accounts::Account> for PricingSubject {
    fn from(account: &crate::accounts::Account) -> Self {
        Self {
            id: account.id,
            kind: account.kind,
            manager_id: account.manager_id,
            allow_custom_pricing: account.managed_account_allow_custom_pricing,
        }
    }
}

/// How many lists that only history can reach (see [`PricingIndex`]) a process keeps after
/// reading them for late usage, least recently used first out. A list holds up to tens of
/// thousands of rates; late usage across a pricing change reaches back one or two lists.
pub const COLD_LISTS_KEPT: usize = 4;

/// The process's copy of the pricing index, refreshed when the generation moves, and the
/// few lists beyond it that late usage read lately.
#[derive(Debug, Default)]
pub struct PricingCache {
    current: tokio::sync::RwLock<Option<Arc<PricingIndex>>>,
    reload: tokio::sync::Mutex<()>,
    /// Most recently used last. A list's rates never change, so entries never go stale.
    cold: std::sync::Mutex<Vec<Arc<RateTable>>>,
}

impl PricingCache {
    /// The index as of the database's current generation (one small query; a reload only
    /// when pricing changed since the last call). `now_ms` decides which lists' rates it
    /// holds: those that can apply from then on.
    pub async fn current(&self, db: &Db, now_ms: i64) -> Result<Arc<PricingIndex>, sqlx::Error> {
        let mut conn = db.read.acquire().await?;
        let generation = repo::generation(&mut conn).await?;
        if let Some(index) = self.fresh(generation).await {
            return Ok(index);
        }
        // One reload at a time; whoever waited finds it done.
        let _guard = self.reload.lock().await;
        if let Some(index) = self.fresh(generation).await {
            return Ok(index);
        }
        let previous = self.current.read().await.clone();
        let index = Arc::new(index::load(&mut conn, now_ms, previous.as_deref()).await?);
        *self.current.write().await = Some(Arc::clone(&index));
        Ok(index)
    }

    async fn fresh(&self, generation: i64) -> Option<Arc<PricingIndex>> {
        let current = self.current.read().await;
        current
            .as_ref()
            .filter(|i| i.generation() >= generation)
            .map(Arc::clone)
    }

    /// What rating `wanted` (subject, instant) pairs needs from `index`: the lists it holds,
    /// and any older list one of them resolves to, read from the database unless kept.
    pub async fn rates<'a>(
        &self,
        db: &Db,
        index: &'a PricingIndex,
        wanted: impl IntoIterator<Item = (&PricingSubject, i64)>,
    ) -> Result<Rates<'a>, sqlx::Error> {
        let mut missing: Vec<&str> = wanted
            .into_iter()
            .filter_map(|(subject, at_ms)| index.list_id_for(subject, at_ms))
            .filter(|id| index.resident(id).is_none())
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let mut cold = HashMap::new();
        for id in missing {
            let table = match self.kept(id) {
                Some(table) => table,
                None => {
                    let mut conn = db.read.acquire().await?;
                    let Some(table) = index::read_rates(&mut conn, id).await? else {
                        continue;
                    };
                    let table = Arc::new(table);
                    self.keep(Arc::clone(&table));
                    table
                }
            };
            cold.insert(id.to_owned(), table);
        }
        Ok(Rates { index, cold })
    }

    fn kept(&self, id: &str) -> Option<Arc<RateTable>> {
        let mut kept = self
            .cold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = kept.iter().position(|t| t.id == id)?;
        let table = kept.remove(at);
        kept.push(Arc::clone(&table));
        Some(table)
    }

    fn keep(&self, table: Arc<RateTable>) {
        let mut kept = self
            .cold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|t| t.id != table.id);
        kept.push(table);
        let excess = kept.len().saturating_sub(COLD_LISTS_KEPT);
        kept.drain(..excess);
    }

    /// How many lists' rates the current index holds, and how many older ones are kept
    /// beside it (at most [`COLD_LISTS_KEPT`]).
    pub async fn held_lists(&self) -> (usize, usize) {
        let index = self
            .current
            .read()
            .await
            .as_ref()
            .map_or(0, |index| index.resident_lists());
        let kept = self
            .cold
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        (index, kept)
    }
}

/// The rates one piece of work (a batch, a request) rates with: the index's lists and the
/// older ones it was found to need.
#[derive(Debug)]
pub struct Rates<'a> {
    index: &'a PricingIndex,
    cold: HashMap<String, Arc<RateTable>>,
}

impl Rates<'_> {
    /// The list `subject` rates with at `at_ms` (see the module docs for the rule), if it
    /// was among those asked for or the index holds it.
    pub fn list_for(&self, subject: &PricingSubject, at_ms: i64) -> Option<&RateTable> {
        let id = self.index.list_id_for(subject, at_ms)?;
        self.index
            .resident(id)
            .or_else(|| self.cold.get(id))
            .map(|table| &**table)
    }
}
