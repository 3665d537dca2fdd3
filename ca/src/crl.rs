//! CRL signing (RFC 5280 §5): one CRL per track, signed by that track's issuing CA.

use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope, KeyIdMethod,
    RevocationReason as RcgenReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use crate::clock::from_unix;
use crate::hierarchy::IssuingCa;
use crate::{ids, Error, Result};

pub struct RevokedEntry {
    pub serial_hex: String,
    pub revoked_at: i64,
    pub reason: u8,
}

fn reason(code: u8) -> Option<RcgenReason> {
    // RFC 5280 §5.3.1: reasonCode unspecified SHOULD be absent.
    Some(match code {
        1 => RcgenReason::KeyCompromise,
        2 => RcgenReason::CaCompromise,
        3 => RcgenReason::AffiliationChanged,
        4 => RcgenReason::Superseded,
        5 => RcgenReason::CessationOfOperation,
        6 => RcgenReason::CertificateHold,
        8 => RcgenReason::RemoveFromCrl,
        9 => RcgenReason::PrivilegeWithdrawn,
        10 => RcgenReason::AaCompromise,
        _ => return None,
    })
}

pub fn sign_crl(
    issuer: &IssuingCa,
    number: i64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    distribution_point: &str,
    entries: &[RevokedEntry],
) -> Result<Vec<u8>> {
    let revoked_certs = entries
        .iter()
        .map(|e| {
            let serial = ids::unhex(&e.serial_hex).ok_or_else(|| Error::internal("stored serial is not hex"))?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: from_unix(e.revoked_at),
                reason_code: reason(e.reason),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: Some(CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint { uris: vec![distribution_point.to_string()] },
            scope: Some(CrlScope::UserCertsOnly),
        }),
        revoked_certs,
        key_identifier_method: KeyIdMethod::PreSpecified(issuer.subject_key_identifier.clone()),
    };
    let crl = params.signed_by(&issuer.issuer).map_err(Error::internal)?;
    Ok(crl.der().to_vec())
}
