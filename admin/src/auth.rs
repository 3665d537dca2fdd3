//! Admin authentication: Bearer JWTs (RFC 7519) signed with the CA's admin key, EdDSA by
//! default or HS256, with claims sub, role, exp, iat and jti, and a deny-list by jti. The same
//! Ed25519 key signs audit checkpoints, so third parties can verify them with the public key.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use dualca_ca::{Ca, Track};
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::problem::AdminProblem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// The machine track's assets.
    Inventory,
    /// People, proofing and recovery on the human track.
    Helpdesk,
    /// Read-only: audit logs, certificates, inventories.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Inventory, Role::Helpdesk, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Inventory => "inventory",
            Role::Helpdesk => "helpdesk",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What a route needs. Which roles have it, and on which track, is decided in one place:
/// `Role::may`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadAudit,
    ReadCertificates,
    RevokeCertificates,
    ReadDashboard,
    ReadAssets,
    ManageAssets,
    ReadPeople,
    ManagePeople,
    /// A track's undelivered mail.
    ReadMail,
    /// Sending a track's given-up mail again.
    ManageMail,
    /// Any valid token.
    Authenticated,
}

impl Role {
    pub fn may(self, permission: Permission, track: Option<Track>) -> bool {
        use Permission::*;
        match (self, permission) {
            (_, Authenticated) => true,
            (Role::Admin, _) => true,
            (Role::Auditor, ReadAudit | ReadCertificates | ReadDashboard | ReadAssets | ReadMail) => true,
            (Role::Inventory, ReadAssets | ManageAssets) => track == Some(Track::Machine),
            (Role::Auditor, ReadPeople) => true,
            (Role::Helpdesk, ReadPeople | ManagePeople) => track == Some(Track::Human),
            (Role::Inventory, ReadCertificates | ReadDashboard | ReadMail | ManageMail) => {
                track == Some(Track::Machine)
            }
            (Role::Helpdesk, ReadCertificates | ReadDashboard | ReadMail | ManageMail) => track == Some(Track::Human),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAlgorithm {
    EdDSA,
    HS256,
}

pub struct AdminAuth {
    algorithm: TokenAlgorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    checkpoint_encoding: EncodingKey,
    /// The Ed25519 public key, PEM: verifies EdDSA tokens and every checkpoint.
    pub public_key_pem: String,
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(data)
}

impl AdminAuth {
    /// Loads the admin keys from `dir`, creating them on first start: `signing.key` (Ed25519,
    /// PKCS#8 PEM) always, `hmac.key` (32 random bytes) when tokens use HS256.
    pub fn load_or_create(dir: &Path, algorithm: TokenAlgorithm) -> Result<AdminAuth, String> {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let signing: PathBuf = dir.join("signing.key");
        if !signing.exists() {
            let key = openssl::pkey::PKey::generate_ed25519().map_err(|e| e.to_string())?;
            let pem = key.private_key_to_pem_pkcs8().map_err(|e| e.to_string())?;
            write_private(&signing, &pem).map_err(|e| format!("write {}: {e}", signing.display()))?;
        }
        let private_pem = fs::read(&signing).map_err(|e| format!("read {}: {e}", signing.display()))?;
        let key = openssl::pkey::PKey::private_key_from_pem(&private_pem).map_err(|e| e.to_string())?;
        let public_pem = key.public_key_to_pem().map_err(|e| e.to_string())?;
        let checkpoint_encoding = EncodingKey::from_ed_pem(&private_pem).map_err(|e| e.to_string())?;
        let (encoding, decoding) = match algorithm {
            TokenAlgorithm::EdDSA => (
                EncodingKey::from_ed_pem(&private_pem).map_err(|e| e.to_string())?,
                DecodingKey::from_ed_pem(&public_pem).map_err(|e| e.to_string())?,
            ),
            TokenAlgorithm::HS256 => {
                let path = dir.join("hmac.key");
                if !path.exists() {
                    let mut secret = [0u8; 32];
                    openssl::rand::rand_bytes(&mut secret).map_err(|e| e.to_string())?;
                    write_private(&path, &secret).map_err(|e| format!("write {}: {e}", path.display()))?;
                }
                let secret = fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
                if secret.len() < 32 {
                    return Err(format!("{} must hold at least 32 bytes", path.display()));
                }
                (EncodingKey::from_secret(&secret), DecodingKey::from_secret(&secret))
            }
        };
        Ok(AdminAuth {
            algorithm,
            encoding,
            decoding,
            checkpoint_encoding,
            public_key_pem: String::from_utf8_lossy(&public_pem).into_owned(),
        })
    }

    fn jwt_algorithm(&self) -> Algorithm {
        match self.algorithm {
            TokenAlgorithm::EdDSA => Algorithm::EdDSA,
            TokenAlgorithm::HS256 => Algorithm::HS256,
        }
    }

    /// Mints a token; returns it with its claims.
    pub fn mint(&self, role: Role, subject: &str, ttl_seconds: i64, now: i64) -> Result<(String, Claims), String> {
        let claims = Claims {
            sub: subject.to_string(),
            role: role.as_str().to_string(),
            iat: now,
            exp: now + ttl_seconds,
            jti: dualca_ca::ids::new_id(),
        };
        let token = jsonwebtoken::encode(&Header::new(self.jwt_algorithm()), &claims, &self.encoding)
            .map_err(|e| e.to_string())?;
        Ok((token, claims))
    }

    /// Checks the signature, the algorithm and the expiry; the deny-list is the caller's.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        let mut validation = Validation::new(self.jwt_algorithm());
        validation.set_required_spec_claims(&["exp", "sub", "iat", "jti"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map(|d| d.claims).map_err(|e| e.to_string())
    }

    /// Signs a checkpoint payload with the Ed25519 admin key (compact JWS).
    pub fn sign_checkpoint<T: Serialize>(&self, payload: &T) -> Result<String, String> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), payload, &self.checkpoint_encoding)
            .map_err(|e| e.to_string())
    }
}

pub struct AdminState {
    pub ca: Arc<Ca>,
    pub auth: Arc<AdminAuth>,
}

/// A verified admin caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
    pub jti: String,
}

/// How the audit chains name an operator acting through the admin API or pages.
pub fn admin_actor(subject: &str) -> String {
    format!("admin:{subject}")
}

impl Principal {
    /// This operator as the audit chains name it.
    pub fn actor(&self) -> String {
        admin_actor(&self.subject)
    }

    /// Allows the request or returns 403, after writing the denial to the track's chain.
    pub async fn require(
        &self,
        state: &AdminState,
        permission: Permission,
        track: Option<Track>,
        action: &str,
    ) -> Result<(), AdminProblem> {
        if self.role.may(permission, track) {
            return Ok(());
        }
        let (ca, subject, role, action_text) =
            (state.ca.clone(), self.subject.clone(), self.role.as_str(), action.to_string());
        let audit_track = track.unwrap_or(Track::Machine);
        let _ = web::block(move || ca.record_admin_denial(audit_track, &subject, role, &action_text)).await;
        tracing::warn!(subject = %self.subject, role = self.role.as_str(), action, "admin request denied");
        Err(AdminProblem::forbidden(format!("role {} may not {action}", self.role.as_str())))
    }
}

/// The token from `Authorization: Bearer …`. (A session cookie comes with the admin pages and
/// their CSRF defence, not before.)
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

impl FromRequest for Principal {
    type Error = AdminProblem;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AdminState>>()
                .cloned()
                .ok_or_else(|| AdminProblem::internal("admin state missing"))?;
            let token =
                bearer_token(&req).ok_or_else(|| AdminProblem::unauthenticated("a Bearer token is required"))?;
            let claims =
                state.auth.verify(&token).map_err(|e| AdminProblem::unauthenticated(format!("invalid token: {e}")))?;
            let role = Role::parse(&claims.role)
                .ok_or_else(|| AdminProblem::unauthenticated(format!("unknown role {:?}", claims.role)))?;
            let (ca, jti) = (state.ca.clone(), claims.jti.clone());
            let revoked = web::block(move || ca.is_admin_token_revoked(&jti))
                .await
                .map_err(|e| AdminProblem::internal(e.to_string()))?
                .map_err(|e| AdminProblem::internal(e.to_string()))?;
            if revoked {
                return Err(AdminProblem::unauthenticated("the token has been revoked"));
            }
            Ok(Principal { subject: claims.sub, role, jti: claims.jti })
        })
    }
}
