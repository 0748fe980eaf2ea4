//! The latest detail records under a report, shown by the API's own rule for prices
//! (`http::detail_records::record`): no cost, rate or billed seconds on a managed account's
//! pages.

use super::Request;
use crate::http::AppState;
use crate::http::detail_records::{DetailRecord, record};
use crate::portal::auth::Viewer;
use crate::portal::error::PortalError;
use crate::usage::repo::{RecordOwner, RecordQuery};

/// Detail records listed under a report.
const RECENT_RECORDS: u32 = 20;

/// A detail record as listed.
#[derive(Debug)]
pub struct RecordRow {
    pub(super) started_at: String,
    pub(super) account: String,
    pub(super) product: &'static str,
    pub(super) destination: String,
    pub(super) quantity: String,
    pub(super) cost: String,
    pub(super) rate: String,
}

/// The newest detail records of the report's product and scope.
pub(super) async fn recent_records(
    state: &AppState,
    viewer: &Viewer,
    request: &Request,
) -> Result<Vec<RecordRow>, PortalError> {
    let query = RecordQuery {
        owner: if request.managed {
            RecordOwner::ManagedAccountsOf(viewer.subject.id)
        } else {
            RecordOwner::Account(viewer.subject.id)
        },
        products: request.product.products().to_vec(),
        from_ms: None,
        until_ms: None,
        descending: true,
        limit: RECENT_RECORDS,
        offset: 0,
    };
    let mut conn = state.db.read.acquire().await?;
    let (stored, _) = crate::usage::repo::list_records(&mut conn, &query).await?;
    drop(conn);
    let show_prices = viewer.may_see_prices();
    Ok(stored
        .into_iter()
        .map(|s| record_row(record(s, show_prices)))
        .collect())
}

fn record_row(r: DetailRecord) -> RecordRow {
    let quantity = match (r.call_sec, r.parts, r.months) {
        (Some(s), _, _) => format!("{s} s"),
        (_, Some(p), _) => format!("{p} part{}", if p == 1 { "" } else { "s" }),
        (_, _, Some(m)) => format!("{m} month{}", if m == 1 { "" } else { "s" }),
        _ => String::new(),
    };
    RecordRow {
        started_at: r
            .started_at
            .replace('T', " ")
            .trim_end_matches('Z')
            .chars()
            .take(16)
            .collect::<String>()
            + " UTC",
        account: r.user_id,
        product: r.product,
        destination: r.cld,
        quantity,
        cost: r.cost.unwrap_or_default(),
        rate: r.rate.unwrap_or_default(),
    }
}
