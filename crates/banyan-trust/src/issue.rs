//! Making the cluster's credentials (`banyan certs`): a CA, then node, branch and client
//! certificates signed by it, each naming its principal (see [`identity`](crate::identity)).
//!
//! The CA key is ECDSA P-256 and so are the leaves (every TLS stack speaks it); the token
//! key is Ed25519. Validity: the CA ten years, the leaves five, CockroachDB's choice, with
//! an hour of slack before "now" so a node whose clock is a little behind accepts a fresh
//! certificate.

use std::net::IpAddr;

use banyan_domain::{Principal, Role};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use time::{Duration, OffsetDateTime};

use crate::files::CertsDir;
use crate::identity::principal_uri;
use crate::{valid_name, TrustError};

const CA_YEARS: i64 = 10;
const LEAF_YEARS: i64 = 5;

/// Creates `ca.crt`, `ca.key` and the token key pair (`token.key`, `token.pub`).
pub fn create_ca(dir: &CertsDir, overwrite: bool) -> Result<(), TrustError> {
    let paths = [
        dir.ca_cert(),
        dir.ca_key(),
        dir.token_key(),
        dir.token_pub(),
    ];
    dir.create()?;
    dir.check_new(
        &paths.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        overwrite,
    )?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params().self_signed(&key)?;
    let token = KeyPair::generate_for(&PKCS_ED25519)?;
    dir.write_secret(&dir.ca_key(), &key.serialize_pem())?;
    dir.write_secret(&dir.token_key(), &token.serialize_pem())?;
    dir.write_public(&dir.token_pub(), &token.public_key_pem())?;
    dir.write_public(&dir.ca_cert(), &cert.pem())
}

/// Issues `node.ID.crt`/`.key` for core voter `id`, valid for `hosts` (IPs or DNS names).
pub fn issue_node(
    dir: &CertsDir,
    id: u64,
    hosts: &[String],
    overwrite: bool,
) -> Result<(), TrustError> {
    if id == 0 {
        return Err(TrustError::Invalid("--id: must be positive".into()));
    }
    let principal = Principal::Node(id);
    issue_node_like(dir, id, &principal, hosts, overwrite)
}

/// Issues `node.ID.crt`/`.key` for branch node `id` serving `site`.
pub fn issue_branch(
    dir: &CertsDir,
    id: u64,
    site: &str,
    hosts: &[String],
    overwrite: bool,
) -> Result<(), TrustError> {
    if id == 0 {
        return Err(TrustError::Invalid("--id: must be positive".into()));
    }
    check_name("--site", site)?;
    let principal = Principal::Branch {
        node: id,
        site: site.to_owned(),
    };
    issue_node_like(dir, id, &principal, hosts, overwrite)
}

/// Issues `client.NAME.crt`/`.key` with `role`, optionally scoped to `site`.
pub fn issue_client(
    dir: &CertsDir,
    name: &str,
    role: Role,
    site: Option<&str>,
    overwrite: bool,
) -> Result<(), TrustError> {
    check_name("--name", name)?;
    if let Some(site) = site {
        check_name("--site", site)?;
    }
    let (cert, key) = (dir.client_cert(name), dir.client_key(name));
    dir.check_new(&[&cert, &key], overwrite)?;
    let principal = Principal::User {
        name: name.to_owned(),
        role,
        site: site.map(str::to_owned),
    };
    let (cert_pem, key_pem) = leaf(dir, &principal, &[], false)?;
    dir.write_secret(&key, &key_pem)?;
    dir.write_public(&cert, &cert_pem)
}

fn issue_node_like(
    dir: &CertsDir,
    id: u64,
    principal: &Principal,
    hosts: &[String],
    overwrite: bool,
) -> Result<(), TrustError> {
    if hosts.is_empty() {
        return Err(TrustError::Invalid(
            "--host: name at least one address or DNS name the node is reached at".into(),
        ));
    }
    let (cert, key) = (dir.node_cert(id), dir.node_key(id));
    dir.check_new(&[&cert, &key], overwrite)?;
    let (cert_pem, key_pem) = leaf(dir, principal, hosts, true)?;
    dir.write_secret(&key, &key_pem)?;
    dir.write_public(&cert, &cert_pem)
}

fn check_name(flag: &str, name: &str) -> Result<(), TrustError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(TrustError::Invalid(format!(
            "{flag}: {name:?} must be 1-64 letters, digits, '.', '_' or '-'"
        )))
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Banyan");
    name.push(DnType::CommonName, "Banyan CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365 * CA_YEARS);
    params
}

/// A leaf certificate and its key, signed by the directory's CA. Node certificates serve
/// and connect (peers are both); client certificates only connect.
fn leaf(
    dir: &CertsDir,
    principal: &Principal,
    hosts: &[String],
    serves: bool,
) -> Result<(String, String), TrustError> {
    let ca_key = KeyPair::from_pem(&dir.read(&dir.ca_key())?)?;
    let issuer = Issuer::from_ca_cert_pem(&dir.read(&dir.ca_cert())?, ca_key)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Banyan");
    name.push(DnType::CommonName, principal.to_string());
    params.distinguished_name = name;
    let uri = principal_uri(principal)
        .ok_or_else(|| TrustError::Invalid(format!("{principal} has no certificate")))?;
    params.subject_alt_names.push(SanType::URI(ia5(&uri)?));
    for host in hosts {
        params.subject_alt_names.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(ia5(host)?),
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = if serves {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365 * LEAF_YEARS);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ia5(text: &str) -> Result<rcgen::string::Ia5String, TrustError> {
    rcgen::string::Ia5String::try_from(text)
        .map_err(|_| TrustError::Invalid(format!("--host: {text:?} is not a valid name")))
}
