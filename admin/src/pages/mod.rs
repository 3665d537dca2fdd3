//! The admin web pages under `/admin/` (the JSON API is `/admin/api/`): server-rendered HTML,
//! no front-end build, one small inline script for confirm dialogs. They call the same `Ca`
//! methods as the API, check the same `Role::may`, and audit refusals the same way; what
//! differs is how the caller is known (a session cookie, `session.rs`) and that every form that
//! changes something carries a CSRF token.

pub(crate) mod html;
mod inventory;
mod mail;
mod people;
mod session;
mod tracks;

use actix_web::web;

/// Registered after the API, so `/admin/api/…` always reaches the API first; the fixed paths
/// come before the `{track}` patterns that would otherwise swallow them.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(|| async { html::see_other("/admin/") }))
        .route("/admin/", web::get().to(session::sign_in_page))
        .route("/admin/login", web::get().to(|| async { html::see_other("/admin/") }))
        .route("/admin/login", web::post().to(session::login))
        .route("/admin/logout", web::post().to(session::logout))
        .route("/admin/machine/assets", web::get().to(inventory::list))
        .route("/admin/machine/assets/{name}", web::get().to(inventory::show))
        .route("/admin/machine/assets/{name}/decommission", web::post().to(inventory::decommission))
        .route("/admin/machine/assets/{name}/credentials", web::post().to(inventory::credentials))
        .route("/admin/machine/assets/{name}/eab/{kid}/revoke", web::post().to(inventory::revoke_eab))
        .route("/admin/human/people", web::get().to(people::list))
        .route("/admin/human/people", web::post().to(people::join))
        .route("/admin/human/people/{email}", web::get().to(people::show))
        .route("/admin/human/people/{email}/proof", web::post().to(people::proof))
        .route("/admin/human/people/{email}/move", web::post().to(people::mover))
        .route("/admin/human/people/{email}/leaver", web::post().to(people::leaver))
        .route("/admin/human/people/{email}/recover", web::post().to(people::recover))
        .route("/admin/human/people/{email}/recoveries/{id}/approve", web::post().to(people::approve_recovery))
        .route("/admin/human/people/{email}/recoveries/{id}/cancel", web::post().to(people::cancel_recovery))
        .route("/admin/{track}", web::get().to(tracks::dashboard))
        .route("/admin/{track}/audit", web::get().to(tracks::audit))
        .route("/admin/{track}/certificates", web::get().to(tracks::find_certificate))
        .route("/admin/{track}/certificates/{serial}", web::get().to(tracks::certificate))
        .route("/admin/{track}/certificates/{serial}/revoke", web::post().to(tracks::revoke))
        .route("/admin/{track}/mail", web::get().to(mail::list))
        .route("/admin/{track}/mail/{id}/retry", web::post().to(mail::retry));
}
