//! Signing in to the pages: the token pasted once, kept in an HttpOnly, Secure, SameSite=Strict
//! cookie, checked on every request exactly as the API checks a Bearer token (signature, expiry,
//! role, deny-list). The API's `Principal` never reads this cookie, so the cookie cannot drive
//! the JSON API, and every state-changing form carries a CSRF token derived from it.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use dualca_ca::Track;
use futures_util::future::LocalBoxFuture;
use serde::Deserialize;

use super::html::{self, esc};
use crate::auth::{AdminState, Permission, Role};

/// The session cookie: the admin token itself.
pub const COOKIE: &str = "dualca_admin";
/// A random value set with the sign-in form and echoed by it: the form's CSRF token while there
/// is no session yet.
pub const LOGIN_COOKIE: &str = "dualca_admin_login";
const COOKIE_PATH: &str = "/admin";

/// base64url(SHA-256(token || "dualca-admin-csrf")): only a page that can read the token, which
/// is to say one of ours, can put it in a form.
pub fn csrf_for(token: &str) -> String {
    let mut input = token.as_bytes().to_vec();
    input.extend_from_slice(b"dualca-admin-csrf");
    dualca_ca::ids::b64url(&openssl::sha::sha256(&input))
}

fn same_secret(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|g| g.len() == expected.len() && openssl::memcmp::eq(g.as_bytes(), expected.as_bytes()))
}

fn cookie(name: &'static str, value: String, max_age: CookieDuration) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(COOKIE_PATH)
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .max_age(max_age)
        .finish()
}

fn removal(name: &'static str) -> Cookie<'static> {
    cookie(name, String::new(), CookieDuration::ZERO)
}

/// What can end a page request other than the page.
#[derive(Debug)]
pub enum PageError {
    /// No session, or one that no longer verifies: back to the sign-in form.
    SignIn,
    /// A short HTML message with this status.
    Message(StatusCode, String),
}

impl PageError {
    pub fn forbidden(text: impl Into<String>) -> Self {
        PageError::Message(StatusCode::FORBIDDEN, text.into())
    }
    pub fn bad_request(text: impl Into<String>) -> Self {
        PageError::Message(StatusCode::BAD_REQUEST, text.into())
    }
    pub fn not_found(text: impl Into<String>) -> Self {
        PageError::Message(StatusCode::NOT_FOUND, text.into())
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(detail = %detail, "admin page internal error");
        PageError::Message(StatusCode::INTERNAL_SERVER_ERROR, "internal server error".into())
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::SignIn => f.write_str("sign in first"),
            PageError::Message(status, text) => write!(f, "{status}: {text}"),
        }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::SignIn => StatusCode::SEE_OTHER,
            PageError::Message(status, _) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            PageError::SignIn => {
                let mut res = html::see_other("/admin/");
                let _ = res.add_removal_cookie(&removal(COOKIE));
                res
            }
            PageError::Message(status, text) => {
                let title = status.canonical_reason().unwrap_or("Error");
                let body = format!(
                    "<p class=\"error\" id=\"error\">{}</p><p><a href=\"/admin/machine\">Machine track</a> · \
                     <a href=\"/admin/human\">Human track</a> · <a href=\"/admin/\">Sign in</a></p>",
                    esc(text)
                );
                html::respond(*status, html::document(title, None, &body))
            }
        }
    }
}

impl From<dualca_ca::Error> for PageError {
    fn from(e: dualca_ca::Error) -> Self {
        use dualca_ca::ErrorKind::*;
        match e.kind {
            NotFound => PageError::not_found(e.detail),
            AlreadyRevoked | Conflict => PageError::Message(StatusCode::CONFLICT, e.detail),
            Unauthorized => PageError::forbidden(e.detail),
            Internal => PageError::internal(e.detail),
            _ => PageError::bad_request(e.detail),
        }
    }
}

impl From<actix_web::error::BlockingError> for PageError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        PageError::internal(e)
    }
}

/// Runs a `Ca` call on the blocking pool.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> dualca_ca::Result<T> + Send + 'static,
) -> Result<T, PageError> {
    Ok(web::block(f).await??)
}

pub fn state(req: &HttpRequest) -> Result<web::Data<AdminState>, PageError> {
    req.app_data::<web::Data<AdminState>>().cloned().ok_or_else(|| PageError::internal("admin state missing"))
}

/// A signed-in operator, from the session cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub subject: String,
    pub role: Role,
    pub csrf: String,
}

impl Session {
    /// This operator as the audit chains name it.
    pub fn actor(&self) -> String {
        crate::auth::admin_actor(&self.subject)
    }

    /// Allows the page or action, or refuses it with 403 after writing the denial to the track's
    /// chain, as the API does.
    pub async fn require(
        &self,
        state: &AdminState,
        permission: Permission,
        track: Track,
        action: &str,
    ) -> Result<(), PageError> {
        if self.role.may(permission, Some(track)) {
            return Ok(());
        }
        self.deny(state, track, action).await;
        Err(PageError::forbidden(format!("Your role ({}) may not {action}.", self.role.as_str())))
    }

    /// Checks the form's CSRF field; a missing or wrong one is refused and audited.
    async fn check_csrf(
        &self,
        state: &AdminState,
        given: Option<&str>,
        track: Track,
        action: &str,
    ) -> Result<(), PageError> {
        if same_secret(&self.csrf, given) {
            return Ok(());
        }
        self.deny(state, track, &format!("{action} (missing or wrong CSRF token)")).await;
        Err(PageError::forbidden("The form's CSRF token is missing or wrong: reload the page and try again."))
    }

    /// A form that changes something, read from `body` and accepted only with its CSRF token
    /// (the `csrf` field, which `F` need not have) and then the permission. An unreadable form
    /// is 400; either refusal is audited under `action`.
    pub async fn accept_form<F: serde::de::DeserializeOwned>(
        &self,
        state: &AdminState,
        body: &[u8],
        permission: Permission,
        track: Track,
        action: &str,
    ) -> Result<F, PageError> {
        let fields: F = form(body)?;
        let token: CsrfForm = form(body)?;
        self.check_csrf(state, token.csrf.as_deref(), track, action).await?;
        self.require(state, permission, track, action).await?;
        Ok(fields)
    }

    async fn deny(&self, state: &AdminState, track: Track, action: &str) {
        let (ca, subject, role, action_text) =
            (state.ca.clone(), self.subject.clone(), self.role.as_str(), action.to_string());
        let _ = web::block(move || ca.record_admin_denial(track, &subject, role, &action_text)).await;
        tracing::warn!(subject = %self.subject, role = self.role.as_str(), action, "admin page action denied");
    }

    pub fn may(&self, permission: Permission, track: Track) -> bool {
        self.role.may(permission, Some(track))
    }
}

/// Verifies a token as the API's `Principal` does; the error is what the operator is told.
async fn verify(state: &AdminState, token: &str) -> Result<(crate::auth::Claims, Role), String> {
    let claims = state.auth.verify(token).map_err(|e| format!("invalid token: {e}"))?;
    let role = Role::parse(&claims.role).ok_or_else(|| format!("unknown role {:?}", claims.role))?;
    let (ca, jti) = (state.ca.clone(), claims.jti.clone());
    match web::block(move || ca.is_admin_token_revoked(&jti)).await {
        Ok(Ok(false)) => Ok((claims, role)),
        Ok(Ok(true)) => Err("the token has been revoked".into()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "admin token deny-list unreadable");
            Err("the deny-list could not be checked".into())
        }
        Err(e) => {
            tracing::error!(error = %e, "admin token deny-list unreadable");
            Err("the deny-list could not be checked".into())
        }
    }
}

impl FromRequest for Session {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let token = req.cookie(COOKIE).map(|c| c.value().to_string()).ok_or(PageError::SignIn)?;
            let (claims, role) = verify(&state, &token).await.map_err(|why| {
                tracing::info!(why, "admin page session refused");
                PageError::SignIn
            })?;
            Ok(Session { subject: claims.sub, role, csrf: csrf_for(&token) })
        })
    }
}

fn sign_in_form(error: Option<&str>) -> HttpResponse {
    let nonce = dualca_ca::ids::new_token();
    let mut body = String::new();
    if let Some(error) = error {
        body.push_str(&format!("<p class=\"error\" id=\"sign-in-error\">{}</p>", esc(error)));
    }
    body.push_str(&format!(
        "<p>Paste an admin token (<code>dualca admin token --role …</code>). It is kept in a cookie that \
         scripts cannot read and that is sent to this site only.</p>\
         <form method=\"post\" action=\"/admin/login\">{}\
         <p><textarea name=\"token\" id=\"token\" rows=\"6\" required autocomplete=\"off\" spellcheck=\"false\"></textarea></p>\
         <p><button type=\"submit\" id=\"sign-in\">Sign in</button></p></form>",
        html::csrf_field(&nonce)
    ));
    let status = if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let mut res = html::respond(status, html::document("Sign in", None, &body));
    let _ = res.add_cookie(&cookie(LOGIN_COOKIE, nonce, CookieDuration::hours(1)));
    res
}

/// GET /admin/: the sign-in form.
pub async fn sign_in_page() -> HttpResponse {
    sign_in_form(None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: Option<String>,
    csrf: Option<String>,
}

/// Parses an `application/x-www-form-urlencoded` body.
fn form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, PageError> {
    let text = std::str::from_utf8(body).map_err(|_| PageError::bad_request("the form is not UTF-8"))?;
    web::Query::<T>::from_query(text)
        .map(web::Query::into_inner)
        .map_err(|e| PageError::bad_request(format!("the form could not be read: {e}")))
}

/// POST /admin/login: checks the pasted token like any API request and starts the session.
pub async fn login(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, PageError> {
    let state = state(&req)?;
    let form: LoginForm = form(&body)?;
    let nonce = req.cookie(LOGIN_COOKIE).map(|c| c.value().to_string());
    if !nonce.as_deref().is_some_and(|n| same_secret(n, form.csrf.as_deref())) {
        return Err(PageError::forbidden("The sign-in form's CSRF token is missing or wrong: reload the page."));
    }
    let token = form.token.unwrap_or_default().trim().to_string();
    if token.is_empty() {
        return Ok(sign_in_form(Some("Paste a token first.")));
    }
    let (claims, role) = match verify(&state, &token).await {
        Ok(verified) => verified,
        Err(why) => {
            tracing::info!(why, "admin page sign-in refused");
            return Ok(sign_in_form(Some(&format!("The token was not accepted: {why}."))));
        }
    };
    tracing::info!(subject = %claims.sub, role = role.as_str(), "admin page sign-in");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let lifetime = CookieDuration::seconds((claims.exp - now).max(0));
    let home =
        if role.may(Permission::ReadDashboard, Some(Track::Machine)) { "/admin/machine" } else { "/admin/human" };
    let mut res = html::see_other(home);
    let _ = res.add_cookie(&cookie(COOKIE, token, lifetime));
    let _ = res.add_removal_cookie(&removal(LOGIN_COOKIE));
    Ok(res)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// POST /admin/logout: ends the session (the token itself stays valid until it expires or is
/// revoked; `dualca admin revoke-token` is for that).
pub async fn logout(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, PageError> {
    let form: CsrfForm = form(&body)?;
    if let Some(token) = req.cookie(COOKIE).map(|c| c.value().to_string()) {
        if !same_secret(&csrf_for(&token), form.csrf.as_deref()) {
            return Err(PageError::forbidden("The form's CSRF token is missing or wrong: reload the page."));
        }
    }
    let mut res = html::see_other("/admin/");
    let _ = res.add_removal_cookie(&removal(COOKIE));
    Ok(res)
}
