//! Reads against any set of Banyan nodes known by address: status, the agreed leader,
//! every node's final state at one log position, and event histories. Shared by the
//! process cluster ([`LocalCluster`](crate::LocalCluster)) and by drills against nodes the
//! harness did not start (containers), so a history is read the same way everywhere.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use banyan_client::{Client, RetryPolicy, Security};
use banyan_proto::v1::contact_center_client::ContactCenterClient;
use banyan_proto::v1::{
    ClusterStatus, Event, EventKind, ReadConsistency, Role, WatchEventsRequest,
};

use crate::checker::NodeState;
use crate::contacts::NodeContacts;
use crate::wait::wait_until;

/// Nodes by id, each at the address this process reaches it at, and the credentials the
/// reads present.
#[derive(Debug, Clone)]
pub struct Nodes {
    addrs: BTreeMap<u64, String>,
    security: Security,
}

impl Nodes {
    /// Nodes at `addrs`, read with `security`: the harness's own or a drill target's.
    pub fn new(addrs: impl IntoIterator<Item = (u64, String)>, security: Security) -> Self {
        Self {
            addrs: addrs.into_iter().collect(),
            security,
        }
    }

    /// The credentials the reads present, for a caller making its own calls alongside.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// A channel to node `id` with the reads' credentials, and a request carrying them.
    fn watch_request(
        &self,
        id: u64,
        request: WatchEventsRequest,
    ) -> anyhow::Result<(
        tonic::transport::Channel,
        tonic::Request<WatchEventsRequest>,
    )> {
        let channel = banyan_client::channel(&self.security, &self.addr(id)?)?;
        let mut request = tonic::Request::new(request);
        banyan_client::authorize(&self.security, &mut request);
        Ok((channel, request))
    }

    /// Where this process reaches node `id`; an error names a node it was not given.
    pub fn addr(&self, id: u64) -> anyhow::Result<String> {
        self.addrs
            .get(&id)
            .cloned()
            .with_context(|| format!("no node {id}"))
    }

    /// A client of node `id` alone.
    pub fn client(&self, id: u64, policy: RetryPolicy) -> anyhow::Result<Client> {
        Ok(Client::new([self.addr(id)?], policy, &self.security)?)
    }

    /// Status as node `id` sees it (one attempt).
    pub async fn status(&self, id: u64) -> anyhow::Result<ClusterStatus> {
        let client = self.client(id, RetryPolicy::once(Duration::from_secs(2)))?;
        client
            .status()
            .await
            .map_err(|s| anyhow::anyhow!("status of node {id}: {}", s.message()))
    }

    /// Waits until every node in `among` reports the same leader (one of `among`) in the
    /// same term, and returns it.
    pub async fn wait_for_leader(&self, among: &[u64], timeout: Duration) -> anyhow::Result<u64> {
        wait_until("a leader all nodes agree on", timeout, || async {
            let mut seen = None;
            for id in among {
                let status = self.status(*id).await.ok()?;
                let view = (status.leader_id, status.term);
                if status.leader_id == 0 || !among.contains(&status.leader_id) {
                    return None;
                }
                if *seen.get_or_insert(view) != view {
                    return None;
                }
            }
            let (leader, _) = seen?;
            let leader_status = self.status(leader).await.ok()?;
            (leader_status.role == Role::Leader as i32).then_some(leader)
        })
        .await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, timeout: Duration) -> anyhow::Result<()> {
        wait_until(
            &format!("node {id} to apply index {index}"),
            timeout,
            || async {
                let status = self.status(id).await.ok()?;
                (status.applied_index >= index).then_some(())
            },
        )
        .await
    }

    /// Waits until every node in `ids` has applied everything the leader committed, then
    /// reads each one's customers from its own replica.
    pub async fn final_states(
        &self,
        ids: &[u64],
        timeout: Duration,
    ) -> anyhow::Result<Vec<NodeState>> {
        self.settled_reads(ids, timeout, |node, client| async move {
            let customers = client.all_customers(ReadConsistency::Local).await?;
            Ok(NodeState { node, customers })
        })
        .await
    }

    /// Like [`final_states`](Self::final_states), for contacts, with the log index they
    /// were read at (every node's reads are at the same index).
    pub async fn final_contacts(
        &self,
        ids: &[u64],
        timeout: Duration,
    ) -> anyhow::Result<(Vec<NodeContacts>, u64)> {
        let nodes = self
            .settled_reads(ids, timeout, |node, client| async move {
                let contacts = client.all_contacts(ReadConsistency::Local).await?;
                Ok(NodeContacts { node, contacts })
            })
            .await?;
        let leader = self.wait_for_leader(ids, timeout).await?;
        Ok((nodes, self.status(leader).await?.committed_index))
    }

    /// Waits until every node in `ids` has applied everything the leader committed, then
    /// runs `read` against each one's own replica. A write still in flight on the server
    /// side (its client gave up) can commit meanwhile; then the reads are repeated, so all
    /// nodes are compared at the same state (entries that only renew a site's lease are
    /// no change).
    async fn settled_reads<T, F, Fut>(
        &self,
        ids: &[u64],
        timeout: Duration,
        read: F,
    ) -> anyhow::Result<Vec<T>>
    where
        F: Fn(u64, Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let leader = self.wait_for_leader(ids, timeout).await?;
            let before = self.status(leader).await?;
            let mut states = Vec::new();
            for id in ids {
                self.wait_applied(*id, before.committed_index, timeout)
                    .await?;
                let client = self.client(*id, RetryPolicy::once(Duration::from_secs(10)))?;
                let state = read(*id, client)
                    .await
                    .map_err(|s| anyhow::anyhow!("reading node {id}: {}", s.message()))?;
                states.push(state);
            }
            let after = self.status(leader).await?;
            if after.committed_index == before.committed_index {
                return Ok(states);
            }
            // Branches renew their leases every few hundred milliseconds however quiet the
            // cluster is; entries that only renew leases change nothing the reads compare.
            let between = self
                .events_from(
                    leader,
                    before.committed_index + 1,
                    after.committed_index,
                    timeout,
                )
                .await?;
            if between
                .iter()
                .all(|e| e.kind == EventKind::LeaseRenewed as i32)
            {
                return Ok(states);
            }
            if std::time::Instant::now() >= deadline {
                bail!("the log kept growing while reading final states");
            }
        }
    }

    /// Every event on node `id` from log index `from` up to `until`, in log order. Call it
    /// once the cluster is quiet: it reads until the node has nothing more to send. From
    /// index 1 it is an error if the node no longer holds the whole history (it restarted
    /// or installed a snapshot), so a checker never judges a history with a hole.
    pub async fn events_from(
        &self,
        id: u64,
        from: u64,
        until: u64,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Event>> {
        let (channel, request) = self.watch_request(
            id,
            WatchEventsRequest {
                from_index: from,
                ..Default::default()
            },
        )?;
        let mut stream = ContactCenterClient::new(channel)
            .watch_events(request)
            .await?
            .into_inner();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        // The retained events arrive at once; an idle second means the backlog is drained.
        let idle = Duration::from_secs(1);
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(idle, stream.message()).await {
                Ok(Ok(Some(event))) if event.index <= until => events.push(event),
                // Events come in log order: everything up to `until` is in.
                Ok(Ok(Some(_))) => break,
                Ok(Ok(None)) | Err(_) => break,
                Ok(Err(status)) => bail!("watching node {id}: {}", status.message()),
            }
        }
        Ok(events)
    }

    /// Collects node `id`'s events from log index `from` until the node ends the stream: a
    /// branch does when it stops routing on its own (so this is the whole of its own
    /// history while cut off), any node when it restarts or installs a snapshot.
    pub fn collect_events(
        &self,
        id: u64,
        from: u64,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Vec<Event>>>> {
        let (channel, request) = self.watch_request(
            id,
            WatchEventsRequest {
                from_index: from,
                ..Default::default()
            },
        )?;
        Ok(tokio::spawn(async move {
            let mut stream = ContactCenterClient::new(channel)
                .watch_events(request)
                .await?
                .into_inner();
            let mut events = Vec::new();
            while let Ok(Some(event)) = stream.message().await {
                events.push(event);
            }
            Ok(events)
        }))
    }
}
