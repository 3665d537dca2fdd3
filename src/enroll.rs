//! `dualca enroll`: a person's own ACME client for the human track (RFC 8555 with RFC 8823).
//! It makes the account key, registers the account with the enrollment's EAB credentials,
//! orders the person's address, answers the email-reply-00 challenge (sending the reply
//! through an SMTP relay, or printing it for the person to send), finalizes with a key of its
//! own, and writes the key, the chain and, on request, a PKCS#12 bundle for mail clients.
//!
//! It is a lean client of its own because the ACME libraries in reach know no `email`
//! identifier. The CA never sees the certificate's private key: it is generated here.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct EnrollArgs {
    /// The human track's directory, e.g. https://ca.example.org/acme/human/directory.
    #[arg(long)]
    pub directory: String,
    /// The EAB key id shown on the enrollment page.
    #[arg(long)]
    pub eab_kid: String,
    /// The EAB HMAC key (base64url) shown on the enrollment page. One key in 64 begins with
    /// `-`, which is taken as the value all the same.
    #[arg(long, allow_hyphen_values = true)]
    pub eab_hmac_key: String,
    /// Your email address: the certificate names it, and the challenge mail goes to it.
    #[arg(long)]
    pub email: String,
    /// smime (mail signing and encryption) or client-auth (TLS client certificates).
    #[arg(long, default_value = "smime")]
    pub profile: String,
    /// The certificate's key: rsa2048 (what every mail client takes for S/MIME), rsa3072, p256
    /// or p384.
    #[arg(long, default_value = "rsa2048")]
    pub key_type: String,
    /// Where the key, the chain and the bundle are written.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// The CA's root certificate (PEM), to trust the directory's HTTPS certificate.
    #[arg(long)]
    pub ca_root: PathBuf,
    /// Send the reply through this relay (smtp+starttls://host, smtps://host, or
    /// smtp://127.0.0.1:port); without it the reply is printed for you to send.
    #[arg(long)]
    pub smtp_relay: Option<String>,
    /// A file holding the relay password for the user named in --smtp-relay.
    #[arg(long)]
    pub smtp_password_file: Option<PathBuf>,
    /// Also write <email>.p12 for mail clients, protected by the password in this file.
    #[arg(long)]
    pub pkcs12_password_file: Option<PathBuf>,
    /// How long to wait for the CA to accept the reply, e.g. 10m.
    #[arg(long, default_value = "10m")]
    pub wait: String,
}

struct Client {
    http: reqwest::Client,
    key: PKey<Private>,
    jwk: Value,
    kid: Option<String>,
    directory: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An ACME response: status, Location, Retry-After and the body.
struct Reply {
    status: u16,
    location: Option<String>,
    retry_after: Option<u64>,
    body: String,
}

impl Reply {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("the CA answered HTTP {} with {}", self.status, self.body))
    }

    /// The body, or the problem document as an error.
    fn ok(self, what: &str) -> Result<Reply> {
        if self.status < 300 {
            return Ok(self);
        }
        let problem: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        match (problem["type"].as_str(), problem["detail"].as_str()) {
            (Some(kind), Some(detail)) => bail!("{what}: {kind} (HTTP {}): {detail}", self.status),
            _ => bail!("{what}: HTTP {}: {}", self.status, self.body),
        }
    }
}

impl Client {
    async fn new(directory_url: &str, ca_root: &Path) -> Result<Client> {
        let pem = std::fs::read(ca_root).with_context(|| format!("read --ca-root {}", ca_root.display()))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).context("--ca-root is not a PEM certificate")?)
            .timeout(Duration::from_secs(30))
            .build()?;
        let directory: Value = http
            .get(directory_url)
            .send()
            .await
            .with_context(|| format!("fetch the directory {directory_url}"))?
            .json()
            .await
            .context("the directory is not JSON")?;
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
        let jwk = jwk_of(&key)?;
        Ok(Client { http, key, jwk, kid: None, directory })
    }

    fn endpoint(&self, name: &str) -> Result<String> {
        self.directory[name].as_str().map(str::to_string).ok_or_else(|| anyhow!("the directory has no {name}"))
    }

    async fn nonce(&self) -> Result<String> {
        let res = self.http.head(self.endpoint("newNonce")?).send().await?;
        res.headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("newNonce gave no Replay-Nonce"))
    }

    /// A signed POST (payload None: POST-as-GET). One retry on badNonce, as RFC 8555 §6.5 asks.
    async fn post(&self, url: &str, payload: Option<&Value>) -> Result<Reply> {
        for attempt in 0..2 {
            let mut protected = json!({"alg": "ES256", "nonce": self.nonce().await?, "url": url});
            match &self.kid {
                Some(kid) => protected["kid"] = json!(kid),
                None => protected["jwk"] = self.jwk.clone(),
            }
            let protected = b64(protected.to_string().as_bytes());
            let payload = payload.map(|p| b64(p.to_string().as_bytes())).unwrap_or_default();
            let signature = es256(&self.key, format!("{protected}.{payload}").as_bytes())?;
            let body = json!({"protected": protected, "payload": payload, "signature": b64(&signature)});
            let res = self
                .http
                .post(url)
                .header("content-type", "application/jose+json")
                .body(body.to_string())
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let reply = Reply {
                status: res.status().as_u16(),
                location: header("location"),
                retry_after: header("retry-after").and_then(|v| v.parse().ok()),
                body: res.text().await?,
            };
            let bad_nonce = reply.body.contains("urn:ietf:params:acme:error:badNonce");
            if !(bad_nonce && attempt == 0) {
                return Ok(reply);
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// newAccount with an HS256 external account binding (RFC 8555 §7.3.4).
    async fn register(&mut self, kid: &str, hmac_key: &[u8]) -> Result<()> {
        let url = self.endpoint("newAccount")?;
        let protected = b64(json!({"alg": "HS256", "kid": kid, "url": url}).to_string().as_bytes());
        let payload = b64(self.jwk.to_string().as_bytes());
        let mac_key = PKey::hmac(hmac_key)?;
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &mac_key)?;
        let mac = signer.sign_oneshot_to_vec(format!("{protected}.{payload}").as_bytes())?;
        let binding = json!({"protected": protected, "payload": payload, "signature": b64(&mac)});
        let reply = self
            .post(&url, Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": binding})))
            .await?
            .ok("newAccount")?;
        self.kid = Some(reply.location.ok_or_else(|| anyhow!("newAccount gave no account URL"))?);
        Ok(())
    }

    /// Polls `url` (POST-as-GET) until `done` says so, honouring Retry-After (1 to 10 s).
    async fn poll(&self, url: &str, deadline: Instant, done: impl Fn(&Value) -> bool) -> Result<Value> {
        loop {
            let reply = self.post(url, None).await?.ok("poll")?;
            let retry = reply.retry_after.unwrap_or(2).clamp(1, 10);
            let value = reply.json()?;
            if done(&value) {
                return Ok(value);
            }
            if Instant::now() + Duration::from_secs(retry) > deadline {
                bail!("gave up waiting at {url}: still {}", value["status"]);
            }
            tokio::time::sleep(Duration::from_secs(retry)).await;
        }
    }
}

fn jwk_of(key: &PKey<Private>) -> Result<Value> {
    let ec = key.ec_key()?;
    let mut ctx = openssl::bn::BigNumContext::new()?;
    let (mut x, mut y) = (openssl::bn::BigNum::new()?, openssl::bn::BigNum::new()?);
    ec.public_key().affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
    Ok(json!({"crv": "P-256", "kty": "EC", "x": b64(&x.to_vec_padded(32)?), "y": b64(&y.to_vec_padded(32)?)}))
}

/// RFC 7638 thumbprint of the JWK (its members are already in lexicographic order).
fn thumbprint(jwk: &Value) -> String {
    b64(&openssl::sha::sha256(jwk.to_string().as_bytes()))
}

/// ES256 over `input`: the raw r || s that JWS uses (RFC 7518 §3.4).
fn es256(key: &PKey<Private>, input: &[u8]) -> Result<Vec<u8>> {
    let digest = openssl::sha::sha256(input);
    let sig = EcdsaSig::sign(&digest, key.ec_key()?.as_ref())?;
    let mut out = sig.r().to_vec_padded(32)?;
    out.extend(sig.s().to_vec_padded(32)?);
    Ok(out)
}

fn certificate_key(key_type: &str) -> Result<PKey<Private>> {
    Ok(match key_type {
        "rsa2048" => PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?,
        "rsa3072" => PKey::from_rsa(openssl::rsa::Rsa::generate(3072)?)?,
        "p256" => ec_key(Nid::X9_62_PRIME256V1)?,
        "p384" => ec_key(Nid::SECP384R1)?,
        other => bail!("--key-type {other:?}: use rsa2048, rsa3072, p256 or p384"),
    })
}

fn ec_key(curve: Nid) -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(curve)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// A CSR whose one name is the rfc822Name `email`.
fn email_csr(key: &PKey<Private>, email: &str) -> Result<Vec<u8>> {
    let mut builder = openssl::x509::X509ReqBuilder::new()?;
    builder.set_pubkey(key)?;
    let mut name = openssl::x509::X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::PKCS9_EMAILADDRESS, email)?;
    builder.set_subject_name(&name.build())?;
    let ctx = builder.x509v3_context(None);
    let san = openssl::x509::extension::SubjectAlternativeName::new().email(email).build(&ctx)?;
    let mut extensions = openssl::stack::Stack::new()?;
    extensions.push(san)?;
    builder.add_extensions(&extensions)?;
    builder.sign(key, MessageDigest::sha256())?;
    Ok(builder.build().to_der()?)
}

/// What the person pasted: the challenge mail's subject line, its bare token, or the path
/// of the saved message. token-part1 and, from a saved message, its Message-ID.
pub fn read_challenge(input: &str) -> Result<(String, Option<String>)> {
    let input = input.trim();
    let path = Path::new(input);
    if !input.is_empty() && path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let header = |name: &str| header_value(&text, name);
        let subject = header("Subject").ok_or_else(|| anyhow!("{} has no Subject header", path.display()))?;
        let token = dualca_ca::subject_token(&subject)
            .ok_or_else(|| anyhow!("{}'s subject {subject:?} is not an ACME challenge", path.display()))?;
        return Ok((token.to_string(), header("Message-ID")));
    }
    let subject = input.strip_prefix("Subject:").unwrap_or(input).trim();
    let candidate = if subject.contains("ACME:") { subject.to_string() } else { format!("ACME: {subject}") };
    let token = dualca_ca::subject_token(&candidate)
        .ok_or_else(|| anyhow!("{input:?} is neither the challenge mail's subject, its token, nor a saved message"))?;
    Ok((token.to_string(), None))
}

/// An unfolded header of a saved message (the header block ends at the first empty line).
fn header_value(text: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                value = Some(v.trim().to_string());
            }
        }
    }
    value
}

/// The reply RFC 8823 §3.2 asks for: to the challenge's `from`, the same subject with `Re:`,
/// In-Reply-To the challenge mail, and the response between the BEGIN and END lines.
pub fn reply_text(email: &str, to: &str, token_part1: &str, in_reply_to: Option<&str>, response: &str) -> String {
    let mut headers = format!("From: {email}\r\nTo: {to}\r\nSubject: Re: ACME: {token_part1}\r\n");
    if let Some(id) = in_reply_to {
        headers.push_str(&format!("In-Reply-To: {id}\r\n"));
    }
    format!(
        "{headers}Content-Type: text/plain; charset=us-ascii\r\n\r\n\
         -----BEGIN ACME RESPONSE-----\r\n{response}\r\n-----END ACME RESPONSE-----\r\n"
    )
}

fn send_reply(relay_url: &str, password_file: Option<&Path>, email: &str, to: &str, raw: &str) -> Result<()> {
    use lettre::Transport;
    let password = match password_file {
        None => None,
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("read --smtp-password-file {}", file.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
    };
    let transport = crate::mail::relay(relay_url, password.as_deref())
        .map_err(|e| anyhow!("{}", e.to_string().replace("[mail] smtp_url", "--smtp-relay")))?;
    let envelope = lettre::address::Envelope::new(Some(email.parse()?), vec![to.parse()?])?;
    transport.send_raw(&envelope, raw.as_bytes()).map_err(|e| anyhow!("the relay refused the reply: {e}"))?;
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(data)?;
    Ok(())
}

pub async fn run(args: EnrollArgs) -> Result<()> {
    let wait = Duration::from_secs(crate::config::parse_duration(&args.wait)? as u64);
    let hmac_key = URL_SAFE_NO_PAD
        .decode(args.eab_hmac_key.trim().trim_end_matches('='))
        .context("--eab-hmac-key is not base64url")?;
    let cert_key = certificate_key(&args.key_type)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;

    let mut client = Client::new(&args.directory, &args.ca_root).await?;
    client.register(&args.eab_kid, &hmac_key).await?;
    eprintln!("account registered: {}", client.kid.as_deref().unwrap_or_default());

    let order_reply = client
        .post(
            &client.endpoint("newOrder")?,
            Some(&json!({"identifiers": [{"type": "email", "value": args.email}], "profile": args.profile})),
        )
        .await?
        .ok("newOrder")?;
    let order_url = order_reply.location.clone().ok_or_else(|| anyhow!("newOrder gave no order URL"))?;
    let order = order_reply.json()?;
    let authz_url = order["authorizations"][0].as_str().ok_or_else(|| anyhow!("the order has no authorization"))?;
    let authz = client.post(authz_url, None).await?.ok("authorization")?.json()?;
    let challenge = authz["challenges"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "email-reply-00"))
        .ok_or_else(|| anyhow!("the CA offers no email-reply-00 challenge for {}", args.email))?
        .clone();
    let (token_part2, from) = match (challenge["token"].as_str(), challenge["from"].as_str()) {
        (Some(t), Some(f)) => (t.to_string(), f.to_string()),
        _ => bail!("the email-reply-00 challenge lacks its token or from: {challenge}"),
    };

    eprintln!(
        "The CA has mailed {} a message from {from} whose subject starts with \"ACME:\".\n\
         Paste that subject line (or the path of the saved message) and press Enter:",
        args.email
    );
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("read the challenge from standard input")?;
    let (token_part1, message_id) = read_challenge(&line)?;
    let response = dualca_ca::expected_response(&token_part1, &token_part2, &thumbprint(&client.jwk));
    let reply = reply_text(&args.email, &from, &token_part1, message_id.as_deref(), &response);
    match &args.smtp_relay {
        Some(relay) => {
            let (relay, password, email, to, raw) =
                (relay.clone(), args.smtp_password_file.clone(), args.email.clone(), from.clone(), reply.clone());
            tokio::task::spawn_blocking(move || send_reply(&relay, password.as_deref(), &email, &to, &raw)).await??;
            eprintln!("reply sent to {from} through the relay");
        }
        None => {
            println!(
                "Send this reply from {} to {from} (keep the subject and the RESPONSE block as they are):\n",
                args.email
            );
            println!("{reply}");
            eprintln!("Press Enter once it is sent.");
            let mut ignored = String::new();
            std::io::stdin().lock().read_line(&mut ignored)?;
        }
    }

    let challenge_url = challenge["url"].as_str().ok_or_else(|| anyhow!("the challenge has no url"))?;
    client.post(challenge_url, Some(&json!({}))).await?.ok("challenge")?;
    let deadline = Instant::now() + wait;
    let authz = client.poll(authz_url, deadline, |a| a["status"] != "pending").await?;
    if authz["status"] != "valid" {
        let error = authz["challenges"]
            .as_array()
            .and_then(|cs| cs.iter().find_map(|c| c.get("error").cloned()))
            .unwrap_or(Value::Null);
        bail!(
            "the CA did not accept the reply: {} {}",
            error["type"].as_str().unwrap_or("?"),
            error["detail"].as_str().unwrap_or("")
        );
    }
    eprintln!("{} proven; finalizing", args.email);

    let finalize = order["finalize"].as_str().ok_or_else(|| anyhow!("the order has no finalize URL"))?;
    let csr = email_csr(&cert_key, &args.email)?;
    client.post(finalize, Some(&json!({"csr": b64(&csr)}))).await?.ok("finalize")?;
    let order = client.poll(&order_url, deadline, |o| o["status"] != "processing").await?;
    let cert_url = order["certificate"]
        .as_str()
        .ok_or_else(|| anyhow!("the order ended {} without a certificate", order["status"]))?;
    let chain = client.post(cert_url, None).await?.ok("certificate")?.body;

    // Named after the address; with_extension would cut at its domain's last dot.
    let named = |extension: &str| args.out.join(format!("{}.{extension}", args.email));
    let (key_path, chain_path) = (named("key"), named("pem"));
    write_private(&key_path, &cert_key.private_key_to_pem_pkcs8()?)?;
    std::fs::write(&chain_path, &chain).with_context(|| format!("write {}", chain_path.display()))?;
    println!("key:   {}", key_path.display());
    println!("chain: {}", chain_path.display());
    if let Some(password_file) = &args.pkcs12_password_file {
        let password = std::fs::read_to_string(password_file)
            .with_context(|| format!("read --pkcs12-password-file {}", password_file.display()))?;
        let password = password.trim_end_matches(['\r', '\n']);
        let mut certs = openssl::x509::X509::stack_from_pem(chain.as_bytes())?.into_iter();
        let leaf = certs.next().ok_or_else(|| anyhow!("the chain is empty"))?;
        let mut rest = openssl::stack::Stack::new()?;
        for cert in certs {
            rest.push(cert)?;
        }
        let mut builder = openssl::pkcs12::Pkcs12::builder();
        builder.name(&args.email).pkey(&cert_key).cert(&leaf).ca(rest);
        let bundle = builder.build2(password)?;
        let p12_path = named("p12");
        write_private(&p12_path, &bundle.to_der()?)?;
        println!("pkcs12: {}", p12_path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_read_from_a_subject_a_token_or_a_saved_message() {
        assert_eq!(read_challenge("ACME: abc_-1\n").unwrap(), ("abc_-1".into(), None));
        assert_eq!(read_challenge("Subject: ACME: abc").unwrap(), ("abc".into(), None));
        assert_eq!(read_challenge("abc").unwrap(), ("abc".into(), None));
        assert!(read_challenge("two words").is_err());
        let dir = std::env::temp_dir().join(format!("dualca-enroll-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let saved = dir.join("challenge.eml");
        std::fs::write(
            &saved,
            "From: ca@x\r\nSubject: ACME:\r\n abc\r\nMessage-ID: <m1@x>\r\n\r\nSubject: ACME: no\r\n",
        )
        .unwrap();
        assert_eq!(read_challenge(saved.to_str().unwrap()).unwrap(), ("abc".into(), Some("<m1@x>".into())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_reply_has_the_rfc_8823_shape() {
        let text = reply_text("a@x.org", "ca@y.org", "tok", Some("<m@y>"), "RESP");
        assert!(text.starts_with("From: a@x.org\r\nTo: ca@y.org\r\nSubject: Re: ACME: tok\r\nIn-Reply-To: <m@y>\r\n"));
        assert!(text.contains("\r\n\r\n-----BEGIN ACME RESPONSE-----\r\nRESP\r\n-----END ACME RESPONSE-----\r\n"));
    }

    /// One HMAC key in 64 begins with `-`: it is still the value of `--eab-hmac-key`, given
    /// as an argument of its own.
    #[test]
    fn an_hmac_key_may_begin_with_a_hyphen() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: EnrollArgs,
        }
        let parsed = <Cli as clap::Parser>::try_parse_from([
            "enroll",
            "--directory",
            "https://ca.example/acme/human/directory",
            "--eab-kid",
            "eab-1",
            "--eab-hmac-key",
            "-4bc_d",
            "--email",
            "a@example.test",
            "--ca-root",
            "root.pem",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.args.eab_hmac_key, "-4bc_d");
        assert_eq!(parsed.args.email, "a@example.test");
    }

    #[test]
    fn jws_keys_and_signatures_have_their_fixed_shapes() {
        let key =
            PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap())
                .unwrap();
        let jwk = jwk_of(&key).unwrap();
        assert_eq!(jwk.to_string().find("\"crv\""), Some(1), "members in RFC 7638 order");
        assert_eq!(thumbprint(&jwk).len(), 43);
        assert_eq!(es256(&key, b"x").unwrap().len(), 64);
    }
}
