use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use dualca::config::{LogFormat, Settings};
use dualca::startup::{open_ca, App};
use dualca::telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "dualca", version, about = "A certificate authority with a machine track and a human track")]
struct Cli {
    /// TOML configuration file; DUALCA_* environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log as text or JSON lines.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Data directory (database, CA keys, TLS certificate, outbox).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// postgres://… or a SQLite file path.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Address the server listens on; give the one-shot commands the same value as `serve` so
    /// the URLs they put in CRLs and invites match the server's.
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Base URL clients use to reach the server (the same for `serve` and every other command).
    #[arg(long, global = true)]
    public_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve both ACME directories over HTTPS.
    Serve,
    /// Create the data directory, the database and the CA hierarchy, then exit.
    Init,
    /// Admin tokens for the admin API and pages.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The machine track's asset inventory.
    Asset {
        #[command(subcommand)]
        command: AssetCommand,
    },
    /// The human track's people: HR events, help-desk proofing and recovery.
    Person {
        #[command(subcommand)]
        command: PersonCommand,
    },
    /// The per-track audit chains.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Outgoing mail.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
    /// A person's client for the human track: register with the enrollment's EAB credentials,
    /// prove the mailbox (RFC 8823 email-reply-00), and write the key, the chain and a PKCS#12
    /// bundle.
    Enroll(Box<dualca::enroll::EnrollArgs>),
    /// Revoke a certificate of either track by serial (hex), as an operator; audited, and
    /// visible in OCSP at once and in a freshly signed CRL.
    Revoke {
        serial: String,
        /// RFC 5280 reason name or code: unspecified, keyCompromise, affiliationChanged,
        /// superseded, cessationOfOperation, privilegeWithdrawn, …
        #[arg(long, default_value = "unspecified")]
        reason: String,
        /// Who is revoking, for the audit log.
        #[arg(long, env = "USER", default_value = "cli")]
        operator: String,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Mint a Bearer token.
    Token {
        /// admin, inventory, helpdesk or auditor.
        #[arg(long)]
        role: String,
        /// Who the token is for (recorded in the audit log of every action).
        #[arg(long)]
        subject: String,
        /// Lifetime, e.g. 8h or 30d.
        #[arg(long, default_value = "8h")]
        ttl: String,
    },
    /// Put a token on the deny-list, by the token itself or by its jti.
    RevokeToken {
        /// A jti is base64url and may start with '-', which must not be read as a flag.
        #[arg(allow_hyphen_values = true)]
        token_or_jti: String,
        #[arg(long, env = "USER", default_value = "cli")]
        operator: String,
    },
}

#[derive(clap::Args)]
struct AssetArgs {
    #[arg(long)]
    name: String,
    /// host, container, service, pipeline or device.
    #[arg(long, default_value = "host")]
    kind: String,
    #[arg(long)]
    owner_team: String,
    #[arg(long)]
    owner_email: String,
    #[arg(long)]
    service: String,
    #[arg(long, default_value = "production")]
    environment: String,
    /// DNS names the asset may hold (repeat, or comma-separated); `*.` wildcards allowed.
    #[arg(long, value_delimiter = ',')]
    dns: Vec<String>,
    /// IP addresses the asset may hold.
    #[arg(long, value_delimiter = ',')]
    ip: Vec<String>,
    #[arg(long)]
    spiffe_id: Option<String>,
    /// Pin every certificate of the asset to this profile.
    #[arg(long)]
    profile: Option<String>,
}

impl AssetArgs {
    fn spec(self) -> dualca_ca::model::AssetSpec {
        let identifiers = self
            .dns
            .into_iter()
            .map(|d| ("dns".to_string(), d))
            .chain(self.ip.into_iter().map(|i| ("ip".to_string(), i)))
            .collect();
        dualca_ca::model::AssetSpec {
            name: self.name,
            kind: self.kind,
            owner_team: self.owner_team,
            owner_email: self.owner_email,
            service: self.service,
            environment: self.environment,
            identifiers,
            spiffe_id: self.spiffe_id,
            profile: self.profile,
        }
    }
}

#[derive(Subcommand)]
enum AssetCommand {
    /// Register an asset.
    Register(AssetArgs),
    /// Replace an asset's attributes (the name given first is the one it has now).
    Update {
        current_name: String,
        #[command(flatten)]
        asset: AssetArgs,
    },
    /// List assets.
    List,
    /// Show one asset.
    Show { name: String },
    /// Decommission an asset: revoke its certificates, deactivate its accounts and EAB keys.
    Decommission {
        name: String,
        /// The asset's keys are compromised: revoke with keyCompromise.
        #[arg(long)]
        compromised: bool,
    },
    /// Sync the whole inventory from a CMDB export (JSON, or CSV by the .csv extension). Prints
    /// the plan; changes nothing without --apply.
    Sync {
        file: PathBuf,
        #[arg(long)]
        apply: bool,
        /// Decommission even when more than --max-share of the active assets would go.
        #[arg(long)]
        force: bool,
        #[arg(long, default_value_t = dualca_admin::assets::DEFAULT_MAX_DECOMMISSION_SHARE)]
        max_share: f64,
    },
    /// Redeploy: the asset's current certificates are revoked as superseded after the grace
    /// period, in which the new deployment gets its own.
    Redeploy {
        name: String,
        #[arg(long, default_value = "1h")]
        grace: String,
    },
    /// Revoke EAB credentials by kid.
    RevokeCredentials { kid: String },
    /// New EAB credentials (kid and HMAC key) for an asset's ACME client; shown once.
    Credentials {
        name: String,
        #[arg(long, default_value = "7d")]
        ttl: String,
        #[arg(long)]
        single_use: bool,
    },
}

#[derive(Subcommand)]
enum PersonCommand {
    /// Joiner: register a person and mail them a one-time enrollment link and code.
    Join {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        employee_id: String,
        #[arg(long)]
        manager: String,
    },
    /// Mover: a new address and/or manager.
    Move {
        email: String,
        #[arg(long)]
        new_email: Option<String>,
        #[arg(long)]
        manager: Option<String>,
    },
    /// Leaver: revoke every certificate, deactivate accounts and keys, mail person and manager.
    Leave { email: String },
    /// Help-desk proofing after a check out of band.
    Proof {
        email: String,
        /// in-person, video or manager-callback.
        #[arg(long)]
        method: String,
        /// What was checked, for the audit log.
        #[arg(long)]
        evidence: String,
    },
    /// Help-desk recovery of a person who lost a key or a device, after a check out of band:
    /// revokes their certificates, deactivates their accounts and EAB keys, and mails them a new
    /// one-time enrollment link and code. When they hold a client-auth certificate or were
    /// proofed by the help desk, it waits for `approve-recovery` by another operator.
    Recover {
        email: String,
        /// keyCompromise or superseded.
        #[arg(long)]
        reason: String,
        /// in-person, video or manager-callback.
        #[arg(long)]
        method: String,
        /// What was checked, for the audit log.
        #[arg(long)]
        evidence: String,
    },
    /// Approve a pending recovery (the two-person rule: not its requester) and carry it out.
    ApproveRecovery {
        email: String,
        /// The recovery's id, as `recover` or `recoveries` prints it (it may start with '-').
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Cancel a pending recovery.
    CancelRecovery {
        email: String,
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// A person's recoveries, newest first.
    Recoveries { email: String },
    /// List people.
    List,
}

#[derive(Subcommand)]
enum MailCommand {
    /// Print the DNS TXT record, in zone-file form, that publishes the public half of
    /// `[mail] dkim_key_file` for receivers to verify dualca's DKIM signatures with.
    DkimRecord,
    /// List a track's undelivered mail, oldest first: still being tried, or given up.
    Undelivered { track: dualca_ca::Track },
    /// Send a given-up mail again (its attempts start over; audited); the running server
    /// delivers it.
    Retry {
        track: dualca_ca::Track,
        /// The mail's id, as `undelivered` prints it: base64url, so it may start with '-'.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute each chain from its first event; name the first broken link. Exits 1 if any
    /// chain is broken.
    Verify {
        #[arg(long)]
        track: Option<dualca_ca::Track>,
    },
}

#[actix_web::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(format) = cli.log_format {
        settings.log_format = match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    if let Some(url) = cli.database_url {
        settings.database_url = url;
    }
    if let Some(listen) = cli.listen {
        settings.listen = listen;
    }
    if let Some(url) = cli.public_url {
        settings.public_url = url;
    }
    telemetry::init(settings.log_format);
    for name in Settings::ignored_environment() {
        tracing::warn!(variable = %name, "ignoring an environment variable that names no setting");
    }
    match cli.command {
        Command::Enroll(args) => dualca::enroll::run(*args).await,
        Command::Init => {
            let public_url = settings.public_url_for_port(settings.listen.port());
            let ca = tokio::task::spawn_blocking(move || open_ca(&settings, &public_url)).await??;
            println!("CA hierarchy ready; root CA certificate: {}", ca.hierarchy.root_path().display());
            Ok(())
        }
        Command::Admin { command } => {
            let auth = settings.admin_auth()?;
            let public_url = settings.public_url_for_port(settings.listen.port());
            let ca = tokio::task::spawn_blocking(move || open_ca(&settings, &public_url)).await??;
            let now = ca.clock.unix();
            match command {
                AdminCommand::Token { role, subject, ttl } => {
                    let role = dualca_admin::Role::parse(&role).ok_or_else(|| {
                        anyhow::anyhow!("unknown role {role:?}: admin, inventory, helpdesk or auditor")
                    })?;
                    let ttl = dualca::config::parse_duration(&ttl)?;
                    let (token, claims) = auth.mint(role, &subject, ttl, now).map_err(anyhow::Error::msg)?;
                    eprintln!(
                        "token for {} (role {}), jti {}, expires {}",
                        claims.sub,
                        claims.role,
                        claims.jti,
                        dualca_ca::clock::rfc3339(claims.exp)
                    );
                    println!("{token}");
                }
                AdminCommand::RevokeToken { token_or_jti, operator } => {
                    let (jti, subject, expires) = if token_or_jti.matches('.').count() == 2 {
                        let claims = auth.verify(&token_or_jti).map_err(anyhow::Error::msg)?;
                        (claims.jti, claims.sub, claims.exp)
                    } else {
                        (token_or_jti, "unknown".to_string(), now + 366 * 86400)
                    };
                    let added =
                        tokio::task::spawn_blocking(move || ca.revoke_admin_token(&jti, &subject, expires, &operator))
                            .await??;
                    println!("{}", if added { "token revoked" } else { "token was already revoked" });
                }
            }
            Ok(())
        }
        Command::Asset { command } => {
            let public_url = settings.public_url_for_port(settings.listen.port());
            let ca = tokio::task::spawn_blocking(move || open_ca(&settings, &public_url)).await??;
            let actor = format!("operator:{}", std::env::var("USER").unwrap_or_else(|_| "cli".into()));
            let text = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                Ok(match command {
                    AssetCommand::Register(args) => describe(&ca.register_asset(&args.spec(), &actor)?),
                    AssetCommand::Update { current_name, asset } => describe(&ca.update_asset(&current_name, &asset.spec(), &actor)?),
                    AssetCommand::List => ca.assets(&dualca_ca::AssetQuery::default())?.iter().map(describe).collect::<Vec<_>>().join(""),
                    AssetCommand::Show { name } => describe(&ca.asset(&name)?),
                    AssetCommand::Decommission { name, compromised } => {
                        let report = ca.decommission_asset(&name, compromised, &actor)?;
                        ca.regenerate_crl(dualca_ca::Track::Machine)?;
                        format!(
                            "decommissioned {}: {} certificates revoked, {} accounts deactivated, {} EAB keys revoked\n",
                            report.asset,
                            report.revoked_serials.len(),
                            report.deactivated_accounts.len(),
                            report.revoked_eab_keys
                        )
                    }
                    AssetCommand::Sync { file, apply, force, max_share } => {
                        let data = std::fs::read(&file)?;
                        let format = if file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
                            dualca_admin::sync::Format::Csv
                        } else {
                            dualca_admin::sync::Format::Json
                        };
                        let specs = dualca_admin::sync::parse_inventory(&data, format).map_err(anyhow::Error::msg)?;
                        let plan = ca.plan_inventory_sync(&specs)?;
                        let mut out = dualca_admin::sync::plan_text(&plan);
                        if apply {
                            let report = ca.apply_inventory_sync(&plan, max_share, force, &actor)?;
                            if !report.decommissioned.is_empty() {
                                ca.regenerate_crl(dualca_ca::Track::Machine)?;
                            }
                            out.push_str(&format!(
                                "applied: {} created, {} updated, {} decommissioned\n",
                                report.created,
                                report.updated,
                                report.decommissioned.len()
                            ));
                        } else {
                            out.push_str("dry run: nothing changed (add --apply)\n");
                        }
                        out
                    }
                    AssetCommand::RevokeCredentials { kid } => {
                        ca.revoke_eab_key(dualca_ca::Track::Machine, &kid, &actor)?;
                        format!("EAB credentials {kid} revoked\n")
                    }
                    AssetCommand::Redeploy { name, grace } => {
                        let grace = dualca::config::parse_duration(&grace)?;
                        let superseded = ca.redeploy_asset(&name, grace, &actor)?;
                        format!("{} certificates of {name} will be revoked as superseded in {grace} s\n", superseded.len())
                    }
                    AssetCommand::Credentials { name, ttl, single_use } => {
                        let ttl = dualca::config::parse_duration(&ttl)?;
                        let creds = ca.create_asset_eab(&name, ttl, single_use, &actor)?;
                        format!(
                            "kid:      {}\nhmac key: {}\nexpires:  {}{}\nThe key is shown only now. For certbot: --eab-kid {} --eab-hmac-key={}\n",
                            creds.kid,
                            creds.hmac_key_b64,
                            dualca_ca::clock::rfc3339(creds.expires_at),
                            if creds.single_use { " (single use)" } else { "" },
                            creds.kid,
                            creds.hmac_key_b64
                        )
                    }
                })
            })
            .await??;
            print!("{text}");
            Ok(())
        }
        Command::Person { command } => {
            let public_url = settings.public_url_for_port(settings.listen.port());
            let ca = tokio::task::spawn_blocking(move || open_ca(&settings, &public_url)).await??;
            let actor = format!("operator:{}", std::env::var("USER").unwrap_or_else(|_| "cli".into()));
            let describe_person = |p: &dualca_ca::model::Person| {
                format!(
                    "{}  {}  {}  proofing={}  employee={}  manager={}\n",
                    p.email,
                    p.display_name,
                    p.status.as_str(),
                    p.proofing_level.as_str(),
                    p.employee_id,
                    p.manager_email
                )
            };
            let describe_recovery = |r: &dualca_ca::model::Recovery| {
                format!(
                    "recovery {}  {}  reason={}  method={}  requested_by={}  approved_by={}  two_operators={}  created={}\n",
                    r.id,
                    r.status.as_str(),
                    r.reason.name(),
                    r.method,
                    r.requested_by,
                    r.approved_by.as_deref().unwrap_or("-"),
                    if r.high_assurance { "required" } else { "no" },
                    dualca_ca::clock::rfc3339(r.created_at)
                )
            };
            let describe_outcome = move |email: &str, o: &dualca_ca::model::RecoveryOutcome| match o.link_expires_at {
                Some(expires) => format!(
                    "{}{email} recovered: {} certificates revoked, {} accounts deactivated; the new enrollment link \
                     and code are queued for them in the outbox (they expire {})\n",
                    describe_recovery(&o.recovery),
                    o.revoked_certificates.len(),
                    o.deactivated_accounts.len(),
                    dualca_ca::clock::rfc3339(expires)
                ),
                None => format!(
                    "{}pending: another operator must approve it before {} \
                     (dualca person approve-recovery {email} -- {})\n",
                    describe_recovery(&o.recovery),
                    dualca_ca::clock::rfc3339(o.recovery.approval_expires_at()),
                    o.recovery.id
                ),
            };
            let text = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                Ok(match command {
                    PersonCommand::Join { email, name, employee_id, manager } => {
                        let spec = dualca_ca::model::JoinerSpec {
                            email,
                            display_name: name,
                            employee_id,
                            manager_email: manager,
                        };
                        let invitation = ca.person_joins(&spec, &actor)?;
                        format!(
                            "{}invite queued in the outbox; the server delivers it (link and code expire {})\n",
                            describe_person(&invitation.person),
                            dualca_ca::clock::rfc3339(invitation.expires_at)
                        )
                    }
                    PersonCommand::Move { email, new_email, manager } => {
                        describe_person(&ca.person_moves(&email, new_email.as_deref(), manager.as_deref(), &actor)?)
                    }
                    PersonCommand::Leave { email } => {
                        let revoked = ca.person_leaves(&email, &actor)?;
                        ca.regenerate_crl(dualca_ca::Track::Human)?;
                        format!(
                            "{email} has left: {} certificates revoked; mail to person and manager queued\n",
                            revoked.len()
                        )
                    }
                    PersonCommand::Proof { email, method, evidence } => {
                        describe_person(&ca.proof_by_helpdesk(&email, &method, &evidence, &actor)?)
                    }
                    PersonCommand::Recover { email, reason, method, evidence } => {
                        let spec = dualca_ca::model::RecoverySpec { reason, method, evidence };
                        let outcome = ca.request_recovery(&email, &spec, &actor)?;
                        if !outcome.revoked_certificates.is_empty() {
                            ca.regenerate_crl(dualca_ca::Track::Human)?;
                        }
                        describe_outcome(&email, &outcome)
                    }
                    PersonCommand::ApproveRecovery { email, id } => {
                        let outcome = ca.approve_recovery(&email, &id, &actor)?;
                        if !outcome.revoked_certificates.is_empty() {
                            ca.regenerate_crl(dualca_ca::Track::Human)?;
                        }
                        describe_outcome(&email, &outcome)
                    }
                    PersonCommand::CancelRecovery { email, id } => {
                        describe_recovery(&ca.cancel_recovery(&email, &id, &actor)?)
                    }
                    PersonCommand::Recoveries { email } => {
                        ca.recoveries(&email)?.iter().map(describe_recovery).collect()
                    }
                    PersonCommand::List => ca.people(None)?.iter().map(describe_person).collect(),
                })
            })
            .await??;
            print!("{text}");
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify { track } } => {
            let public_url = settings.public_url_for_port(settings.listen.port());
            let ca = std::sync::Arc::new(tokio::task::spawn_blocking(move || open_ca(&settings, &public_url)).await??);
            let mut broken = false;
            for t in dualca_ca::Track::ALL.into_iter().filter(|t| track.is_none_or(|only| only == *t)) {
                let storage_ca = ca.clone();
                let check =
                    tokio::task::spawn_blocking(move || dualca_ca::audit::verify(&storage_ca.storage, t)).await??;
                match check {
                    dualca_ca::audit::ChainCheck::Intact { events } => println!("{t}: intact, {events} events"),
                    dualca_ca::audit::ChainCheck::Broken { seq, reason } => {
                        broken = true;
                        println!("{t}: BROKEN at event {seq}: {reason}");
                    }
                }
            }
            if broken {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Revoke { serial, reason, operator } => {
            let reason = dualca_ca::model::RevocationReason::parse(&reason)
                .ok_or_else(|| anyhow::anyhow!("unknown revocation reason {reason:?}"))?;
            let public_url = settings.public_url_for_port(settings.listen.port());
            let ca = tokio::task::spawn_blocking(move || open_ca(&settings, &public_url)).await??;
            let (track, number) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let track = ca.revoke_by_operator(None, &serial, reason, &operator)?;
                let number = ca.regenerate_crl(track)?;
                Ok((track, number))
            })
            .await??;
            println!("revoked on the {track} track ({}); CRL number {number} published", reason.name());
            Ok(())
        }
        Command::Mail { command: MailCommand::Undelivered { track } } => {
            print_mail(settings, move |ca, _| ca.undelivered_mail_of(track, 500)).await
        }
        Command::Mail { command: MailCommand::Retry { track, id } } => {
            print_mail(settings, move |ca, actor| Ok(vec![ca.retry_mail(track, &id, &actor)?])).await
        }
        Command::Mail { command: MailCommand::DkimRecord } => {
            let Some(signer) = dualca::mail::dkim_signer(&settings)? else {
                anyhow::bail!("[mail] dkim_key_file and dkim_selector are not set: there is no DKIM key to publish");
            };
            // A TXT record's strings hold 255 bytes at most (RFC 1035 §3.3); a 2048-bit RSA
            // key's record needs two, which receivers join.
            let record = signer.dns_record()?;
            let strings: Vec<String> =
                record.as_bytes().chunks(255).map(|chunk| format!("\"{}\"", String::from_utf8_lossy(chunk))).collect();
            println!("{}. IN TXT ( {} )", signer.dns_name(), strings.join(" "));
            Ok(())
        }
        Command::Serve => {
            let app = App::build(settings).await?;
            println!("dualca is serving on {}", app.public_url);
            println!("  machine directory: {}/acme/machine/directory", app.public_url);
            println!("  human directory:   {}/acme/human/directory", app.public_url);
            println!("  root CA:           {}", app.root_ca_path.display());
            match &app.admin_url {
                Some(url) => println!("  admin:             {url}/admin/ (its own listener, [admin] listen)"),
                None => println!("  admin:             {}/admin/", app.public_url),
            }
            println!("  outgoing mail:     {}", app.mail_destination);
            println!("  mail signing:      {}", app.mail_signing);
            match app.intake_addr {
                Some(addr) => println!("  reply intake:      smtp://{addr} (RFC 8823 email-reply-00)"),
                None => println!("  reply intake:      off ([email_reply] listen is empty)"),
            }
            app.run().await?;
            Ok(())
        }
    }
}

/// Runs a mail command against the database (as `operator:$USER`) and prints the mail it
/// returns, a line each.
async fn print_mail(
    settings: Settings,
    run: impl FnOnce(&dualca_ca::Ca, String) -> dualca_ca::Result<Vec<dualca_ca::QueuedMail>> + Send + 'static,
) -> Result<()> {
    let public_url = settings.public_url_for_port(settings.listen.port());
    let actor = format!("operator:{}", std::env::var("USER").unwrap_or_else(|_| "cli".into()));
    let mails = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let ca = open_ca(&settings, &public_url)?;
        Ok(run(&ca, actor)?)
    })
    .await??;
    for mail in mails {
        let state = if mail.given_up() {
            "given-up".to_string()
        } else {
            format!("due {}", dualca_ca::clock::rfc3339(mail.next_attempt_at))
        };
        println!(
            "{}  {}  {state}  attempts={}  to={}  error={}",
            mail.id,
            dualca_ca::clock::rfc3339(mail.created_at),
            mail.attempts,
            mail.recipient,
            mail.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn describe(asset: &dualca_ca::model::Asset) -> String {
    let ids: Vec<String> = asset.identifiers.iter().map(|i| i.to_string()).collect();
    format!(
        "{}  {}  {}  team={} <{}>  service={}  env={}  [{}]{}{}\n",
        asset.name,
        asset.kind.as_str(),
        asset.status.as_str(),
        asset.owner_team,
        asset.owner_email,
        asset.service,
        asset.environment,
        ids.join(", "),
        asset.spiffe_id.as_ref().map(|s| format!("  spiffe={s}")).unwrap_or_default(),
        asset.profile.as_ref().map(|p| format!("  profile={p}")).unwrap_or_default(),
    )
}
