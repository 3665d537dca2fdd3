use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use dualca_ca::model::ChallengeStatus;

use super::{ca_call, ca_call_owing, json_response};
use crate::jws::Jws;
use crate::problem::Problem;
use crate::wire::{self, StatusUpdate};
use crate::AcmeState;

/// RFC 8555 §7.5 and §7.5.2: read an authorization, or deactivate it.
pub async fn authorization(
    state: web::Data<AcmeState>,
    path: web::Path<String>,
    jws: Jws,
) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    let (ca, track, id) = (state.ca.clone(), state.track, path.into_inner());
    let authz = if jws.is_post_as_get() {
        let authz = ca_call(&state.ca, move || ca.authorization(track, &id)).await?;
        if authz.account_id != account.id {
            return Err(Problem::unauthorized("this authorization belongs to another account"));
        }
        authz
    } else {
        let update: StatusUpdate = jws.json()?;
        if update.status.as_deref() != Some("deactivated") {
            return Err(Problem::malformed("an authorization can only be updated to status \"deactivated\""));
        }
        ca_call(&state.ca, move || ca.deactivate_authorization(&account, &id)).await?
    };
    Ok(json_response(StatusCode::OK, None, &wire::authorization(&state, &authz)))
}

/// RFC 8555 §7.5.1: POST-as-GET reads the challenge; POST `{}` asks the server to validate it.
pub async fn challenge(
    state: web::Data<AcmeState>,
    path: web::Path<String>,
    jws: Jws,
) -> Result<HttpResponse, Problem> {
    let account = jws.account()?.clone();
    let (ca, track, id) = (state.ca.clone(), state.track, path.into_inner());
    let challenge = if jws.is_post_as_get() {
        let (challenge, authz) = ca_call(&state.ca, move || ca.challenge(track, &id)).await?;
        if authz.account_id != account.id {
            return Err(Problem::unauthorized("this challenge belongs to another account"));
        }
        challenge
    } else {
        let _: serde_json::Map<String, serde_json::Value> = jws.json()?;
        let (target, begun) = ca_call_owing(&state.ca, move || ca.begin_validation(&account, &id)).await?;
        if target.start {
            // A network validation writes nothing before it runs: its outcome moves the
            // challenge from pending in one commit.
            let (validator, ca) = (state.validator.clone(), state.ca.clone());
            let target_for_task = target.clone();
            let validation = state.validator.spawn(async move {
                let outcome = validator.validate(&target_for_task).await;
                record_outcome(ca, target_for_task, outcome).await
            });
            // A validation that finishes quickly (most do) is answered in this response, so
            // the client need not wait out a Retry-After of whole seconds; a slow one goes on
            // in the background (dropping the handle does not cancel it), and the challenge is
            // recorded as processing for the response and the client's polls.
            if let Ok(Ok(Some(settled))) = tokio::time::timeout(QUICK_VALIDATION, validation).await {
                return Ok(challenge_response(&state, &settled));
            }
            begun.wait().await?;
            let (ca, id) = (state.ca.clone(), target.challenge.id.clone());
            let marked = ca_call(&state.ca, move || ca.mark_processing(track, &id)).await?;
            return Ok(challenge_response(&state, &marked));
        }
        begun.wait().await?;
        target.challenge
    };
    Ok(challenge_response(&state, &challenge))
}

/// Records a validation's outcome, trying again a few times (bounded) when the database
/// refuses for a moment: an outcome that is never recorded leaves the challenge `processing`
/// for good. Recording is a compare-and-set from `processing`, so a repeat changes nothing.
/// Returns the settled challenge once it is durable, or `None` when it could not be recorded.
async fn record_outcome(
    ca: std::sync::Arc<dualca_ca::Ca>,
    target: dualca_ca::ValidationTarget,
    outcome: Result<(), dualca_ca::model::StoredProblem>,
) -> Option<dualca_ca::model::Challenge> {
    const DELAYS_MS: [u64; 4] = [0, 100, 500, 2000];
    let target = std::sync::Arc::new(target);
    let challenge_id = &target.challenge.id;
    for (attempt, delay) in DELAYS_MS.iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_millis(*delay)).await;
        let (for_call, target, outcome) = (ca.clone(), target.clone(), outcome.clone());
        match super::ca_call(&ca, move || for_call.complete_validation(&target, outcome)).await {
            Ok(settled) => return Some(settled),
            Err(problem) => {
                tracing::warn!(challenge = %challenge_id, attempt = attempt + 1, error = %problem.detail, "recording a validation outcome failed")
            }
        }
    }
    tracing::error!(challenge = %challenge_id, "could not record a validation outcome; the challenge stays processing");
    None
}

/// How long a challenge POST waits for its validation before answering `processing`.
const QUICK_VALIDATION: std::time::Duration = std::time::Duration::from_millis(500);

fn challenge_response(state: &AcmeState, challenge: &dualca_ca::model::Challenge) -> HttpResponse {
    let mut res = json_response(StatusCode::OK, None, &wire::challenge(state, challenge));
    let up = format!("<{}>;rel=\"up\"", state.url(&format!("authz/{}", challenge.authorization_id)));
    if let Ok(value) = header::HeaderValue::from_str(&up) {
        res.headers_mut().append(header::LINK, value);
    }
    if challenge.status == ChallengeStatus::Processing {
        res.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    res
}
