//! RFC 8823 challenge mails and the replies recorded for them.

use diesel::prelude::*;

use super::rows::{problem_from_text, problem_to_text};
use super::DbConnection;
use crate::model::StoredProblem;
use crate::Result;

diesel::table! {
    email_challenges (challenge_id) {
        challenge_id -> Text,
        token_part1 -> Text,
        recipient -> Text,
        outbox_id -> Text,
        created_at -> BigInt,
        reply_at -> Nullable<BigInt>,
        reply_error -> Nullable<Text>,
    }
}

use email_challenges::dsl as e;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = email_challenges)]
#[diesel(treat_none_as_default_value = false)]
pub struct EmailChallengeRow {
    pub challenge_id: String,
    pub token_part1: String,
    pub recipient: String,
    pub outbox_id: String,
    pub created_at: i64,
    pub reply_at: Option<i64>,
    pub reply_error: Option<String>,
}

/// The reply recorded for a challenge: None while none came, else its outcome.
pub type RecordedReply = Option<std::result::Result<(), StoredProblem>>;

impl EmailChallengeRow {
    pub fn recorded_reply(&self) -> Result<RecordedReply> {
        Ok(match (self.reply_at, &self.reply_error) {
            (None, _) => None,
            (Some(_), None) => Some(Ok(())),
            (Some(_), Some(text)) => Some(Err(problem_from_text(text)?)),
        })
    }
}

pub fn insert(conn: &mut DbConnection, row: &EmailChallengeRow) -> Result<()> {
    diesel::insert_into(e::email_challenges).values(row).execute(conn)?;
    Ok(())
}

pub fn by_token_part1(conn: &mut DbConnection, token_part1: &str) -> Result<Option<EmailChallengeRow>> {
    Ok(e::email_challenges
        .filter(e::token_part1.eq(token_part1))
        .select(EmailChallengeRow::as_select())
        .get_result(conn)
        .optional()?)
}

/// Locks a challenge mail's row for the rest of the write transaction (`lock_row`). The
/// client's request for validation and the reply each take it before they read the challenge,
/// so that on PostgreSQL they take turns: a reply that read the challenge pending while the
/// request moved it to processing would otherwise be stored for a request that had already
/// looked for it, and the challenge would stay processing.
pub fn lock(conn: &mut DbConnection, challenge_id: &str) -> Result<()> {
    super::lock_row(conn, "SELECT 1 FROM email_challenges WHERE challenge_id = ? FOR UPDATE", challenge_id)
}

pub fn by_challenge(conn: &mut DbConnection, challenge_id: &str) -> Result<Option<EmailChallengeRow>> {
    Ok(e::email_challenges
        .filter(e::challenge_id.eq(challenge_id))
        .select(EmailChallengeRow::as_select())
        .get_result(conn)
        .optional()?)
}

/// Records a reply's outcome. A correct reply, once recorded, is never replaced: a later
/// wrong one cannot undo it.
pub fn record_reply(
    conn: &mut DbConnection,
    challenge_id: &str,
    at: i64,
    outcome: &std::result::Result<(), StoredProblem>,
) -> Result<bool> {
    let error = outcome.as_ref().err().map(problem_to_text);
    let not_yet_correct = e::reply_at.is_null().or(e::reply_error.is_not_null());
    let n = diesel::update(e::email_challenges.filter(e::challenge_id.eq(challenge_id)).filter(not_yet_correct))
        .set((e::reply_at.eq(Some(at)), e::reply_error.eq(error)))
        .execute(conn)?;
    Ok(n == 1)
}
