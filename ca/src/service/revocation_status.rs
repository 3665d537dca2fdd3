//! What relying parties see: each track's CRL and OCSP answers. Both read the certificate rows
//! the revocation wrote, so a revocation is visible to OCSP at once and to the CRL as soon as
//! the debounced regeneration has run (well under a second).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rcgen::SigningKey;

use super::Ca;
use crate::crl::{sign_crl, RevokedEntry};
use crate::ocsp::{self, CertStatus, ErrorStatus};
use crate::storage::{certificates, crl as crl_store};
use crate::{ids, Error, Result, Track};

/// A CRL's number and DER.
type NumberedCrl = (i64, Arc<Vec<u8>>);

/// Above this many cached OCSP responses the cache starts over.
const OCSP_CACHE_LIMIT: usize = 200_000;

pub(super) struct StatusState {
    crl_cache: Mutex<HashMap<Track, NumberedCrl>>,
    ocsp_cache: Mutex<HashMap<(Track, String), CachedResponse>>,
    revocation_listener: OnceLock<Box<dyn Fn(Track) + Send + Sync>>,
    signers: RwLock<HashMap<Track, Arc<OcspSigner>>>,
}

impl StatusState {
    pub(super) fn new() -> StatusState {
        StatusState {
            crl_cache: Mutex::default(),
            ocsp_cache: Mutex::default(),
            revocation_listener: OnceLock::new(),
            signers: RwLock::default(),
        }
    }
}

#[derive(Clone)]
struct CachedResponse {
    status: CertStatus,
    refresh_after: i64,
    der: Arc<Vec<u8>>,
}

/// The key that signs a track's OCSP responses: the issuing CA's own, or a delegated responder
/// certificate's (id-kp-OCSPSigning with ocsp-nocheck).
pub(super) struct OcspSigner {
    /// None: the issuing CA's own key signs.
    pub(super) key: Option<rcgen::KeyPair>,
    pub(super) key_hash: Vec<u8>,
    pub(super) certificate: Option<Vec<u8>>,
    pub(super) not_after: i64,
}

#[derive(Debug, Clone)]
pub struct CrlInfo {
    pub number: i64,
    pub this_update: i64,
    pub next_update: i64,
}

impl Ca {
    /// Called after every revocation commits, with the track: the binary wires this to the
    /// debounced CRL regeneration.
    pub fn on_revocation(&self, listener: Box<dyn Fn(Track) + Send + Sync>) {
        let _ = self.status.revocation_listener.set(listener);
    }

    pub(super) fn revocation_committed(&self, track: Track, serial: &str) {
        self.status.ocsp_cache.lock().unwrap_or_else(|p| p.into_inner()).remove(&(track, serial.to_string()));
        if let Some(listener) = self.status.revocation_listener.get() {
            listener(track);
        }
    }

    pub fn crl_info(&self, track: Track) -> Result<CrlInfo> {
        let row = self.storage.read(|conn| crl_store::state(conn, track))?;
        Ok(CrlInfo { number: row.number, this_update: row.this_update, next_update: row.next_update })
    }

    /// Signs a new CRL for the track with the next number. Returns its number.
    pub fn regenerate_crl(&self, track: Track) -> Result<i64> {
        let issuer = self.hierarchy.issuer(track);
        for _ in 0..5 {
            let now = self.clock.now();
            let (previous, entries) = self.storage.read(|conn| {
                let previous = crl_store::state(conn, track)?.number;
                let entries = certificates::revoked_unexpired(conn, track, now.unix_timestamp())?;
                Ok((previous, entries))
            })?;
            let entries: Vec<RevokedEntry> = entries
                .into_iter()
                .map(|(serial_hex, revoked_at, reason)| RevokedEntry { serial_hex, revoked_at, reason: reason as u8 })
                .collect();
            let number = previous + 1;
            let next_update = now + time::Duration::seconds(self.revocation.crl_lifetime_seconds);
            let url = format!("{}/crl/{track}.crl", self.public_url);
            let der = sign_crl(issuer, number, now, next_update, &url, &entries)?;
            let stored = self.storage.write(|conn| {
                crl_store::replace(
                    conn,
                    track,
                    previous,
                    number,
                    now.unix_timestamp(),
                    next_update.unix_timestamp(),
                    &der,
                )
            })?;
            if stored {
                tracing::info!(%track, number, entries = entries.len(), "CRL signed");
                return Ok(number);
            }
        }
        Err(Error::internal("CRL regeneration kept losing to concurrent writers"))
    }

    /// Regenerates the CRL when none exists yet or when it is past half its lifetime.
    pub fn refresh_crl_if_due(&self, track: Track) -> Result<Option<i64>> {
        let info = self.crl_info(track)?;
        let now = self.clock.unix();
        let half = info.this_update + (info.next_update - info.this_update) / 2;
        if info.number == 0 || now >= half {
            return self.regenerate_crl(track).map(Some);
        }
        Ok(None)
    }

    /// The newest CRL's DER, read again only when its number changed.
    pub fn current_crl(&self, track: Track) -> Result<(i64, Arc<Vec<u8>>)> {
        let number = self.crl_info(track)?.number;
        if number == 0 {
            self.regenerate_crl(track)?;
        }
        {
            let cache = self.status.crl_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((cached, der)) = cache.get(&track) {
                if *cached == number {
                    return Ok((number, der.clone()));
                }
            }
        }
        let (number, der) = self.storage.read(|conn| crl_store::der(conn, track))?;
        let der = Arc::new(der);
        self.status.crl_cache.lock().unwrap_or_else(|p| p.into_inner()).insert(track, (number, der.clone()));
        Ok((number, der))
    }

    fn ocsp_signer(&self, track: Track) -> Result<Arc<OcspSigner>> {
        if let Some(signer) = self.status.signers.read().unwrap_or_else(|p| p.into_inner()).get(&track) {
            return Ok(signer.clone());
        }
        let signer = Arc::new(self.make_ocsp_signer(track)?);
        self.status.signers.write().unwrap_or_else(|p| p.into_inner()).insert(track, signer.clone());
        Ok(signer)
    }

    /// Re-issues delegated OCSP responder certificates close to expiry; the scheduler calls
    /// this every six hours.
    pub fn refresh_ocsp_signers(&self) -> Result<()> {
        for track in Track::ALL {
            let current = self.ocsp_signer(track)?;
            if current.certificate.is_some() && current.not_after - self.clock.unix() < 10 * 86400 {
                let fresh = Arc::new(self.make_ocsp_signer(track)?);
                self.status.signers.write().unwrap_or_else(|p| p.into_inner()).insert(track, fresh);
                self.status.ocsp_cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|(t, _), _| *t != track);
            }
        }
        Ok(())
    }

    /// Answers one DER OCSP request for a track; always returns a DER OCSPResponse.
    pub fn ocsp_response(&self, track: Track, request: &[u8]) -> Vec<u8> {
        match self.answer_ocsp(track, request) {
            Ok(der) => der,
            Err(status) => ocsp::error_response(status),
        }
    }

    fn answer_ocsp(&self, track: Track, request: &[u8]) -> Result<Vec<u8>, ErrorStatus> {
        let request = ocsp::parse_request(request)?;
        let issuer = self.hierarchy.issuer(track);
        let id = &request.cert_id;
        if id.issuer_name_hash != id.hash.digest(&issuer.subject_der)
            || id.issuer_key_hash != id.hash.digest(&issuer.public_key_bits)
        {
            return Err(ErrorStatus::Unauthorized);
        }
        let serial = ids::hex(&id.serial);
        let stored =
            self.storage.read(|conn| certificates::status(conn, track, &serial)).map_err(|_| ErrorStatus::TryLater)?;
        let status = match stored {
            None => CertStatus::Unknown,
            Some((status, revoked_at, reason)) if status == "revoked" => {
                CertStatus::Revoked { at: revoked_at.unwrap_or(0), reason: reason.unwrap_or(0) as u8 }
            }
            Some(_) => CertStatus::Good,
        };
        let now = self.clock.now();
        let key = (track, serial);
        if request.nonce.is_none() {
            let cache = self.status.ocsp_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = cache.get(&key) {
                if hit.status == status && now.unix_timestamp() < hit.refresh_after {
                    return Ok(hit.der.as_ref().clone());
                }
            }
        }
        let signer = self.ocsp_signer(track).map_err(|_| ErrorStatus::InternalError)?;
        let lifetime = self.revocation.ocsp_lifetime_seconds;
        let this_update = now.replace_nanosecond(0).unwrap_or(now);
        let der = ocsp::build_response(
            &ocsp::ResponseParams {
                cert_id: id,
                status,
                this_update,
                next_update: this_update + time::Duration::seconds(lifetime),
                produced_at: this_update,
                responder_key_hash: &signer.key_hash,
                nonce: request.nonce.as_deref(),
                responder_certificate: signer.certificate.as_deref(),
            },
            |tbs| match &signer.key {
                Some(key) => key.sign(tbs).map_err(|e| e.to_string()),
                None => issuer.issuer.key().sign(tbs).map_err(|e| e.to_string()),
            },
        )
        .map_err(|e| {
            tracing::error!(error = %e, "signing an OCSP response failed");
            ErrorStatus::InternalError
        })?;
        if request.nonce.is_none() {
            let mut cache = self.status.ocsp_cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= OCSP_CACHE_LIMIT {
                cache.clear();
            }
            let refresh_after = this_update.unix_timestamp() + lifetime / 2;
            cache.insert(key, CachedResponse { status, refresh_after, der: Arc::new(der.clone()) });
        }
        Ok(der)
    }
}
