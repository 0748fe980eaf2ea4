//! The portal over real HTTP, without a browser: sign-in and its backoff, sessions and
//! their end, form tokens, "log in as" and its scope, redirects, headers, prices, speed.
//! (The browser suite in `tests/portal/` drives the same pages in Chromium.)

mod acting;
mod billing;
mod forms;
mod pages;
mod sign_in;

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::StatusCode;
use steward::accounts::{self, AccountId, Password};
use steward::clock::ClockHandle;

use crate::helpers::{Actor, TestApp, operator};

/// The password every seeded portal user gets.
pub const PASSWORD: &str = "correct horse battery";

/// A page as a browser would receive it (redirects are not followed).
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// Where a redirect points.
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value of a hidden field named `name` on the page.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let rest = &self.body[start..];
        Some(rest[..rest.find('"')?].to_owned())
    }

    #[track_caller]
    pub fn assert_redirect(&self, to: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "body: {}", self.body);
        assert_eq!(self.location(), to);
    }
}

/// A cookie-keeping client that follows no redirect: one browser.
pub struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    pub cookies: HashMap<String, String>,
    /// The form token and account of the last page that had forms.
    csrf: String,
    subject: String,
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            csrf: String::new(),
            subject: String::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = response.text().await.unwrap();
        let page = Page {
            status,
            headers,
            body,
        };
        if let Some(csrf) = page.field("csrf_token") {
            self.csrf = csrf;
        }
        if let Some(subject) = page.field("subject") {
            self.subject = subject;
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.get_with(path, &[]).await
    }

    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut request = self
            .client
            .get(format!("{}{path}", self.app.address))
            .header("cookie", self.cookie_header())
            .header("accept", "text/html");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        self.read(response).await
    }

    /// Posts exactly `fields` (no token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_with(path, fields, &[]).await
    }

    pub async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = self
            .client
            .post(format!("{}{path}", self.app.address))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        self.read(response).await
    }

    /// Posts `fields` as a form of the last page shown (its token and account added).
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let (csrf, subject) = (self.csrf.clone(), self.subject.clone());
        let mut all = vec![("csrf_token", csrf.as_str()), ("subject", subject.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Posts the sign-in form (as shown), with `next` if given.
    pub async fn try_sign_in(&mut self, email: &str, password: &str, next: Option<&str>) -> Page {
        let form = self.get("/sign-in").await;
        let csrf = form.field("csrf_token").expect("sign-in form token");
        let mut fields = vec![
            ("csrf_token", csrf.as_str()),
            ("email", email),
            ("password", password),
        ];
        if let Some(next) = next {
            fields.push(("next", next));
        }
        self.post_raw("/sign-in", &fields).await
    }

    /// Signs in and asserts it worked.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let page = self.try_sign_in(email, password, None).await;
        page.assert_redirect("/dashboard");
        page
    }

    /// Opens `path` (so its forms' tokens are known) and submits `fields` to `action`.
    pub async fn fill(&mut self, path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let shown = self.get(path).await;
        assert_eq!(shown.status, StatusCode::OK, "{path}: {}", shown.body);
        self.submit(action, fields).await
    }

    /// A manager starts acting as `managed` from its list.
    pub async fn act_as(&mut self, managed: &str) -> Page {
        self.fill(
            "/managed-accounts",
            &format!("/managed-accounts/{managed}/act"),
            &[],
        )
        .await
    }
}

/// Gives `actor` the portal password [`PASSWORD`] (as the operator's CLI does).
pub async fn give_password(app: &TestApp, actor: &Actor) {
    let clock: ClockHandle = Arc::new(app.clock.clone());
    accounts::set_password(
        &app.db,
        &clock,
        AccountId::parse(&actor.id).unwrap(),
        Password::parse(PASSWORD).unwrap(),
        &operator(),
    )
    .await
    .unwrap();
}

/// The manager of the test app, able to sign in.
pub async fn manager_browser(app: &TestApp) -> Browser<'_> {
    give_password(app, &app.manager).await;
    let mut browser = Browser::new(app);
    browser.sign_in(&app.manager.email, PASSWORD).await;
    browser
}
