//! People, proofing events and enrollments.

use diesel::prelude::*;

use super::DbConnection;
use crate::model::{Person, PersonStatus, ProofingLevel};
use crate::{Error, Result};

diesel::table! {
    people (id) {
        id -> Text,
        email -> Text,
        display_name -> Text,
        employee_id -> Text,
        manager_email -> Text,
        status -> Text,
        proofing_level -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        left_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    proofing_events (id) {
        id -> Text,
        person_id -> Text,
        level -> Text,
        method -> Text,
        evidence -> Text,
        operator -> Text,
        at -> BigInt,
    }
}

diesel::table! {
    enrollments (token_hash) {
        token_hash -> Text,
        person_id -> Text,
        code_hash -> Text,
        attempts -> BigInt,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        grants_level -> Text,
    }
}

use enrollments::dsl as en;
use people::dsl as p;
use proofing_events::dsl as pe;

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = people)]
#[diesel(treat_none_as_default_value = false)]
pub struct PersonRow {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub employee_id: String,
    pub manager_email: String,
    pub status: String,
    pub proofing_level: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub left_at: Option<i64>,
}

impl TryFrom<PersonRow> for Person {
    type Error = Error;
    fn try_from(r: PersonRow) -> Result<Person> {
        let bad = |w: &str| Error::internal(format!("stored person {w} is not valid"));
        Ok(Person {
            status: PersonStatus::parse(&r.status).ok_or_else(|| bad("status"))?,
            proofing_level: ProofingLevel::parse(&r.proofing_level).ok_or_else(|| bad("proofing level"))?,
            id: r.id,
            email: r.email,
            display_name: r.display_name,
            employee_id: r.employee_id,
            manager_email: r.manager_email,
            created_at: r.created_at,
            updated_at: r.updated_at,
            left_at: r.left_at,
        })
    }
}

/// Inserts a person. An address or employee id another person holds is a conflict: the
/// services check for one first, and this catches the one another transaction wrote meanwhile.
pub fn insert(conn: &mut DbConnection, row: &PersonRow) -> Result<()> {
    super::unless_duplicate(diesel::insert_into(p::people).values(row).execute(conn))?
        .map(drop)
        .ok_or_else(|| already_registered(row))
}

/// Writes a person back whole; a conflict, as for `insert`, when the address or employee id
/// became another person's meanwhile.
pub fn update(conn: &mut DbConnection, row: &PersonRow) -> Result<()> {
    super::unless_duplicate(diesel::update(p::people.filter(p::id.eq(&row.id))).set(row).execute(conn))?
        .map(drop)
        .ok_or_else(|| already_registered(row))
}

fn already_registered(row: &PersonRow) -> Error {
    Error::conflict(format!("{} or employee id {} is already registered to another person", row.email, row.employee_id))
}

fn one(conn: &mut DbConnection, q: people::BoxedQuery<'_, super::connection::MultiBackend>) -> Result<Option<Person>> {
    q.select(PersonRow::as_select()).get_result(conn).optional()?.map(Person::try_from).transpose()
}

pub fn by_email(conn: &mut DbConnection, email: &str) -> Result<Option<Person>> {
    one(conn, p::people.filter(p::email.eq(email.to_string())).into_boxed())
}

pub fn by_id(conn: &mut DbConnection, id: &str) -> Result<Option<Person>> {
    one(conn, p::people.filter(p::id.eq(id.to_string())).into_boxed())
}

pub fn by_employee_id(conn: &mut DbConnection, employee_id: &str) -> Result<Option<Person>> {
    one(conn, p::people.filter(p::employee_id.eq(employee_id.to_string())).into_boxed())
}

pub fn list(conn: &mut DbConnection, status: Option<PersonStatus>) -> Result<Vec<Person>> {
    let mut q = p::people.into_boxed();
    if let Some(s) = status {
        q = q.filter(p::status.eq(s.as_str()));
    }
    q.order(p::email.asc()).select(PersonRow::as_select()).load(conn)?.into_iter().map(Person::try_from).collect()
}

pub fn add_proofing(
    conn: &mut DbConnection,
    person_id: &str,
    level: ProofingLevel,
    method: &str,
    evidence: &str,
    operator: &str,
    at: i64,
) -> Result<()> {
    diesel::insert_into(pe::proofing_events)
        .values((
            pe::id.eq(crate::ids::new_id()),
            pe::person_id.eq(person_id),
            pe::level.eq(level.as_str()),
            pe::method.eq(method),
            pe::evidence.eq(evidence),
            pe::operator.eq(operator),
            pe::at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

/// A proofing event: (level, method, evidence, operator, at).
pub type ProofingRecord = (String, String, String, String, i64);

/// An enrollment: (person_id, code_hash, attempts, expires_at, used_at, grants_level).
pub type EnrollmentRecord = (String, String, i64, i64, Option<i64>, String);

/// A person's proofing events, oldest first.
pub fn proofing_history(conn: &mut DbConnection, person_id: &str) -> Result<Vec<ProofingRecord>> {
    Ok(pe::proofing_events
        .filter(pe::person_id.eq(person_id))
        .order(pe::at.asc())
        .select((pe::level, pe::method, pe::evidence, pe::operator, pe::at))
        .load(conn)?)
}

pub fn insert_enrollment(
    conn: &mut DbConnection,
    token_hash: &str,
    person_id: &str,
    code_hash: &str,
    grants: ProofingLevel,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    diesel::insert_into(en::enrollments)
        .values((
            en::token_hash.eq(token_hash),
            en::person_id.eq(person_id),
            en::code_hash.eq(code_hash),
            en::attempts.eq(0i64),
            en::created_at.eq(now),
            en::expires_at.eq(expires_at),
            en::grants_level.eq(grants.as_str()),
        ))
        .execute(conn)?;
    Ok(())
}

/// (person_id, code_hash, attempts, expires_at, used_at, grants_level)
pub fn enrollment(conn: &mut DbConnection, token_hash: &str) -> Result<Option<EnrollmentRecord>> {
    Ok(en::enrollments
        .filter(en::token_hash.eq(token_hash))
        .select((en::person_id, en::code_hash, en::attempts, en::expires_at, en::used_at, en::grants_level))
        .get_result(conn)
        .optional()?)
}

/// Takes one of an enrollment link's tries, while fewer than `limit` were taken: false when
/// none is left (another try took the last one since the caller read the count).
pub fn take_attempt(conn: &mut DbConnection, token_hash: &str, limit: i64) -> Result<bool> {
    let taken = diesel::update(en::enrollments.filter(en::token_hash.eq(token_hash)).filter(en::attempts.lt(limit)))
        .set(en::attempts.eq(en::attempts + 1))
        .execute(conn)?;
    Ok(taken == 1)
}

/// Locks a person's row for the rest of the write transaction (`lock_row`), by id or by
/// address, before the transaction reads the person to write them back: a move racing a leave,
/// say, would otherwise make a leaver active again.
pub fn lock_by_id(conn: &mut DbConnection, id: &str) -> Result<()> {
    super::lock_row(conn, "SELECT 1 FROM people WHERE id = ? FOR UPDATE", id)
}

pub fn lock_by_email(conn: &mut DbConnection, email: &str) -> Result<()> {
    super::lock_row(conn, "SELECT 1 FROM people WHERE email = ? FOR UPDATE", email)
}

pub fn mark_enrollment_used(conn: &mut DbConnection, token_hash: &str, now: i64) -> Result<bool> {
    Ok(diesel::update(en::enrollments.filter(en::token_hash.eq(token_hash)).filter(en::used_at.is_null()))
        .set(en::used_at.eq(Some(now)))
        .execute(conn)?
        == 1)
}

/// Closes every open enrollment of a person (a leaver's link, or the link a recovery replaces,
/// must not work).
pub fn close_enrollments(conn: &mut DbConnection, person_id: &str, now: i64) -> Result<()> {
    diesel::update(en::enrollments.filter(en::person_id.eq(person_id)).filter(en::used_at.is_null()))
        .set(en::used_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}

/// A person's status and address, read inside the write transaction that is about to issue
/// to them (`fixed::row_for_issuance`), so that issuance and a leaver's or mover's change take
/// turns; and by a newAccount with one of the person's EAB keys (`verify_eab`), so that a
/// leave's sweep deactivates an account made before it.
pub fn standing_for_issuance(conn: &mut DbConnection, id: &str) -> Result<Option<(PersonStatus, String)>> {
    #[derive(QueryableByName)]
    struct Standing {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        email: String,
    }
    let found: Option<Standing> = super::fixed::row_for_issuance(
        conn,
        "SELECT status, email FROM people WHERE id = ? FOR SHARE",
        "SELECT status, email FROM people WHERE id = ?",
        id,
    )?;
    found
        .map(|row| {
            PersonStatus::parse(&row.status)
                .map(|status| (status, row.email))
                .ok_or_else(|| Error::internal(format!("person status {:?}", row.status)))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    use super::*;

    use crate::storage::testing::person_row as person;

    /// A link's tries are taken one by one up to the limit, and not past it.
    #[test]
    fn an_enrollment_links_tries_run_out() {
        for storage in crate::storage::testing::storages() {
            storage
                .write(|conn| {
                    insert(conn, &person("p2", "p2@example.test", PersonStatus::Invited))?;
                    insert_enrollment(conn, "link", "p2", "code-hash", ProofingLevel::Email, 1, 100)
                })
                .unwrap();
            let take = || storage.write(|conn| take_attempt(conn, "link", 3)).unwrap();
            assert!(take() && take() && take());
            assert!(!take(), "three tries, no fourth");
            let (_, _, attempts, _, _, _) = storage.read(|conn| enrollment(conn, "link")).unwrap().unwrap();
            assert_eq!(attempts, 3);
        }
    }

    /// A change that locks the person's row before reading it (`lock_by_email`, `lock_by_id`)
    /// waits for a change under way and then reads what that change committed, so it cannot
    /// write back what it read before it (here, a move reading the person while a leave is
    /// under way sees the leave, where an unlocked read saw the person still active).
    #[test]
    fn a_locked_person_is_read_after_the_change_under_way() {
        for storage in crate::storage::testing::storages() {
            storage.write(|conn| insert(conn, &person("p1", "p1@example.test", PersonStatus::Active))).unwrap();
            assert!(storage.write(|conn| lock_by_email(conn, "p1@example.test")).is_ok());
            assert!(storage.write(|conn| lock_by_id(conn, "nobody")).is_ok(), "no row, nothing to lock");
            let Some(url) = &storage.postgres_url else { continue };
            let mut leave = diesel::PgConnection::establish(url).unwrap();
            leave.batch_execute("BEGIN; UPDATE people SET status = 'left', left_at = 5 WHERE id = 'p1'").unwrap();
            std::thread::scope(|scope| {
                let locked = scope.spawn(|| {
                    storage.write(|conn| {
                        lock_by_email(conn, "p1@example.test")?;
                        Ok(by_email(conn, "p1@example.test")?.map(|p| p.status))
                    })
                });
                let unlocked = storage.write(|conn| Ok(by_email(conn, "p1@example.test")?.map(|p| p.status))).unwrap();
                assert_eq!(unlocked, Some(PersonStatus::Active), "a plain read does not wait");
                std::thread::sleep(std::time::Duration::from_millis(200));
                assert!(!locked.is_finished(), "the lock waits for the leave under way");
                leave.batch_execute("COMMIT").unwrap();
                assert_eq!(locked.join().unwrap().unwrap(), Some(PersonStatus::Left));
            });
        }
    }
}
