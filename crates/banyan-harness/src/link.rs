//! Links that tests can cut: a TCP relay on loopback between two Banyan nodes.
//!
//! A node that should reach another through a [`Link`] is given the link's address instead
//! of the other node's. Cutting the link closes every connection through it and refuses new
//! ones until it is healed, so gRPC calls across it fail the way they do when a site's WAN
//! line drops. It works the same for nodes in this process and for `banyan` processes, so a
//! partition between a branch and the core runs in both.

use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A relay from its own loopback address to `target`. Dropping it stops the relay.
pub struct Link {
    addr: String,
    target: Arc<Mutex<String>>,
    cut: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Link {
    /// Starts relaying from a fresh loopback port to `target` (`host:port`). Must be called
    /// inside a Tokio runtime.
    pub fn start(target: &str) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let listener = TcpListener::from_std(listener)?;
        let (cut, _) = watch::channel(false);
        let target = Arc::new(Mutex::new(target.to_owned()));
        let accept = tokio::spawn(relay(listener, target.clone(), cut.clone()));
        Ok(Self {
            addr,
            target,
            cut,
            accept,
        })
    }

    /// The address to give the node that should go through this link.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Where the link leads.
    pub fn target(&self) -> String {
        self.target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Leads new connections to `target` from now on (a restarted container that came back
    /// at another port); connections already open stay where they are.
    pub fn retarget(&self, target: &str) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = target.to_owned();
    }

    /// Closes every connection through the link and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.accept.abort();
    }
}

async fn relay(listener: TcpListener, target: Arc<Mutex<String>>, cut: watch::Sender<bool>) {
    let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if *cut.borrow() {
            drop(inbound);
            continue;
        }
        let mut cut_now = cut.subscribe();
        let target = target.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|task| !task.is_finished());
        open.push(tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let mut inbound = inbound;
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                // Dropping both streams closes the connection on each side.
                _ = cut_now.wait_for(|cut| *cut) => {}
            }
        }));
    }
}

/// The links between one branch and the core: one per core node for the branch's calls,
/// and one in front of the branch for the core's replication to it.
pub struct BranchLinks {
    /// Branch → core node, in the order of the core addresses given.
    pub to_core: Vec<Link>,
    /// Core → branch (Raft replication to the learner).
    pub from_core: Link,
}

impl BranchLinks {
    /// Links from a branch to each of `core` and from the core to the branch at
    /// `branch_addr`.
    pub fn start(core: &[String], branch_addr: &str) -> std::io::Result<Self> {
        Ok(Self {
            to_core: core
                .iter()
                .map(|addr| Link::start(addr))
                .collect::<std::io::Result<_>>()?,
            from_core: Link::start(branch_addr)?,
        })
    }

    /// The core addresses to give the branch (`--core`).
    pub fn core_addrs(&self) -> Vec<String> {
        self.to_core.iter().map(|l| l.addr().to_owned()).collect()
    }

    /// The address to advertise for the branch (`--addr`).
    pub fn branch_addr(&self) -> &str {
        self.from_core.addr()
    }

    /// Cuts the branch off from the whole core, both ways.
    pub fn cut(&self) {
        self.to_core.iter().for_each(Link::cut);
        self.from_core.cut();
    }

    pub fn heal(&self) {
        self.to_core.iter().for_each(Link::heal);
        self.from_core.heal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<()> {
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no echo"))??;
        assert_eq!(&buf, b"ping");
        Ok(())
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_refuses_new_ones_until_healed() {
        let link = Link::start(&echo_server().await).unwrap();
        let mut open = TcpStream::connect(link.addr()).await.unwrap();
        round_trip(&mut open).await.unwrap();

        link.cut();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf))
            .await
            .expect("the open connection is closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let mut fresh = TcpStream::connect(link.addr()).await.unwrap();
        assert!(round_trip(&mut fresh).await.is_err());

        link.heal();
        let mut healed = TcpStream::connect(link.addr()).await.unwrap();
        round_trip(&mut healed).await.unwrap();
    }
}
