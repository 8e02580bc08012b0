//! etcd as a yardstick: a local 3-member etcd cluster (the `etcd` binary from the
//! system's packages) and the one call the benchmark makes, `KV/Put`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use banyan_harness::{free_ports, wait_until};
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

impl EtcdCluster {
    pub async fn start(etcd: &str) -> anyhow::Result<Self> {
        let root = tempfile::Builder::new().prefix("banyan-etcd-").tempdir()?;
        let ports = free_ports(6)?;
        let peer = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i]);
        let client = |i: usize| format!("http://127.0.0.1:{}", ports[2 * i + 1]);
        let initial = (0..3)
            .map(|i| format!("m{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for i in 0..3 {
            let log = std::fs::File::create(root.path().join(format!("m{i}.log")))?;
            let child = Command::new(etcd)
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
        let channel = channel(&cluster.client_urls[0])?;
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

pub fn channel(url: &str) -> anyhow::Result<Channel> {
    if !url.starts_with("http") {
        bail!("etcd endpoint {url:?} must be an http:// URL");
    }
    Ok(Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect_lazy())
}
