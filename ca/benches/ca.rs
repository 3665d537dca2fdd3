//! Criterion microbenchmarks of the CA's hot paths, through `dualca-ca`'s public API only:
//! JWS verification, CSR check plus signing, nonces, a CRL of 100 000 entries (signed alone, and
//! regenerated from the database), and OCSP.
//! Run with `cargo bench -p dualca-ca`; BENCHMARKS.md records the results and the machine.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::ocsp::{OcspCertId, OcspRequest};
use openssl::pkey::PKey;
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Builder, X509NameBuilder, X509ReqBuilder, X509};
use rcgen::SigningKey;
use time::OffsetDateTime;

use dualca_ca::crl::{sign_crl, RevokedEntry};
use dualca_ca::hierarchy::Hierarchy;
use dualca_ca::issuance::{self, CertificateUrls, Names};
use dualca_ca::jwk::PublicJwk;
use dualca_ca::model::{Identifier, IdentifierKind};
use dualca_ca::ocsp::{self, CertId, CertStatus, HashAlgorithm, ResponseParams};
use dualca_ca::policy::TrackPolicy;
use dualca_ca::{csr, Ca, RevocationSettings, Settings, Track};

const CRL_ENTRIES: usize = 100_000;

fn p256() -> EcKey<openssl::pkey::Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    EcKey::generate(&group).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_serial_hex() -> String {
    let mut serial = [0u8; 18];
    openssl::rand::rand_bytes(&mut serial).unwrap();
    serial[0] = (serial[0] & 0x7f) | 0x01;
    serial.iter().map(|b| format!("{b:02x}")).collect()
}

/// ES256 over a signing input the size of a newOrder request (protected header with a kid,
/// and a payload with two identifiers).
fn jws_verification(c: &mut Criterion) {
    let key = p256();
    let spki = PKey::from_ec_key(key.clone()).unwrap().public_key_to_der().unwrap();
    let jwk = PublicJwk::from_spki_der(&spki).unwrap();
    let protected = b64url(
        br#"{"alg":"ES256","kid":"https://localhost:14000/acme/machine/acct/Zx3dYb1Q2rS4tU5vW6xY7z","nonce":"a1b2c3d4e5f6g7h8i9j0kA","url":"https://localhost:14000/acme/machine/new-order"}"#,
    );
    let payload =
        b64url(br#"{"identifiers":[{"type":"dns","value":"web.example.test"},{"type":"ip","value":"192.0.2.10"}]}"#);
    let signing_input = format!("{protected}.{payload}");
    let digest = openssl::sha::sha256(signing_input.as_bytes());
    let sig = EcdsaSig::sign(&digest, &key).unwrap();
    let mut raw = sig.r().to_vec_padded(32).unwrap();
    raw.extend(sig.s().to_vec_padded(32).unwrap());
    assert!(jwk.verify(signing_input.as_bytes(), &raw).unwrap(), "the benchmark's signature must verify");

    let mut group = c.benchmark_group("jws");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_es256", |b| {
        b.iter(|| jwk.verify(black_box(signing_input.as_bytes()), black_box(&raw)).unwrap())
    });
    group.finish();
}

fn p256_csr(names: &[&str]) -> Vec<u8> {
    let key = PKey::from_ec_key(p256()).unwrap();
    let mut builder = X509ReqBuilder::new().unwrap();
    builder.set_pubkey(&key).unwrap();
    let mut san = SubjectAlternativeName::new();
    for name in names {
        san.dns(name);
    }
    let ext = san.build(&builder.x509v3_context(None)).unwrap();
    let mut exts = Stack::new().unwrap();
    exts.push(ext).unwrap();
    builder.add_extensions(&exts).unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    builder.build().to_der().unwrap()
}

/// What `finalize` does between reading the order and storing the certificate: check the CSR,
/// prepare the to-be-signed certificate under the machine policy, sign and lint it.
fn csr_check_and_sign(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (hierarchy, _) = Hierarchy::load_or_create(dir.path(), "bench").unwrap();
    let policy = TrackPolicy::default_for(Track::Machine);
    let profile = policy.profile(None).unwrap();
    let issuer = hierarchy.issuer(Track::Machine);
    let urls = CertificateUrls {
        crl: Some("https://localhost:14000/crl/machine.crl".into()),
        ocsp: Some("https://localhost:14000/ocsp/machine".into()),
        ca_issuers: "https://localhost:14000/ca/machine.der".into(),
    };
    let identifiers = vec![
        Identifier::new(IdentifierKind::Dns, "web.example.test"),
        Identifier::new(IdentifierKind::Dns, "example.test"),
    ];
    let uris = vec!["spiffe://example.test/asset/web-1".to_string()];
    let der = p256_csr(&["web.example.test", "example.test"]);

    let mut group = c.benchmark_group("issuance");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check_csr", |b| b.iter(|| csr::check_csr(black_box(&der)).unwrap()));
    group.bench_function("check_csr_prepare_issue_p256", |b| {
        b.iter(|| {
            let checked = csr::check_csr(black_box(&der)).unwrap();
            let names = Names { identifiers: &identifiers, uris: &uris };
            let prepared = issuance::prepare(
                &policy,
                profile,
                names,
                &checked,
                &urls,
                issuer.not_after,
                OffsetDateTime::now_utc(),
            )
            .unwrap();
            issuance::issue(prepared, issuer).unwrap()
        })
    });
    group.finish();
}

fn open_ca(dir: &std::path::Path) -> Ca {
    Ca::open(Settings {
        data_dir: dir.to_path_buf(),
        database_url: dir.join("dualca.db").to_string_lossy().into_owned(),
        database_max_connections: 16,
        public_url: "https://localhost:14000".into(),
        organization: "bench".into(),
        machine: TrackPolicy::default_for(Track::Machine),
        human: TrackPolicy::default_for(Track::Human),
        nonce_lifetime_seconds: 3600,
        revocation: RevocationSettings::default(),
        email_reply: Default::default(),
    })
    .unwrap()
}

/// With SQLite the nonces live in memory (a mutex-guarded map); one iteration issues one and
/// redeems it.
fn nonces(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca = open_ca(dir.path());
    let mut group = c.benchmark_group("nonce");
    group.throughput(Throughput::Elements(1));
    group.bench_function("new_and_consume_sqlite_memory", |b| {
        b.iter(|| {
            let nonce = ca.new_nonce().unwrap();
            assert!(ca.consume_nonce(black_box(&nonce)).unwrap());
        })
    });
    group.finish();
}

fn crl(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (hierarchy, _) = Hierarchy::load_or_create(dir.path(), "bench").unwrap();
    let issuer = hierarchy.issuer(Track::Machine);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let entries: Vec<RevokedEntry> = (0..CRL_ENTRIES)
        .map(|i| RevokedEntry {
            serial_hex: random_serial_hex(),
            revoked_at: now - (i as i64 % 86_400),
            // A mix of reasons, unspecified (left out of the entry) among them.
            reason: [0, 1, 3, 4, 5][i % 5],
        })
        .collect();
    let this_update = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let next_update = this_update + time::Duration::days(1);
    let url = "https://localhost:14000/crl/machine.crl";

    let mut group = c.benchmark_group("crl");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(CRL_ENTRIES as u64));
    group.bench_function("sign_crl_100k", |b| {
        b.iter(|| sign_crl(issuer, 7, this_update, next_update, url, black_box(&entries)).unwrap())
    });
    // The CRL as the CA makes it, end to end: `Ca::regenerate_crl` reads the track's revoked,
    // unexpired certificates from SQLite, signs the CRL and stores it (a write, made durable).
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_with_revoked_certificates(ca_dir.path());
    group.bench_function("regenerate_crl_100k_sqlite", |b| b.iter(|| ca.regenerate_crl(Track::Machine).unwrap()));
    group.finish();
}

/// A CA whose machine track has 100 000 revoked, unexpired certificates, put in its SQLite
/// database with one SQL statement on a connection of the bench's own, as no public API
/// issues and revokes that many cheaply. Its first CRL is checked to list them all.
fn ca_with_revoked_certificates(dir: &std::path::Path) -> Ca {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    let ca = open_ca(dir);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut db = diesel::SqliteConnection::establish(&dir.join("dualca.db").to_string_lossy()).unwrap();
    // Random 18-byte serials whose first byte is 0x01..0x7f (positive, no leading zero), a
    // day's spread of revocation times, a mix of reasons, and lifetimes that have not ended.
    db.batch_execute(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {CRL_ENTRIES})
         INSERT INTO certificates (serial, track, profile, identifiers, spki_sha256, not_before, not_after,
                                   der, status, revocation_reason, revoked_at, created_at)
         SELECT printf('%02x', 1 + abs(random()) % 127) || lower(hex(randomblob(17))), 'machine', 'short',
                '[]', '', {now} - 86400, {now} + 86400 + i, x'3000', 'revoked',
                (0 + 1 * (i % 5 = 1) + 3 * (i % 5 = 2) + 4 * (i % 5 = 3) + 5 * (i % 5 = 4)), {now} - i % 86400, {now} - 86400
         FROM n"
    ))
    .unwrap();
    drop(db);
    let first = ca.regenerate_crl(Track::Machine).unwrap();
    let (number, der) = ca.current_crl(Track::Machine).unwrap();
    assert_eq!(number, first);
    let crl = openssl::x509::X509Crl::from_der(&der).unwrap();
    assert_eq!(crl.get_revoked().map_or(0, |r| r.len()), CRL_ENTRIES, "every revoked certificate is listed");
    ca
}

/// A certificate with `serial` whose issuer name is `issuer`'s subject: all OpenSSL reads from
/// the subject when it builds a CertID. It is never signed.
fn stand_in(issuer: &X509, serial_hex: &str) -> X509 {
    let mut builder = X509Builder::new().unwrap();
    let serial = openssl::bn::BigNum::from_hex_str(serial_hex).unwrap();
    builder.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    builder.set_issuer_name(issuer.subject_name()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "stand-in").unwrap();
    builder.set_subject_name(&name.build()).unwrap();
    builder.build()
}

fn ocsp_request(subject: &X509, issuer: &X509) -> Vec<u8> {
    let id = OcspCertId::from_cert(MessageDigest::sha1(), subject, issuer).unwrap();
    let mut request = OcspRequest::new().unwrap();
    request.add_id(id).unwrap();
    request.to_der().unwrap()
}

fn ocsp_responses(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let ca = open_ca(dir.path());
    let mut group = c.benchmark_group("ocsp");
    group.throughput(Throughput::Elements(1));

    // build_response alone, signed with the machine issuing CA's P-256 key as
    // `Ca::ocsp_response` does when no delegated responder is configured.
    let issuer = ca.hierarchy.issuer(Track::Machine);
    let key_hash = openssl::sha::sha1(&issuer.public_key_bits).to_vec();
    let cert_id = CertId {
        hash: HashAlgorithm::Sha1,
        issuer_name_hash: HashAlgorithm::Sha1.digest(&issuer.subject_der),
        issuer_key_hash: HashAlgorithm::Sha1.digest(&issuer.public_key_bits),
        serial: openssl::bn::BigNum::from_hex_str(&random_serial_hex()).unwrap().to_vec(),
    };
    group.bench_function("build_response_signed", |b| {
        b.iter(|| {
            let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
            let params = ResponseParams {
                cert_id: &cert_id,
                status: CertStatus::Good,
                this_update: now,
                next_update: now + time::Duration::hours(12),
                produced_at: now,
                responder_key_hash: &key_hash,
                nonce: None,
                responder_certificate: None,
            };
            ocsp::build_response(black_box(&params), |tbs| issuer.issuer.key().sign(tbs).map_err(|e| e.to_string()))
                .unwrap()
        })
    });

    // Through `Ca::ocsp_response`, for a certificate the database holds: the CA's own HTTPS
    // certificate, which `server_certificate` issues on the machine track and records like any
    // other. Requests carry no nonce, so from the second on they are answered from the cache
    // (after the status read from SQLite that every request makes).
    let server = ca.server_certificate(&dir.path().join("tls"), &["localhost".to_string()]).unwrap();
    let leaf = X509::from_der(&server.chain_der[0]).unwrap();
    let issuer_cert = X509::from_der(&server.chain_der[1]).unwrap();
    let cached_request = ocsp_request(&leaf, &issuer_cert);
    let first = ca.ocsp_response(Track::Machine, &cached_request);
    assert!(ocsp::is_successful(&first), "the OCSP request must be answered");
    group.bench_function("ca_ocsp_response_cached_good", |b| {
        b.iter(|| ca.ocsp_response(Track::Machine, black_box(&cached_request)))
    });

    // Through `Ca::ocsp_response`, a serial never asked about before in each iteration: the
    // status read finds nothing (unknown), the cache misses, and the response is signed. The
    // request is built outside the measurement.
    group.bench_function("ca_ocsp_response_uncached_unknown", |b| {
        b.iter_batched(
            || ocsp_request(&stand_in(&issuer_cert, &random_serial_hex()), &issuer_cert),
            |request| ca.ocsp_response(Track::Machine, black_box(&request)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = jws_verification, csr_check_and_sign, nonces, crl, ocsp_responses
}
criterion_main!(benches);
