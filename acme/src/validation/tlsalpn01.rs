//! tls-alpn-01 (RFC 8737, and RFC 8738 §6 for IP addresses): a TLS handshake with ALPN
//! `acme-tls/1` whose certificate names exactly the identifier and carries the critical
//! acmeIdentifier extension with the SHA-256 of the key authorization, with the first of the
//! name's addresses that takes the connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use dualca_ca::model::{Identifier, IdentifierKind, StoredProblem};
use dualca_ca::ErrorKind;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::FromDer;

use super::{problem, Validator};

const ALPN: &[u8] = b"acme-tls/1";
/// id-pe-acmeIdentifier, RFC 8737 §6.1.
const ACME_IDENTIFIER_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 31];

/// The certificate is what is being checked, not trusted: any chain is accepted. The handshake
/// signature is still verified against the certificate's key. webpki cannot be used for that:
/// it refuses the certificate for the very critical acmeIdentifier extension the challenge
/// requires, so the key is taken from the SPKI directly.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, rustls::Error> {
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(parsed.public_key().raw.to_vec())
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_openssl(message, &spki_of(cert)?, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = spki_of(cert)?;
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki.as_slice()),
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// TLS 1.2 handshake signatures, which rustls only verifies through webpki.
fn verify_with_openssl(
    message: &[u8],
    spki: &[u8],
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use openssl::hash::MessageDigest;
    use openssl::rsa::Padding;
    use openssl::sign::{RsaPssSaltlen, Verifier};
    let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
    let key = openssl::pkey::PKey::public_key_from_der(spki).map_err(|_| bad())?;
    let (digest, pss) = match dss.scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 | SignatureScheme::RSA_PKCS1_SHA256 => {
            (Some(MessageDigest::sha256()), false)
        }
        SignatureScheme::ECDSA_NISTP384_SHA384 | SignatureScheme::RSA_PKCS1_SHA384 => {
            (Some(MessageDigest::sha384()), false)
        }
        SignatureScheme::RSA_PKCS1_SHA512 => (Some(MessageDigest::sha512()), false),
        SignatureScheme::RSA_PSS_SHA256 => (Some(MessageDigest::sha256()), true),
        SignatureScheme::RSA_PSS_SHA384 => (Some(MessageDigest::sha384()), true),
        SignatureScheme::RSA_PSS_SHA512 => (Some(MessageDigest::sha512()), true),
        SignatureScheme::ED25519 => (None, false),
        _ => {
            return Err(rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme))
        }
    };
    let mut verifier = match digest {
        Some(d) => Verifier::new(d, &key),
        None => Verifier::new_without_digest(&key),
    }
    .map_err(|_| bad())?;
    if pss {
        verifier.set_rsa_padding(Padding::PKCS1_PSS).map_err(|_| bad())?;
        verifier.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).map_err(|_| bad())?;
    }
    match verifier.verify_oneshot(dss.signature(), message) {
        Ok(true) => Ok(HandshakeSignatureValid::assertion()),
        _ => Err(bad()),
    }
}

pub(super) fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls-alpn-01 client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// RFC 8738 §6: the SNI for an IP address is its reverse-mapping name.
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut labels: Vec<String> = Vec::with_capacity(34);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.push("ip6.arpa".into());
            labels.join(".")
        }
    }
}

pub(super) async fn validate(
    validator: &Validator,
    identifier: &Identifier,
    key_authorization: &str,
) -> Result<(), StoredProblem> {
    let (ips, sni) = match identifier.kind {
        IdentifierKind::Ip => {
            let ip: IpAddr =
                identifier.value.parse().map_err(|_| problem(ErrorKind::Malformed, "bad IP identifier"))?;
            (vec![ip], reverse_name(ip))
        }
        _ => (validator.resolve(&identifier.value).await?, identifier.value.clone()),
    };
    let server_name = ServerName::try_from(sni.clone())
        .map_err(|_| problem(ErrorKind::Malformed, format!("{sni} is not a valid SNI name")))?;
    let (addr, tcp) = connect(validator, &ips).await?;
    let connector = TlsConnector::from(validator.tls.clone());
    let tls = tokio::time::timeout(validator.settings.timeout, connector.connect(server_name, tcp))
        .await
        .map_err(|_| problem(ErrorKind::Connection, format!("TLS handshake with {addr} timed out")))?
        .map_err(|e| problem(ErrorKind::Tls, format!("TLS handshake with {addr}: {e}")))?;
    let (_, session) = tls.get_ref();
    if session.alpn_protocol() != Some(ALPN) {
        return Err(problem(ErrorKind::Unauthorized, format!("{addr} did not negotiate ALPN acme-tls/1")));
    }
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| problem(ErrorKind::Tls, format!("{addr} presented no certificate")))?
        .clone();
    check_certificate(&cert, identifier, key_authorization)
}

/// How many of a name's addresses are tried, in the order resolved.
const MAX_ADDRESSES: usize = 4;

/// Connects to the first of `ips` that takes the connection, as an http-01 fetch does: an
/// address that refuses it, or does not answer in time, gives way to the next. The first
/// address that accepts decides the validation, whatever its handshake shows.
async fn connect(validator: &Validator, ips: &[IpAddr]) -> Result<(SocketAddr, TcpStream), StoredProblem> {
    let mut failure = problem(ErrorKind::Dns, "the name has no address to connect to");
    for ip in ips.iter().take(MAX_ADDRESSES) {
        let addr = SocketAddr::new(*ip, validator.settings.tls_port);
        match tokio::time::timeout(validator.settings.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok((addr, tcp)),
            Ok(Err(e)) => failure = problem(ErrorKind::Connection, format!("connecting to {addr}: {e}")),
            Err(_) => failure = problem(ErrorKind::Connection, format!("connecting to {addr} timed out")),
        }
    }
    Err(failure)
}

fn check_certificate(der: &[u8], identifier: &Identifier, key_authorization: &str) -> Result<(), StoredProblem> {
    let bad = |detail: String| problem(ErrorKind::Unauthorized, detail);
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|_| bad("the acme-tls/1 certificate cannot be parsed".into()))?;
    let names =
        cert.subject_alternative_name().ok().flatten().map(|san| san.value.general_names.clone()).unwrap_or_default();
    let matches = match (identifier.kind, names.as_slice()) {
        (IdentifierKind::Dns, [GeneralName::DNSName(name)]) => name.eq_ignore_ascii_case(&identifier.value),
        (IdentifierKind::Ip, [GeneralName::IPAddress(bytes)]) => {
            let ip = match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                _ => None,
            };
            ip.map(|ip| ip.to_string()) == Some(identifier.value.clone())
        }
        _ => false,
    };
    if !matches {
        return Err(bad(format!(
            "the acme-tls/1 certificate must name exactly {} in its subjectAltName",
            identifier.value
        )));
    }
    let oid = Oid::from(ACME_IDENTIFIER_OID).map_err(|_| bad("internal OID error".into()))?;
    let ext = cert
        .tbs_certificate
        .extensions()
        .iter()
        .find(|e| e.oid == oid)
        .ok_or_else(|| bad("the acme-tls/1 certificate has no acmeIdentifier extension".into()))?;
    if !ext.critical {
        return Err(bad("the acmeIdentifier extension is not critical".into()));
    }
    let digest = dualca_ca::ids::sha256(key_authorization.as_bytes());
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(&digest);
    if ext.value != expected.as_slice() {
        return Err(problem(
            ErrorKind::IncorrectResponse,
            "the acmeIdentifier extension does not hold the key authorization digest",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name("127.0.0.1".parse().unwrap()), "1.0.0.127.in-addr.arpa");
        assert!(reverse_name("::1".parse().unwrap()).starts_with("1.0.0.0.0.0.0.0"));
        assert!(reverse_name("::1".parse().unwrap()).ends_with(".ip6.arpa"));
    }
}
