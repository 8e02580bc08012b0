//! The edge: one tower layer on every node's gRPC server that authenticates each call once
//! and asks the [policy](crate::policy) table whether it may go on.
//!
//! A caller is proven by its client certificate (verified by TLS against the cluster's CA)
//! or by a bearer token (`authorization: Bearer …`). A node or a branch that forwards a
//! caller's request names the caller in [`ON_BEHALF_OF_KEY`]; then both are checked, and
//! the caller is the principal the service sees. The result rides in the request's
//! extensions: [`principal_of`] reads it. A refusal is `UNAUTHENTICATED` (no, bad or
//! expired credential) or `PERMISSION_DENIED` (naming the principal and what it lacks),
//! answered here, before any service runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use banyan_domain::Principal;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;
use tower::{Layer, Service};

use crate::identity::{parse_principal_uri, principal_of_certificate, principal_uri};
use crate::policy::{self, Permission};
use crate::security::Security;
use crate::token::TokenClaims;

/// Metadata in which a forwarding node names the caller it forwards for.
pub const ON_BEHALF_OF_KEY: &str = "x-banyan-on-behalf-of";

/// The caller's principal, as the edge authenticated it; `UNAUTHENTICATED` when none (an
/// open method called without credentials).
pub fn principal_of<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            Status::unauthenticated(
                "no credentials: present a client certificate or a bearer token",
            )
        })
}

/// The claims of the bearer token the caller presented, if it used one.
pub fn token_of<T>(request: &tonic::Request<T>) -> Option<&TokenClaims> {
    request.extensions().get::<TokenClaims>()
}

/// The text that names `principal` in [`ON_BEHALF_OF_KEY`].
pub fn encode_principal(principal: &Principal) -> String {
    match principal {
        Principal::Agent(id) => format!("banyan://agent/{id}"),
        Principal::Insecure => "banyan://insecure".to_owned(),
        other => principal_uri(other).unwrap_or_default(),
    }
}

/// Reads what [`encode_principal`] wrote.
pub fn decode_principal(text: &str) -> Option<Principal> {
    match text {
        "banyan://insecure" => Some(Principal::Insecure),
        _ => match text.strip_prefix("banyan://agent/") {
            Some(id) if crate::valid_name(id) => Some(Principal::Agent(id.to_owned())),
            Some(_) => None,
            None => parse_principal_uri(text),
        },
    }
}

/// Who is calling, from the transport alone: a client certificate, else a bearer token.
/// `Ok(None)` when the caller presented nothing.
pub fn authenticate(
    security: &Security,
    extensions: &http::Extensions,
    headers: &http::HeaderMap,
) -> Result<(Option<Principal>, Option<TokenClaims>), Status> {
    if !security.is_secure() {
        return Ok((Some(Principal::Insecure), None));
    }
    let certs = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs());
    if let Some(cert) = certs.as_ref().and_then(|certs| certs.first()) {
        return principal_of_certificate(cert)
            .map(|p| (Some(p), None))
            .ok_or_else(|| {
                Status::unauthenticated("client certificate names no Banyan principal")
            });
    }
    match bearer(headers) {
        None => Ok((None, None)),
        Some(token) => {
            let verifier = security
                .verifier()
                .ok_or_else(|| Status::unauthenticated("this node takes no tokens"))?;
            let claims = verifier.verify(token).map_err(Status::unauthenticated)?;
            let principal = claims
                .principal()
                .map_err(|e| Status::unauthenticated(e.to_string()))?;
            Ok((Some(principal), Some(claims)))
        }
    }
}

/// The token in an `authorization: Bearer …` header.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// What the edge learnt of an admitted call.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The caller the services see (`None` on an open method called without credentials):
    /// the one a forwarding node names, once both were checked.
    pub principal: Option<Principal>,
    /// The bearer token the caller presented.
    pub claims: Option<TokenClaims>,
}

/// Authenticates and authorizes one gRPC call to `path`: the principal the services see,
/// or the refusal.
pub fn admit(
    security: &Security,
    path: &str,
    extensions: &http::Extensions,
    headers: &http::HeaderMap,
) -> Result<Admitted, Status> {
    let (caller, claims) = authenticate(security, extensions, headers)?;
    let permission = policy::method_permission(path);
    let behalf = headers
        .get(ON_BEHALF_OF_KEY)
        .map(|v| v.to_str().ok().and_then(decode_principal));
    let principal = match behalf {
        None => caller,
        Some(original) => {
            let original = original.ok_or_else(|| {
                Status::invalid_argument(format!("{ON_BEHALF_OF_KEY}: names no principal"))
            })?;
            let forwarder = caller.ok_or_else(|| {
                Status::unauthenticated(format!(
                    "{path}: no credentials: present a client certificate or a bearer token"
                ))
            })?;
            policy::check_relay(&forwarder, &original, permission, path)
                .map_err(|d| Status::permission_denied(d.to_string()))?;
            Some(original)
        }
    };
    if principal.is_none() && permission != Permission::Open {
        return Err(Status::unauthenticated(format!(
            "{path}: no credentials: present a client certificate or a bearer token"
        )));
    }
    policy::check(principal.as_ref(), permission, &format!("call {path}"))
        .map_err(|d| Status::permission_denied(d.to_string()))?;
    Ok(Admitted { principal, claims })
}

/// The edge layer of a node's gRPC server.
#[derive(Clone)]
pub struct EdgeLayer {
    security: Security,
}

impl EdgeLayer {
    /// An edge that authenticates callers with `security`'s CA and token key; under
    /// `--insecure` it lets every call through.
    pub fn new(security: Security) -> Self {
        Self { security }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Edge {
            inner,
            security: self.security.clone(),
        }
    }
}

/// A node's gRPC services behind the edge: each call is admitted, with its principal attached, or
/// refused before the inner service runs.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    security: Security,
}

impl<S, B, R> Service<http::Request<B>> for Edge<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let admitted = admit(
            &self.security,
            request.uri().path(),
            request.extensions(),
            request.headers(),
        );
        match admitted {
            Ok(Admitted { principal, claims }) => {
                let extensions = request.extensions_mut();
                if let Some(principal) = principal {
                    extensions.insert(principal);
                }
                if let Some(claims) = claims {
                    extensions.insert(claims);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::info!(path = request.uri().path(), code = ?status.code(), message = status.message(), "call refused at the edge");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The cookie that carries a wallboard's token after it was opened with `?token=…`, so
/// the page's own requests (its data and its live feed) carry it too.
pub const TOKEN_COOKIE: &str = "banyan_token";

/// The token of an HTTP request: `authorization: Bearer …`, else `?token=…`, else the
/// [`TOKEN_COOKIE`].
pub fn http_token<'a>(headers: &'a http::HeaderMap, query: Option<&'a str>) -> Option<&'a str> {
    if let Some(token) = bearer(headers) {
        return Some(token);
    }
    if let Some(token) = query_token(query) {
        return Some(token);
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
}

/// The `token=` parameter of a query string (a wallboard link).
pub fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|t| !t.is_empty())
}

/// Authenticates and authorizes one HTTP request to `path` by its bearer token (the
/// HTTP port speaks no TLS, so it takes no client certificates). `Err` is the status
/// code and the reason.
pub fn admit_http(
    security: &Security,
    path: &str,
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Result<Option<Principal>, (http::StatusCode, String)> {
    let permission = policy::route_permission(path);
    if !security.is_secure() {
        return Ok(Some(Principal::Insecure));
    }
    let principal = match http_token(headers, query) {
        None => None,
        Some(token) => {
            let verifier = security.verifier().ok_or((
                http::StatusCode::UNAUTHORIZED,
                "this node takes no tokens\n".to_owned(),
            ))?;
            let claims = verifier
                .verify(token)
                .map_err(|e| (http::StatusCode::UNAUTHORIZED, format!("{e}\n")))?;
            Some(
                claims
                    .principal()
                    .map_err(|e| (http::StatusCode::UNAUTHORIZED, format!("{e}\n")))?,
            )
        }
    };
    if principal.is_none() && permission != Permission::Open {
        return Err((
            http::StatusCode::UNAUTHORIZED,
            format!("{path}: no credentials: send a bearer token (`banyan certs token --role viewer`)\n"),
        ));
    }
    policy::check(principal.as_ref(), permission, &format!("read {path}"))
        .map_err(|d| (http::StatusCode::FORBIDDEN, format!("{d}\n")))?;
    Ok(principal)
}
