//! `steward admin …`: operator verbs on the database. Each prints one JSON object.

use anyhow::Context;
use serde_json::{Value, json};

use crate::accounts::{
    self, Account, AccountError, AccountId, Email, NewAccount, OrganizationName, Password, operator,
};
use crate::audit::Actor;
use crate::billing::{self, BillingError, IdempotencyKey, MoneyRequest, Movement};
use crate::cli::AdminCommand;
use crate::clock::{ClockHandle, from_epoch_ms, to_wire};
use crate::db::Db;
use crate::invoices;
use crate::keys::service::ServiceKind;
use crate::ledger;
use crate::money::Money;
use crate::payments::{
    PaymentError, Payments, PaymentsConfig, carding, settings as payment_settings,
};
use crate::pricing::{self, AssignTo, NewPriceList, PricingError};
use crate::usage::{self, SuspendReason, SuspenseFilter};

/// The JSON printed for an account.
pub fn account_json(account: &Account) -> Value {
    json!({
        "id": account.id.to_string(),
        "email": account.email,
        "organization_name": account.organization_name,
        "kind": account.kind.as_str(),
        "status": account.status.as_str(),
        "manager_account_id": account.manager_id.map(|id| id.to_string()),
        "max_managed_accounts": account.max_managed_accounts,
        "allocatable_channels": account.allocatable_channels,
        "password_set": account.has_password,
        "created_at": to_wire(from_epoch_ms(account.created_at_ms)),
        "updated_at": to_wire(from_epoch_ms(account.updated_at_ms)),
    })
}

/// The actor the CLI records in the audit trail and on ledger entries.
fn cli_actor() -> Actor {
    Actor::Operator(cli_actor_name().to_owned())
}

fn cli_actor_name() -> &'static str {
    "operator:cli"
}

/// What waits in suspense, by reason and in all (for verify-ledger and re-rating).
async fn suspended_usage_json(db: &Db) -> anyhow::Result<Value> {
    let counts = usage::suspense::counts_by_reason(db)
        .await
        .context("Failed to count the suspended usage")?;
    let total: i64 = counts.values().sum();
    let by_reason: serde_json::Map<String, Value> = counts
        .into_iter()
        .map(|(reason, count)| (reason.as_str().to_owned(), Value::from(count)))
        .collect();
    Ok(json!({"events": total, "by_reason": by_reason}))
}

fn account_id(text: &str) -> anyhow::Result<AccountId> {
    AccountId::parse(text).with_context(|| format!("'{text}' is not an account id (a UUID)"))
}

fn explain(error: AccountError) -> anyhow::Error {
    match error {
        AccountError::Database(e) => anyhow::Error::new(e).context("Failed to update the database"),
        AccountError::Internal(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

/// Runs one verb and returns what to print.
pub async fn run(
    db: &Db,
    clock: &ClockHandle,
    payments: &PaymentsConfig,
    command: AdminCommand,
) -> anyhow::Result<Value> {
    let account = match command {
        AdminCommand::CreateAccount {
            email,
            business_name,
            manager,
            max_managed_accounts,
            allocatable_channels,
            password,
            password_stdin,
        } => {
            let new = NewAccount {
                email: Email::parse(&email).context("--email")?,
                organization_name: OrganizationName::parse(&business_name)
                    .context("--business-name")?,
                manager,
                max_managed_accounts,
                allocatable_channels,
                password: read_password(password, password_stdin)?,
            };
            let (account, key) = accounts::create_account(db, clock, new, &cli_actor())
                .await
                .map_err(explain)?;
            let mut out = account_json(&account);
            if let Some(fields) = out.as_object_mut() {
                fields.insert("api_key".to_owned(), Value::from(key.secret()));
            }
            return Ok(out);
        }
        AdminCommand::ApproveManager { account } => {
            operator::approve_manager(db, clock, account_id(&account)?, &cli_actor()).await
        }
        AdminCommand::RevokeManager { account } => {
            operator::revoke_manager(db, clock, account_id(&account)?, &cli_actor()).await
        }
        AdminCommand::SetManagedAccountLimit { account, limit } => {
            operator::set_managed_account_limit(
                db,
                clock,
                account_id(&account)?,
                limit,
                &cli_actor(),
            )
            .await
        }
        AdminCommand::SetChannelPool { account, channels } => {
            operator::set_channel_pool(db, clock, account_id(&account)?, channels, &cli_actor())
                .await
        }
        AdminCommand::CancelAccount {
            account,
            include_managed,
            release_email,
        } => {
            let id = account_id(&account)?;
            operator::cancel_account(db, clock, id, include_managed, release_email, &cli_actor())
                .await
        }
        AdminCommand::ReleaseEmail { account } => {
            operator::release_email(db, clock, account_id(&account)?, &cli_actor()).await
        }
        AdminCommand::SetPassword {
            account,
            password,
            password_stdin,
        } => {
            let password = read_password(password, password_stdin)?
                .context("give --password or --password-stdin")?;
            let id = account_id(&account)?;
            let set = accounts::set_password(db, clock, id, password, &cli_actor()).await;
            if set.is_ok() {
                // Whoever knew the old password is signed out of the portal everywhere.
                crate::portal::sessions::destroy_others(db, id, None).await?;
            }
            set
        }
        other => return money_and_pricing(db, clock, payments, other).await,
    };
    Ok(account_json(&account.map_err(explain)?))
}

/// The password given on the command line or, with `--password-stdin`, on the first line of
/// standard input (which keeps it out of the process list and the shell history).
fn read_password(flag: Option<String>, stdin: bool) -> anyhow::Result<Option<Password>> {
    let text = if stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("Failed to read the password from standard input")?;
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    } else {
        flag
    };
    text.map(|t| Password::parse(&t).context("password"))
        .transpose()
}

fn instant(text: Option<&str>, clock: &ClockHandle) -> anyhow::Result<i64> {
    match text {
        None => Ok(crate::clock::to_epoch_ms(clock.now())),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .with_context(|| format!("'{text}' is not an RFC 3339 instant")),
    }
}

fn amount(text: &str) -> anyhow::Result<Money> {
    Money::parse_decimal(text).with_context(|| format!("'{text}' is not an amount"))
}

fn pricing_error(error: PricingError) -> anyhow::Error {
    match error {
        PricingError::BadFile(lines) => {
            let listed: Vec<String> = lines
                .iter()
                .map(|l| format!("  line {}: {}", l.line, l.message))
                .collect();
            anyhow::anyhow!(
                "the price list has bad lines; nothing was imported:\n{}",
                listed.join("\n")
            )
        }
        PricingError::Database(e) => anyhow::Error::new(e).context("Failed to update the database"),
        other => anyhow::anyhow!("{other}"),
    }
}

fn billing_error(error: BillingError) -> anyhow::Error {
    match error {
        BillingError::Database(e) => anyhow::Error::new(e).context("Failed to update the database"),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn money_and_pricing(
    db: &Db,
    clock: &ClockHandle,
    payments: &PaymentsConfig,
    command: AdminCommand,
) -> anyhow::Result<Value> {
    match command {
        AdminCommand::ImportPriceList {
            file,
            name,
            platform_default,
            assign_to,
            effective_from,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("Failed to read {}", file.display()))?;
            let rows = pricing::csv::parse(&text)
                .map_err(|lines| pricing_error(PricingError::BadFile(lines)))?;
            let assign_to = match (platform_default, assign_to) {
                (true, _) => Some(AssignTo::PlatformDefault),
                (false, Some(id)) => Some(AssignTo::Account(account_id(&id)?)),
                (false, None) => None,
            };
            let new = NewPriceList {
                name,
                currency: crate::billing::CURRENCY.to_owned(),
                effective_from_ms: instant(effective_from.as_deref(), clock)?,
                assign_to,
            };
            let list = pricing::import(db, clock, new, &rows, &cli_actor())
                .await
                .map_err(pricing_error)?;
            Ok(
                json!({"id": list.id, "name": list.name, "currency": list.currency,
                "effective_from": to_wire(from_epoch_ms(list.effective_from_ms)), "rate_count": list.rate_count}),
            )
        }
        AdminCommand::AssignPriceList {
            price_list,
            platform_default,
            account,
            effective_from,
        } => {
            let target = match (platform_default, account) {
                (true, _) => AssignTo::PlatformDefault,
                (false, Some(id)) => AssignTo::Account(account_id(&id)?),
                (false, None) => anyhow::bail!("give --platform-default or --account"),
            };
            let from_ms = instant(effective_from.as_deref(), clock)?;
            pricing::assign(db, clock, &price_list, target, from_ms, &cli_actor())
                .await
                .map_err(pricing_error)?;
            Ok(
                json!({"price_list_id": price_list, "effective_from": to_wire(from_epoch_ms(from_ms))}),
            )
        }
        AdminCommand::SetCreditLimit {
            account,
            amount: text,
        } => {
            let id = account_id(&account)?;
            let balance = billing::set_credit_limit(db, clock, id, amount(&text)?, &cli_actor())
                .await
                .map_err(billing_error)?;
            Ok(
                json!({"account_id": id.to_string(), "balance": balance.balance.to_decimal_string(2),
                "credit_limit": balance.credit_limit.to_decimal_string(2),
                "available_credit": balance.available_credit().to_decimal_string(2)}),
            )
        }
        AdminCommand::Credit {
            account,
            amount: text,
            reason,
            idempotency_key,
        } => {
            let request = money_request(&account, &text, reason, &idempotency_key)?;
            let (movement, replayed) = billing::credit(db, clock, request, &cli_actor())
                .await
                .map_err(billing_error)?;
            Ok(movement_json(&movement, replayed))
        }
        AdminCommand::Adjust {
            account,
            amount: text,
            reason,
            idempotency_key,
        } => {
            let request = money_request(&account, &text, reason, &idempotency_key)?;
            let (movement, replayed) = billing::adjust(db, clock, request, &cli_actor())
                .await
                .map_err(billing_error)?;
            Ok(movement_json(&movement, replayed))
        }
        AdminCommand::CreateIngestKey => service_key(db, clock, ServiceKind::Ingest).await,
        AdminCommand::CreateOperatorKey => service_key(db, clock, ServiceKind::Operator).await,
        AdminCommand::RevokeServiceKey { id } => {
            let now_ms = crate::clock::to_epoch_ms(clock.now());
            if !crate::accounts::access::revoke_service_key(db, &id, now_ms)
                .await
                .context("Failed to revoke the key")?
            {
                anyhow::bail!("No live service key has the id {id}");
            }
            Ok(json!({"id": id, "revoked": true}))
        }
        AdminCommand::VerifyLedger => {
            // The ledger's checks and the card payments' read one snapshot: a payment
            // posted between them must not look unposted or orphaned.
            let mut conn = db.read.acquire().await?;
            let begin = crate::db::snapshot_begin(&conn);
            let mut snapshot = sqlx::Connection::begin_with(&mut *conn, begin).await?;
            let report = match ledger::verify_in(db, &mut snapshot)
                .await
                .context("Failed to read the ledger")?
            {
                Ok(report) => report,
                Err(violation) => anyhow::bail!("ledger invariant violated: {violation}"),
            };
            let paid = match crate::payments::verify(&mut snapshot)
                .await
                .context("Failed to read the card payments")?
            {
                Ok(paid) => paid,
                Err(violation) => anyhow::bail!("ledger invariant violated: {violation}"),
            };
            snapshot.commit().await?;
            let suspended = suspended_usage_json(db).await?;
            Ok(
                json!({"ok": true, "entries": report.entries, "books": report.books,
                "usage_records": report.usage_records, "card_payments": paid.payments,
                "card_refunds": paid.refunds, "suspended_usage": suspended,
                "platform_books": platform_books_json(&report)}),
            )
        }
        AdminCommand::RerateSuspended { reason, account } => {
            let filter = SuspenseFilter {
                reason: reason
                    .as_deref()
                    .map(|text| {
                        SuspendReason::parse(text).with_context(|| {
                            format!(
                                "--reason '{text}' must be one of {}",
                                SuspendReason::codes()
                            )
                        })
                    })
                    .transpose()?,
                account: account.as_deref().map(account_id).transpose()?,
            };
            let pricing = crate::pricing::PricingCache::default();
            let report = usage::rerate_suspended(
                db,
                &pricing,
                clock,
                &filter,
                &format!("rerate:{}", cli_actor_name()),
            )
            .await
            .context("Failed to re-rate suspended usage")?;
            let suspended = suspended_usage_json(db).await?;
            Ok(json!({
                "examined": report.examined,
                "charged": report.charged,
                "charged_amount": Money::from_nanos(report.charged_nanos).to_decimal_string(9),
                "already_charged": report.already_charged,
                "still_suspended": report.still_suspended,
                "deferred": report.deferred,
                "suspended_usage": suspended,
            }))
        }
        AdminCommand::CopyDatabase { to, .. } => copy_database(db, &to).await,
        AdminCommand::CloseInvoices { period, account } => {
            close_invoices(db, clock, &period, account.as_deref()).await
        }
        AdminCommand::SetPlatformName { name } => {
            let name = OrganizationName::parse(&name).context("--name")?;
            let mut conn = db.write.acquire().await?;
            crate::platform::set_name(&mut conn, &name, crate::clock::to_epoch_ms(clock.now()))
                .await
                .context("Failed to update the database")?;
            Ok(json!({"platform_name": name.as_ref()}))
        }
        other => payment_verbs(db, clock, payments, other).await,
    }
}

/// The platform's counter-books and their exact balances, as decimal strings of currency
/// units (JSON numbers would lose digits).
fn platform_books_json(report: &ledger::Report) -> Value {
    report
        .platform_nanos
        .iter()
        .map(|(book, nanos)| {
            (
                book.clone(),
                json!(crate::money::sum_to_decimal_string(*nanos)),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

async fn copy_database(source: &Db, to: &str) -> anyhow::Result<Value> {
    let url = crate::config::DatabaseUrl::parse(to).map_err(anyhow::Error::msg)?;
    // A source that breaks an invariant is not copied: the copy would carry the damage.
    if let Err(violation) = ledger::verify(source)
        .await
        .context("Failed to verify the source's ledger")?
    {
        anyhow::bail!("the source's ledger invariant is violated, nothing copied: {violation}");
    }
    let target = Db::connect(&url).await?;
    // Before the copy commits: every book's balance matches the source's to the nano.
    let copied = crate::db::copy::copy_database(source, &target, async |source, target| {
        ledger::same_books(source, target)
            .await?
            .map_err(anyhow::Error::msg)
    })
    .await;
    let verified = match &copied {
        Ok(_) => Some(ledger::verify(&target).await),
        Err(_) => None,
    };
    target.close().await;
    let copied = copied?;
    match verified {
        Some(Ok(Ok(report))) => {
            let tables: serde_json::Map<String, Value> = copied
                .tables
                .iter()
                .map(|(name, rows)| (name.clone(), json!(rows)))
                .collect();
            Ok(json!({"ok": true, "to": url.to_string(), "tables": tables,
                "balances_compared": copied.books, "entries": report.entries,
                "books": report.books, "usage_records": report.usage_records}))
        }
        Some(Ok(Err(violation))) => {
            anyhow::bail!("the copy's ledger invariant is violated: {violation}")
        }
        Some(Err(error)) => Err(error).context("Failed to verify the copy's ledger"),
        None => anyhow::bail!("the copy did not complete"),
    }
}

fn invoice_error(error: invoices::InvoiceError) -> anyhow::Error {
    match error {
        invoices::InvoiceError::Database(e) => {
            anyhow::Error::new(e).context("Failed to update the database")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

/// The JSON printed for an invoice.
fn invoice_json(invoice: &invoices::Invoice, created: bool) -> Value {
    let totals = &invoice.statement.totals;
    json!({
        "id": invoice.id,
        "invoice_number": invoices::invoice_number_text(invoice.number),
        "account_id": invoice.account_id().to_string(),
        "period": invoice.statement.period.to_string(),
        "opening_balance": totals.opening.to_decimal_string(2),
        "closing_balance": totals.closing().to_decimal_string(2),
        "amount_due": invoice.amount_due().to_decimal_string(2),
        "created": created,
    })
}

async fn close_invoices(
    db: &Db,
    clock: &ClockHandle,
    period: &str,
    account: Option<&str>,
) -> anyhow::Result<Value> {
    let period = invoices::Period::parse(period)
        .with_context(|| format!("--period '{period}' must be a month written YYYY-MM"))?;
    match account {
        Some(account) => {
            let closed =
                invoices::close_period(db, clock, period, account_id(account)?, &cli_actor())
                    .await
                    .map_err(invoice_error)?;
            Ok(invoice_json(&closed.invoice, closed.created))
        }
        None => {
            let summary = invoices::close_all(db, clock, period, &cli_actor())
                .await
                .map_err(invoice_error)?;
            if summary.failed > 0 {
                anyhow::bail!(
                    "{} accounts could not be closed for {period} (see the log); {} were closed \
                     now and {} already were. Run the command again once the cause is fixed.",
                    summary.failed,
                    summary.closed,
                    summary.already_closed
                );
            }
            Ok(
                json!({"period": period.to_string(), "closed": summary.closed,
                "already_closed": summary.already_closed}),
            )
        }
    }
}

fn money_request(
    account: &str,
    amount_text: &str,
    reason: String,
    key: &str,
) -> anyhow::Result<MoneyRequest> {
    Ok(MoneyRequest {
        account: account_id(account)?,
        amount: amount(amount_text)?,
        reason,
        idempotency_key: IdempotencyKey::parse(key)
            .context("--idempotency-key must be 1 to 255 visible ASCII characters")?,
    })
}

fn movement_json(movement: &Movement, replayed: bool) -> Value {
    let mut out = serde_json::to_value(movement).unwrap_or_default();
    if let Some(fields) = out.as_object_mut() {
        fields.insert("replayed".to_owned(), Value::from(replayed));
    }
    out
}

async fn service_key(db: &Db, clock: &ClockHandle, kind: ServiceKind) -> anyhow::Result<Value> {
    let key = crate::keys::service::mint(db, clock, kind)
        .await
        .context("Failed to store the key")?;
    Ok(json!({"id": key.id(), "kind": kind.as_str(), "api_key": key.secret()}))
}

fn payment_error(error: PaymentError) -> anyhow::Error {
    match error {
        PaymentError::Database(e) => anyhow::Error::new(e).context("Failed to update the database"),
        PaymentError::Internal(e) => e,
        other => anyhow::anyhow!("{other}"),
    }
}

/// The payment verbs: reconciliation, refunds, carding blocks and settings.
async fn payment_verbs(
    db: &Db,
    clock: &ClockHandle,
    config: &PaymentsConfig,
    command: AdminCommand,
) -> anyhow::Result<Value> {
    let service = || Payments::new(db.clone(), std::sync::Arc::clone(clock), config.clone());
    match command {
        AdminCommand::ReconcilePayments => {
            let report = crate::payments::tasks::run_once(&service())
                .await
                .map_err(payment_error)?;
            Ok(serde_json::to_value(report)?)
        }
        AdminCommand::RefundPayment {
            payment,
            amount: text,
            reason,
        } => {
            let amount = text
                .map(|t| {
                    crate::payments::amount::dollars_and_cents(&t).map_err(|_| {
                        anyhow::anyhow!("--amount must be dollars and cents, such as 12.50")
                    })
                })
                .transpose()?;
            let refund = service()
                .refund(&payment, amount, &reason, &cli_actor())
                .await
                .map_err(payment_error)?;
            Ok(serde_json::to_value(refund)?)
        }
        AdminCommand::PaymentBlocks { all } => {
            let blocks = carding::list_blocks(db, clock, all)
                .await
                .context("Failed to read the blocks")?;
            Ok(json!({ "blocks": blocks }))
        }
        AdminCommand::LiftBlock { block } => {
            let lifted = carding::lift_block(db, clock, &block, &cli_actor())
                .await
                .map_err(payment_error)?;
            Ok(serde_json::to_value(lifted)?)
        }
        AdminCommand::PaymentSettings => settings_json(db).await,
        AdminCommand::SetPaymentSetting { name, value } => {
            payment_settings::set(db, clock, &name, &value, &cli_actor())
                .await
                .map_err(|e| match e {
                    payment_settings::SettingError::Database(e) => {
                        anyhow::Error::new(e).context("Failed to update the database")
                    }
                    other => anyhow::anyhow!("{other}"),
                })?;
            settings_json(db).await
        }
        other => anyhow::bail!("unexpected command {other:?}"),
    }
}

async fn settings_json(db: &Db) -> anyhow::Result<Value> {
    let listed = payment_settings::list(db)
        .await
        .context("Failed to read the payment settings")?;
    let settings: serde_json::Map<String, Value> = listed
        .into_iter()
        .map(|s| {
            let entry =
                json!({"value": s.value, "default": s.default, "description": s.description});
            (s.name.to_owned(), entry)
        })
        .collect();
    Ok(json!({ "settings": settings }))
}
