//! Help-desk recoveries of people. Status changes are compare-and-set from `pending`, so two
//! operators (or processes) approving or cancelling at once cannot both succeed.

use diesel::prelude::*;

use super::DbConnection;
use crate::model::{Recovery, RecoveryStatus, RevocationReason};
use crate::{Error, Result};

diesel::table! {
    recoveries (id) {
        id -> Text,
        person_id -> Text,
        requested_by -> Text,
        approved_by -> Nullable<Text>,
        cancelled_by -> Nullable<Text>,
        reason -> Text,
        method -> Text,
        evidence -> Text,
        high_assurance -> Bool,
        status -> Text,
        enrollment_token_hash -> Nullable<Text>,
        created_at -> BigInt,
        completed_at -> Nullable<BigInt>,
        cancelled_at -> Nullable<BigInt>,
    }
}

use recoveries::dsl as r;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = recoveries)]
#[diesel(treat_none_as_default_value = false)]
pub struct RecoveryRow {
    pub id: String,
    pub person_id: String,
    pub requested_by: String,
    pub approved_by: Option<String>,
    pub cancelled_by: Option<String>,
    pub reason: String,
    pub method: String,
    pub evidence: String,
    pub high_assurance: bool,
    pub status: String,
    pub enrollment_token_hash: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub cancelled_at: Option<i64>,
}

impl TryFrom<RecoveryRow> for Recovery {
    type Error = Error;
    fn try_from(row: RecoveryRow) -> Result<Recovery> {
        let bad = |w: &str| Error::internal(format!("stored recovery {} has an invalid {w}", row.id));
        Ok(Recovery {
            reason: RevocationReason::parse(&row.reason).ok_or_else(|| bad("reason"))?,
            status: RecoveryStatus::parse(&row.status).ok_or_else(|| bad("status"))?,
            id: row.id,
            person_id: row.person_id,
            requested_by: row.requested_by,
            approved_by: row.approved_by,
            cancelled_by: row.cancelled_by,
            method: row.method,
            evidence: row.evidence,
            high_assurance: row.high_assurance,
            created_at: row.created_at,
            completed_at: row.completed_at,
            cancelled_at: row.cancelled_at,
        })
    }
}

/// Inserts a recovery. A second pending recovery of the same person, written by another process
/// between the caller's check and this insert, hits `recoveries_one_pending` and is a conflict.
pub fn insert(conn: &mut DbConnection, row: &RecoveryRow) -> Result<()> {
    super::unless_duplicate(diesel::insert_into(r::recoveries).values(row).execute(conn))?
        .map(drop)
        .ok_or_else(|| Error::conflict("another recovery of this person is already waiting for approval"))
}

pub fn by_id(conn: &mut DbConnection, id: &str) -> Result<Option<Recovery>> {
    r::recoveries
        .filter(r::id.eq(id))
        .select(RecoveryRow::as_select())
        .get_result(conn)
        .optional()?
        .map(Recovery::try_from)
        .transpose()
}

/// A person's recoveries, newest first.
pub fn for_person(conn: &mut DbConnection, person_id: &str) -> Result<Vec<Recovery>> {
    r::recoveries
        .filter(r::person_id.eq(person_id))
        .order((r::created_at.desc(), r::id.desc()))
        .select(RecoveryRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Recovery::try_from)
        .collect()
}

/// The recovery of a person that is waiting for approval, expired or not.
pub fn pending_for_person(conn: &mut DbConnection, person_id: &str) -> Result<Option<Recovery>> {
    r::recoveries
        .filter(r::person_id.eq(person_id))
        .filter(r::status.eq(RecoveryStatus::Pending.as_str()))
        .select(RecoveryRow::as_select())
        .get_result(conn)
        .optional()?
        .map(Recovery::try_from)
        .transpose()
}

/// The recovery that mailed the enrollment link with this token hash, if one did.
pub fn by_enrollment(conn: &mut DbConnection, token_hash: &str) -> Result<Option<Recovery>> {
    r::recoveries
        .filter(r::enrollment_token_hash.eq(token_hash))
        .select(RecoveryRow::as_select())
        .get_result(conn)
        .optional()?
        .map(Recovery::try_from)
        .transpose()
}

/// Pending → completed, recording the approver (if any) and the enrollment link it mailed.
/// False when the recovery was no longer pending.
pub fn mark_completed(
    conn: &mut DbConnection,
    id: &str,
    approved_by: Option<&str>,
    enrollment_token_hash: &str,
    now: i64,
) -> Result<bool> {
    Ok(diesel::update(r::recoveries.filter(r::id.eq(id)).filter(r::status.eq(RecoveryStatus::Pending.as_str())))
        .set((
            r::status.eq(RecoveryStatus::Completed.as_str()),
            r::approved_by.eq(approved_by),
            r::enrollment_token_hash.eq(Some(enrollment_token_hash)),
            r::completed_at.eq(Some(now)),
        ))
        .execute(conn)?
        == 1)
}

/// Pending → cancelled. False when the recovery was no longer pending.
pub fn mark_cancelled(conn: &mut DbConnection, id: &str, by: &str, now: i64) -> Result<bool> {
    Ok(diesel::update(r::recoveries.filter(r::id.eq(id)).filter(r::status.eq(RecoveryStatus::Pending.as_str())))
        .set((
            r::status.eq(RecoveryStatus::Cancelled.as_str()),
            r::cancelled_by.eq(Some(by)),
            r::cancelled_at.eq(Some(now)),
        ))
        .execute(conn)?
        == 1)
}
