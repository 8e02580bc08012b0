//! Sends a request that needs the leader on to the leader, once.
//!
//! A follower that receives a write (or a linearizable read) forwards it to the leader it
//! knows, marking it as forwarded. A forwarded request is never forwarded again: if the
//! leader moved meanwhile, the caller gets `UNAVAILABLE` with the new leader's address and
//! retries there, so a request cannot bounce between nodes during an election.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use banyan_domain::{Command, Principal};
use banyan_raft::AppliedState;
use banyan_trust::Security;
use tonic::transport::Channel;

use crate::Committed;
use tonic::{Request, Status};

use crate::errors::{ApiError, LeaderHint};

/// Marks a request that a node already forwarded.
pub const FORWARDED_KEY: &str = "x-banyan-forwarded";

/// Cached channels to the nodes requests are forwarded to.
#[derive(Clone)]
pub struct Forwarder {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// TLS with this node's certificate: the leader sees who forwarded.
    security: Security,
}

impl Forwarder {
    /// An empty cache; channels open on first use, with `security` so the leader can tell
    /// which node forwarded.
    pub fn new(security: Security) -> Self {
        Self {
            channels: Arc::default(),
            security,
        }
    }

    /// A channel to the leader named by `hint`, or the `UNAVAILABLE` status to return when
    /// the leader is unknown.
    pub fn leader_channel(&self, hint: &LeaderHint) -> Result<Channel, ApiError> {
        let addr = hint
            .addr
            .as_deref()
            .ok_or_else(|| ApiError::NotLeader(hint.clone()))?;
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel = banyan_raft::network::channel_to(&self.security, addr)
            .map_err(|_| ApiError::NotLeader(hint.clone()))?;
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// The one way a node that is not the leader (a core follower, a branch) hands a domain
/// command to the core's leader: `send` delivers the encoded command over
/// `CommandForwarding` (once to a known leader, or through a retrying client), the
/// leader's answer is decoded, and the reply waits until this node's own replica
/// (`applied`) has applied the entry, so a read here right after sees the write.
///
/// The command carries its principal; the leader checks it again, within what the
/// forwarding node's own certificate allows.
pub async fn forward_command<Fut>(
    command: &Command,
    applied: &AppliedState,
    wait: Duration,
    send: impl FnOnce(Vec<u8>) -> Fut,
) -> Result<Committed, ApiError>
where
    Fut: std::future::Future<Output = Result<Vec<u8>, Status>>,
{
    let reply = send(banyan_raft::codec::encode(command))
        .await
        .map_err(lost_on_the_way)?;
    let committed: Committed = banyan_raft::codec::decode(&reply)
        .map_err(|e| ApiError::Fatal(format!("undecodable reply from the leader: {e}")))?;
    if tokio::time::timeout(wait, applied.wait_applied(committed.index))
        .await
        .is_err()
    {
        // Done, but not visible here yet: not a refusal, whatever the caller retries.
        return Err(ApiError::OutcomeUnknown(format!(
            "committed at log index {} but not yet applied on this node; retry with the same request_id",
            committed.index
        )));
    }
    Ok(committed)
}

/// The caller's view of a forward that failed. The leader's own answer passes on as it
/// came. A failure on the way is judged here, where it is known, because the caller sees
/// only a code: a leader that could not be reached at all is a plain "not done"
/// (`UNAVAILABLE`), and a connection lost or silent with the command on it is an unknown
/// outcome.
fn lost_on_the_way(status: Status) -> ApiError {
    use std::error::Error as _;
    if status.source().is_none() {
        ApiError::Remote(status)
    } else if banyan_client::outcome_unknown(&status) {
        ApiError::OutcomeUnknown(format!(
            "the leader's answer was lost ({}); the write may still apply: retry with the same \
             request_id",
            status.message()
        ))
    } else {
        ApiError::Unavailable(format!(
            "the leader could not be reached: {}",
            status.message()
        ))
    }
}

/// Marks a reply that came through a forward with the leader's address, so a client can
/// send its next request to the leader directly.
pub fn tag_leader<T>(
    reply: Result<tonic::Response<T>, Status>,
    hint: &LeaderHint,
) -> Result<tonic::Response<T>, Status> {
    reply.map(|mut response| {
        if let Some(addr) = hint
            .addr
            .as_deref()
            .and_then(|a| tonic::metadata::MetadataValue::try_from(a).ok())
        {
            response
                .metadata_mut()
                .insert(crate::errors::LEADER_ADDR_KEY, addr);
        }
        response
    })
}

/// Whether `request` was already forwarded by another node.
pub fn was_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED_KEY)
}

/// Wraps `message` for forwarding, keeping the caller's deadline if it set one and naming
/// the caller, so the leader checks what the caller may do, not only what this node may.
pub fn forwarded<T>(
    message: T,
    timeout: Option<std::time::Duration>,
    caller: Option<&Principal>,
) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        FORWARDED_KEY,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    if let Some(caller) = caller.and_then(|p| {
        tonic::metadata::MetadataValue::try_from(banyan_trust::edge::encode_principal(p)).ok()
    }) {
        request
            .metadata_mut()
            .insert(banyan_trust::edge::ON_BEHALF_OF_KEY, caller);
    }
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// The caller's request as it goes on to the leader: same message, deadline and caller.
pub fn relay<T>(request: Request<T>) -> Request<T> {
    let timeout = caller_timeout(&request);
    let caller = request.extensions().get::<Principal>().cloned();
    forwarded(request.into_inner(), timeout, caller.as_ref())
}

/// The caller's `grpc-timeout`, if any, so a forwarded request keeps the same deadline.
pub fn caller_timeout<T>(request: &Request<T>) -> Option<std::time::Duration> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    use std::time::Duration;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(value: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("grpc-timeout", value.parse().unwrap());
        request
    }

    #[test]
    fn the_callers_deadline_is_kept() {
        let timeout = caller_timeout(&with_timeout("250m"));
        assert_eq!(timeout, Some(std::time::Duration::from_millis(250)));
        assert_eq!(
            caller_timeout(&with_timeout("2H")),
            Some(std::time::Duration::from_secs(7200))
        );
    }

    /// Regression: hours and minutes were multiplied unchecked, so a hostile
    /// `grpc-timeout` overflowed (a panic in a debug build) instead of being ignored.
    #[test]
    fn a_deadline_too_large_to_hold_is_ignored() {
        assert_eq!(caller_timeout(&with_timeout("99999999999999999H")), None);
        assert_eq!(caller_timeout(&with_timeout("999999999999999999M")), None);
        assert_eq!(caller_timeout(&with_timeout("12X")), None);
    }
}
