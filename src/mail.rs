//! Mail delivery: a loop that drains the outbox (`Ca::due_mail`) once a second, in one process
//! at a time, to the SMTP relay in `[mail] smtp_url`, or to `.eml` files in the outbox
//! directory when there is none. Each mail is marked sent only after the relay accepted it or
//! its file was written, so a crash in between sends it again, under the same Message-ID.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use dualca_ca::{mail_retry_delay, Ca, MailRetry, QueuedMail};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{Message, SmtpTransport, Transport};

use crate::config::Settings;
use crate::dkim::DkimSigner;

/// How often the outbox is looked at.
const POLL: Duration = Duration::from_secs(1);
/// Mails sent per look; the rest wait for the next one.
const BATCH: i64 = 50;
/// Bounds every SMTP command, so that a relay that stops answering delays the outbox by this
/// much rather than stalling it.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Mailer {
    destination: Destination,
    from: Mailbox,
    /// The right-hand side of every Message-ID: the From address's domain.
    message_id_domain: String,
    /// Signs every mail when `[mail] dkim_key_file` is set.
    dkim: Option<DkimSigner>,
}

enum Destination {
    Relay(Box<SmtpTransport>),
    Files(PathBuf),
}

/// Why one mail was not delivered.
enum DeliveryError {
    /// Worth another attempt later: the relay is down, busy or refused for now.
    Retry(String),
    /// No attempt can succeed: the mail itself is unusable.
    Never(String),
}

impl Mailer {
    /// Checks the `[mail]` settings and prepares the relay or the outbox directory. Connects to
    /// nothing: a relay that is down at start-up only delays mail.
    pub fn from_settings(settings: &Settings) -> Result<Mailer> {
        let from: Mailbox = settings
            .mail
            .from
            .parse()
            .map_err(|e| anyhow!("[mail] from {:?} is not an address: {e}", settings.mail.from))?;
        let message_id_domain = from.email.domain().to_string();
        let destination = if settings.mail.smtp_url.trim().is_empty() {
            Destination::Files(settings.outbox_dir())
        } else {
            let password = match settings.mail.smtp_password_file.as_str() {
                "" => None,
                file => Some(
                    std::fs::read_to_string(file)
                        .with_context(|| format!("[mail] read smtp_password_file {file}"))?
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                ),
            };
            Destination::Relay(Box::new(relay(settings.mail.smtp_url.trim(), password.as_deref())?))
        };
        let dkim = dkim_signer(settings)?;
        Ok(Mailer { destination, from, message_id_domain, dkim })
    }

    /// How mail is signed, for the start-up lines: `DKIM-signed, d=<domain> s=<selector>`, or
    /// that dualca does not sign it.
    pub fn signing(&self) -> String {
        match &self.dkim {
            Some(signer) => format!("DKIM-signed, d={} s={}", signer.domain(), signer.selector()),
            None => "not signed by dualca ([mail] dkim_key_file is empty)".into(),
        }
    }

    fn message(&self, mail: &QueuedMail) -> Result<Message, DeliveryError> {
        let to: Mailbox = mail
            .recipient
            .parse()
            .map_err(|e| DeliveryError::Never(format!("recipient {:?} is not an address: {e}", mail.recipient)))?;
        let from = match &mail.sender {
            None => self.from.clone(),
            Some(sender) => {
                sender.parse().map_err(|e| DeliveryError::Never(format!("sender {sender:?} is not an address: {e}")))?
            }
        };
        let auto_submitted = AutoSubmitted(mail.auto_submitted.clone().unwrap_or_else(|| "auto-generated".into()));
        Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@{}>", mail.id, self.message_id_domain)))
            .header(auto_submitted)
            .multipart(MultiPart::alternative_plain_html(mail.body_text.clone(), mail.body_html.clone()))
            .map_err(|e| DeliveryError::Never(format!("cannot build the message: {e}")))
    }

    fn deliver(&self, mail: &QueuedMail, now: i64) -> Result<(), DeliveryError> {
        let message = self.message(mail)?;
        let formatted = match &self.dkim {
            None => message.formatted(),
            Some(signer) => signer
                .sign(&message.formatted(), now)
                .map_err(|e| DeliveryError::Retry(format!("DKIM signing failed: {e}")))?,
        };
        match &self.destination {
            // Every SMTP failure is retried, 5xx replies too: a wrong password or a relay that
            // refuses the sender also answers 5xx, and giving up on every mail for a fixable
            // setting would lose them. A recipient refused for good costs a few more attempts.
            Destination::Relay(smtp) => smtp
                .send_raw(message.envelope(), &formatted)
                .map(|_| ())
                .map_err(|e| DeliveryError::Retry(e.to_string())),
            Destination::Files(dir) => write_eml(dir, &mail.id, &formatted)
                .map_err(|e| DeliveryError::Retry(format!("write to {}: {e}", dir.display()))),
        }
    }
}

/// The signer `[mail] dkim_*` describe: a key file and a selector, or neither. The domain
/// defaults to the From address's; a reply address outside it is warned about, since a
/// signature that does not align with the From fails DMARC and a person's client may distrust
/// the challenge mail.
pub fn dkim_signer(settings: &Settings) -> Result<Option<DkimSigner>> {
    let mail = &settings.mail;
    let (file, selector) = (mail.dkim_key_file.trim(), mail.dkim_selector.trim());
    match (file.is_empty(), selector.is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => {
            bail!("[mail] dkim_key_file is set but dkim_selector is empty: the selector names the key's DNS record")
        }
        (true, false) => {
            bail!("[mail] dkim_selector is set but dkim_key_file is empty: set both to sign mail, or neither")
        }
        (false, false) => {}
    }
    let from: Mailbox = mail.from.parse().map_err(|e| anyhow!("[mail] from {:?} is not an address: {e}", mail.from))?;
    let domain = match mail.dkim_domain.trim() {
        "" => from.email.domain(),
        domain => domain,
    };
    let signer = DkimSigner::from_pem_file(Path::new(file), domain, selector)?;
    let reply = settings.email_reply_address()?;
    let reply_domain = reply.rsplit('@').next().unwrap_or_default().to_ascii_lowercase();
    if reply_domain != signer.domain() && !reply_domain.ends_with(&format!(".{}", signer.domain())) {
        tracing::warn!(
            reply_address = %reply,
            dkim_domain = signer.domain(),
            "challenge mails come from a domain the DKIM signature does not align with (DMARC); set [mail] dkim_domain"
        );
    }
    Ok(Some(signer))
}

/// `Auto-Submitted: auto-generated` (RFC 3834): keeps vacation responders from answering.
/// RFC 8823 challenge mails say `auto-generated; type=acme`.
#[derive(Clone)]
struct AutoSubmitted(String);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted(s.trim().to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The file is named after the outbox row, so writing it again after a crash replaces it
/// instead of adding a second copy; the rename makes it appear whole or not at all.
fn write_eml(dir: &Path, id: &str, content: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let partial = dir.join(format!(".{id}.eml.partial"));
    std::fs::write(&partial, content)?;
    std::fs::rename(&partial, dir.join(format!("{id}.eml")))
}

/// The relay's transport from its URL: `smtps://` (TLS from the start, port 465 by default),
/// `smtp+starttls://` (STARTTLS required, port 587), or `smtp://` (no TLS, port 25), which
/// only a loopback relay may use. `[user[:password]@]` may precede the host; a password from
/// `password` replaces one in the URL.
pub(crate) fn relay(url: &str, password: Option<&str>) -> Result<SmtpTransport> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("[mail] smtp_url {url:?} is not a URL: use smtp+starttls://host, smtps://host or smtp://127.0.0.1");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        bail!("[mail] smtp_url {url:?} names no host");
    }
    if rest.contains("tls=") {
        bail!("[mail] smtp_url {url:?}: the scheme chooses TLS (smtps:// or smtp+starttls://), not a tls= parameter");
    }
    let rest = match (password, userinfo) {
        (Some(_), None) => bail!("[mail] smtp_password_file is set but smtp_url names no user (user@host)"),
        (Some(password), Some(userinfo)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:{}@{}", percent_encode(password), &rest[userinfo.len() + 1..])
        }
        (None, _) => rest.to_string(),
    };
    let lettre_url = match scheme {
        "smtps" => format!("smtps://{rest}"),
        "smtp+starttls" => {
            let separator = if rest.contains('?') { '&' } else { '?' };
            format!("smtp://{rest}{separator}tls=required")
        }
        "smtp" => {
            if !is_loopback(host) {
                bail!(
                    "[mail] smtp_url {url:?} would send mail without TLS to another host: use \
                     smtp+starttls:// or smtps://, or smtp:// to a relay on loopback"
                );
            }
            format!("smtp://{rest}")
        }
        other => bail!("[mail] smtp_url scheme {other:?} is not smtp, smtp+starttls or smtps"),
    };
    let builder = SmtpTransport::from_url(&lettre_url).map_err(|e| anyhow!("[mail] smtp_url {url:?}: {e}"))?;
    Ok(builder.timeout(Some(SMTP_TIMEOUT)).build())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a password in a URL.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The running delivery loop; dropping it stops the loop after the round in progress.
pub struct DeliveryLoop(tokio::task::JoinHandle<()>);

impl Drop for DeliveryLoop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the delivery loop on the current runtime. Each round runs off the executor, inside
/// `Storage::exclusive_job`, so that with several processes on one PostgreSQL only one sends.
pub fn spawn_delivery(ca: Arc<Ca>, mailer: Arc<Mailer>) -> DeliveryLoop {
    DeliveryLoop(actix_web::rt::spawn(async move {
        let mut interval = tokio::time::interval(POLL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let (ca, mailer) = (ca.clone(), mailer.clone());
            let outcome = tokio::task::spawn_blocking(move || {
                ca.storage.exclusive_job(crate::jobs::JOB_MAIL, || deliver_due(&ca, &mailer))
            })
            .await;
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "mail delivery round failed"),
                Err(e) => tracing::error!(error = %e, "mail delivery round panicked"),
            }
        }
    }))
}

/// Sends one batch of due mail and records each outcome.
fn deliver_due(ca: &Ca, mailer: &Mailer) -> dualca_ca::Result<()> {
    for mail in ca.due_mail(BATCH)? {
        match mailer.deliver(&mail, ca.clock.unix()) {
            Ok(()) => {
                ca.mark_mail_sent(&mail.id)?;
                tracing::info!(id = %mail.id, track = %mail.track, "mail sent");
            }
            Err(DeliveryError::Never(error)) => {
                tracing::warn!(id = %mail.id, track = %mail.track, %error, "mail cannot be sent; given up");
                ca.abandon_mail(&mail.id, &error)?;
            }
            Err(DeliveryError::Retry(error)) => {
                let next = ca.clock.unix() + mail_retry_delay(mail.attempts + 1);
                match ca.mark_mail_failed(&mail.id, &error, next)? {
                    MailRetry::At(at) => {
                        tracing::warn!(id = %mail.id, track = %mail.track, %error, retry_at = at, "mail not sent")
                    }
                    MailRetry::GivenUp => {
                        tracing::error!(id = %mail.id, track = %mail.track, %error, "mail not sent; out of attempts")
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_smtp_only_to_loopback() {
        assert!(relay("smtp://127.0.0.1:2525", None).is_ok());
        assert!(relay("smtp://localhost", None).is_ok());
        assert!(relay("smtp://[::1]:25", None).is_ok());
        let err = relay("smtp://mail.example.test", None).unwrap_err().to_string();
        assert!(err.contains("without TLS"), "{err}");
        assert!(relay("smtp+starttls://relay.example.test", None).is_ok());
        assert!(relay("smtps://user:p%40ss@relay.example.test:465", None).is_ok());
        assert!(relay("smtps://relay.example.test?tls=opportunistic", None).is_err());
        assert!(relay("imap://relay.example.test", None).is_err());
        assert!(relay("relay.example.test", None).is_err());
        assert!(relay("smtps://relay.example.test", Some("secret")).is_err());
        assert!(relay("smtps://dualca@relay.example.test", Some("s3cr@t:/x")).is_ok());
    }

    /// `[mail] dkim_*`: both the key and the selector, or neither; the domain defaults to the
    /// From address's.
    #[test]
    fn dkim_settings_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("dkim.pem");
        std::fs::write(&key, openssl::pkey::PKey::generate_ed25519().unwrap().private_key_to_pem_pkcs8().unwrap())
            .unwrap();
        let with = |file: &str, selector: &str, domain: &str| {
            let mut settings = Settings::default();
            settings.mail.from = "dualca <ca@Pki.Example.test>".into();
            settings.mail.dkim_key_file = file.into();
            settings.mail.dkim_selector = selector.into();
            settings.mail.dkim_domain = domain.into();
            dkim_signer(&settings)
        };
        assert!(with("", "", "").unwrap().is_none());
        let key = key.to_str().unwrap();
        let signer = with(key, "s1", "").unwrap().unwrap();
        assert_eq!(signer.dns_name(), "s1._domainkey.pki.example.test");
        assert_eq!(with(key, "s1", "example.test").unwrap().unwrap().domain(), "example.test");
        let error = with(key, "", "").unwrap_err().to_string();
        assert!(error.contains("dkim_selector is empty"), "{error}");
        let error = with("", "s1", "").unwrap_err().to_string();
        assert!(error.contains("dkim_key_file is empty"), "{error}");
        let error = with("/nonexistent/dkim.pem", "s1", "").unwrap_err().to_string();
        assert!(error.contains("read dkim_key_file /nonexistent/dkim.pem"), "{error}");
    }

    #[test]
    fn passwords_are_percent_encoded() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("p@ss:w/rd é"), "p%40ss%3Aw%2Frd%20%C3%A9");
    }
}
