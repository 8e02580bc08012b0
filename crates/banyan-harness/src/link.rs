//! Links that tests can cut: a TCP relay on loopback between two Banyan nodes.
//!
//! A node that should reach another through a [`Link`] is given the link's address instead
//! of the other node's. Cutting the link closes every connection through it and refuses new
//! ones until it is healed, so gRPC calls across it fail the way they do when a site's WAN
//! line drops. It works the same for nodes in this process and for `banyan` processes, so a
//! partition between a branch and the core runs in both.
//!
//! A link can also be muted: what the caller sends still arrives, but nothing comes back,
//! as when a line fails one way or a reply is lost after the request was served. The
//! caller cannot tell whether its requests took effect.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A relay from its own loopback address to `target`. Dropping it stops the relay.
pub struct Link {
    addr: String,
    target: Arc<Mutex<String>>,
    state: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

/// What a link lets through now, and how many times it was muted: a connection that lived
/// through a mute is done for even if it never saw the muted state itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mode {
    state: State,
    mutes: u64,
}

/// What a link lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Every connection closed, new ones refused.
    Cut,
    /// Requests pass, answers are dropped.
    Muted,
}

impl Link {
    /// Starts relaying from a fresh loopback port to `target` (`host:port`). Must be called
    /// inside a Tokio runtime.
    pub fn start(target: &str) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let listener = TcpListener::from_std(listener)?;
        let (state, _) = watch::channel(Mode {
            state: State::Open,
            mutes: 0,
        });
        let target = Arc::new(Mutex::new(target.to_owned()));
        let accept = tokio::spawn(relay(listener, target.clone(), state.clone()));
        Ok(Self {
            addr,
            target,
            state,
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
        self.state.send_modify(|m| m.state = State::Cut);
    }

    /// Delivers what the caller sends and drops every byte coming back, on open
    /// connections and new ones.
    pub fn mute(&self) {
        self.state.send_modify(|m| {
            m.state = State::Muted;
            m.mutes += 1;
        });
    }

    /// Lets connections through again. Connections that were muted are closed (the
    /// caller lost part of their stream); callers connect afresh.
    pub fn heal(&self) {
        self.state.send_modify(|m| m.state = State::Open);
    }

    /// Whether the link is cut now (a muted link is not), so a test can assert its setup.
    pub fn is_cut(&self) -> bool {
        self.state.borrow().state == State::Cut
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.state.send_modify(|m| m.state = State::Cut);
        self.accept.abort();
    }
}

async fn relay(listener: TcpListener, target: Arc<Mutex<String>>, state: watch::Sender<Mode>) {
    let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        if state.borrow().state == State::Cut {
            drop(inbound);
            continue;
        }
        let watch = state.subscribe();
        let target = target.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|task| !task.is_finished());
        open.push(tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            carry(inbound, outbound, watch).await;
        }));
    }
}

/// Carries one connection until either side closes it, the link is cut, or the link is
/// healed after this connection was muted. Dropping both streams closes the connection on
/// each side.
async fn carry(inbound: TcpStream, outbound: TcpStream, mut state: watch::Receiver<Mode>) {
    let (mut from_caller, mut to_caller) = inbound.into_split();
    let (mut from_target, mut to_target) = outbound.into_split();
    let start = *state.borrow();
    // Monotone: once a mute has touched this connection it carries nothing back again.
    let was_muted = move |now: Mode| {
        start.state == State::Muted || now.state == State::Muted || now.mutes != start.mutes
    };
    let up = tokio::io::copy(&mut from_caller, &mut to_target);
    let down = {
        let state = state.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = from_target.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<_, std::io::Error>(());
                }
                if !was_muted(*state.borrow()) {
                    to_caller.write_all(&buf[..n]).await?;
                }
            }
        }
    };
    let ended = async {
        loop {
            let now = *state.borrow_and_update();
            if now.state == State::Cut || (now.state == State::Open && was_muted(now)) {
                return;
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = ended => {}
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

    /// The branch's calls reach the core, their answers are lost.
    pub fn mute_answers(&self) {
        self.to_core.iter().for_each(Link::mute);
    }

    /// Reconnects the branch to the core both ways, undoing a cut or a mute.
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

    #[tokio::test]
    async fn a_muted_link_delivers_requests_drops_answers_and_closes_when_healed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let (heard, mut received) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let heard = heard.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4];
                    while stream.read_exact(&mut buf).await.is_ok() {
                        let _ = heard.send(buf);
                        if stream.write_all(&buf).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let link = Link::start(&target).unwrap();
        let mut open = TcpStream::connect(link.addr()).await.unwrap();
        round_trip(&mut open).await.unwrap();
        assert_eq!(received.recv().await, Some(*b"ping"));

        link.mute();
        open.write_all(b"lost").await.unwrap();
        let arrived = tokio::time::timeout(Duration::from_secs(5), received.recv()).await;
        assert_eq!(arrived.unwrap(), Some(*b"lost"), "the request arrives");

        link.heal();
        let mut rest = Vec::new();
        // Closed either way (end of stream or reset); nothing may have come back first.
        let _closed = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest))
            .await
            .expect("the muted connection is closed when the link heals");
        assert!(rest.is_empty(), "no answer came back: {rest:?}");
        let mut fresh = TcpStream::connect(link.addr()).await.unwrap();
        round_trip(&mut fresh).await.unwrap();
    }
}
