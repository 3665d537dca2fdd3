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
    /// How outgoing mail is signed (DKIM), for the start-up lines.
    pub mail_signing: String,
    /// Where the SMTP intake for RFC 8823 replies listens, when it does.
    pub intake_addr: Option<std::net::SocketAddr>,
    /// The admin listener's base URL when `[admin] listen` gives it its own.
    pub admin_url: Option<String>,
    server: Server,
    admin_server: Option<Server>,
    _intake: Option<AbortOnDrop>,
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
        email_reply: dualca_ca::EmailReplySettings {
            address: settings.email_reply_address()?,
            accept_unauthenticated: settings.email_reply.accept_unauthenticated,
        },
    })?;
    Ok(ca)
}

impl App {
    pub async fn build(settings: Settings) -> Result<App> {
        let listener = bind_listener(settings.listen)?;
        let port = listener.local_addr()?.port();
        let admin_listener = match settings.admin.listen.trim() {
            "" => None,
            addr => {
                let addr: std::net::SocketAddr =
                    addr.parse().with_context(|| format!("[admin] listen {addr:?} is not an address and port"))?;
                Some(bind_listener(addr)?)
            }
        };
        let public_url = settings.public_url_for_port(port);
        let validator_settings = settings.validator()?;
        let retention = dualca_ca::Retention {
            keep_sent: crate::config::parse_duration(&settings.mail.keep_sent)
                .map_err(|e| anyhow::anyhow!("[mail] keep_sent: {e}"))?,
            keep_orders: crate::config::parse_duration(&settings.keep_orders)
                .map_err(|e| anyhow::anyhow!("keep_orders: {e}"))?,
        };
        let mailer = Arc::new(crate::mail::Mailer::from_settings(&settings)?);
        let settings_for_open = settings.clone();
        let url_for_open = public_url.clone();
        let ca = tokio::task::spawn_blocking(move || open_ca(&settings_for_open, &url_for_open)).await??;
        let ca = Arc::new(ca);
        let ca_for_crl = ca.clone();
        tokio::task::spawn_blocking(move || crate::jobs::refresh_crls_now(&ca_for_crl)).await??;
        crate::jobs::spawn_crl_debouncer(ca.clone());
        let mail_signing = mailer.signing();
        let mail_delivery = crate::mail::spawn_delivery(ca.clone(), mailer);
        let scheduler = crate::jobs::start_scheduler(ca.clone(), retention).await?;
        let validator = Arc::new(Validator::new(validator_settings).map_err(anyhow::Error::msg)?);
        dualca_acme::set_blocking_limit(settings.database_max_connections as usize);

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
        let (intake_addr, intake) = start_intake(&settings, ca.clone()).await?;
        let root_ca_path = ca.hierarchy.root_path();
        let admin_auth = Arc::new(settings.admin_auth()?);
        let ca_for_server = ca.clone();
        let admin_on_main = admin_listener.is_none();
        let auth_for_server = admin_auth.clone();
        let server = HttpServer::new(move || {
            let ca = ca_for_server.clone();
            let admin_auth = auth_for_server.clone();
            actix_web::App::new()
                .app_data(web::PayloadConfig::new(dualca_acme_body_limit()))
                .service(dualca_acme::scope(AcmeState::new(Track::Machine, ca.clone(), validator.clone())))
                .service(dualca_acme::scope(AcmeState::new(Track::Human, ca.clone(), validator.clone())))
                .configure(|cfg| {
                    if admin_on_main {
                        dualca_admin::admin_routes(cfg, ca.clone(), admin_auth)
                    }
                })
                .configure(|cfg| dualca_admin::public_routes(cfg, ca))
        })
        .workers(worker_count())
        .tcp_nodelay(true)
        .listen_rustls_0_23(listener, tls.clone())?
        .run();
        // The admin listener serves the admin API, pages and metrics, and the public read-only
        // routes (CA certificates, CRLs, OCSP, health) beside them; never ACME.
        let (admin_url, admin_server) = match admin_listener {
            None => (None, None),
            Some(listener) => {
                let addr = listener.local_addr()?;
                let local = addr.ip().is_loopback() || addr.ip().is_unspecified();
                let host = if local { "localhost".to_string() } else { addr.ip().to_string() };
                let url = if addr.is_ipv6() && !local {
                    format!("https://[{host}]:{}", addr.port())
                } else {
                    format!("https://{host}:{}", addr.port())
                };
                let ca_for_admin = ca.clone();
                let server = HttpServer::new(move || {
                    let ca = ca_for_admin.clone();
                    actix_web::App::new()
                        .app_data(web::PayloadConfig::new(dualca_acme_body_limit()))
                        .configure(|cfg| dualca_admin::admin_routes(cfg, ca.clone(), admin_auth.clone()))
                        .configure(|cfg| dualca_admin::public_routes(cfg, ca))
                })
                .workers(1)
                .listen_rustls_0_23(listener, tls)?
                .run();
                (Some(url), Some(server))
            }
        };
        Ok(App {
            port,
            public_url,
            ca,
            root_ca_path,
            outbox_dir,
            mail_destination,
            mail_signing,
            intake_addr,
            admin_url,
            server,
            admin_server,
            _intake: intake,
            _scheduler: scheduler,
            _mail_delivery: mail_delivery,
        })
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The admin listener's server, when it has its own.
    pub fn admin_handle(&self) -> Option<ServerHandle> {
        self.admin_server.as_ref().map(Server::handle)
    }

    /// Serves until the servers stop (a signal stops both). Stopping the main one stops the
    /// admin listener too.
    pub async fn run(self) -> std::io::Result<()> {
        let Some(admin) = self.admin_server else {
            return self.server.await;
        };
        let admin_handle = admin.handle();
        let admin = actix_web::rt::spawn(admin);
        let outcome = self.server.await;
        admin_handle.stop(true).await;
        let _ = admin.await;
        outcome
    }
}

/// Aborts a background task when the `App` is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds and starts the RFC 8823 SMTP intake, unless `[email_reply] listen` is empty.
async fn start_intake(settings: &Settings, ca: Arc<Ca>) -> Result<(Option<std::net::SocketAddr>, Option<AbortOnDrop>)> {
    let config = &settings.email_reply;
    if config.listen.trim().is_empty() {
        tracing::warn!(
            "[email_reply] listen is empty: no SMTP intake, so email-reply-00 challenges cannot be answered"
        );
        return Ok((None, None));
    }
    let mut anchors = vec![
        openssl::x509::X509::from_der(&ca.hierarchy.root_der).context("the root certificate")?,
        openssl::x509::X509::from_der(&ca.hierarchy.issuer(Track::Human).cert_der).context("the human issuing CA")?,
    ];
    if !config.smime_trust_anchors.is_empty() {
        let pem = std::fs::read(&config.smime_trust_anchors)
            .with_context(|| format!("[email_reply] read smime_trust_anchors {}", config.smime_trust_anchors))?;
        anchors.extend(
            openssl::x509::X509::stack_from_pem(&pem)
                .with_context(|| format!("[email_reply] {} holds no PEM certificates", config.smime_trust_anchors))?,
        );
    }
    if config.accept_unauthenticated {
        tracing::warn!(
            "!!! [email_reply] accept_unauthenticated = true: replies WITHOUT a DKIM pass or S/MIME signature \
             prove control of a mailbox. Anyone who can send mail with a forged From can obtain certificates. \
             Development only: never run a real CA like this. !!!"
        );
        eprintln!("WARNING: [email_reply] accept_unauthenticated = true — unauthenticated replies are accepted (development only)");
    }
    if config.trusted_authserv_ids.is_empty() {
        tracing::warn!("[email_reply] trusted_authserv_ids is empty: only S/MIME-signed replies can be authenticated");
    }
    let listener = tokio::net::TcpListener::bind(config.listen.trim())
        .await
        .with_context(|| format!("[email_reply] bind the SMTP intake on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let intake = dualca_acme::intake::IntakeSettings {
        address: settings.email_reply_address()?,
        allowed_peers: config.allowed_peers.clone(),
        trusted_authserv_ids: config.trusted_authserv_ids.clone(),
        smime_anchors: anchors,
        hostname: url_host(ca.public_url()).unwrap_or_else(|_| "localhost".into()),
    };
    let task = tokio::spawn(dualca_acme::intake::serve(listener, intake, ca));
    Ok((Some(addr), Some(AbortOnDrop(task))))
}

fn dualca_acme_body_limit() -> usize {
    64 * 1024
}

/// The HTTPS listener, with TCP_NODELAY set on it. Linux gives each accepted socket the
/// listener's TCP_NODELAY, and actix sets it itself only once the TLS handshake is done, so
/// without this the handshake's last flight waited for the client's delayed ACK: 40 ms on every
/// new connection (BENCHMARKS.md).
fn bind_listener(addr: std::net::SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    socket2::SockRef::from(&listener).set_tcp_nodelay(true).with_context(|| format!("TCP_NODELAY on {addr}"))?;
    Ok(listener)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The accepted connection, not just the listener, must have TCP_NODELAY: the TLS
    /// handshake runs before actix would set it.
    #[test]
    fn accepted_connections_have_nodelay() {
        let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(accepted.nodelay().unwrap(), "the accepted socket lacks TCP_NODELAY");
        // A listener bound without the helper gives sockets without it (so the check above
        // tests the helper, not a system default).
        let plain = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(plain.local_addr().unwrap()).unwrap();
        assert!(!plain.accept().unwrap().0.nodelay().unwrap());
    }
}
