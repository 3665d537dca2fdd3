//! OCSP (RFC 6960) requests and responses, encoded here: the openssl crate reads OCSP but
//! cannot build responses, and the encoding needed is small. One request per OCSPRequest is
//! answered (as Boulder does); SHA-1 and SHA-256 CertIDs are accepted; the nonce extension
//! (RFC 8954) is echoed.

use time::OffsetDateTime;

use crate::der::{self, Reader};

pub const OID_SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];
pub const OID_SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];
const OID_OCSP_BASIC: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 1];
const OID_OCSP_NONCE: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1, 2];
const OID_ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];

/// The largest request accepted; a single-CertID request with a nonce is under 200 bytes.
pub const MAX_REQUEST: usize = 4096;

/// OCSPResponseStatus values that carry no response bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStatus {
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    Unauthorized = 6,
}

/// Whether a DER OCSPResponse says `successful` (status 0); error responses must not be cached.
pub fn is_successful(response: &[u8]) -> bool {
    let mut outer = Reader::new(response);
    let Some(content) = outer.read(0x30) else { return false };
    Reader::new(content).read(0x0a) == Some(&[0][..])
}

pub fn error_response(status: ErrorStatus) -> Vec<u8> {
    der::sequence(&[der::enumerated(status as u8)])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha1,
    Sha256,
}

impl HashAlgorithm {
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha1 => {
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref().to_vec()
            }
            HashAlgorithm::Sha256 => crate::ids::sha256(data).to_vec(),
        }
    }

    fn oid(self) -> &'static [u64] {
        match self {
            HashAlgorithm::Sha1 => OID_SHA1,
            HashAlgorithm::Sha256 => OID_SHA256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertId {
    pub hash: HashAlgorithm,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// The serial's INTEGER content bytes, as in the certificate.
    pub serial: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspRequest {
    pub cert_id: CertId,
    /// The nonce extension's value (the OCTET STRING content), to echo.
    pub nonce: Option<Vec<u8>>,
}

/// Parses an OCSPRequest. Any deviation from the structure is `MalformedRequest`.
pub fn parse_request(der_bytes: &[u8]) -> Result<OcspRequest, ErrorStatus> {
    use ErrorStatus::MalformedRequest as M;
    if der_bytes.is_empty() || der_bytes.len() > MAX_REQUEST {
        return Err(M);
    }
    let mut outer = Reader::new(der_bytes);
    let ocsp_request = outer.read(0x30).ok_or(M)?;
    if !outer.is_empty() {
        return Err(M);
    }
    let mut ocsp_request = Reader::new(ocsp_request);
    let tbs = ocsp_request.read(0x30).ok_or(M)?;
    // optionalSignature [0] is allowed and ignored: requests need not be signed.
    let mut tbs = Reader::new(tbs);
    tbs.read_optional(0xa0).ok_or(M)?; // version
    tbs.read_optional(0xa1).ok_or(M)?; // requestorName
    let request_list = tbs.read(0x30).ok_or(M)?;
    let extensions = tbs.read_optional(0xa2).ok_or(M)?;
    let mut list = Reader::new(request_list);
    let request = list.read(0x30).ok_or(M)?;
    if !list.is_empty() {
        return Err(M);
    }
    let mut request = Reader::new(request);
    let cert_id = parse_cert_id(request.read(0x30).ok_or(M)?)?;
    let nonce = match extensions {
        None => None,
        Some(ext) => find_nonce(ext)?,
    };
    Ok(OcspRequest { cert_id, nonce })
}

fn parse_cert_id(content: &[u8]) -> Result<CertId, ErrorStatus> {
    use ErrorStatus::MalformedRequest as M;
    let mut r = Reader::new(content);
    let mut alg = Reader::new(r.read(0x30).ok_or(M)?);
    let (_, _, oid) = alg.read_any().ok_or(M)?;
    let hash = if oid == der::oid(OID_SHA1).as_slice() {
        HashAlgorithm::Sha1
    } else if oid == der::oid(OID_SHA256).as_slice() {
        HashAlgorithm::Sha256
    } else {
        return Err(M);
    };
    let issuer_name_hash = r.read(0x04).ok_or(M)?.to_vec();
    let issuer_key_hash = r.read(0x04).ok_or(M)?.to_vec();
    let serial = r.read(0x02).ok_or(M)?.to_vec();
    if serial.is_empty() || serial.len() > 20 + 1 {
        return Err(M);
    }
    Ok(CertId { hash, issuer_name_hash, issuer_key_hash, serial })
}

fn find_nonce(extensions: &[u8]) -> Result<Option<Vec<u8>>, ErrorStatus> {
    use ErrorStatus::MalformedRequest as M;
    let mut seq = Reader::new(Reader::new(extensions).read(0x30).ok_or(M)?);
    let nonce_oid = der::oid(OID_OCSP_NONCE);
    while !seq.is_empty() {
        let mut ext = Reader::new(seq.read(0x30).ok_or(M)?);
        let (_, _, oid) = ext.read_any().ok_or(M)?;
        ext.read_optional(0x01).ok_or(M)?; // critical
        let value = ext.read(0x04).ok_or(M)?;
        if oid == nonce_oid.as_slice() {
            // RFC 8954: 1 to 32 octets of nonce inside an OCTET STRING.
            let inner = Reader::new(value).read(0x04).ok_or(M)?;
            if inner.is_empty() || inner.len() > 32 {
                return Err(M);
            }
            return Ok(Some(value.to_vec()));
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    Good,
    Revoked { at: i64, reason: u8 },
    Unknown,
}

pub struct ResponseParams<'a> {
    pub cert_id: &'a CertId,
    pub status: CertStatus,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub produced_at: OffsetDateTime,
    /// SHA-1 of the responder's public key bits (ResponderID byKey).
    pub responder_key_hash: &'a [u8],
    pub nonce: Option<&'a [u8]>,
    /// The delegated responder certificate, when the response is not signed by the issuer.
    pub responder_certificate: Option<&'a [u8]>,
}

fn encode_cert_id(id: &CertId) -> Vec<u8> {
    der::sequence(&[
        der::sequence(&[der::oid(id.hash.oid()), der::null()]),
        der::octet_string(&id.issuer_name_hash),
        der::octet_string(&id.issuer_key_hash),
        der::integer_bytes(&id.serial),
    ])
}

/// Builds and signs a successful response; `sign` returns an ECDSA-with-SHA256 signature in
/// DER, as the CA's P-256 keys produce.
pub fn build_response(
    params: &ResponseParams<'_>,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let status = match params.status {
        CertStatus::Good => vec![0x80, 0x00],
        CertStatus::Unknown => vec![0x82, 0x00],
        CertStatus::Revoked { at, reason } => {
            let at = OffsetDateTime::from_unix_timestamp(at).map_err(|e| e.to_string())?;
            // As in the CRL (RFC 5280 §5.3.1), unspecified is expressed by leaving the reason out.
            let mut body = der::generalized_time(at);
            if reason != 0 {
                body.extend(der::explicit(0, &der::enumerated(reason)));
            }
            der::tlv(0xa1, &body)
        }
    };
    let single = der::sequence(&[
        encode_cert_id(params.cert_id),
        status,
        der::generalized_time(params.this_update),
        der::explicit(0, &der::generalized_time(params.next_update)),
    ]);
    let mut response_data = vec![
        der::tlv(0xa2, &der::octet_string(params.responder_key_hash)),
        der::generalized_time(params.produced_at),
        der::sequence(&[single]),
    ];
    if let Some(nonce) = params.nonce {
        let ext = der::sequence(&[der::oid(OID_OCSP_NONCE), der::octet_string(nonce)]);
        response_data.push(der::explicit(1, &der::sequence(&[ext])));
    }
    let tbs = der::sequence(&response_data);
    let signature = sign(&tbs)?;
    let mut basic = vec![tbs, der::sequence(&[der::oid(OID_ECDSA_SHA256)]), der::bit_string(&signature)];
    if let Some(cert) = params.responder_certificate {
        basic.push(der::explicit(0, &der::sequence(&[cert.to_vec()])));
    }
    let basic = der::sequence(&basic);
    let response_bytes = der::sequence(&[der::oid(OID_OCSP_BASIC), der::octet_string(&basic)]);
    Ok(der::sequence(&[der::enumerated(0), der::explicit(0, &response_bytes)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(hash_oid: &[u64], nonce: Option<&[u8]>) -> Vec<u8> {
        let cert_id = der::sequence(&[
            der::sequence(&[der::oid(hash_oid), der::null()]),
            der::octet_string(&[1; 20]),
            der::octet_string(&[2; 20]),
            der::integer_bytes(&[0x01, 0x02]),
        ]);
        let mut tbs = vec![der::sequence(&[der::sequence(&[cert_id])])];
        if let Some(n) = nonce {
            let ext = der::sequence(&[der::oid(OID_OCSP_NONCE), der::octet_string(&der::octet_string(n))]);
            tbs.push(der::tlv(0xa2, &der::sequence(&[ext])));
        }
        der::sequence(&[der::sequence(&tbs)])
    }

    #[test]
    fn success_is_read_past_long_form_lengths() {
        assert!(!is_successful(&error_response(ErrorStatus::MalformedRequest)));
        let long = der::sequence(&[der::enumerated(0), der::explicit(0, &[0u8; 300])]);
        assert_eq!(long[1], 0x82, "a long-form length");
        assert!(is_successful(&long));
    }

    #[test]
    fn parses_requests_and_nonces() {
        let r = parse_request(&request(OID_SHA1, Some(b"0123456789abcdef"))).unwrap();
        assert_eq!(r.cert_id.hash, HashAlgorithm::Sha1);
        assert_eq!(r.cert_id.serial, vec![1, 2]);
        assert_eq!(r.nonce.unwrap(), der::octet_string(b"0123456789abcdef"));
        assert!(parse_request(&request(OID_SHA256, None)).unwrap().nonce.is_none());
    }

    #[test]
    fn malformed_input_is_refused_without_panicking() {
        let good = request(OID_SHA1, None);
        for cut in 0..good.len() {
            assert_eq!(parse_request(&good[..cut]), Err(ErrorStatus::MalformedRequest), "cut at {cut}");
        }
        assert_eq!(parse_request(&request(&[1, 2, 840, 113549, 2, 5], None)), Err(ErrorStatus::MalformedRequest));
        assert_eq!(parse_request(&vec![0x30; MAX_REQUEST + 1]), Err(ErrorStatus::MalformedRequest));
        assert_eq!(parse_request(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), Err(ErrorStatus::MalformedRequest));
        // Deterministic pseudo-random bytes.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            assert!(parse_request(&bytes).is_err());
        }
    }
}
