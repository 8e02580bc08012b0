//! The client side of a node's HTTP port, as small as a health check needs: one GET over
//! HTTP/1.0, for `banyan probe` in images without a shell or curl, and for the tests and
//! drills that read `/readyz`, `/metrics` and the wallboard.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal HTTP/1.0 GET against `addr` (`host:port`): status code and body. Enough for
/// health endpoints without an HTTP client dependency.
pub async fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    http_get_as(addr, path, None).await
}

/// Like [`http_get`], presenting `token` as a bearer token (the wallboard and `/metrics`
/// of a secure node need one).
pub async fn http_get_as(
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("malformed response: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Answers one request with `response` and hands back the request it read.
    async fn serve_once(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client closed before ending its request");
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, served)
    }

    #[tokio::test]
    async fn reads_the_status_and_the_body() {
        let (addr, served) = serve_once("HTTP/1.0 503 Service Unavailable\r\n\r\nnot yet\n").await;
        let (code, body) = http_get(&addr, "/readyz").await.unwrap();
        assert_eq!((code, body.as_str()), (503, "not yet\n"));
        let request = served.await.unwrap();
        assert!(request.starts_with("GET /readyz HTTP/1.0\r\n"), "{request}");
        assert!(!request.contains("Authorization"), "{request}");
    }

    #[tokio::test]
    async fn presents_the_token() {
        let (addr, served) = serve_once("HTTP/1.0 200 OK\r\n\r\n").await;
        let (code, body) = http_get_as(&addr, "/metrics", Some("t0k")).await.unwrap();
        assert_eq!((code, body.as_str()), (200, ""));
        let request = served.await.unwrap();
        assert!(
            request.contains("\r\nAuthorization: Bearer t0k\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn refuses_a_response_without_a_status() {
        let (addr, _served) = serve_once("garbage").await;
        let err = http_get(&addr, "/").await.unwrap_err();
        assert!(err.to_string().contains("malformed response"), "{err}");
    }
}
