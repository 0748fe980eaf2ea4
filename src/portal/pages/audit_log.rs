//! The audit log: the account's own trail (what its user, its manager or the platform
//! changed), newest first, as `GET /v2/audit_events` reads it.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::when;
use crate::audit::{self, StoredEvent};
use crate::http::AppState;
use crate::portal::auth::Viewer;
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Chrome, Html, Section};

/// Events per page.
const EVENTS_PER_PAGE: u32 = 50;

/// One event as shown.
#[derive(Debug)]
pub struct EventRow {
    when: String,
    who: String,
    made_by: String,
    change_type: String,
    changes: Vec<String>,
}

#[derive(Template)]
#[template(path = "audit_log.html")]
struct AuditPage {
    chrome: Chrome,
    events: Vec<EventRow>,
    total: i64,
    previous_href: String,
    next_href: String,
}

fn who(viewer: &Viewer, event: &StoredEvent) -> String {
    let actor = event.actor_account_id.as_deref().unwrap_or_default();
    let subject = viewer.subject.id.to_string();
    let me = viewer.user.id.to_string();
    match event.change_made_by.as_str() {
        "account_owner" if actor == subject && !viewer.is_acting() => "You".to_owned(),
        "account_owner" => "The account's user".to_owned(),
        "account_manager" if actor == me => {
            format!("You, its account manager ({})", viewer.user.email)
        }
        "account_manager" => format!("Its account manager ({actor})"),
        _ => "The platform".to_owned(),
    }
}

/// `GET /audit-log`.
pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, PortalError> {
    let query = Form::parse(raw.unwrap_or_default().as_bytes()).unwrap_or_default();
    let page = query
        .get("page")
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|p| (1..=crate::accounts::listing::PAGE_NUMBER_MAX).contains(p))
        .unwrap_or(1);
    let request = audit::Query {
        account: viewer.subject.id,
        created_after_ms: None,
        created_before_ms: None,
        descending: true,
        limit: EVENTS_PER_PAGE,
        offset: u64::from(page - 1) * u64::from(EVENTS_PER_PAGE),
    };
    let mut conn = state.db.read.acquire().await?;
    let (events, total) = audit::list(&mut conn, &request).await?;
    drop(conn);
    let rows = events
        .iter()
        .map(|event| EventRow {
            when: when(event.created_at_ms),
            who: who(&viewer, event),
            made_by: event.change_made_by.clone(),
            change_type: event.change_type.clone(),
            changes: event
                .changes
                .iter()
                .map(|c| format!("{}: {} → {}", c.field, c.from, c.to))
                .collect(),
        })
        .collect();
    let shown_until = u64::from(page) * u64::from(EVENTS_PER_PAGE);
    let page_href = |n: u32| format!("/audit-log?page={n}");
    let template = AuditPage {
        chrome: Chrome::new(&viewer, Section::AuditLog, "Audit log"),
        events: rows,
        total,
        previous_href: if page > 1 {
            page_href(page - 1)
        } else {
            String::new()
        },
        next_href: if shown_until < crate::db::non_negative(total) {
            page_href(page + 1)
        } else {
            String::new()
        },
    };
    Ok(Html(template).into_response())
}
