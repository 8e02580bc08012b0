//! Bearer tokens: EdDSA-signed JWTs for agents' desks (home agents on the internet hold no
//! certificate) and for scoped tools, issued with the cluster's token key (`banyan certs
//! token`) and checked by every node with its public half.
//!
//! A token names one principal and an expiry. An agent's token also carries the time it
//! was issued: revoking an agent's tokens records a time in the agent's record, and every
//! token issued before it is refused from then on.

use banyan_domain::{Principal, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::files::CertsDir;
use crate::{valid_name, TrustError};

/// What a token says. `sub` is the principal as the audit trail shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The principal as the audit trail shows it (`agent:ada`, `supervisor:bob@emea`).
    pub sub: String,
    /// Set on an agent's token: the agent it may log in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Set on a scoped token: the role and name it acts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The name a scoped token acts under; the role's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The one site a scoped token is limited to; every site when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Issued at and expires at, seconds since the Unix epoch.
    pub iat: u64,
    /// After this the token is refused; seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, in milliseconds: a revocation in the same second as a re-issue must
    /// refuse the old token and accept the new one.
    #[serde(default)]
    pub iat_ms: u64,
}

impl TokenClaims {
    /// The principal the token proves.
    pub fn principal(&self) -> Result<Principal, TrustError> {
        if let Some(agent) = &self.agent {
            return Ok(Principal::Agent(agent.clone()));
        }
        let role = self
            .role
            .as_deref()
            .and_then(Role::parse)
            .ok_or_else(|| TrustError::Invalid("token names no agent and no role".into()))?;
        if role == Role::Admin {
            return Err(TrustError::Invalid(
                "a token never carries admin: an admin holds a client certificate".into(),
            ));
        }
        Ok(Principal::User {
            name: self.name.clone().unwrap_or_else(|| role.to_string()),
            role,
            site: self.site.clone(),
        })
    }

    /// When the token was issued, milliseconds since the epoch (compared with an agent's
    /// revocation time).
    pub fn issued_at_ms(&self) -> i64 {
        if self.iat_ms > 0 {
            return i64::try_from(self.iat_ms).unwrap_or(i64::MAX);
        }
        i64::try_from(self.iat)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000)
    }
}

/// Signs tokens with `token.key`.
pub struct TokenSigner {
    key: EncodingKey,
}

impl TokenSigner {
    /// The signer of `banyan certs token`, from the directory's `token.key`.
    pub fn load(dir: &CertsDir) -> Result<Self, TrustError> {
        let pem = dir.read(&dir.token_key())?;
        let key = EncodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|e| TrustError::Invalid(format!("{}: {e}", dir.token_key().display())))?;
        Ok(Self { key })
    }

    /// A token for agent `agent`'s desk, valid for `ttl`.
    pub fn agent(&self, agent: &str, ttl: std::time::Duration) -> Result<String, TrustError> {
        if !valid_name(agent) {
            return Err(TrustError::Invalid(format!(
                "--agent: {agent:?} must be 1-64 letters, digits, '.', '_' or '-'"
            )));
        }
        let (iat, exp, iat_ms) = lifetime(ttl);
        self.sign(&TokenClaims {
            sub: Principal::Agent(agent.to_owned()).to_string(),
            agent: Some(agent.to_owned()),
            role: None,
            name: None,
            site: None,
            iat,
            exp,
            iat_ms,
        })
    }

    /// A token acting as `name` with `role`, optionally scoped to `site`.
    pub fn scoped(
        &self,
        name: &str,
        role: Role,
        site: Option<&str>,
        ttl: std::time::Duration,
    ) -> Result<String, TrustError> {
        for (flag, value) in [("--name", Some(name)), ("--site", site)] {
            if let Some(value) = value.filter(|v| !valid_name(v)) {
                return Err(TrustError::Invalid(format!(
                    "{flag}: {value:?} must be 1-64 letters, digits, '.', '_' or '-'"
                )));
            }
        }
        if role == Role::Admin {
            return Err(TrustError::Invalid(
                "--role: admin is given by client certificate only".into(),
            ));
        }
        let principal = Principal::User {
            name: name.to_owned(),
            role,
            site: site.map(str::to_owned),
        };
        let (iat, exp, iat_ms) = lifetime(ttl);
        self.sign(&TokenClaims {
            sub: principal.to_string(),
            agent: None,
            role: Some(role.to_string()),
            name: Some(name.to_owned()),
            site: site.map(str::to_owned),
            iat,
            exp,
            iat_ms,
        })
    }

    /// Signs arbitrary claims (tests make expired tokens with it).
    pub fn sign(&self, claims: &TokenClaims) -> Result<String, TrustError> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.key)
            .map_err(|e| TrustError::Invalid(format!("token: {e}")))
    }
}

fn lifetime(ttl: std::time::Duration) -> (u64, u64, u64) {
    let now = now_secs();
    let now_ms = banyan_env::clock::since_epoch().as_millis() as u64;
    (now, now.saturating_add(ttl.as_secs().max(1)), now_ms)
}

fn now_secs() -> u64 {
    banyan_env::clock::since_epoch().as_secs()
}

/// Checks tokens with `token.pub`.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier")
    }
}

impl TokenVerifier {
    /// A node's token checker, from the directory's `token.pub`.
    pub fn load(dir: &CertsDir) -> Result<Self, TrustError> {
        let pem = dir.read(&dir.token_pub())?;
        let key = DecodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|e| TrustError::Invalid(format!("{}: {e}", dir.token_pub().display())))?;
        Ok(Self { key })
    }

    /// The claims of a token signed by the cluster and not expired (no leeway: a token
    /// is refused the second it expires).
    pub fn verify(&self, token: &str) -> Result<TokenClaims, String> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<TokenClaims>(token, &self.key, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired".to_owned(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    "token not signed by this cluster".to_owned()
                }
                _ => format!("token invalid: {e}"),
            },
        )?;
        Ok(data.claims)
    }
}

/// Seconds until `claims` expire (0 if they have).
pub fn seconds_left(claims: &TokenClaims) -> u64 {
    claims.exp.saturating_sub(now_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn dir() -> (tempfile::TempDir, CertsDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CertsDir::new(tmp.path().join("certs"));
        crate::issue::create_ca(&dir, false).unwrap();
        (tmp, dir)
    }

    #[test]
    fn a_token_proves_its_agent_until_it_expires() {
        let (_tmp, dir) = dir();
        let signer = TokenSigner::load(&dir).unwrap();
        let verifier = TokenVerifier::load(&dir).unwrap();
        let token = signer.agent("ada", Duration::from_secs(3600)).unwrap();
        let claims = verifier.verify(&token).unwrap();
        assert_eq!(claims.principal().unwrap(), Principal::Agent("ada".into()));

        let mut expired = claims.clone();
        expired.exp = now_secs() - 1;
        let err = verifier
            .verify(&signer.sign(&expired).unwrap())
            .unwrap_err();
        assert!(err.contains("expired"), "{err}");
    }

    #[test]
    fn a_token_from_another_cluster_or_altered_is_refused() {
        let (_a, ours) = dir();
        let (_b, theirs) = dir();
        let verifier = TokenVerifier::load(&ours).unwrap();
        let foreign = TokenSigner::load(&theirs)
            .unwrap()
            .agent("ada", Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&foreign).is_err());

        let token = TokenSigner::load(&ours)
            .unwrap()
            .agent("ada", Duration::from_secs(60))
            .unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Swap the claims for another agent's, keeping the signature.
        let other = TokenSigner::load(&ours)
            .unwrap()
            .agent("bob", Duration::from_secs(60))
            .unwrap();
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        assert!(verifier.verify(&parts.join(".")).is_err());
        assert!(verifier.verify("not-a-token").is_err());
    }

    #[test]
    fn scoped_tokens_carry_role_and_site_but_never_admin() {
        let (_tmp, dir) = dir();
        let signer = TokenSigner::load(&dir).unwrap();
        let verifier = TokenVerifier::load(&dir).unwrap();
        let token = signer
            .scoped("wall", Role::Viewer, Some("emea"), Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            verifier.verify(&token).unwrap().principal().unwrap(),
            Principal::User {
                name: "wall".into(),
                role: Role::Viewer,
                site: Some("emea".into())
            }
        );
        assert!(signer
            .scoped("x", Role::Admin, None, Duration::from_secs(60))
            .is_err());
    }
}
