//! A tls-alpn-01 responder (RFC 8737) on a loopback port: it completes the acme-tls/1
//! handshake with a certificate that carries the critical acmeIdentifier extension.

use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Default)]
struct OneCert(Mutex<Option<Arc<CertifiedKey>>>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(Clone)]
pub struct AlpnResponder {
    pub port: u16,
    current: Arc<OneCert>,
}

impl AlpnResponder {
    pub async fn start() -> AlpnResponder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let current = Arc::new(OneCert::default());
        let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        actix_web::rt::spawn(async move {
            for _ in 0..1000 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                actix_web::rt::spawn(async move {
                    // The validator closes after the handshake; nothing is read or written.
                    let _ = acceptor.accept(tcp).await;
                });
            }
        });
        AlpnResponder { port, current }
    }

    /// Serves the challenge certificate for `name` (DNS name or IP) and `key_authorization`.
    pub fn serve(&self, name: &str, key_authorization: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        let digest = openssl::sha::sha256(key_authorization.as_bytes());
        params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&digest)];
        let cert = params.self_signed(&key).unwrap();
        let signing =
            rustls::crypto::ring::sign::any_supported_type(&PrivateKeyDer::Pkcs8(key.serialize_der().into())).unwrap();
        let certified = CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing);
        *self.current.0.lock().unwrap() = Some(Arc::new(certified));
    }
}
