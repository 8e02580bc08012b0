//! One connection holds at most MAX_STREAMS_PER_CONNECTION streams: agent sessions opened
//! over one connection beyond it wait on the client, the node holds exactly the limit open
//! (its own gauge of open sessions says so), and a call over that connection waits for a
//! free stream, while the node answers every other connection.

use std::time::Duration;

use banyan_harness::{http_get_as, wait_until};
use banyan_proto::v1::agent_desk_client::AgentDeskClient;
use banyan_proto::v1::cluster_client::ClusterClient;
use banyan_proto::v1::{AgentCommand, StatusRequest};
use banyan_tests::{cluster, DEADLINE};

const LIMIT: usize = banyan_api::MAX_STREAMS_PER_CONNECTION as usize;

/// Agent sessions the node holds open now, by its `/metrics`.
async fn open_sessions(http: &str, token: &str) -> Option<usize> {
    let (code, body) = http_get_as(http, "/metrics", Some(token)).await.ok()?;
    (code == 200).then_some(())?;
    let open: f64 = body
        .lines()
        .filter(|l| l.starts_with("banyan_grpc_in_flight{") && l.contains("AgentDesk"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    Some(open as usize)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t13_one_connection_holds_a_bounded_number_of_streams() {
    let mut cluster = cluster(&[]);
    cluster.enable_http();
    cluster.start_voters(&[1, 2, 3]).unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let addr = cluster.addr(leader).unwrap();
    let http = cluster.http_addr(leader).unwrap();
    let token = cluster.viewer_token().unwrap();
    let agent = cluster.agent_security("a1").unwrap();
    let channel = banyan_client::channel(&agent, &addr).unwrap();

    // More agent sessions than the limit over one connection, none sending anything.
    let sessions: Vec<_> = (0..LIMIT + 8)
        .map(|_| {
            let channel = channel.clone();
            let agent = agent.clone();
            tokio::spawn(async move {
                let mut request = tonic::Request::new(futures::stream::pending::<AgentCommand>());
                banyan_client::authorize(&agent, &mut request);
                let _ = AgentDeskClient::new(channel).session(request).await;
                std::future::pending::<()>().await;
            })
        })
        .collect();
    wait_until("the node holding the limit open", DEADLINE, || async {
        (open_sessions(&http, &token).await? >= LIMIT).then_some(())
    })
    .await
    .unwrap();
    let status = |channel: tonic::transport::Channel| {
        let agent = agent.clone();
        async move {
            let mut request = tonic::Request::new(StatusRequest {});
            banyan_client::authorize(&agent, &mut request);
            ClusterClient::new(channel).status(request).await
        }
    };
    // A call over the full connection waits for a free stream...
    let waited = tokio::time::timeout(Duration::from_secs(2), status(channel.clone())).await;
    assert!(waited.is_err(), "a call over the full connection waits");
    // ...the node holds no more than the limit from it...
    let open = open_sessions(&http, &token).await.unwrap();
    assert_eq!(open, LIMIT, "the node holds exactly the limit open");
    // ...and every other connection is served.
    let fresh = banyan_client::channel(&agent, &addr).unwrap();
    assert!(
        tokio::time::timeout(DEADLINE, status(fresh)).await.is_ok(),
        "another connection is served"
    );
    for session in sessions {
        session.abort();
    }
}
