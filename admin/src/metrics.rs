//! Prometheus metrics. Counters and histograms are recorded where things happen (the ACME
//! front end records its own through `dualca_acme::metrics`); certificate and outbox gauges are
//! read from the database at scrape time, so every process reports the same numbers.

use std::sync::LazyLock;

use actix_web::{web, HttpResponse};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::auth::AdminState;

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

pub static REVOCATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new("dualca_admin_revocations_total", "Certificates revoked through the admin API"),
        &["track"],
    )
    .expect("valid metric");
    REGISTRY.register(Box::new(c.clone())).expect("registered once");
    c
});

static CERTIFICATES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    let g = IntGaugeVec::new(Opts::new("dualca_certificates", "Certificates by track and state"), &["track", "state"])
        .expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("registered once");
    g
});

static OUTBOX_BACKLOG: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new("dualca_outbox_backlog", "Mail in the outbox waiting to be sent").expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("registered once");
    g
});

static RENEWALS_OVERDUE: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new(
        "dualca_machine_renewals_overdue",
        "Machine certificates past their ARI window that nothing has replaced",
    )
    .expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("registered once");
    g
});

static OUTBOX_GIVEN_UP: LazyLock<IntGauge> = LazyLock::new(|| {
    let g = IntGauge::new("dualca_outbox_given_up", "Mail that ran out of delivery attempts").expect("valid metric");
    REGISTRY.register(Box::new(g.clone())).expect("registered once");
    g
});

/// Group commit on a SQLite database file (`dualca_ca::storage::Storage::commit_counts`): the
/// ratio of the two is how many commits share one fsync of the log.
static SQLITE_COMMITS: LazyLock<IntCounter> = LazyLock::new(|| {
    registered_counter("dualca_sqlite_commits_total", "Write transactions committed to the SQLite database")
});

static SQLITE_LOG_SYNCS: LazyLock<IntCounter> = LazyLock::new(|| {
    registered_counter(
        "dualca_sqlite_log_syncs_total",
        "fsyncs of the SQLite write-ahead log that made commits durable (group commit)",
    )
});

static SQLITE_CHECKPOINTS: LazyLock<IntCounter> = LazyLock::new(|| {
    registered_counter("dualca_sqlite_checkpoints_total", "Checkpoints of the SQLite write-ahead log into the database")
});

fn registered_counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    REGISTRY.register(Box::new(c.clone())).expect("registered once");
    c
}

pub async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    if let Some(counts) = state.ca.commit_counts() {
        // Counters only go up: add what happened since the last scrape.
        SQLITE_COMMITS.inc_by(counts.commits.saturating_sub(SQLITE_COMMITS.get()));
        SQLITE_LOG_SYNCS.inc_by(counts.syncs.saturating_sub(SQLITE_LOG_SYNCS.get()));
        SQLITE_CHECKPOINTS.inc_by(counts.checkpoints.saturating_sub(SQLITE_CHECKPOINTS.get()));
    }
    for track in dualca_ca::Track::ALL {
        let ca = state.ca.clone();
        if let Ok(Ok(counts)) = web::block(move || ca.certificate_counts(track)).await {
            let set = |s: &str, v: i64| CERTIFICATES.with_label_values(&[track.as_str(), s]).set(v);
            set("active", counts.active);
            set("revoked", counts.revoked);
            set("expiring_within_7_days", counts.expiring_within_7_days);
        }
    }
    let ca = state.ca.clone();
    if let Ok(Ok((backlog, given_up))) =
        web::block(move || Ok::<_, dualca_ca::Error>((ca.outbox_backlog()?, ca.outbox_given_up()?))).await
    {
        OUTBOX_BACKLOG.set(backlog);
        let ca = state.ca.clone();
        if let Ok(Ok(overdue)) = web::block(move || ca.overdue_renewals()).await {
            RENEWALS_OVERDUE.set(overdue.len() as i64);
        }
        OUTBOX_GIVEN_UP.set(given_up);
    }
    LazyLock::force(&REVOCATIONS);
    let mut families = REGISTRY.gather();
    families.extend(prometheus::gather());
    let mut out = Vec::new();
    if TextEncoder::new().encode(&families, &mut out).is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(out)
}
