//! Managed Accounts (a manager in its own account): the list with the API's search,
//! filters, order and paging; the create form; each account's page with enable/disable,
//! channel limit, custom pricing and "log in as". Another manager's account, or one that
//! does not exist, is a missing page; while acting, these pages are out of reach.

mod account;

pub use account::{channel_limit, custom_pricing, disable, enable, show};

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{FieldErrors, when};
use crate::accounts::{self, Account, AccountStatus, NewManagedAccount};
use crate::http::AppState;
use crate::http::extract::QueryParams;
use crate::http::managed_accounts::{CreateManagedAccountRequest, list_query};
use crate::http::wire::PaginationMeta;
use crate::portal::auth::Viewer;
use crate::portal::cookies::Flash;
use crate::portal::error::PortalError;
use crate::portal::form::Form;
use crate::portal::page::{Chrome, Html, Section, safe_next, see_other};

/// A managed account as listed.
#[derive(Debug)]
pub struct Row {
    id: String,
    name: String,
    email: String,
    status: &'static str,
    rollup: bool,
    channel_limit: i64,
    created: String,
    enabled: bool,
    cancelled: bool,
}

impl From<&Account> for Row {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            name: a.organization_name.clone(),
            email: a.email.clone(),
            status: a.status.as_str(),
            rollup: a.rollup_billing,
            channel_limit: a.channel_limit,
            created: when(a.created_at_ms),
            enabled: a.status == AccountStatus::Active,
            cancelled: a.status == AccountStatus::Cancelled,
        }
    }
}

/// The search form as submitted.
#[derive(Debug, Default)]
pub struct Search {
    email: String,
    organization: String,
    status: String,
    include_cancelled: bool,
    sort: String,
}

#[derive(Template)]
#[template(path = "managed_accounts.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    search: Search,
    errors: FieldErrors,
    live: i64,
    limit: i64,
    pool: i64,
    allocated: i64,
    total_results: u64,
    page_number: u64,
    total_pages: u64,
    previous_href: String,
    next_href: String,
    here: String,
}

#[derive(Template)]
#[template(path = "managed_account_new.html")]
struct NewPage {
    chrome: Chrome,
    business_name: String,
    email: String,
    rollup_billing: bool,
    allow_custom_pricing: bool,
    errors: FieldErrors,
    live: i64,
    limit: i64,
}

#[derive(Template)]
#[template(path = "own_page.html")]
struct OwnPage {
    chrome: Chrome,
}

/// The manager's own pages are out of reach while acting (a page that says so, with the
/// way back); for anyone but a manager they do not exist.
fn outside_own_pages(viewer: &Viewer) -> Option<Response> {
    if viewer.manages() {
        None
    } else if viewer.is_acting() {
        let page = OwnPage {
            chrome: Chrome::new(viewer, Section::Dashboard, "Your own account's page"),
        };
        Some(Html(page).with_status(StatusCode::FORBIDDEN))
    } else {
        Some(PortalError::not_found().into_response())
    }
}

/// `GET /managed-accounts`.
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Result<Response, PortalError> {
    if let Some(page) = outside_own_pages(&viewer) {
        return Ok(page);
    }
    let query = Form::parse(raw.as_deref().unwrap_or_default().as_bytes()).unwrap_or_default();
    let search = Search {
        email: query.text("filter[email][contains]").to_owned(),
        organization: query.text("filter[organization_name][contains]").to_owned(),
        status: query.text("filter[status][eq]").to_owned(),
        include_cancelled: query.checked("include_cancelled_accounts"),
        sort: query.text("sort").to_owned(),
    };
    let mut pairs = query.filled();
    // A ticked box says "on"; the API's parameter says "true".
    for (name, value) in &mut pairs {
        if name == "include_cancelled_accounts" {
            *value = "true".to_owned();
        }
    }
    let manager = &viewer.user;
    let count = accounts::managed_account_count(&state.db, manager).await?;
    let channels = accounts::channel_allocation(&state.db, manager).await?;
    let mut errors = FieldErrors::default();
    let (rows, meta) = match list_query(&QueryParams::from_pairs(pairs.clone())) {
        Ok((filter, sort, page)) => {
            let found =
                accounts::list_managed_accounts(&state.db, manager, &filter, sort, page).await?;
            let meta = PaginationMeta::of(&found);
            (found.items.iter().map(Row::from).collect(), Some(meta))
        }
        Err(error) => {
            errors = FieldErrors::from_refusal(error.into())?;
            (Vec::new(), None)
        }
    };
    let page_href = |number: u64| {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs.iter().filter(|(n, _)| n != "page[number]") {
            out.append_pair(name, value);
        }
        out.append_pair("page[number]", &number.to_string());
        format!("/managed-accounts?{}", out.finish())
    };
    let (page_number, total_pages, total_results) = meta.map_or((1, 0, 0), |m| {
        (m.page_number, m.total_pages, m.total_results)
    });
    let here = match raw.as_deref() {
        Some(q) if !q.is_empty() => format!("/managed-accounts?{q}"),
        _ => "/managed-accounts".to_owned(),
    };
    let page = ListPage {
        chrome: Chrome::new(&viewer, Section::ManagedAccounts, "Managed accounts"),
        rows,
        search,
        errors,
        live: count.live,
        limit: count.limit,
        pool: channels.pool,
        allocated: channels.allocated,
        total_results,
        page_number,
        total_pages,
        previous_href: if page_number > 1 {
            page_href(page_number - 1)
        } else {
            String::new()
        },
        next_href: if page_number < total_pages {
            page_href(page_number + 1)
        } else {
            String::new()
        },
        here: safe_next(&here).unwrap_or("/managed-accounts").to_owned(),
    };
    Ok(Html(page).into_response())
}

async fn new_page(
    state: &AppState,
    viewer: &Viewer,
    form: Option<&Form>,
    errors: FieldErrors,
) -> Result<Response, PortalError> {
    let count = accounts::managed_account_count(&state.db, &viewer.user).await?;
    let failed = !errors.is_empty();
    let page = NewPage {
        chrome: Chrome::new(viewer, Section::ManagedAccounts, "New managed account"),
        business_name: form
            .map(|f| f.text("business_name").to_owned())
            .unwrap_or_default(),
        email: form.map(|f| f.text("email").to_owned()).unwrap_or_default(),
        rollup_billing: form.is_some_and(|f| f.checked("rollup_billing")),
        allow_custom_pricing: form
            .is_some_and(|f| f.checked("managed_account_allow_custom_pricing")),
        errors,
        live: count.live,
        limit: count.limit,
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(Html(page).with_status(status))
}

/// `GET /managed-accounts/new`.
pub async fn new(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PortalError> {
    if let Some(page) = outside_own_pages(&viewer) {
        return Ok(page);
    }
    new_page(&state, &viewer, None, FieldErrors::default()).await
}

/// `POST /managed-accounts`: creates one with the API's rules (an account without an email
/// gets a generated one; without a password it cannot sign in until one is set).
pub async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    form: Form,
) -> Result<Response, PortalError> {
    if let Some(page) = outside_own_pages(&viewer) {
        return Ok(page);
    }
    let request = CreateManagedAccountRequest {
        business_name: form.get("business_name").map(str::to_owned),
        email: form.non_blank("email").map(str::to_owned),
        password: form
            .get("password")
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        managed_account_allow_custom_pricing: Some(
            form.checked("managed_account_allow_custom_pricing"),
        ),
        rollup_billing: Some(form.checked("rollup_billing")),
    };
    let created = match NewManagedAccount::try_from(request) {
        Ok(new) => accounts::create_managed_account(&state.db, &state.clock, &viewer.user, new)
            .await
            .map_err(PortalError::from),
        Err(error) => Err(error.into()),
    };
    match created {
        Ok((account, _key)) => {
            let mut message = format!("{} is created.", account.organization_name);
            if !account.has_password {
                message.push_str(&format!(
                    " Its temporary email is {}. It cannot sign in until a password is set: \
                     log in as it and set one in its General settings.",
                    account.email
                ));
            }
            Ok(see_other(
                &format!("/managed-accounts/{}", account.id),
                Some(Flash::success(message)),
            ))
        }
        Err(error) => {
            let errors = FieldErrors::from_refusal(error)?;
            new_page(&state, &viewer, Some(&form), errors).await
        }
    }
}
