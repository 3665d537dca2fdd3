//! Orders, their authorizations and challenges.

use diesel::prelude::*;

use super::audit::{pg_audit_append, Appended, PgAppend};
use super::rows::{problem_to_text, AuthorizationRow, ChallengeRow, OrderRow};
use super::schema::{authorizations::dsl as z, challenges::dsl as c, orders::dsl as o};
use super::{Bind, DbConnection, Fixed};
use crate::audit::AuditEvent;
use crate::model::*;
use crate::{Result, Track};

pub fn insert_order(conn: &mut DbConnection, row: &OrderRow) -> Result<()> {
    on_backend!(conn, |c| diesel::insert_into(o::orders).values(row).execute(c))?;
    Ok(())
}

pub fn insert_authorization(conn: &mut DbConnection, row: &AuthorizationRow) -> Result<()> {
    on_backend!(conn, |c| diesel::insert_into(z::authorizations).values(row).execute(c))?;
    Ok(())
}

/// An authorization's challenges in one statement. The row counts an authorization has (two
/// for an IP address, three for a DNS name) go in as fixed-size arrays, whose INSERT diesel
/// caches like a single row's; on PostgreSQL each statement saved is a round trip.
pub fn insert_challenges(conn: &mut DbConnection, rows: &[ChallengeRow]) -> Result<()> {
    match rows {
        [a, b] => {
            on_backend!(conn, |db| diesel::insert_into(c::challenges).values([a.clone(), b.clone()]).execute(db))?
        }
        [a, b, c3] => on_backend!(conn, |db| diesel::insert_into(c::challenges)
            .values([a.clone(), b.clone(), c3.clone()])
            .execute(db))?,
        _ => {
            for row in rows {
                on_backend!(conn, |db| diesel::insert_into(c::challenges).values(row).execute(db))?;
            }
            rows.len()
        }
    };
    Ok(())
}

/// An order with its authorizations, in order, without their challenges (`challenges` is
/// empty), in one query (the order's row comes once per authorization). `order_challenges` adds
/// the challenges.
pub fn order_with_authorizations(
    conn: &mut DbConnection,
    track: Track,
    id: &str,
) -> Result<Option<(Order, Vec<Authorization>)>> {
    let rows: Vec<(OrderRow, Option<AuthorizationRow>)> = on_backend!(conn, |db| o::orders
        .left_join(z::authorizations.on(z::order_id.eq(o::id)))
        .filter(o::id.eq(id))
        .filter(o::track.eq(track.as_str()))
        .order(z::position.asc())
        .select((OrderRow::as_select(), Option::<AuthorizationRow>::as_select()))
        .load(db))?;
    let Some((row, authorizations)) = super::parent_with_children(rows) else {
        return Ok(None);
    };
    let authorizations = authorizations.into_iter().map(|r| r.into_domain(Vec::new())).collect::<Result<Vec<_>>>()?;
    let ids = authorizations.iter().map(|a| a.id.clone()).collect();
    Ok(Some((row.into_domain(ids)?, authorizations)))
}

/// Fills in the challenges of an order's authorizations (from `order_with_authorizations`), in
/// one query.
pub fn order_challenges(conn: &mut DbConnection, order_id: &str, authorizations: &mut [Authorization]) -> Result<()> {
    let challenge_rows: Vec<ChallengeRow> = on_backend!(conn, |db| c::challenges
        .inner_join(z::authorizations.on(z::id.eq(c::authorization_id)))
        .filter(z::order_id.eq(order_id))
        .order((c::authorization_id.asc(), c::position.asc()))
        .select(ChallengeRow::as_select())
        .load(db))?;
    let mut by_authorization: std::collections::HashMap<String, Vec<Challenge>> = std::collections::HashMap::new();
    for row in challenge_rows {
        let authorization = row.authorization_id.clone();
        by_authorization.entry(authorization).or_default().push(row.into_domain()?);
    }
    for authz in authorizations {
        authz.challenges = by_authorization.remove(&authz.id).unwrap_or_default();
    }
    Ok(())
}

/// The authorization with its challenges, in one query (the authorization's row comes once per
/// challenge): clients poll authorizations.
pub fn authorization(conn: &mut DbConnection, track: Track, id: &str) -> Result<Option<Authorization>> {
    let rows: Vec<(AuthorizationRow, Option<ChallengeRow>)> = on_backend!(conn, |db| z::authorizations
        .left_join(c::challenges.on(c::authorization_id.eq(z::id)))
        .filter(z::id.eq(id))
        .filter(z::track.eq(track.as_str()))
        .order(c::position.asc())
        .select((AuthorizationRow::as_select(), Option::<ChallengeRow>::as_select()))
        .load(db))?;
    let Some((row, challenges)) = super::parent_with_children(rows) else {
        return Ok(None);
    };
    let challenges = challenges.into_iter().map(ChallengeRow::into_domain).collect::<Result<Vec<_>>>()?;
    row.into_domain(challenges).map(Some)
}

/// A challenge with its authorization (whose `challenges` is empty), in one query: what
/// answering or settling a challenge needs is the authorization's owner, status and identifier.
/// The track filter sits on the authorization, so a challenge of the other track is not found.
pub fn challenge_with_authorization(
    conn: &mut DbConnection,
    track: Track,
    id: &str,
) -> Result<Option<(Challenge, Authorization)>> {
    let row: Option<(ChallengeRow, AuthorizationRow)> = on_backend!(conn, |db| c::challenges
        .inner_join(z::authorizations.on(z::id.eq(c::authorization_id)))
        .filter(c::id.eq(id))
        .filter(z::track.eq(track.as_str()))
        .select((ChallengeRow::as_select(), AuthorizationRow::as_select()))
        .get_result(db)
        .optional())?;
    row.map(|(challenge, authz)| Ok((challenge.into_domain()?, authz.into_domain(Vec::new())?))).transpose()
}

pub fn challenge(conn: &mut DbConnection, id: &str) -> Result<Option<Challenge>> {
    on_backend!(conn, |db| c::challenges
        .filter(c::id.eq(id))
        .select(ChallengeRow::as_select())
        .get_result(db)
        .optional())?
    .map(ChallengeRow::into_domain)
    .transpose()
}

/// A page of an account's order ids, oldest first, after the cursor (`created_micros`, `id`).
pub fn order_ids_page(
    conn: &mut DbConnection,
    account_id: &str,
    after: Option<(i64, String)>,
    limit: usize,
) -> Result<Vec<(i64, String)>> {
    let mut query = o::orders.filter(o::account_id.eq(account_id)).into_boxed();
    if let Some((at, id)) = after {
        query = query.filter(o::created_micros.gt(at).or(o::created_micros.eq(at).and(o::id.gt(id))));
    }
    Ok(query
        .order((o::created_micros.asc(), o::id.asc()))
        .select((o::created_micros, o::id))
        .limit(limit as i64)
        .load(conn)?)
}

/// Moves an order from `from` to valid with its certificate. Returns false when the order was
/// no longer in `from` (a concurrent finalize won).
pub fn set_order_valid(conn: &mut DbConnection, id: &str, from: OrderStatus, serial: &str) -> Result<bool> {
    let update = Fixed::new(
        "UPDATE orders SET status = ?, certificate_serial = ? WHERE id = ? AND status = ?",
        vec![Bind::Text(OrderStatus::Valid.as_str()), Bind::Text(serial), Bind::Text(id), Bind::Text(from.as_str())],
    );
    let n = on_backend!(conn, |db| update.execute(db))?;
    Ok(n == 1)
}

pub fn set_authorization_status(conn: &mut DbConnection, id: &str, status: AuthzStatus) -> Result<()> {
    let update = Fixed::new(
        "UPDATE authorizations SET status = ? WHERE id = ?",
        vec![Bind::Text(status.as_str()), Bind::Text(id)],
    );
    on_backend!(conn, |db| update.execute(db))?;
    Ok(())
}

/// An authorization's move to `status` on its challenge's outcome, only while it is still
/// pending and unexpired: one the client deactivated, or that expired, meanwhile keeps that
/// state.
pub fn settle_authorization(conn: &mut DbConnection, id: &str, status: AuthzStatus, now: i64) -> Result<()> {
    let update = Fixed::new(
        "UPDATE authorizations SET status = ? WHERE id = ? AND status = ? AND expires > ?",
        vec![Bind::Text(status.as_str()), Bind::Text(id), Bind::Text(AuthzStatus::Pending.as_str()), Bind::BigInt(now)],
    );
    on_backend!(conn, |db| update.execute(db))?;
    Ok(())
}

/// Compare-and-set on a challenge's status; false when it was in none of `from` (one or two
/// states).
pub fn transition_challenge(
    conn: &mut DbConnection,
    id: &str,
    from: &[ChallengeStatus],
    to: ChallengeStatus,
    validated: Option<i64>,
    error: Option<&StoredProblem>,
) -> Result<bool> {
    let error = error.map(problem_to_text);
    let mut binds = vec![
        Bind::Text(to.as_str()),
        Bind::NullableBigInt(validated),
        Bind::NullableText(error.as_deref()),
        Bind::Text(id),
    ];
    binds.extend(from.iter().map(|status| Bind::Text(status.as_str())));
    let sql = match from.len() {
        1 => "UPDATE challenges SET status = ?, validated = ?, error = ? WHERE id = ? AND status = ?",
        2 => "UPDATE challenges SET status = ?, validated = ?, error = ? WHERE id = ? AND status IN (?, ?)",
        n => return Err(crate::Error::internal(format!("a challenge moves from one or two states, not {n}"))),
    };
    let update = Fixed::new(sql, binds);
    let n = on_backend!(conn, |db| update.execute(db))?;
    Ok(n == 1)
}

/// PostgreSQL: a new order, its authorizations and their challenges, and its audit event, as
/// one statement, which commits by itself (`Storage::autocommit`). The transaction that does
/// the same on SQLite takes six statements here (BEGIN, three INSERTs, the append, COMMIT).
/// The authorizations and challenges go in as JSON arrays of rows, whatever their number, so
/// that the statement's text, and its prepared statement, stay the same; the foreign keys
/// between the three are checked at the statement's end, when all of them are in.
pub fn insert_order_in_one_statement(
    pg: &mut diesel::PgConnection,
    order: &OrderRow,
    authorizations: &[AuthorizationRow],
    challenges: &[ChallengeRow],
    event: &AuditEvent,
) -> Result<()> {
    // Strings, integers, booleans and nulls: serializing them cannot fail.
    let authorizations = serde_json::to_string(authorizations).expect("rows serialize");
    let challenges = serde_json::to_string(challenges).expect("rows serialize");
    let details = event.details_text();
    let append = PgAppend::of(event, &details);
    let mut binds = vec![
        Bind::Text(&order.id),
        Bind::Text(&order.track),
        Bind::Text(&order.account_id),
        Bind::Text(&order.status),
        Bind::Text(&order.identifiers),
        Bind::Text(&order.profile),
        Bind::BigInt(order.expires),
        Bind::NullableText(order.error.as_deref()),
        Bind::NullableText(order.certificate_serial.as_deref()),
        Bind::NullableText(order.replaces.as_deref()),
        Bind::BigInt(order.created_at),
        Bind::BigInt(order.created_micros),
        Bind::Text(&authorizations),
        Bind::Text(&challenges),
    ];
    binds.extend(append.binds(event));
    let insert = Fixed::new(
        concat!(
            "WITH new_order AS (INSERT INTO orders (id, track, account_id, status, identifiers, profile, ",
            "expires, error, certificate_serial, replaces, created_at, created_micros) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)), ",
            "new_authorizations AS (INSERT INTO authorizations (id, track, account_id, order_id, ",
            "identifier_type, identifier_value, wildcard, status, expires, position, created_at) ",
            "SELECT id, track, account_id, order_id, identifier_type, identifier_value, wildcard, status, ",
            "expires, position, created_at FROM json_to_recordset(CAST(? AS json)) AS r(id TEXT, track TEXT, ",
            "account_id TEXT, order_id TEXT, identifier_type TEXT, identifier_value TEXT, wildcard BOOLEAN, ",
            "status TEXT, expires BIGINT, position BIGINT, created_at BIGINT)), ",
            "new_challenges AS (INSERT INTO challenges (id, authorization_id, kind, token, status, validated, ",
            "error, position) SELECT id, authorization_id, kind, token, status, validated, error, position ",
            "FROM json_to_recordset(CAST(? AS json)) AS r(id TEXT, authorization_id TEXT, kind TEXT, ",
            "token TEXT, status TEXT, validated BIGINT, error TEXT, position BIGINT)) ",
            "SELECT ",
            pg_audit_append!(),
            " AS seq"
        ),
        binds,
    );
    let _: Appended = insert.get_result(pg)?;
    Ok(())
}

/// PostgreSQL: a network validation's outcome as one statement, which commits by itself
/// (`Storage::autocommit`): the challenge's compare-and-set from one of `from`, its
/// authorization's move to `authz_status` while it is still pending and unexpired (one that
/// expired or was deactivated meanwhile keeps that state), and `event` appended to the audit
/// chain, the last two only when the first changed a row. What a write transaction does in
/// six statements (BEGIN, the two UPDATEs, the append, COMMIT, and the read before) takes
/// this one and a read. The challenge moves to `to`, with `validated` and `error`. Returns
/// whether this outcome settled the challenge.
pub fn settle_network_challenge(
    pg: &mut diesel::PgConnection,
    id: &str,
    from: [ChallengeStatus; 2],
    (to, validated, error): (ChallengeStatus, Option<i64>, Option<&StoredProblem>),
    authz_status: AuthzStatus,
    now: i64,
    event: &AuditEvent,
) -> Result<bool> {
    let error = error.map(problem_to_text);
    let details = event.details_text();
    let append = PgAppend::of(event, &details);
    let mut binds = vec![
        Bind::Text(to.as_str()),
        Bind::NullableBigInt(validated),
        Bind::NullableText(error.as_deref()),
        Bind::Text(id),
        Bind::Text(from[0].as_str()),
        Bind::Text(from[1].as_str()),
        Bind::Text(authz_status.as_str()),
        Bind::Text(AuthzStatus::Pending.as_str()),
        Bind::BigInt(now),
    ];
    binds.extend(append.binds(event));
    // Every part of a statement sees the same snapshot, and a data-modifying WITH runs once
    // whether or not the SELECT reads it; the append runs once per row `settled` returns.
    let settle = Fixed::new(
        concat!(
            "WITH settled AS (UPDATE challenges SET status = ?, validated = ?, error = ? ",
            "WHERE id = ? AND status IN (?, ?) RETURNING authorization_id), ",
            "authorized AS (UPDATE authorizations SET status = ? ",
            "WHERE id = (SELECT authorization_id FROM settled) AND status = ? AND expires > ?) ",
            "SELECT ",
            pg_audit_append!(),
            " AS seq FROM settled"
        ),
        binds,
    );
    let appended: Vec<Appended> = settle.load(pg)?;
    Ok(!appended.is_empty())
}

/// Valid, unexpired authorizations an account holds for an identifier value; used to decide
/// whether an account may revoke a certificate it did not order.
pub fn holds_valid_authorization(
    conn: &mut DbConnection,
    account_id: &str,
    kind: IdentifierKind,
    value: &str,
    now: i64,
) -> Result<bool> {
    let n: i64 = z::authorizations
        .filter(z::account_id.eq(account_id))
        .filter(z::identifier_type.eq(kind.as_str()))
        .filter(z::identifier_value.eq(value))
        .filter(z::status.eq(AuthzStatus::Valid.as_str()))
        .filter(z::expires.gt(now))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Deletes at most `limit` of the orders that expired before `cutoff`, oldest first, with their
/// authorizations, challenges and RFC 8823 challenge rows. A certificate such an order issued
/// keeps its row, less the link to the order. Returns how many orders went.
pub fn purge_expired(conn: &mut DbConnection, cutoff: i64, limit: i64) -> Result<usize> {
    use super::email_challenges::email_challenges::dsl as e;
    use super::schema::certificates::dsl as cert;
    let orders: Vec<String> = on_backend!(conn, |db| o::orders
        .filter(o::expires.lt(cutoff))
        .order(o::expires.asc())
        .limit(limit)
        .select(o::id)
        .load(db))?;
    if orders.is_empty() {
        return Ok(0);
    }
    let authorizations: Vec<String> =
        on_backend!(conn, |db| z::authorizations.filter(z::order_id.eq_any(&orders)).select(z::id).load(db))?;
    let challenges: Vec<String> = on_backend!(conn, |db| c::challenges
        .filter(c::authorization_id.eq_any(&authorizations))
        .select(c::id)
        .load(db))?;
    on_backend!(conn, |db| diesel::delete(e::email_challenges.filter(e::challenge_id.eq_any(&challenges)))
        .execute(db))?;
    on_backend!(conn, |db| diesel::delete(c::challenges.filter(c::id.eq_any(&challenges))).execute(db))?;
    on_backend!(conn, |db| diesel::delete(z::authorizations.filter(z::id.eq_any(&authorizations))).execute(db))?;
    on_backend!(conn, |db| diesel::update(cert::certificates.filter(cert::order_id.eq_any(&orders)))
        .set(cert::order_id.eq(None::<String>))
        .execute(db))?;
    Ok(on_backend!(conn, |db| diesel::delete(o::orders.filter(o::id.eq_any(&orders))).execute(db))?)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    use super::*;
    use crate::audit::{verify, ChainCheck};

    const NOW: i64 = 1_765_000_000;
    const UNSETTLED: [ChallengeStatus; 2] = [ChallengeStatus::Pending, ChallengeStatus::Processing];

    fn event(challenge: &str, action: &str) -> AuditEvent {
        AuditEvent::new(
            Track::Machine,
            NOW,
            "system",
            action,
            format!("challenge:{challenge}"),
            serde_json::json!({"identifier": "dns:a.example", "type": "http-01"}),
        )
    }

    /// The one-statement settlement on PostgreSQL: it settles a challenge once, moves only a
    /// pending, unexpired authorization, appends its event to the chain only when it settled,
    /// and is refused on SQLite, whose writes are transactions.
    #[test]
    fn a_network_outcome_settles_in_one_statement_once() {
        for storage in crate::storage::testing::storages() {
            let Some(url) = &storage.postgres_url else {
                let refused = storage.autocommit(|conn| {
                    settle_network_challenge(
                        conn,
                        "c1",
                        UNSETTLED,
                        (ChallengeStatus::Valid, Some(NOW), None),
                        AuthzStatus::Valid,
                        NOW,
                        &event("c1", "challenge.valid"),
                    )
                });
                assert_eq!(refused.unwrap_err().kind, crate::ErrorKind::Internal);
                continue;
            };
            // Three authorizations: pending, pending but expired, and deactivated; a challenge
            // on each.
            let mut setup = diesel::PgConnection::establish(url).unwrap();
            setup
                .batch_execute(&format!(
                    "INSERT INTO accounts (id, track, key_thumbprint, jwk, status, contact, tos_agreed, created_at, updated_at)
                       VALUES ('a', 'machine', 't', '{{}}', 'valid', '[]', true, 1, 1);
                     INSERT INTO orders (id, track, account_id, status, identifiers, profile, expires, created_at, created_micros)
                       VALUES ('o', 'machine', 'a', 'pending', '[]', 'p', {later}, 1, 1);
                     INSERT INTO authorizations (id, track, account_id, order_id, identifier_type, identifier_value, wildcard, status, expires, position, created_at)
                       VALUES ('z1', 'machine', 'a', 'o', 'dns', 'a.example', false, 'pending', {later}, 0, 1),
                              ('z2', 'machine', 'a', 'o', 'dns', 'b.example', false, 'pending', {NOW}, 1, 1),
                              ('z3', 'machine', 'a', 'o', 'dns', 'c.example', false, 'deactivated', {later}, 2, 1);
                     INSERT INTO challenges (id, authorization_id, kind, token, status, position)
                       VALUES ('c1', 'z1', 'http-01', 't1', 'pending', 0),
                              ('c2', 'z2', 'http-01', 't2', 'processing', 0),
                              ('c3', 'z3', 'http-01', 't3', 'pending', 0);",
                    later = NOW + 3600
                ))
                .unwrap();
            let problem = StoredProblem { kind: crate::ErrorKind::IncorrectResponse, detail: "wrong".into() };
            let settle = |id: &str, to: ChallengeStatus, error: Option<&StoredProblem>, authz: AuthzStatus| {
                let validated = error.is_none().then_some(NOW);
                let action = if error.is_none() { "challenge.valid" } else { "challenge.invalid" };
                storage
                    .autocommit(|conn| {
                        settle_network_challenge(
                            conn,
                            id,
                            UNSETTLED,
                            (to, validated, error),
                            authz,
                            NOW,
                            &event(id, action),
                        )
                    })
                    .unwrap()
            };
            let authz_status =
                |id: &str| storage.read(|conn| authorization(conn, Track::Machine, id)).unwrap().unwrap().status;
            let challenge_of = |id: &str| storage.read(|conn| challenge(conn, id)).unwrap().unwrap();
            let events = || match verify(&storage, Track::Machine).unwrap() {
                ChainCheck::Intact { events } => events,
                broken => panic!("the chain broke: {broken:?}"),
            };

            assert!(settle("c1", ChallengeStatus::Valid, None, AuthzStatus::Valid));
            let c1 = challenge_of("c1");
            assert_eq!((c1.status, c1.validated), (ChallengeStatus::Valid, Some(NOW)));
            assert!(c1.error.is_none());
            assert_eq!(authz_status("z1"), AuthzStatus::Valid);
            assert_eq!(events(), 1);
            let head = storage.read(|conn| super::super::audit::head(conn, Track::Machine)).unwrap().unwrap();
            assert_eq!((head.action.as_str(), head.subject.as_str()), ("challenge.valid", "challenge:c1"));

            // A second outcome for the same challenge changes nothing and records nothing.
            assert!(!settle("c1", ChallengeStatus::Invalid, Some(&problem), AuthzStatus::Invalid));
            assert_eq!(challenge_of("c1").status, ChallengeStatus::Valid);
            assert_eq!(authz_status("z1"), AuthzStatus::Valid);
            assert_eq!(events(), 1);

            // An expired authorization keeps its stored state; the challenge still settles, from
            // processing, with its error.
            assert!(settle("c2", ChallengeStatus::Invalid, Some(&problem), AuthzStatus::Invalid));
            let c2 = challenge_of("c2");
            assert_eq!((c2.status, c2.validated), (ChallengeStatus::Invalid, None));
            let error = c2.error.expect("an invalid challenge keeps its error");
            assert_eq!((error.kind, error.detail.as_str()), (crate::ErrorKind::IncorrectResponse, "wrong"));
            let stored: String = diesel::sql_query("SELECT status FROM authorizations WHERE id = 'z2'")
                .get_result::<StatusRow>(&mut setup)
                .unwrap()
                .status;
            assert_eq!(stored, "pending");

            // So does a deactivated one.
            assert!(settle("c3", ChallengeStatus::Valid, None, AuthzStatus::Valid));
            assert_eq!(authz_status("z3"), AuthzStatus::Deactivated);
            assert_eq!(events(), 3);

            // An unknown challenge settles nothing.
            assert!(!settle("nope", ChallengeStatus::Valid, None, AuthzStatus::Valid));
            assert_eq!(events(), 3);
        }
    }

    fn order_rows(order_id: &str) -> (OrderRow, Vec<AuthorizationRow>, Vec<ChallengeRow>) {
        let order = OrderRow {
            id: order_id.into(),
            track: "machine".into(),
            account_id: "a".into(),
            status: "pending".into(),
            identifiers: r#"[["dns","*.b.example"],["ip","192.0.2.7"]]"#.into(),
            profile: "p".into(),
            expires: NOW + 3600,
            error: None,
            certificate_serial: None,
            replaces: Some("aki.serial".into()),
            created_at: NOW,
            created_micros: NOW * 1_000_000,
        };
        let authz = |id: &str, kind: &str, value: &str, wildcard: bool, position: i64| AuthorizationRow {
            id: format!("{order_id}-{id}"),
            track: "machine".into(),
            account_id: "a".into(),
            order_id: order_id.into(),
            identifier_type: kind.into(),
            identifier_value: value.into(),
            wildcard,
            status: "pending".into(),
            expires: NOW + 1800,
            position,
            created_at: NOW,
        };
        let challenge = |id: &str, authz: &str, kind: &str, position: i64| ChallengeRow {
            id: format!("{order_id}-{id}"),
            authorization_id: format!("{order_id}-{authz}"),
            kind: kind.into(),
            token: format!("token-{id}"),
            status: "pending".into(),
            validated: None,
            error: None,
            position,
        };
        (
            order,
            vec![authz("z1", "dns", "b.example", true, 0), authz("z2", "ip", "192.0.2.7", false, 1)],
            vec![
                challenge("c1", "z1", "dns-01", 0),
                challenge("c2", "z2", "http-01", 0),
                challenge("c3", "z2", "tls-alpn-01", 1),
            ],
        )
    }

    /// The one-statement order on PostgreSQL writes the order, every authorization and
    /// challenge and the audit event, as the transaction on SQLite does, reading back the same;
    /// a statement that fails (an id already taken) writes none of them; SQLite refuses it.
    #[test]
    fn a_new_order_goes_in_as_one_statement_or_not_at_all() {
        for storage in crate::storage::testing::storages() {
            let (order, authorizations, challenges) = order_rows("o1");
            let created = event("o1", "order.created");
            let insert = |order: &OrderRow, authorizations: &[AuthorizationRow], challenges: &[ChallengeRow]| {
                storage
                    .autocommit(|conn| insert_order_in_one_statement(conn, order, authorizations, challenges, &created))
            };
            let Some(url) = &storage.postgres_url else {
                let refused = insert(&order, &authorizations, &challenges);
                assert_eq!(refused.unwrap_err().kind, crate::ErrorKind::Internal);
                continue;
            };
            let mut setup = diesel::PgConnection::establish(url).unwrap();
            setup
                .batch_execute(
                    "INSERT INTO accounts (id, track, key_thumbprint, jwk, status, contact, tos_agreed, created_at, updated_at)
                       VALUES ('a', 'machine', 't', '{}', 'valid', '[]', true, 1, 1)",
                )
                .unwrap();
            insert(&order, &authorizations, &challenges).unwrap();

            let (read, mut authzs) =
                storage.read(|conn| order_with_authorizations(conn, Track::Machine, "o1")).unwrap().unwrap();
            storage.read(|conn| order_challenges(conn, "o1", &mut authzs)).unwrap();
            assert_eq!(read.status, OrderStatus::Pending);
            assert_eq!(
                (read.expires, read.created_at, read.replaces.as_deref()),
                (NOW + 3600, NOW, Some("aki.serial"))
            );
            assert_eq!(read.authorization_ids, ["o1-z1", "o1-z2"]);
            assert_eq!(read.identifiers.len(), 2);
            // Per authorization: id, identifier, wildcard, expiry, and (id, type, token) per challenge.
            type Summary = (String, String, bool, i64, Vec<(String, String, String)>);
            let summary: Vec<Summary> = authzs
                .iter()
                .map(|a| {
                    let challenges = a
                        .challenges
                        .iter()
                        .map(|c| (c.id.clone(), c.kind.as_str().to_string(), c.token.clone()))
                        .collect();
                    (a.id.clone(), a.identifier.to_string(), a.wildcard, a.expires, challenges)
                })
                .collect();
            let tokens = |pairs: &[(&str, &str)]| -> Vec<(String, String, String)> {
                pairs.iter().map(|(id, kind)| (format!("o1-{id}"), kind.to_string(), format!("token-{id}"))).collect()
            };
            assert_eq!(
                summary,
                vec![
                    ("o1-z1".into(), "dns:b.example".into(), true, NOW + 1800, tokens(&[("c1", "dns-01")])),
                    (
                        "o1-z2".into(),
                        "ip:192.0.2.7".into(),
                        false,
                        NOW + 1800,
                        tokens(&[("c2", "http-01"), ("c3", "tls-alpn-01")])
                    ),
                ]
            );
            let head = storage.read(|conn| super::super::audit::head(conn, Track::Machine)).unwrap().unwrap();
            assert_eq!((head.seq, head.action.as_str()), (1, "order.created"));

            // A second order that reuses a challenge id fails as a whole: no order, no
            // authorization, no event.
            let (order2, authorizations2, mut challenges2) = order_rows("o2");
            challenges2[2].id = "o1-c3".into();
            let err = insert(&order2, &authorizations2, &challenges2).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::Internal, "{err:?}");
            assert!(storage.read(|conn| order_with_authorizations(conn, Track::Machine, "o2")).unwrap().is_none());
            assert!(storage.read(|conn| authorization(conn, Track::Machine, "o2-z1")).unwrap().is_none());
            assert_eq!(verify(&storage, Track::Machine).unwrap(), ChainCheck::Intact { events: 1 });
        }
    }

    /// A challenge's outcome moves its authorization only while that is pending and unexpired,
    /// whatever the caller read before: deactivated and expired ones keep their state.
    #[test]
    fn an_outcome_moves_only_a_pending_unexpired_authorization() {
        for storage in crate::storage::testing::storages() {
            let (order, mut authorizations, _) = order_rows("o3");
            storage
                .write(|conn| {
                    on_backend!(conn, |c| diesel::sql_query(
                        "INSERT INTO accounts (id, track, key_thumbprint, jwk, status, contact, tos_agreed, created_at, updated_at) \
                         VALUES ('a', 'machine', 't', '{}', 'valid', '[]', true, 1, 1)"
                    )
                    .execute(c))?;
                    insert_order(conn, &order)?;
                    authorizations[1].status = "deactivated".into();
                    for authz in &authorizations {
                        insert_authorization(conn, authz)?;
                    }
                    Ok(())
                })
                .unwrap();
            let settle = |id: &'static str, now: i64| {
                storage.write(move |conn| settle_authorization(conn, id, AuthzStatus::Valid, now)).unwrap()
            };
            let status =
                |id: &str| storage.read(|conn| authorization(conn, Track::Machine, id)).unwrap().unwrap().status;
            settle("o3-z1", NOW + 1800);
            assert_eq!(status("o3-z1"), AuthzStatus::Pending, "an expired one keeps its stored state");
            settle("o3-z2", NOW);
            assert_eq!(status("o3-z2"), AuthzStatus::Deactivated);
            settle("o3-z1", NOW);
            assert_eq!(status("o3-z1"), AuthzStatus::Valid);
        }
    }

    #[derive(diesel::QueryableByName)]
    struct StatusRow {
        #[diesel(sql_type = diesel::sql_types::Text)]
        status: String,
    }
}
