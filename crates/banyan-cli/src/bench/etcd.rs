//! etcd as a yardstick: a local 3-member etcd cluster (the `etcd` binary from the
//! system's packages) and the one call the benchmark makes, `KV/Put`.
//!
//! Given the benchmark's certificates, etcd runs as Banyan does: TLS on client and peer
//! ports with certificates from the same CA, client certificates required, and the
//! benchmark presents the same admin certificate to both.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use banyan_client::Security;
use banyan_harness::{free_ports, wait_until, Pki};
use tonic::transport::{Channel, Endpoint};

/// Generated from `proto/etcd_put.proto`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("etcdserverpb");
}

/// Three etcd members on loopback under a temporary directory; killed when dropped.
pub struct EtcdCluster {
    _root: tempfile::TempDir,
    members: Vec<Child>,
    pub client_urls: Vec<String>,
}

/// Node ids of the etcd members' certificates in the benchmark's certificates directory.
const ETCD_CERT_IDS: [u64; 3] = [9001, 9002, 9003];

impl EtcdCluster {
    /// Starts the members; with `pki`, on TLS with certificates from its CA.
    pub async fn start(etcd: &str, pki: Option<&Pki>, security: &Security) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new().prefix("banyan-etcd-").tempdir()?;
        let ports = free_ports(6)?;
        let scheme = if pki.is_some() { "https" } else { "http" };
        let peer = |i: usize| format!("{scheme}://127.0.0.1:{}", ports[2 * i]);
        let client = |i: usize| format!("{scheme}://127.0.0.1:{}", ports[2 * i + 1]);
        let initial = (0..3)
            .map(|i| format!("m{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, id) in ETCD_CERT_IDS.into_iter().enumerate() {
            let log = std::fs::File::create(root.path().join(format!("m{i}.log")))?;
            let mut command = Command::new(etcd);
            if let Some(pki) = pki {
                pki.node(id)?;
                let dir = pki.certs_dir();
                let (cert, key, ca) = (dir.node_cert(id), dir.node_key(id), dir.ca_cert());
                command
                    .arg("--cert-file")
                    .arg(&cert)
                    .arg("--key-file")
                    .arg(&key)
                    .arg("--trusted-ca-file")
                    .arg(&ca)
                    .arg("--client-cert-auth")
                    .arg("--peer-cert-file")
                    .arg(&cert)
                    .arg("--peer-key-file")
                    .arg(&key)
                    .arg("--peer-trusted-ca-file")
                    .arg(&ca)
                    .arg("--peer-client-cert-auth");
            }
            let child = command
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(root.path().join(format!("m{i}")))
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--listen-client-urls", &client(i)])
                .args(["--advertise-client-urls", &client(i)])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "banyan-bench"])
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .with_context(|| format!("starting {etcd} (install Debian's etcd-server)"))?;
            members.push(child);
        }
        let cluster = Self {
            _root: root,
            members,
            client_urls: (0..3).map(client).collect(),
        };
        // Ready when a write through the first member succeeds.
        let channel = channel(&cluster.client_urls[0], security)?;
        wait_until("etcd to accept writes", Duration::from_secs(30), || {
            let mut kv = pb::kv_client::KvClient::new(channel.clone());
            async move {
                kv.put(pb::PutRequest {
                    key: b"banyan-bench-ready".to_vec(),
                    value: b"1".to_vec(),
                })
                .await
                .ok()
                .map(drop)
            }
        })
        .await?;
        Ok(cluster)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
    }
}

/// A channel to an etcd member: TLS with `security`'s CA and certificate for `https://`.
pub fn channel(url: &str, security: &Security) -> anyhow::Result<Channel> {
    let endpoint = match url.split_once("://") {
        Some(("https", host_port)) => security.endpoint(host_port)?,
        Some(("http", _)) => Endpoint::from_shared(url.to_owned())?,
        _ => bail!("etcd endpoint {url:?} must be an http:// or https:// URL"),
    };
    Ok(endpoint.tcp_nodelay(true).connect_lazy())
}
