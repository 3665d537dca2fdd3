//! Background work: the debounced CRL regeneration after revocations, and the scheduled jobs
//! (tokio-cron-scheduler), each run by one process at a time through `Storage::exclusive_job`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use dualca_ca::{Ca, Track};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

/// How long revocations are gathered before one CRL is signed for all of them.
const CRL_DEBOUNCE: Duration = Duration::from_millis(200);

/// Advisory-lock keys of the scheduled jobs.
const JOB_CRL: i64 = 0x6475_616c_6361_1001;
const JOB_OCSP_SIGNERS: i64 = 0x6475_616c_6361_1002;
const JOB_NONCES: i64 = 0x6475_616c_6361_1003;
/// The mail delivery loop's (`crate::mail`); it runs every second rather than on the scheduler.
pub(crate) const JOB_MAIL: i64 = 0x6475_616c_6361_1004;
const JOB_SCHEDULED_REVOCATIONS: i64 = 0x6475_616c_6361_1005;
const JOB_RENEWAL_SAFETY_NET: i64 = 0x6475_616c_6361_1006;
const JOB_EXPIRY_REMINDERS: i64 = 0x6475_616c_6361_1007;
const JOB_HOUSEKEEPING: i64 = 0x6475_616c_6361_1008;

/// Regenerates a track's CRL shortly after each revocation there, coalescing bursts.
pub fn spawn_crl_debouncer(ca: Arc<Ca>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Track>();
    ca.on_revocation(Box::new(move |track| {
        let _ = tx.send(track);
    }));
    actix_web::rt::spawn(async move {
        while let Some(first) = rx.recv().await {
            tokio::time::sleep(CRL_DEBOUNCE).await;
            let mut tracks = BTreeSet::from([first]);
            while let Ok(more) = rx.try_recv() {
                tracks.insert(more);
            }
            for track in tracks {
                let ca = ca.clone();
                match tokio::task::spawn_blocking(move || ca.regenerate_crl(track)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(%track, error = %e, "CRL regeneration after a revocation failed"),
                    Err(e) => tracing::error!(%track, error = %e, "CRL regeneration task failed"),
                }
            }
        }
    });
}

type JobFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs one scheduled job off the executor, in one process at a time.
fn run_blocking(
    ca: Arc<Ca>,
    name: &'static str,
    key: i64,
    run: impl FnOnce(&Ca) -> dualca_ca::Result<()> + Send + 'static,
) -> JobFuture {
    Box::pin(async move {
        let outcome = tokio::task::spawn_blocking(move || ca.storage.exclusive_job(key, || run(&ca))).await;
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(job = name, error = %e, "scheduled job failed"),
            Err(e) => tracing::error!(job = name, error = %e, "scheduled job panicked"),
        }
    })
}

fn refresh_crls(ca: &Ca) -> dualca_ca::Result<()> {
    for track in Track::ALL {
        ca.refresh_crl_if_due(track)?;
    }
    Ok(())
}

/// Starts the scheduled jobs; `retention` is what the housekeeping job keeps.
pub async fn start_scheduler(ca: Arc<Ca>, retention: dualca_ca::Retention) -> Result<JobScheduler> {
    let scheduler = JobScheduler::new().await?;
    let c = ca.clone();
    scheduler
        .add(Job::new_repeated_async(Duration::from_secs(300), move |_, _| {
            run_blocking(c.clone(), "crl-refresh", JOB_CRL, refresh_crls)
        })?)
        .await?;
    let c = ca.clone();
    scheduler
        .add(Job::new_repeated_async(Duration::from_secs(6 * 3600), move |_, _| {
            run_blocking(c.clone(), "ocsp-signers", JOB_OCSP_SIGNERS, |ca| ca.refresh_ocsp_signers())
        })?)
        .await?;
    let c = ca.clone();
    scheduler
        .add(Job::new_repeated_async(Duration::from_secs(60), move |_, _| {
            run_blocking(c.clone(), "scheduled-revocations", JOB_SCHEDULED_REVOCATIONS, |ca| {
                ca.run_due_revocations().map(|_| ())
            })
        })?)
        .await?;
    // The expiry safety net: a machine certificate past its ARI window and not renewed gets its
    // owning team a mail, long before it expires.
    let c = ca.clone();
    scheduler
        .add(Job::new_repeated_async(Duration::from_secs(600), move |_, _| {
            run_blocking(c.clone(), "renewal-safety-net", JOB_RENEWAL_SAFETY_NET, |ca| {
                ca.alert_overdue_renewals().map(|_| ())
            })
        })?)
        .await?;
    // People hear 30, 7 and 1 days before their certificates expire, each once.
    let c = ca.clone();
    scheduler
        .add(Job::new_repeated_async(Duration::from_secs(3600), move |_, _| {
            run_blocking(c.clone(), "expiry-reminders", JOB_EXPIRY_REMINDERS, |ca| {
                ca.send_expiry_reminders().map(|_| ())
            })
        })?)
        .await?;
    let c = ca.clone();
    scheduler
        .add(Job::new_repeated_async(Duration::from_secs(600), move |_, _| {
            run_blocking(c.clone(), "nonce-purge", JOB_NONCES, |ca| ca.purge_nonces().map(|_| ()))
        })?)
        .await?;
    // Sent mail, the revocations of expired admin tokens and expired orders would otherwise
    // stay for good.
    let c = ca.clone();
    scheduler
        .add(Job::new_repeated_async(Duration::from_secs(3600), move |_, _| {
            run_blocking(c.clone(), "housekeeping", JOB_HOUSEKEEPING, move |ca| {
                let purged = ca.housekeeping(retention)?;
                if purged.mail + purged.token_revocations + purged.orders > 0 {
                    tracing::info!(
                        mail = purged.mail,
                        token_revocations = purged.token_revocations,
                        orders = purged.orders,
                        "housekeeping"
                    );
                }
                Ok(())
            })
        })?)
        .await?;
    scheduler.start().await?;
    Ok(scheduler)
}

/// Brings both CRLs up to date before the server answers.
pub fn refresh_crls_now(ca: &Ca) -> dualca_ca::Result<()> {
    refresh_crls(ca)
}
