//! What the edge costs one call: reading the principal out of a client certificate,
//! checking a bearer token's signature, and the table lookup, each as the edge does it.
//!
//! `cargo bench -p banyan-trust --bench edge`

use std::time::Duration;

use banyan_trust::edge::admit;
use banyan_trust::identity::principal_of_certificate;
use banyan_trust::issue;
use banyan_trust::policy::{check, method_permission};
use banyan_trust::token::TokenSigner;
use banyan_trust::{CertsDir, Role, Security};
use criterion::{criterion_group, criterion_main, Criterion};

fn edge(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = CertsDir::new(tmp.path().join("certs"));
    issue::create_ca(&dir, false).expect("CA");
    issue::issue_node(&dir, 1, &["127.0.0.1".into()], false).expect("node certificate");
    issue::issue_client(&dir, "ops", Role::Admin, None, false).expect("client certificate");
    let pem = std::fs::read_to_string(dir.client_cert("ops")).expect("client.ops.crt");
    let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let der = der.contents;
    let node = Security::node(&dir, 1).expect("node security");
    let token = TokenSigner::load(&dir)
        .expect("token key")
        .agent("ada", Duration::from_secs(3600))
        .expect("token");
    let method = "/banyan.v1.ContactCenter/CreateContact";

    c.bench_function("client certificate -> principal", |b| {
        b.iter(|| principal_of_certificate(std::hint::black_box(&der)))
    });
    let principal = principal_of_certificate(&der).expect("principal");
    c.bench_function("table lookup and check", |b| {
        b.iter(|| {
            check(
                Some(std::hint::black_box(&principal)),
                method_permission(std::hint::black_box(method)),
                "call",
            )
        })
    });
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    let extensions = http::Extensions::new();
    c.bench_function("bearer token -> admitted desk call", |b| {
        b.iter(|| {
            admit(
                &node,
                std::hint::black_box("/banyan.v1.AgentDesk/Session"),
                &extensions,
                std::hint::black_box(&headers),
            )
        })
    });
}

criterion_group!(benches, edge);
criterion_main!(benches);
