pub mod account;
pub mod authz;
pub mod certificate;
pub mod directory;
pub mod order;

use actix_web::http::header;
use actix_web::HttpResponse;
use serde_json::Value;

use crate::problem::Problem;

pub async fn not_found() -> Result<HttpResponse, Problem> {
    Err(Problem::not_found("no such resource"))
}

/// A JSON resource response, with its Location when it has one.
pub fn json_response(status: actix_web::http::StatusCode, location: Option<String>, body: &Value) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    if let Some(location) = location {
        res.insert_header((header::LOCATION, location));
    }
    // `to_vec` writes bytes straight; `Value`'s `Display` goes through `fmt`, several times slower.
    res.content_type("application/json").body(serde_json::to_vec(body).expect("a JSON value always serializes"))
}

/// How many CA calls run on blocking threads at once: as many as the database pool has
/// connections (`set_blocking_limit`), since a call beyond that would only park a thread on
/// the pool. Waiting here is async, so a burst queues as tasks, not as threads.
static BLOCKING_CALLS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();

/// Sets the limit once, at start-up; later calls change nothing.
pub fn set_blocking_limit(calls: usize) {
    let _ = BLOCKING_CALLS.set(tokio::sync::Semaphore::new(calls.max(1)));
}

/// Makes one CA call. On SQLite it runs in place, on this worker thread, and the response
/// waits (asynchronously) until what it wrote or read is durable; elsewhere it runs on a
/// blocking thread, at most `set_blocking_limit` at once.
pub async fn ca_call<T: Send + 'static>(
    ca: &std::sync::Arc<dualca_ca::Ca>,
    f: impl FnOnce() -> dualca_ca::Result<T> + Send + 'static,
) -> Result<T, Problem> {
    let (value, owed) = ca_call_owing(ca, f).await?;
    owed.wait().await?;
    Ok(value)
}

/// `ca_call` that hands back its durability wait instead of taking it, for a handler that can
/// start other work first. Nothing of the value may be shown before `Owed::wait`, or before a
/// later call's wait on the same store, which covers it. An error is returned only once what
/// it rests on is durable.
pub async fn ca_call_owing<T: Send + 'static>(
    ca: &std::sync::Arc<dualca_ca::Ca>,
    f: impl FnOnce() -> dualca_ca::Result<T> + Send + 'static,
) -> Result<(T, Owed), Problem> {
    if ca.calls_in_place() {
        // A panic inside the call (a bug) answers this request with serverInternal, as it did
        // on the blocking pool, instead of unwinding through the worker and dropping every
        // connection on it. The storage layer gives back what the call held as it unwinds: the
        // writer's turn, the thread's durability scope, and the connection, which the pool
        // closes (its transaction still open), rolling that transaction back.
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ca.in_place(f)));
        let Ok((value, durability)) = called else {
            tracing::error!("a CA call panicked; the request is answered with an internal error");
            return Err(Problem::from(dualca_ca::Error::internal("the CA call failed")));
        };
        return match value {
            Ok(value) => Ok((value, Owed(Some(durability)))),
            Err(e) => {
                durability.wait().await?;
                Err(e.into())
            }
        };
    }
    let slots = BLOCKING_CALLS.get_or_init(|| tokio::sync::Semaphore::new(16));
    // The semaphore is never closed, so acquiring fails only if it were.
    let _slot =
        slots.acquire().await.map_err(|_| Problem::from(dualca_ca::Error::internal("blocking-call limit closed")))?;
    Ok((actix_web::web::block(f).await??, Owed(None)))
}

/// The durability wait of a call made with `ca_call_owing` (none off SQLite, where the call
/// returned only once durable).
#[must_use = "a result may be shown only once its durability is awaited"]
pub struct Owed(Option<dualca_ca::Durability>);

impl Owed {
    pub async fn wait(self) -> Result<(), Problem> {
        match self.0 {
            Some(durability) => Ok(durability.wait().await?),
            None => Ok(()),
        }
    }
}
