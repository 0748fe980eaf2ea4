//! The in-memory pricing index: every list's rates by product and prefix, and every
//! assignment, so that rating an event costs a few hash lookups and no query.

use std::collections::HashMap;

use sqlx::{AnyConnection, Connection, Row};

use super::{Increments, PricingSubject, Product};
use crate::accounts::{AccountId, AccountKind};

/// One rate as rating uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateEntry {
    /// The prefix that matched (empty: catch-all).
    pub prefix: String,
    /// Per rate unit, in nano-units.
    pub rate_nanos: i64,
    /// Voice increments.
    pub increments: Option<Increments>,
}

/// One price list's rates.
#[derive(Debug, Default)]
pub struct RateTable {
    /// The list's id.
    pub id: String,
    /// When it starts to apply.
    pub effective_from_ms: i64,
    by_product: [HashMap<String, RateEntry>; 7],
    prefix_len_max: usize,
}

impl RateTable {
    /// The longest-prefix rate for `digits` (E.164 digits without `+`), if any.
    pub fn lookup(&self, product: Product, digits: &str) -> Option<&RateEntry> {
        let rates = self.by_product.get(product.index())?;
        let longest = digits.len().min(self.prefix_len_max);
        (0..=longest)
            .rev()
            .find_map(|len| digits.get(..len).and_then(|prefix| rates.get(prefix)))
    }
}

/// All lists and assignments, as of one pricing generation.
#[derive(Debug, Default)]
pub struct PricingIndex {
    generation: i64,
    lists: HashMap<String, RateTable>,
    /// Per account (None: platform default): (effective_from_ms, list id), ascending.
    assignments: HashMap<Option<AccountId>, Vec<(i64, String)>>,
}

impl PricingIndex {
    /// The generation this index reflects.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The newest assignment in force at `at_ms` whose list is itself in force then. An
    /// assignment made ahead of its list's effective date must not hide the one before it,
    /// so the walk goes back through history until a usable list is found.
    fn assigned(&self, account: Option<AccountId>, at_ms: i64) -> Option<&RateTable> {
        self.assignments
            .get(&account)?
            .iter()
            .rev()
            .filter(|(from, _)| *from <= at_ms)
            .find_map(|(_, list_id)| {
                self.lists
                    .get(list_id)
                    .filter(|list| list.effective_from_ms <= at_ms)
            })
    }

    fn own_or_default(&self, account: AccountId, at_ms: i64) -> Option<&RateTable> {
        self.assigned(Some(account), at_ms)
            .or_else(|| self.assigned(None, at_ms))
    }

    /// The list `subject` rates with at `at_ms` (see the module docs for the rule).
    pub fn list_for(&self, subject: &PricingSubject, at_ms: i64) -> Option<&RateTable> {
        match (subject.kind, subject.manager_id) {
            (AccountKind::Managed, Some(manager)) => {
                let custom = subject
                    .allow_custom_pricing
                    .then(|| self.assigned(Some(subject.id), at_ms))
                    .flatten();
                custom.or_else(|| self.own_or_default(manager, at_ms))
            }
            _ => self.own_or_default(subject.id, at_ms),
        }
    }
}

/// Reads every list, rate and assignment, all from one snapshot: an import committed
/// between two of the reads must not yield an index that has its assignment but not its
/// rates, labelled with the generation before it.
pub(super) async fn load(conn: &mut AnyConnection) -> Result<PricingIndex, sqlx::Error> {
    let begin = crate::db::snapshot_begin(conn);
    let mut tx = conn.begin_with(begin).await?;
    let conn = &mut *tx;
    let generation = super::repo::generation(conn).await?;
    let mut lists: HashMap<String, RateTable> = HashMap::new();
    for row in sqlx::query("SELECT id, effective_from_ms FROM price_lists")
        .fetch_all(&mut *conn)
        .await?
    {
        let id: String = row.try_get("id")?;
        let table = RateTable {
            id: id.clone(),
            effective_from_ms: row.try_get("effective_from_ms")?,
            ..RateTable::default()
        };
        lists.insert(id, table);
    }
    let rates = sqlx::query(
        "SELECT price_list_id, product, prefix, rate_nanos, initial_increment_s, subsequent_increment_s \
         FROM price_list_rates",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rates {
        let list_id: String = row.try_get("price_list_id")?;
        let product: String = row.try_get("product")?;
        let (Some(table), Some(product)) = (lists.get_mut(&list_id), Product::parse(&product))
        else {
            continue;
        };
        let prefix: String = row.try_get("prefix")?;
        let initial: Option<i64> = row.try_get("initial_increment_s")?;
        let subsequent: Option<i64> = row.try_get("subsequent_increment_s")?;
        let increments = match (initial, subsequent) {
            (Some(i), Some(s)) => {
                Increments::new(u32::try_from(i).unwrap_or(0), u32::try_from(s).unwrap_or(0))
            }
            _ => None,
        };
        table.prefix_len_max = table.prefix_len_max.max(prefix.len());
        if let Some(rates) = table.by_product.get_mut(product.index()) {
            let entry = RateEntry {
                prefix: prefix.clone(),
                rate_nanos: row.try_get("rate_nanos")?,
                increments,
            };
            rates.insert(prefix, entry);
        }
    }
    let mut assignments: HashMap<Option<AccountId>, Vec<(i64, String)>> = HashMap::new();
    let rows = sqlx::query(
        "SELECT account_id, price_list_id, effective_from_ms FROM price_list_assignments \
         ORDER BY effective_from_ms, created_at_ms, id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let account: Option<String> = row.try_get("account_id")?;
        let account = account.and_then(|a| AccountId::parse(&a));
        assignments.entry(account).or_default().push((
            row.try_get("effective_from_ms")?,
            row.try_get("price_list_id")?,
        ));
    }
    tx.commit().await?;
    Ok(PricingIndex {
        generation,
        lists,
        assignments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(id: &str, effective_from_ms: i64) -> (String, RateTable) {
        let table = RateTable {
            id: id.to_owned(),
            effective_from_ms,
            ..RateTable::default()
        };
        (id.to_owned(), table)
    }

    fn standard(id: AccountId) -> PricingSubject {
        PricingSubject {
            id,
            kind: AccountKind::Standard,
            manager_id: None,
            allow_custom_pricing: false,
        }
    }

    #[test]
    fn an_assignment_whose_list_is_not_yet_effective_leaves_the_earlier_one_in_force() {
        let account = AccountId::generate();
        let index = PricingIndex {
            generation: 1,
            lists: [table("old", 0), table("future", 2_000), table("default", 0)]
                .into_iter()
                .collect(),
            assignments: [
                (
                    Some(account),
                    vec![(100, "old".to_owned()), (500, "future".to_owned())],
                ),
                (None, vec![(0, "default".to_owned())]),
            ]
            .into_iter()
            .collect(),
        };
        let list_at = |at_ms| {
            index
                .list_for(&standard(account), at_ms)
                .map(|l| l.id.as_str())
        };
        assert_eq!(list_at(50), Some("default"));
        assert_eq!(list_at(100), Some("old"));
        // Assigned at 500, but its list starts at 2,000: the earlier assignment holds.
        assert_eq!(list_at(1_000), Some("old"));
        assert_eq!(list_at(2_000), Some("future"));
    }
}
