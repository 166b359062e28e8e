//! The web console (`/console`, issue 18): server-rendered pages for operators over what
//! `scim-bridge status`, `retry`, `reconcile` and `audit` show, on the admin surface and off
//! unless an admin token is configured (404 then).
//!
//! Signing in: the operator pastes an admin token; it is checked exactly as the admin bearer
//! token is (the same [`Authenticator`], the same failure budget per client address, 429 past
//! it). A success opens a server-side session ([`session`]) whose id travels in a cookie
//! `HttpOnly; SameSite=Strict; Path=/console` (`Secure` over HTTPS: the bridge's own TLS
//! listener, or a `public_base_url` that is https, since a proxy's `X-Forwarded-Proto` is never
//! believed). Every form carries the session's CSRF token; a POST without it is 403.
//!
//! Every answer under `/console` carries a strict Content-Security-Policy (no script at all:
//! the pages work without JavaScript), `X-Frame-Options: DENY`, `Cache-Control: no-store`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`. No page shows a
//! secret: credentials appear by their configured names only.

mod chart;
mod explain_view;
mod pages;
pub mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;

use self::session::{Session, Sessions};
use super::auth::throttle::ADMIN_SCOPE;
use super::auth::Authenticator;
use super::forwarded::{ClientAddr, OverTls};
use super::metrics::Refusal;
use super::Guard;
use crate::bridge::Bridge;

/// The session cookie's name.
pub const COOKIE: &str = "scim_bridge_console";
/// The policy every console answer carries: nothing but the console's own stylesheet and
/// images, forms posting to the console only, never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Largest form body the console reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// What the console's handlers need.
#[derive(Clone)]
pub struct ConsoleState {
    auth: Arc<Authenticator>,
    guard: Arc<Guard>,
    bridge: Bridge,
    sessions: Arc<Sessions>,
    /// The public base URL is https: the cookie is `Secure` on every request.
    https_base: bool,
}

/// The console's routes (to nest under `/console`). `tokens` are the admin tokens.
pub fn routes(
    tokens: Arc<[(String, [u8; 32])]>,
    guard: Arc<Guard>,
    bridge: Bridge,
    https_base: bool,
) -> Router {
    let state = ConsoleState {
        auth: Arc::new(Authenticator::with_tokens("admin", tokens.to_vec())),
        guard,
        bridge,
        sessions: Arc::new(Sessions::default()),
        https_base,
    };
    Router::new()
        .route("/", get(pages::overview))
        .route("/sign-in", get(pages::sign_in_form).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/failing", get(pages::failing))
        .route("/failing/retry", post(pages::retry))
        .route("/reconcile", get(pages::reconcile_form))
        .route("/reconcile/dry-run", post(pages::reconcile_dry_run))
        .route("/reconcile/confirm", post(pages::reconcile_confirm))
        .route("/reconcile/apply", post(pages::reconcile_apply))
        .route("/audit", get(pages::audit))
        .route("/user", get(pages::user))
        .route("/static/console.css", get(stylesheet))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(super::extract::refuse_nul_in_url))
        .layer(axum::middleware::from_fn(protect))
        .with_state(state)
}

/// The headers every console answer carries.
async fn protect(request: Request, next: Next) -> Response {
    let mut res = next.run(request).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    res
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("console.css"),
    )
        .into_response()
}

async fn not_found() -> Response {
    pages::message(StatusCode::NOT_FOUND, "Not found", "No such page.", None)
}

/// An HTML answer.
fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A redirect after a form (303: the browser follows with GET).
fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// The value of the console cookie, if the request sent one.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The request's session, or the answer to give without one: a page asks to sign in (303 to
/// the sign-in page), an action is refused (401).
fn signed_in(
    s: &ConsoleState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Session, Box<Response>> {
    if let Some(session) = cookie_value(headers).and_then(|id| s.sessions.touch(id, Instant::now()))
    {
        return Ok(session);
    }
    Err(Box::new(
        if method == Method::GET || method == Method::HEAD {
            see_other("/console/sign-in")
        } else {
            pages::message(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your session has ended; sign in again.",
                None,
            )
        },
    ))
}

/// A form body's fields (the last of a repeated name wins). `Err` when it is not a form.
fn form_fields(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<HashMap<String, String>, Box<Response>> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form || body.len() > MAX_FORM_BYTES {
        return Err(Box::new(pages::message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "Expected a form.",
            None,
        )));
    }
    Ok(url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

/// A POST action's session and form, checked: signed in (401), a form (400), its CSRF token
/// (403).
fn action(
    s: &ConsoleState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Session, HashMap<String, String>), Box<Response>> {
    let session = signed_in(s, &Method::POST, headers)?;
    let fields = form_fields(headers, body)?;
    if !session.csrf_matches(fields.get("csrf").map(String::as_str)) {
        return Err(Box::new(pages::message(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form is missing its security token or it is stale; reload the page and try \
             again.",
            Some(&session),
        )));
    }
    Ok((session, fields))
}

/// `POST /console/sign-in`: the pasted admin token, checked as the admin bearer token is.
async fn sign_in(State(s): State<ConsoleState>, request: Request) -> Response {
    let client = ClientAddr::of(&request);
    let over_tls = request.extensions().get::<OverTls>().is_some();
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return pages::message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "Expected a form.",
            None,
        );
    };
    let fields = match form_fields(&parts.headers, &body) {
        Ok(f) => f,
        Err(res) => return *res,
    };
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    let standing = s.guard.auth_failures.standing(client, ADMIN_SCOPE);
    let over_budget = standing.over_budget();
    // The token goes through the admin authenticator as the header it would come in.
    let header = format!("Bearer {token}");
    match s.auth.authenticate(Some(&header), standing).await {
        Ok(principal) => {
            let (id, _) = s.sessions.open(&principal.credential, Instant::now());
            tracing::info!(client = %client, credential = %principal.credential, "console sign-in");
            let secure = if over_tls || s.https_base {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}{secure}",
                session::MAX_AGE.as_secs()
            );
            let mut res = see_other("/console");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            res
        }
        Err(reason) => {
            s.guard.auth_failures.failed(client, ADMIN_SCOPE);
            tracing::info!(client = %client, reason = reason.as_str(), "console sign-in failed");
            if let Some(wait) = over_budget {
                let mut res = Refusal::AuthThrottled.mark(pages::sign_in_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    Some("Too many failed sign-ins from this address; wait and retry."),
                ));
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                return res;
            }
            Refusal::AuthFailed(reason.as_str()).mark(pages::sign_in_page(
                StatusCode::UNAUTHORIZED,
                Some("That token is not an admin token of this bridge."),
            ))
        }
    }
}

/// `POST /console/sign-out`: ends the session and clears the cookie.
async fn sign_out(State(s): State<ConsoleState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(res) = action(&s, &headers, &body) {
        return *res;
    }
    if let Some(id) = cookie_value(&headers) {
        s.sessions.close(id);
    }
    let mut res = see_other("/console/sign-in");
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "scim_bridge_console=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0",
        ),
    );
    res
}
