//! The in-memory pricing index: every assignment, and the rates by product and prefix of
//! every list that can still apply, so that rating an event costs a few hash lookups and no
//! query.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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

/// Every list's start and every assignment, as of one pricing generation, with the rates of
/// the lists that can apply from the instant it was loaded on ("resident"). A list only
/// history can reach (superseded before that instant, or never assigned) keeps its rates in
/// the database: rating late usage reads them on demand (see `PricingCache::rates`), so
/// what a server holds does not grow with every list ever imported.
#[derive(Debug, Default)]
pub struct PricingIndex {
    generation: i64,
    /// Every list's `effective_from_ms`, by id.
    lists: HashMap<String, i64>,
    /// Per account (None: platform default): (effective_from_ms, list id), ascending.
    assignments: HashMap<Option<AccountId>, Vec<(i64, String)>>,
    resident: HashMap<String, Arc<RateTable>>,
}

impl PricingIndex {
    /// The generation this index reflects.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// How many lists' rates this index holds.
    pub fn resident_lists(&self) -> usize {
        self.resident.len()
    }

    /// The newest assignment in force at `at_ms` whose list is itself in force then. An
    /// assignment made ahead of its list's effective date must not hide the one before it,
    /// so the walk goes back through history until a usable list is found.
    fn assigned(&self, account: Option<AccountId>, at_ms: i64) -> Option<&str> {
        self.assignments
            .get(&account)?
            .iter()
            .rev()
            .filter(|(from, _)| *from <= at_ms)
            .find(|(_, list_id)| self.lists.get(list_id).is_some_and(|from| *from <= at_ms))
            .map(|(_, list_id)| list_id.as_str())
    }

    fn own_or_default(&self, account: AccountId, at_ms: i64) -> Option<&str> {
        self.assigned(Some(account), at_ms)
            .or_else(|| self.assigned(None, at_ms))
    }

    /// The id of the list `subject` rates with at `at_ms` (see the module docs for the rule).
    pub fn list_id_for(&self, subject: &PricingSubject, at_ms: i64) -> Option<&str> {
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

    /// The rates of list `id` if this index holds them.
    pub(super) fn resident(&self, id: &str) -> Option<&Arc<RateTable>> {
        self.resident.get(id)
    }

    /// The lists any assignment can resolve to at `from_ms` or later: per assignment
    /// history, the list in force at `from_ms`, every later assignment's, and every earlier
    /// assignment's whose list starts after `from_ms` (the walk in [`Self::assigned`] can
    /// still stop there). Nothing older than the one in force can be reached again.
    fn live_from(&self, from_ms: i64) -> HashSet<String> {
        let mut live = HashSet::new();
        for (account, history) in &self.assignments {
            live.extend(self.assigned(*account, from_ms).map(str::to_owned));
            for (assigned_from, list_id) in history {
                let list_from = self.lists.get(list_id).copied().unwrap_or(i64::MAX);
                if *assigned_from > from_ms || list_from > from_ms {
                    live.insert(list_id.clone());
                }
            }
        }
        live
    }
}

/// Reads every list's start and every assignment, and the rates of the lists that can apply
/// from `now_ms` on, all from one snapshot: an import committed between two of the reads
/// must not yield an index that has its assignment but not its rates, labelled with the
/// generation before it. Rates already held by `previous` are shared, not read again (a
/// list's rates never change once imported).
pub(super) async fn load(
    conn: &mut AnyConnection,
    now_ms: i64,
    previous: Option<&PricingIndex>,
) -> Result<PricingIndex, sqlx::Error> {
    let begin = crate::db::snapshot_begin(conn);
    let mut tx = conn.begin_with(begin).await?;
    let conn = &mut *tx;
    let generation = super::repo::generation(conn).await?;
    let mut lists: HashMap<String, i64> = HashMap::new();
    for row in sqlx::query("SELECT id, effective_from_ms FROM price_lists")
        .fetch_all(&mut *conn)
        .await?
    {
        lists.insert(row.try_get("id")?, row.try_get("effective_from_ms")?);
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
    let mut index = PricingIndex {
        generation,
        lists,
        assignments,
        resident: HashMap::new(),
    };
    for id in index.live_from(now_ms) {
        let shared = previous.and_then(|p| p.resident(&id)).map(Arc::clone);
        let table = match shared {
            Some(table) => table,
            None => match read_rates(conn, &id).await? {
                Some(table) => Arc::new(table),
                None => continue,
            },
        };
        index.resident.insert(id, table);
    }
    tx.commit().await?;
    Ok(index)
}

/// List `id`'s rates, or None if there is no such list.
pub(super) async fn read_rates(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<RateTable>, sqlx::Error> {
    let Some(header) = sqlx::query("SELECT effective_from_ms FROM price_lists WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut table = RateTable {
        id: id.to_owned(),
        effective_from_ms: header.try_get("effective_from_ms")?,
        ..RateTable::default()
    };
    let rates = sqlx::query(
        "SELECT product, prefix, rate_nanos, initial_increment_s, subsequent_increment_s \
         FROM price_list_rates WHERE price_list_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    for row in rates {
        let product: String = row.try_get("product")?;
        let Some(product) = Product::parse(&product) else {
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
    Ok(Some(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard(id: AccountId) -> PricingSubject {
        PricingSubject {
            id,
            kind: AccountKind::Standard,
            manager_id: None,
            allow_custom_pricing: false,
        }
    }

    /// An assignment history: (account, [(effective_from_ms, list id)]).
    type History<'a> = (Option<AccountId>, Vec<(i64, &'a str)>);

    fn index(lists: &[(&str, i64)], assignments: Vec<History<'_>>) -> PricingIndex {
        PricingIndex {
            generation: 1,
            lists: lists
                .iter()
                .map(|(id, from)| ((*id).to_owned(), *from))
                .collect(),
            assignments: assignments
                .into_iter()
                .map(|(account, history)| {
                    let history = history
                        .into_iter()
                        .map(|(from, id)| (from, id.to_owned()))
                        .collect();
                    (account, history)
                })
                .collect(),
            resident: HashMap::new(),
        }
    }

    fn sorted(live: HashSet<String>) -> Vec<String> {
        let mut live: Vec<String> = live.into_iter().collect();
        live.sort();
        live
    }

    #[test]
    fn an_assignment_whose_list_is_not_yet_effective_leaves_the_earlier_one_in_force() {
        let account = AccountId::generate();
        let index = index(
            &[("old", 0), ("future", 2_000), ("default", 0)],
            vec![
                (Some(account), vec![(100, "old"), (500, "future")]),
                (None, vec![(0, "default")]),
            ],
        );
        let list_at = |at_ms| index.list_id_for(&standard(account), at_ms);
        assert_eq!(list_at(50), Some("default"));
        assert_eq!(list_at(100), Some("old"));
        // Assigned at 500, but its list starts at 2,000: the earlier assignment holds.
        assert_eq!(list_at(1_000), Some("old"));
        assert_eq!(list_at(2_000), Some("future"));
        // Until 2,000 "old" can still be reached; from then on it cannot.
        assert_eq!(sorted(index.live_from(1_000)), ["default", "future", "old"]);
        assert_eq!(sorted(index.live_from(2_000)), ["default", "future"]);
    }

    #[test]
    fn superseded_and_unassigned_lists_are_not_live() {
        let index = index(
            &[
                ("d1", 0),
                ("d2", 0),
                ("d3", 0),
                ("later", 900),
                ("never", 0),
            ],
            vec![(
                None,
                vec![(0, "d1"), (100, "d2"), (200, "d3"), (800, "later")],
            )],
        );
        assert_eq!(sorted(index.live_from(150)), ["d2", "d3", "later"]);
        assert_eq!(sorted(index.live_from(300)), ["d3", "later"]);
        assert_eq!(sorted(index.live_from(1_000)), ["later"]);
        // Every instant from 300 on resolves to a live list.
        for at_ms in [300, 799, 800, 899, 900, 5_000] {
            let account = AccountId::generate();
            let id = index.list_id_for(&standard(account), at_ms);
            assert!(
                id.is_some_and(|id| index.live_from(300).contains(id)),
                "{at_ms}"
            );
        }
    }
}
