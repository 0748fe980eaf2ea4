//! What the benchmark drivers share: a deterministic generator, and a reseller with its
//! customers and a platform price list, created through the domain functions.

use steward::accounts::{self, Email, NewAccount, NewManagedAccount, OrganizationName};
use steward::audit::Actor;
use steward::clock::ClockHandle;
use steward::db::Db;
use steward::pricing::{self, AssignTo, NewPriceList, RateRow};

/// A small deterministic generator, so runs are comparable.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next value (31 bits of a 64-bit LCG).
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A value below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next()).unwrap_or(0) % n
    }
}

/// The operator the benchmarks act as.
pub fn operator() -> Actor {
    Actor::Operator("operator:bench".to_owned())
}

/// Imports `rows` as the platform's default list, in force from the epoch.
pub async fn import_platform_list(
    db: &Db,
    clock: &ClockHandle,
    name: String,
    rows: &[RateRow],
) -> anyhow::Result<()> {
    let new = NewPriceList {
        name,
        currency: "USD".into(),
        effective_from_ms: 0,
        assign_to: Some(AssignTo::PlatformDefault),
    };
    pricing::import(db, clock, new, rows, &operator())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// A reseller (`email`, `name`) with `customers` managed accounts, every fifth one rollup
/// billing: the reseller's id, its API key and the customers' ids.
pub async fn reseller_with_customers(
    db: &Db,
    clock: &ClockHandle,
    email: &str,
    name: &str,
    customers: usize,
) -> anyhow::Result<(String, String, Vec<String>)> {
    let new = NewAccount {
        email: Email::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?,
        organization_name: OrganizationName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?,
        manager: true,
        max_managed_accounts: Some(i64::try_from(customers).unwrap_or(0)),
        allocatable_channels: None,
        password: None,
    };
    let (manager, key) = accounts::create_account(db, clock, new, &operator())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut managed = Vec::with_capacity(customers);
    for n in 0..customers {
        let new = NewManagedAccount {
            business_name: OrganizationName::parse(&format!("Customer {n:04}"))
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            email: None,
            password: None,
            managed_account_allow_custom_pricing: false,
            // Every fifth customer's spend rolls up to the reseller.
            rollup_billing: n % 5 == 0,
        };
        let (account, _) = accounts::create_managed_account(db, clock, &manager, new)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        managed.push(account.id.to_string());
    }
    Ok((manager.id.to_string(), key.secret().to_owned(), managed))
}
