use serde_json::json;

use super::Ca;
use crate::audit;
use crate::model::{Account, AccountStatus};
use crate::storage::{accounts as store, rows::AccountRow};
use crate::{ids, Error, Result, Track};

/// What a newAccount request carries once its JWS has been verified.
pub struct NewAccount {
    /// The account key, canonical JWK JSON.
    pub jwk: String,
    pub thumbprint: String,
    pub contact: Vec<String>,
    pub tos_agreed: bool,
    /// The externalAccountBinding, parsed by the front end and verified here.
    pub eab: Option<super::EabProof>,
}

const MAX_CONTACTS: usize = 10;

/// RFC 8555 §7.3: only `mailto:` contacts, each naming one plain address.
pub fn check_contacts(contacts: &[String]) -> Result<()> {
    if contacts.len() > MAX_CONTACTS {
        return Err(Error::invalid_contact(format!("at most {MAX_CONTACTS} contacts are accepted")));
    }
    for contact in contacts {
        let Some(address) = contact.strip_prefix("mailto:") else {
            return Err(Error::unsupported_contact(format!(
                "contact {contact:?} is not supported: only mailto: URLs are"
            )));
        };
        let bad = || Error::invalid_contact(format!("contact {contact:?} is not a valid email address"));
        if address.contains(['?', ',', ' ', '%']) {
            return Err(bad());
        }
        let (local, domain) = address.rsplit_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if local.is_empty() || local.contains('@') || !domain_ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn account_actor(id: &str) -> String {
    format!("account:{id}")
}

pub(super) fn no_account(track: Track, id: &str) -> Error {
    Error::account_does_not_exist(format!("no account {id:?} on the {track} track"))
}

impl Ca {
    pub fn account(&self, track: Track, id: &str) -> Result<Account> {
        self.storage.read(|conn| store::by_id(conn, track, id))?.ok_or_else(|| no_account(track, id))
    }

    /// The account, read in place when that cannot block (`Storage::read_in_place`); `None`
    /// when the caller must use `account` on a blocking thread instead.
    pub fn account_in_place(&self, track: Track, id: &str) -> Option<Result<Account>> {
        let found = self.storage.read_in_place(|conn| store::by_id(conn, track, id))?;
        Some(found.and_then(|account| account.ok_or_else(|| no_account(track, id))))
    }

    /// The account's key, for verifying its requests; parsed once and kept (`KeyCache`).
    pub fn account_key(&self, account: &Account) -> Result<std::sync::Arc<crate::jwk::PublicJwk>> {
        self.account_keys.get(&account.jwk)
    }

    pub fn account_by_key(&self, track: Track, thumbprint: &str) -> Result<Option<Account>> {
        self.storage.read(|conn| store::by_thumbprint(conn, track, thumbprint))
    }

    /// Creates the account, or returns the existing one for the same key (RFC 8555 §7.3.1)
    /// with `false`.
    pub fn create_account(&self, track: Track, new: NewAccount) -> Result<(Account, bool)> {
        check_contacts(&new.contact)?;
        let policy = self.policy(track);
        if policy.terms_of_service.is_some() && !new.tos_agreed {
            return Err(Error::new(
                crate::ErrorKind::UserActionRequired,
                "the terms of service must be agreed to (termsOfServiceAgreed: true)",
            ));
        }
        if policy.external_account_required && new.eab.is_none() {
            return Err(Error::external_account_required(format!(
                "the {track} track requires an external account binding"
            )));
        }
        let now = self.clock.unix();
        self.storage.write(|conn| {
            if let Some(existing) = store::by_thumbprint(conn, track, &new.thumbprint)? {
                return Ok((existing, false));
            }
            let (asset_id, person_id) = match &new.eab {
                Some(proof) => {
                    let binding = self.verify_eab(conn, track, proof, now)?;
                    (binding.asset_id, binding.person_id)
                }
                None => (None, None),
            };
            let row = AccountRow {
                id: ids::new_id(),
                track: track.as_str().to_string(),
                key_thumbprint: new.thumbprint,
                jwk: new.jwk,
                status: AccountStatus::Valid.as_str().to_string(),
                contact: serde_json::to_string(&new.contact).unwrap_or_else(|_| "[]".into()),
                tos_agreed: new.tos_agreed,
                eab_kid: new.eab.as_ref().map(|p| p.kid.clone()),
                created_at: now,
                updated_at: now,
                asset_id,
                person_id,
            };
            if !store::insert_unless_key_taken(conn, &row)? {
                // On PostgreSQL, another request made an account for this key after the lookup
                // above (a client's retry racing its first try): the INSERT waited for it to
                // commit, and this request answers with that account, as for any existing key.
                let existing = store::by_thumbprint(conn, track, &row.key_thumbprint)?
                    .ok_or_else(|| Error::internal("an account key conflicted, then vanished"))?;
                return Ok((existing, false));
            }
            if let Some(proof) = &new.eab {
                self.consume_eab(conn, proof, now)?;
            }
            audit::record(conn, track,
                    now,
                    account_actor(&row.id),
                    "account.created",
                    account_actor(&row.id),
                    json!({ "key_thumbprint": row.key_thumbprint, "contact": new.contact, "eab_kid": row.eab_kid, "asset_id": row.asset_id }))?;
            Ok((Account::try_from(row)?, true))
        })
    }

    pub fn update_contact(&self, account: &Account, contact: Vec<String>) -> Result<Account> {
        check_contacts(&contact)?;
        let now = self.clock.unix();
        self.storage.write(|conn| {
            store::set_contact(conn, &account.id, &contact, now)?;
            audit::record(
                conn,
                account.track,
                now,
                account_actor(&account.id),
                "account.contact-updated",
                account_actor(&account.id),
                json!({ "contact": contact }),
            )?;
            store::by_id(conn, account.track, &account.id)?.ok_or_else(|| Error::internal("account vanished"))
        })
    }

    /// RFC 8555 §7.3.6. Deactivation is final.
    pub fn deactivate_account(&self, account: &Account) -> Result<Account> {
        let now = self.clock.unix();
        self.storage.write(|conn| {
            store::set_status(conn, &account.id, AccountStatus::Deactivated, now)?;
            audit::record(
                conn,
                account.track,
                now,
                account_actor(&account.id),
                "account.deactivated",
                account_actor(&account.id),
                json!({}),
            )?;
            store::by_id(conn, account.track, &account.id)?.ok_or_else(|| Error::internal("account vanished"))
        })
    }

    /// RFC 8555 §7.3.5. A key already bound to an account of this track is a conflict; the
    /// error names that account so the front end can point at it.
    pub fn change_key(&self, account: &Account, new_jwk: &str, new_thumbprint: &str) -> Result<Account> {
        let now = self.clock.unix();
        let key_taken = |holder: Option<Account>| {
            let mut err = Error::conflict("the new key is already in use by an account");
            err.conflicting_account = holder.map(|holder| holder.id);
            err
        };
        let changed = self.storage.write(|conn| {
            if let Some(holder) = store::by_thumbprint(conn, account.track, new_thumbprint)? {
                return Err(key_taken(Some(holder)));
            }
            match store::set_key(conn, &account.id, &account.key_thumbprint, new_jwk, new_thumbprint, now)? {
                store::KeyChange::Changed => {}
                // Two key changes signed with the same old key: the first wins, and the second,
                // authorized by a key that is no longer the account's, is refused.
                store::KeyChange::OldKeyGone => {
                    return Err(Error::unauthorized("the account's key was changed by another request"))
                }
                // Two accounts changing to one new key (PostgreSQL): the first to commit has
                // it. This transaction is aborted; the holder is read after it.
                store::KeyChange::NewKeyTaken => return Err(key_taken(None)),
            }
            audit::record(
                conn,
                account.track,
                now,
                account_actor(&account.id),
                "account.key-changed",
                account_actor(&account.id),
                json!({ "old_thumbprint": account.key_thumbprint, "new_thumbprint": new_thumbprint }),
            )?;
            store::by_id(conn, account.track, &account.id)?.ok_or_else(|| Error::internal("account vanished"))
        });
        changed.or_else(|mut err| {
            if err.kind == crate::ErrorKind::Conflict && err.conflicting_account.is_none() {
                let holder = self.storage.read(|conn| store::by_thumbprint(conn, account.track, new_thumbprint))?;
                err.conflicting_account = holder.map(|holder| holder.id);
            }
            Err(err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn contacts_must_be_plain_mailto() {
        assert!(check_contacts(&["mailto:ops@example.com".into()]).is_ok());
        let kind = |c: &str| check_contacts(&[c.to_string()]).unwrap_err().kind;
        assert_eq!(kind("tel:+1555"), ErrorKind::UnsupportedContact);
        assert_eq!(kind("mailto:ops@example.com?subject=x"), ErrorKind::InvalidContact);
        assert_eq!(kind("mailto:a@b.com,c@d.com"), ErrorKind::InvalidContact);
        assert_eq!(kind("mailto:nobody"), ErrorKind::InvalidContact);
    }
}
