//! `App::build` wires settings into a running server. `main` and the tests both use it; tests
//! bind port 0.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, HttpServer};
use anyhow::{Context, Result};
use dualca_acme::{AcmeState, Validator};
use dualca_ca::{Ca, Track};

use crate::config::{parse_duration, Settings};

pub struct App {
    pub port: u16,
    pub public_url: String,
    pub ca: Arc<Ca>,
    pub root_ca_path: PathBuf,
    pub outbox_dir: PathBuf,
    /// Where notifications go, for the start-up banner: the relay, or the .eml directory.
    pub mail_destination: String,
    server: Server,
    _scheduler: tokio_cron_scheduler::JobScheduler,
    /// Stops delivering mail when the server has stopped and the `App` is dropped.
    _mail_delivery: crate::mail::DeliveryLoop,
}

/// Opens (and on first start creates) the data directory, database and key hierarchy.
pub fn open_ca(settings: &Settings, public_url: &str) -> Result<Ca> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("create data directory {}", settings.data_dir.display()))?;
    let ca = Ca::open(dualca_ca::Settings {
        data_dir: settings.data_dir.clone(),
        database_url: settings.database_url(),
        database_max_connections: settings.database_max_connections,
        public_url: public_url.to_string(),
        organization: settings.organization.clone(),
        machine: settings.policy(Track::Machine)?,
        human: settings.policy(Track::Human)?,
        nonce_lifetime_seconds: parse_duration(&settings.nonce_lifetime)?,
        revocation: settings.revocation.to_domain()?,
    })?;
    Ok(ca)
}

impl App {
    pub async fn build(settings: Settings) -> Result<App> {
        let listener = TcpListener::bind(settings.listen).with_context(|| format!("bind {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let public_url = settings.public_url_for_port(port);
        let validator_settings = settings.validator()?;
        let mailer = Arc::new(crate::mail::Mailer::from_settings(&settings)?);
        let settings_for_open = settings.clone();
        let url_for_open = public_url.clone();
        let ca = tokio::task::spawn_blocking(move || open_ca(&settings_for_open, &url_for_open)).await??;
        let ca = Arc::new(ca);
        let ca_for_crl = ca.clone();
        tokio::task::spawn_blocking(move || crate::jobs::refresh_crls_now(&ca_for_crl)).await??;
        crate::jobs::spawn_crl_debouncer(ca.clone());
        let mail_delivery = crate::mail::spawn_delivery(ca.clone(), mailer);
        let scheduler = crate::jobs::start_scheduler(ca.clone()).await?;
        let validator = Arc::new(Validator::new(validator_settings).map_err(anyhow::Error::msg)?);

        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        if let Ok(url) = url_host(&public_url) {
            if !names.contains(&url) {
                names.push(url);
            }
        }
        names.extend(settings.tls_names.iter().cloned());
        let tls_dir = settings.data_dir.join("tls");
        let ca_for_tls = ca.clone();
        let server_cert =
            tokio::task::spawn_blocking(move || ca_for_tls.server_certificate(&tls_dir, &names)).await??;
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                server_cert.chain_der.into_iter().map(rustls_pki_types::CertificateDer::from).collect(),
                rustls_pki_types::PrivateKeyDer::Pkcs8(server_cert.key_pkcs8_der.into()),
            )
            .context("TLS configuration")?;

        let outbox_dir = settings.outbox_dir();
        std::fs::create_dir_all(&outbox_dir)?;
        let mail_destination = if settings.mail.smtp_url.is_empty() {
            format!(".eml files in {} (no SMTP relay configured)", outbox_dir.display())
        } else {
            format!("SMTP relay {}", redact_userinfo(&settings.mail.smtp_url))
        };
        let root_ca_path = ca.hierarchy.root_path();
        let admin_auth = Arc::new(settings.admin_auth()?);
        let ca_for_server = ca.clone();
        let server = HttpServer::new(move || {
            let ca = ca_for_server.clone();
            actix_web::App::new()
                .app_data(web::PayloadConfig::new(dualca_acme_body_limit()))
                .service(dualca_acme::scope(AcmeState::new(Track::Machine, ca.clone(), validator.clone())))
                .service(dualca_acme::scope(AcmeState::new(Track::Human, ca.clone(), validator.clone())))
                .configure(|cfg| dualca_admin::admin_routes(cfg, ca.clone(), admin_auth.clone()))
                .configure(|cfg| dualca_admin::public_routes(cfg, ca))
        })
        .workers(worker_count())
        .listen_rustls_0_23(listener, tls)?
        .run();
        Ok(App {
            port,
            public_url,
            ca,
            root_ca_path,
            outbox_dir,
            mail_destination,
            server,
            _scheduler: scheduler,
            _mail_delivery: mail_delivery,
        })
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn dualca_acme_body_limit() -> usize {
    64 * 1024
}

fn worker_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2)
}

fn url_host(url: &str) -> Result<String> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority)
    };
    Ok(host.to_string())
}

/// The relay URL without credentials, for printing.
fn redact_userinfo(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}
