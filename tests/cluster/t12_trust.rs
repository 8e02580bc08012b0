//! The trust boundary (DESIGN.md §10) on real `banyan` processes: every port speaks TLS
//! with the cluster's CA, every call is authenticated once at the edge, one table decides
//! what each principal may do, internal services answer nodes only, a branch acts for its
//! own site only, agents' desks follow their tokens, and the audit trail names who caused
//! every step of a contact's life.

use std::process::Command;
use std::time::Duration;

use banyan_client::{Client, RetryPolicy, Security};
use banyan_domain::{Action, BranchImport, Principal, Role};
use banyan_harness::{http_get, wait_until, LocalCluster, Pki};
use banyan_proto::v1 as pb;
use banyan_proto::v1::agent_command::Command as Cmd;
use banyan_proto::v1::agent_desk_client::AgentDeskClient;
use banyan_proto::v1::agent_event::Event as In;
use banyan_proto::v1::cluster_client::ClusterClient;
use banyan_proto::v1::command_forwarding_client::CommandForwardingClient;
use banyan_proto::v1::contact_center_client::ContactCenterClient;
use banyan_proto::v1::raft_transport_client::RaftTransportClient;
use banyan_tests::{banyan_bin, cluster, other_than, put_agents, put_queue, DEADLINE};
use banyan_trust::token::{TokenClaims, TokenSigner};
use banyan_trust::{ClientIdentity, TokenVerifier};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// How a client reports a connection the server would not complete.
const TRANSPORT: &[Code] = &[
    Code::Unavailable,
    Code::Unknown,
    Code::Internal,
    Code::Cancelled,
    Code::DeadlineExceeded,
];

const BRANCH_FLAGS: [&str; 4] = ["--lease-ttl", "2s", "--max-clock-skew", "500ms"];

/// 3 core nodes and the emea branch, secure, with a queue and agents at both sites.
async fn secure_cluster() -> (LocalCluster, u64, String) {
    let mut cluster = cluster(&[]);
    cluster.enable_http();
    cluster.start_voters(&[1, 2, 3]).unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let branch = cluster.start_branch(101, "emea", &BRANCH_FLAGS).unwrap();
    let admin = cluster.client().unwrap();
    put_queue(
        &admin,
        pb::Queue {
            id: "q".into(),
            name: "Q".into(),
            ..Default::default()
        },
    )
    .await;
    put_queue(
        &admin,
        pb::Queue {
            id: "other".into(),
            name: "Other".into(),
            ..Default::default()
        },
    )
    .await;
    put_agents(&admin, &[("ada", "emea"), ("bob", "apac")]).await;
    let at_branch = Client::new([&branch], quick(), &cluster.security()).unwrap();
    wait_until("the branch joined and has its agent", DEADLINE, || {
        let at_branch = at_branch.clone();
        async move {
            let list = pb::ListAgentsRequest {
                consistency: pb::ReadConsistency::Local.into(),
                ..Default::default()
            };
            let agents = at_branch.list_agents(list).await.ok()?.agents;
            (agents.len() == 2).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(20)));
    (cluster, leader, branch)
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        total_timeout: Duration::from_secs(3),
        follow_leader: false,
        ..RetryPolicy::once(Duration::from_secs(3))
    }
}

/// What an attacker would like to change, read through the admin: queues, agents,
/// contacts, customers and membership.
async fn picture(cluster: &LocalCluster) -> String {
    let admin = cluster.client().unwrap();
    let linear = || pb::ReadConsistency::Linearizable.into();
    let queues = admin
        .list_queues(pb::ListQueuesRequest {
            consistency: linear(),
        })
        .await
        .unwrap()
        .queues;
    let agents = admin
        .list_agents(pb::ListAgentsRequest {
            consistency: linear(),
            ..Default::default()
        })
        .await
        .unwrap()
        .agents;
    let contacts = admin
        .all_contacts(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    let customers = admin
        .all_customers(pb::ReadConsistency::Linearizable)
        .await
        .unwrap();
    let mut members: Vec<(u64, bool)> = admin
        .status()
        .await
        .unwrap()
        .nodes
        .iter()
        .map(|n| (n.id, n.voter))
        .collect();
    members.sort_unstable();
    let agents: Vec<(String, i32)> = agents.into_iter().map(|a| (a.id, a.state)).collect();
    format!("{queues:?}\n{agents:?}\n{contacts:?}\n{customers:?}\n{members:?}")
}

/// One call of each internal service (Raft transport, command forwarding) with
/// `security`: a forged vote and a forged admin command.
async fn internal_services(security: &Security, addr: &str) -> Vec<(&'static str, Code)> {
    calls(security, addr, false).await
}

/// One call of each public and internal service with `security`; the status of each.
async fn every_service(security: &Security, addr: &str) -> Vec<(&'static str, Code)> {
    calls(security, addr, true).await
}

async fn calls(security: &Security, addr: &str, public: bool) -> Vec<(&'static str, Code)> {
    let channel = banyan_client::channel(security, addr).unwrap();
    fn with<T>(security: &Security, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        banyan_client::authorize(security, &mut request);
        request.set_timeout(Duration::from_secs(3));
        request
    }
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let mut out = Vec::new();
    if public {
        out.extend(public_calls(security, &channel).await);
    }
    let mut raft = RaftTransportClient::new(channel.clone());
    out.push((
        "RaftTransport.Vote",
        code(
            raft.vote(with(security, pb::RaftPayload { data: vec![3, 0] }))
                .await
                .map(drop),
        ),
    ));
    let forged = banyan_raft::codec::encode(
        &banyan_domain::Command::new(Action::UpsertQueue(banyan_domain::QueueInput {
            id: "evil".into(),
            name: "Evil".into(),
            ..Default::default()
        }))
        .by(Principal::User {
            name: "root".into(),
            role: Role::Admin,
            site: None,
        }),
    );
    let mut forward = CommandForwardingClient::new(channel);
    out.push((
        "CommandForwarding.Propose",
        code(
            forward
                .propose(with(security, pb::RaftPayload { data: forged }))
                .await
                .map(drop),
        ),
    ));
    out
}

async fn public_calls(
    security: &Security,
    channel: &tonic::transport::Channel,
) -> Vec<(&'static str, Code)> {
    fn with<T>(security: &Security, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        banyan_client::authorize(security, &mut request);
        request.set_timeout(Duration::from_secs(3));
        request
    }
    let code = |r: Result<(), tonic::Status>| r.err().map_or(Code::Ok, |s| s.code());
    let mut out = Vec::new();
    let mut cc = ContactCenterClient::new(channel.clone());
    out.push((
        "ContactCenter.CreateContact",
        code(
            cc.create_contact(with(
                security,
                pb::CreateContactRequest {
                    request_id: "intruder-1".into(),
                    queue_id: "q".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
    ));
    out.push((
        "ContactCenter.UpsertQueue",
        code(
            cc.upsert_queue(with(
                security,
                pb::UpsertQueueRequest {
                    queue: Some(pb::Queue {
                        id: "evil".into(),
                        name: "Evil".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        ),
    ));
    let mut cluster = ClusterClient::new(channel.clone());
    out.push((
        "Cluster.RemoveNode",
        code(
            cluster
                .remove_node(with(security, pb::RemoveNodeRequest { node_id: 2 }))
                .await
                .map(drop),
        ),
    ));
    out.push((
        "Cluster.RenewLease",
        code(
            cluster
                .renew_lease(with(
                    security,
                    pb::RenewLeaseRequest {
                        site_id: "atlantis".into(),
                        sent_at_ms: 1,
                        ttl_ms: 10_000,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
        ),
    ));
    let mut desk = AgentDeskClient::new(channel.clone());
    let login = pb::AgentCommand {
        command_id: "1".into(),
        command: Some(Cmd::Login(pb::Login {
            agent_id: "ada".into(),
            ..Default::default()
        })),
    };
    let session = desk
        .session(with(security, futures::stream::iter([login])))
        .await
        .map(drop);
    out.push(("AgentDesk.Session", code(session)));
    out
}

/// A directory that trusts `ours`'s CA but holds an admin certificate of another CA.
fn foreign_admin(ours: &Pki) -> (tempfile::TempDir, Security) {
    let tmp = tempfile::tempdir().unwrap();
    let theirs = Pki::create(tmp.path().join("certs")).unwrap();
    std::fs::copy(ours.certs_dir().ca_cert(), theirs.certs_dir().ca_cert()).unwrap();
    let security = Security::client(
        theirs.certs_dir(),
        ClientIdentity::Certificate("admin".into()),
    )
    .unwrap();
    (tmp, security)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_callers_without_valid_credentials_are_refused_everywhere_and_change_nothing() {
    let (cluster, leader, branch) = secure_cluster().await;
    let pki = cluster.pki().unwrap().clone();
    let before = picture(&cluster).await;

    let anonymous = Security::client(pki.certs_dir(), ClientIdentity::Anonymous).unwrap();
    let (_foreign_dir, foreign) = foreign_admin(&pki);
    let signer = TokenSigner::load(pki.certs_dir()).unwrap();
    let expired = signer
        .sign(&TokenClaims {
            sub: "agent:ada".into(),
            agent: Some("ada".into()),
            role: None,
            name: None,
            site: None,
            iat: 1,
            exp: 2,
            iat_ms: 1000,
        })
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let other_pki = Pki::create(other.path().join("certs")).unwrap();
    let forged = other_pki
        .agent_token("ada", Duration::from_secs(3600))
        .unwrap();
    let forged_admin = other_pki
        .token_client("root", Role::Supervisor, None)
        .unwrap()
        .bearer()
        .unwrap()
        .to_owned();
    let with_token =
        |t: &str| Security::client(pki.certs_dir(), ClientIdentity::Token(t.to_owned())).unwrap();
    let cases: Vec<(&str, Security, &[Code])> = vec![
        ("no credential", anonymous, &[Code::Unauthenticated]),
        (
            "expired token",
            with_token(&expired),
            &[Code::Unauthenticated],
        ),
        (
            "forged agent token",
            with_token(&forged),
            &[Code::Unauthenticated],
        ),
        (
            "forged scoped token",
            with_token(&forged_admin),
            &[Code::Unauthenticated],
        ),
        // The TLS handshake fails: the call never reaches a service, and the client
        // reports the broken connection (or gives up on it).
        ("certificate of another CA", foreign, TRANSPORT),
        ("plaintext to a TLS port", Security::Insecure, TRANSPORT),
    ];
    let follower = other_than(&[1, 2, 3], leader);
    for addr in [
        cluster.addr(leader).unwrap(),
        cluster.addr(follower).unwrap(),
        branch.clone(),
    ] {
        for (what, security, codes) in &cases {
            for (service, code) in every_service(security, &addr).await {
                assert!(
                    codes.contains(&code),
                    "{what} at {addr}: {service} answered {code:?}, expected one of {codes:?}"
                );
            }
        }
    }
    // The same HTTP pages: health for anyone, the wallboard and metrics for a token.
    let http = cluster.http_addr(leader).unwrap();
    assert_eq!(http_get(&http, "/readyz").await.unwrap().0, 200);
    for path in ["/metrics", "/api/wallboard"] {
        assert_eq!(http_get(&http, path).await.unwrap().0, 401, "{path}");
        let (code, _) = banyan_harness::http_get_as(&http, path, Some(&forged))
            .await
            .unwrap();
        assert_eq!(code, 401, "{path} with a forged token");
    }
    assert_eq!(
        picture(&cluster).await,
        before,
        "refused calls changed the state"
    );
}

/// The first result of a desk session opened with `security` that logs in as `agent`.
async fn desk_login(security: &Security, addr: &str, agent: &str) -> (i32, String) {
    let (tx, rx) = mpsc::channel(4);
    tx.send(pb::AgentCommand {
        command_id: banyan_client::new_request_id(),
        command: Some(Cmd::Login(pb::Login {
            agent_id: agent.into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    banyan_client::authorize(security, &mut request);
    let channel = banyan_client::channel(security, addr).unwrap();
    let mut stream = match AgentDeskClient::new(channel).session(request).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => return (status.code() as i32, status.message().to_owned()),
    };
    loop {
        match stream.message().await {
            Ok(Some(pb::AgentEvent {
                event: Some(In::Result(result)),
            })) => {
                // Log out again so the next case starts from the same state.
                let _ = tx
                    .send(pb::AgentCommand {
                        command_id: banyan_client::new_request_id(),
                        command: Some(Cmd::Logout(pb::Logout {})),
                    })
                    .await;
                return (result.code, result.message);
            }
            Ok(Some(_)) => {}
            Ok(None) => return (Code::Unknown as i32, "stream ended".into()),
            Err(status) => return (status.code() as i32, status.message().to_owned()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_the_authorization_table_row_by_row() {
    let (cluster, leader, branch) = secure_cluster().await;
    let pki = cluster.pki().unwrap().clone();
    let core = [cluster.addr(leader).unwrap()];
    let as_ = |security: &Security| Client::new(core.clone(), quick(), security).unwrap();
    let admin = as_(&cluster.security());
    let viewer = as_(&pki.new_client("wall", Role::Viewer, None).unwrap());
    let integration = as_(&pki.new_client("ivr", Role::Integration, None).unwrap());
    let supervisor = as_(&pki
        .token_client("sue", Role::Supervisor, Some("emea"))
        .unwrap());
    fn denied<T: std::fmt::Debug>(r: Result<T, tonic::Status>, what: &str) {
        let status = r.expect_err(what);
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
    }
    let contact = |id: &str, site: &str| pb::CreateContactRequest {
        request_id: id.into(),
        queue_id: "q".into(),
        channel: pb::Channel::Email.into(),
        site: site.into(),
        ..Default::default()
    };
    let queue = pb::UpsertQueueRequest {
        queue: Some(pb::Queue {
            id: "new".into(),
            name: "New".into(),
            ..Default::default()
        }),
        ..Default::default()
    };

    // viewer: reads, not writes.
    viewer
        .list_queues(pb::ListQueuesRequest::default())
        .await
        .unwrap();
    viewer.status().await.unwrap();
    denied(
        viewer.create_contact(contact("v-1", "")).await,
        "viewer creates",
    );
    denied(
        viewer.add_voter(9, "127.0.0.1:1").await,
        "viewer adds a voter",
    );

    // integration: contacts and customers, not queues or membership.
    let apac = integration
        .create_contact(contact("i-apac", "apac"))
        .await
        .unwrap();
    let emea = integration
        .create_contact(contact("i-emea", "emea"))
        .await
        .unwrap();
    denied(
        integration.upsert_queue(queue.clone()).await,
        "integration upserts a queue",
    );
    denied(
        integration.remove_node(2).await,
        "integration removes a node",
    );

    // supervisor scoped to emea: its own site's contacts only.
    let transfer = |id: &str| pb::TransferContactRequest {
        contact_id: id.into(),
        queue_id: "other".into(),
        ..Default::default()
    };
    denied(
        supervisor.transfer_contact(transfer(&apac.id)).await,
        "an emea supervisor transfers an apac contact",
    );
    supervisor
        .transfer_contact(transfer(&emea.id))
        .await
        .unwrap();
    denied(
        supervisor
            .list_agents(pb::ListAgentsRequest {
                site: "apac".into(),
                ..Default::default()
            })
            .await,
        "an emea supervisor lists apac's agents",
    );
    denied(
        supervisor.upsert_queue(queue.clone()).await,
        "supervisor upserts",
    );

    // agents: their own desk only, at the core and at their branch.
    let ada = pki.agent("ada").unwrap();
    for addr in [&core[0], &branch] {
        let (code, message) = desk_login(&ada, addr, "bob").await;
        assert_eq!(code, Code::PermissionDenied as i32, "{message}");
        assert!(message.contains("agent:ada"), "{message}");
        let (code, message) = desk_login(&ada, addr, "ada").await;
        assert_eq!(code, 0, "ada logs in as herself at {addr}: {message}");
    }
    denied(
        as_(&ada)
            .list_queues(pb::ListQueuesRequest::default())
            .await,
        "an agent reads queues",
    );

    // admin: all of it.
    admin.upsert_queue(queue).await.unwrap();
    admin.create_contact(contact("a-1", "apac")).await.unwrap();
    admin.transfer_contact(transfer(&apac.id)).await.unwrap();
    let (code, message) = desk_login(&cluster.security(), &core[0], "bob").await;
    assert_eq!(code, 0, "admin logs bob in: {message}");
    // Authorized, then judged: node 9 is not a member.
    let status = admin.remove_node(9).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_internal_services_answer_nodes_only_and_a_branch_acts_for_its_site() {
    let (mut cluster, leader, _emea) = secure_cluster().await;
    let apac = cluster.start_branch(102, "apac", &BRANCH_FLAGS).unwrap();
    let pki = cluster.pki().unwrap().clone();
    let leader_addr = cluster.addr(leader).unwrap();
    let admin = cluster.client().unwrap();
    wait_until("the apac branch joined", DEADLINE, || {
        let admin = admin.clone();
        async move {
            let status = admin.status().await.ok()?;
            status.nodes.iter().any(|n| n.id == 102).then_some(())
        }
    })
    .await
    .unwrap();
    // A contact that came in at apac, for the import below.
    let apac_contact = cluster
        .client()
        .unwrap()
        .create_contact(pb::CreateContactRequest {
            request_id: "t12-apac".into(),
            queue_id: "q".into(),
            channel: pb::Channel::Email.into(),
            site: "apac".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = picture(&cluster).await;

    // Client certificates and tokens, even an admin's, never reach the internal services.
    let viewer_token = pki.token_client("wall", Role::Viewer, None).unwrap();
    for security in [cluster.security(), viewer_token] {
        for (service, code) in internal_services(&security, &leader_addr).await {
            assert_eq!(code, Code::PermissionDenied, "{service}");
        }
    }

    // The emea branch's own certificate, used by someone else as a client.
    let emea = pki.node_security(101).unwrap();
    let propose = |action: Action| {
        let security = emea.clone();
        let addr = leader_addr.clone();
        async move {
            let mut request = tonic::Request::new(pb::RaftPayload {
                data: banyan_raft::codec::encode(&banyan_domain::Command::new(action)),
            });
            request.set_timeout(Duration::from_secs(5));
            CommandForwardingClient::new(banyan_client::channel(&security, &addr).unwrap())
                .propose(request)
                .await
                .map(drop)
        }
    };
    let denied = |r: Result<(), tonic::Status>, what: &str| {
        let status = r.expect_err(what);
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}");
        assert!(
            status.message().contains("branch:emea"),
            "{what}: {status:?}"
        );
    };
    let lease = |site: &str| Action::RenewLease {
        site_id: site.into(),
        sent_at_ms: 1,
        ttl_ms: 10_000,
        report: Default::default(),
    };
    denied(propose(lease("apac")).await, "renew apac's lease");
    let import = Action::ImportBranch(BranchImport {
        site: "apac".into(),
        upto_seq: 99,
        contacts: Vec::new(),
        agents: Vec::new(),
        created: Vec::new(),
    });
    denied(propose(import).await, "import for apac");
    denied(
        propose(Action::UpsertQueue(banyan_domain::QueueInput {
            id: "evil".into(),
            name: "Evil".into(),
            ..Default::default()
        }))
        .await,
        "forward an UpsertQueue",
    );
    let as_emea = Client::new([&leader_addr], quick(), &emea).unwrap();
    denied(
        as_emea
            .renew_lease(pb::RenewLeaseRequest {
                site_id: "apac".into(),
                sent_at_ms: 1,
                ttl_ms: 10_000,
                ..Default::default()
            })
            .await
            .map(drop),
        "Cluster.RenewLease for apac",
    );
    denied(
        as_emea.add_voter(101, "127.0.0.1:1").await.map(drop),
        "a membership change",
    );
    denied(
        as_emea.add_learner(7, "127.0.0.1:1").await.map(drop),
        "add another node as a learner",
    );
    // Naming someone else: a branch cannot pass itself off as a core node, another
    // branch, an admin or another site's agent, in the relay header or in a command.
    let behalf = |who: &str| {
        let who = tonic::metadata::MetadataValue::try_from(who).unwrap();
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("x-banyan-on-behalf-of", who.clone());
            Ok(request)
        }
    };
    let channel = banyan_client::channel(&emea, &leader_addr).unwrap();
    let forged = banyan_raft::codec::encode(&banyan_domain::Command::new(Action::UpsertQueue(
        banyan_domain::QueueInput {
            id: "evil".into(),
            name: "Evil".into(),
            ..Default::default()
        },
    )));
    let status =
        CommandForwardingClient::with_interceptor(channel.clone(), behalf("banyan://node/1"))
            .propose(pb::RaftPayload { data: forged })
            .await
            .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status =
        ClusterClient::with_interceptor(channel.clone(), behalf("banyan://branch/apac/102"))
            .renew_lease(pb::RenewLeaseRequest {
                site_id: "apac".into(),
                sent_at_ms: 1,
                ttl_ms: 10_000,
                ..Default::default()
            })
            .await
            .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status =
        ClusterClient::with_interceptor(channel.clone(), behalf("banyan://client/root/admin"))
            .add_learner(pb::AddLearnerRequest {
                node_id: 7,
                addr: "127.0.0.1:1".into(),
            })
            .await
            .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = ContactCenterClient::with_interceptor(
        channel.clone(),
        behalf("banyan://client/root/admin"),
    )
    .upsert_queue(pb::UpsertQueueRequest {
        queue: Some(pb::Queue {
            id: "evil".into(),
            name: "Evil".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let login = pb::AgentCommand {
        command_id: "1".into(),
        command: Some(Cmd::Login(pb::Login {
            agent_id: "bob".into(),
            ..Default::default()
        })),
    };
    let status = AgentDeskClient::with_interceptor(channel.clone(), behalf("banyan://agent/bob"))
        .session(futures::stream::iter([login]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let as_node = banyan_raft::codec::encode(
        &banyan_domain::Command::new(lease("apac")).by(Principal::Node(1)),
    );
    let status = CommandForwardingClient::new(channel.clone())
        .propose(pb::RaftPayload { data: as_node })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // An import under its own site that settles another site's contact.
    let stored = |id: &str| {
        let mut c = banyan_domain::Contact::self_served(
            id.into(),
            None,
            &banyan_domain::ContactInput {
                id: id.into(),
                queue_id: "q".into(),
                origin_site: "emea".into(),
                ..Default::default()
            },
            1,
        );
        c.origin_site = "emea".into();
        c
    };
    let import = Action::ImportBranch(BranchImport {
        site: "emea".into(),
        upto_seq: 1,
        contacts: vec![stored(&apac_contact.id)],
        agents: Vec::new(),
        created: vec![apac_contact.id.clone()],
    });
    let status = propose(import).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("belongs to site apac"),
        "{status:?}"
    );

    // Raft traffic: not from a branch, to a core node or to another branch.
    for addr in [&leader_addr, &apac] {
        let mut raft = RaftTransportClient::new(banyan_client::channel(&emea, addr).unwrap());
        let status = raft
            .append_entries(pb::RaftPayload { data: vec![3, 0] })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{addr}: {status:?}");
    }
    assert_eq!(
        picture(&cluster).await,
        before,
        "refused calls changed the state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_a_desk_session_ends_with_its_token_and_at_a_revocation() {
    let (cluster, leader, branch) = secure_cluster().await;
    let pki = cluster.pki().unwrap().clone();
    let core = cluster.addr(leader).unwrap();
    let open = |security: Security, addr: String| async move {
        let (tx, rx) = mpsc::channel(4);
        tx.send(pb::AgentCommand {
            command_id: banyan_client::new_request_id(),
            command: Some(Cmd::Login(pb::Login {
                agent_id: "ada".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        banyan_client::authorize(&security, &mut request);
        let stream = AgentDeskClient::new(banyan_client::channel(&security, &addr).unwrap())
            .session(request)
            .await
            .unwrap()
            .into_inner();
        (tx, stream)
    };
    /// Reads the session until it ends; the status it ended with.
    async fn ended(mut stream: tonic::Streaming<pb::AgentEvent>) -> tonic::Status {
        loop {
            match tokio::time::timeout(DEADLINE, stream.message()).await {
                Ok(Ok(Some(pb::AgentEvent {
                    event: Some(In::Result(r)),
                }))) => assert_eq!(r.code, 0, "login: {}", r.message),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => panic!("the session ended without a status"),
                Ok(Err(status)) => return status,
                Err(_) => panic!("the session did not end"),
            }
        }
    }

    // A token that expires in two seconds: the session ends then, at the core and at
    // the branch.
    for addr in [core.clone(), branch.clone()] {
        let token = pki.agent_token("ada", Duration::from_secs(2)).unwrap();
        let security = Security::client(pki.certs_dir(), ClientIdentity::Token(token)).unwrap();
        let (_tx, stream) = open(security, addr.clone()).await;
        let status = ended(stream).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{addr}: {status:?}");
        assert!(status.message().contains("expired"), "{status:?}");
    }

    // A revocation ends open sessions at once, and the old token is refused after it.
    let token = pki.agent_token("ada", Duration::from_secs(3600)).unwrap();
    let security = Security::client(pki.certs_dir(), ClientIdentity::Token(token)).unwrap();
    let (_tx, stream) = open(security.clone(), branch.clone()).await;
    let watcher = tokio::spawn(ended(stream));
    // Logged in (the agent is available) before the revocation.
    let admin = cluster.client().unwrap();
    wait_until("ada logged in", DEADLINE, || {
        let admin = admin.clone();
        async move {
            let agents = admin
                .list_agents(pb::ListAgentsRequest::default())
                .await
                .ok()?
                .agents;
            agents
                .iter()
                .any(|a| a.id == "ada" && a.state == pb::AgentState::Available as i32)
                .then_some(())
        }
    })
    .await
    .unwrap();
    let ctl = Command::new(banyan_bin())
        .args(["ctl", "--endpoint", &core, "--certs-dir"])
        .arg(pki.path())
        .args(["agents", "revoke-tokens", "--id", "ada"])
        .output()
        .unwrap();
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    let status = tokio::time::timeout(DEADLINE, watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("revoked"), "{status:?}");
    let (code, message) = desk_login(&security, &core, "ada").await;
    assert_eq!(code, Code::Unauthenticated as i32, "{message}");
    // A token issued after the revocation works.
    let fresh = pki.agent("ada").unwrap();
    let (code, message) = desk_login(&fresh, &core, "ada").await;
    assert_eq!(code, 0, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_the_audit_trail_names_who_caused_every_step_across_forwards_and_a_leader_change() {
    let (mut cluster, leader, branch) = secure_cluster().await;
    let pki = cluster.pki().unwrap().clone();
    // The caller comes in at a core follower, which forwards it to the leader.
    let follower = other_than(&[1, 2, 3], leader);
    let ivr = pki.new_client("ivr", Role::Integration, None).unwrap();
    let at_follower = Client::new([cluster.addr(follower).unwrap()], quick(), &ivr).unwrap();
    let contact = at_follower
        .create_contact(pb::CreateContactRequest {
            request_id: "t12-audit".into(),
            queue_id: "q".into(),
            channel: pb::Channel::Chat.into(),
            site: "emea".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Ada works it from her desk at the branch, which forwards her commands to the core.
    let ada = pki.agent("ada").unwrap();
    let (tx, rx) = mpsc::channel(8);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    banyan_client::authorize(&ada, &mut request);
    let mut stream = AgentDeskClient::new(banyan_client::channel(&ada, &branch).unwrap())
        .session(request)
        .await
        .unwrap()
        .into_inner();
    let send = |id: &str, command: Cmd| {
        let tx = tx.clone();
        let id = id.to_owned();
        async move {
            tx.send(pb::AgentCommand {
                command_id: id,
                command: Some(command),
            })
            .await
            .unwrap()
        }
    };
    // Waits for the result of command `id`, or for the contact to reach `state`.
    async fn until(stream: &mut tonic::Streaming<pb::AgentEvent>, id: &str) -> pb::CommandResult {
        loop {
            let event = tokio::time::timeout(DEADLINE, stream.message())
                .await
                .expect("an answer")
                .unwrap()
                .expect("an open session");
            if let Some(In::Result(result)) = event.event {
                if result.command_id == id {
                    return result;
                }
            }
        }
    }
    send(
        "login",
        Cmd::Login(pb::Login {
            agent_id: "ada".into(),
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(until(&mut stream, "login").await.code, 0);
    let contact_ref = || pb::ContactRef {
        contact_id: contact.id.clone(),
    };
    // The offer reaches the desk; accepting may race it, so retry until accepted.
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("accept-{n}");
        send(&id, Cmd::Accept(contact_ref())).await;
        if until(&mut stream, &id).await.code == 0 {
            break;
        }
        assert!(n < 50, "the offer never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader dies mid-call; the call goes on under the new one.
    cluster.kill(leader).unwrap();
    let survivors: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let new_leader = cluster.wait_for_leader(&survivors, DEADLINE).await.unwrap();
    for (id, command) in [
        ("end", Cmd::End(contact_ref())),
        (
            "complete",
            Cmd::Complete(pb::Complete {
                contact_id: contact.id.clone(),
                disposition: "resolved".into(),
                notes: String::new(),
            }),
        ),
    ] {
        let mut attempt = 0;
        loop {
            attempt += 1;
            send(id, command.clone()).await;
            let result = until(&mut stream, id).await;
            if result.code == 0 {
                break;
            }
            assert!(attempt < 60, "{id}: {}", result.message);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Every step names its principal, on the new leader.
    let admin = Client::new(
        [cluster.addr(new_leader).unwrap()],
        quick(),
        &cluster.security(),
    )
    .unwrap();
    let done = admin
        .get_contact(pb::GetContactRequest {
            id: contact.id.clone(),
            consistency: pb::ReadConsistency::Linearizable.into(),
        })
        .await
        .unwrap();
    assert_eq!(done.state, pb::ContactState::Completed as i32);
    let steps: Vec<(i32, &str)> = done
        .timeline
        .iter()
        .map(|t| (t.state, t.by.as_str()))
        .collect();
    use pb::ContactState as S;
    assert_eq!(
        steps,
        vec![
            (S::Queued as i32, "integration:ivr"),
            (S::Offered as i32, "agent:ada"),
            (S::Connected as i32, "agent:ada"),
            (S::WrapUp as i32, "agent:ada"),
            (S::Completed as i32, "agent:ada"),
        ],
        "{:#?}",
        done.timeline
    );

    // `banyan ctl audit` lists the same, from the events.
    let out = Command::new(banyan_bin())
        .args(["ctl", "--endpoint", &cluster.addr(new_leader).unwrap()])
        .arg("--certs-dir")
        .arg(pki.path())
        .args(["--json", "audit", "--contact", &contact.id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by = |kind: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == kind)
            .map(|l| l["principal"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(
        by("CONTACT_CREATED").as_deref(),
        Some("integration:ivr"),
        "{lines:#?}"
    );
    assert_eq!(
        by("CONTACT_CONNECTED").as_deref(),
        Some("agent:ada"),
        "{lines:#?}"
    );
    assert_eq!(
        by("CONTACT_COMPLETED").as_deref(),
        Some("agent:ada"),
        "{lines:#?}"
    );
    let queue_by = Command::new(banyan_bin())
        .args(["ctl", "--endpoint", &cluster.addr(new_leader).unwrap()])
        .arg("--certs-dir")
        .arg(pki.path())
        .args(["--json", "audit", "--queue", "q"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&queue_by.stdout);
    assert!(
        text.contains("QUEUE_UPSERTED") && text.contains("admin:admin"),
        "who changed queue q: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_insecure_mode_still_works_and_says_so() {
    // Without --certs-dir or --insecure a node refuses to start.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(banyan_bin())
        .args(["core", "--id", "1", "--addr", "127.0.0.1:1", "--data-dir"])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--certs-dir") && stderr.contains("--insecure"),
        "{stderr}"
    );

    let mut cluster = LocalCluster::new_insecure(banyan_bin(), &[]).unwrap();
    cluster.enable_http();
    cluster.start_voters(&[1, 2, 3]).unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let client = cluster.client().unwrap();
    client
        .upsert_customer(banyan_tests::customer("c-1", "Ada"), None)
        .await
        .unwrap();
    let status = client.status().await.unwrap();
    assert!(status.insecure, "{status:?}");
    let (code, body) = http_get(&cluster.http_addr(leader).unwrap(), "/readyz")
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("INSECURE"), "{body}");
    assert!(cluster.log_tail(leader, 200).contains("--insecure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_banyan_certs_keeps_its_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let certs = |args: &[&str]| {
        Command::new(banyan_bin())
            .arg("certs")
            .args(args)
            .arg("--certs-dir")
            .arg(&dir)
            .output()
            .unwrap()
    };
    assert!(certs(&["ca"]).status.success());
    assert!(certs(&[
        "node",
        "--id",
        "1",
        "--host",
        "127.0.0.1",
        "--host",
        "core-1"
    ])
    .status
    .success());
    assert!(certs(&[
        "branch",
        "--id",
        "101",
        "--site",
        "emea",
        "--host",
        "branch-emea"
    ])
    .status
    .success());
    assert!(certs(&["client", "--name", "ops", "--role", "admin"])
        .status
        .success());
    assert!(certs(&[
        "client",
        "--name",
        "sue",
        "--role",
        "supervisor",
        "--site",
        "emea"
    ])
    .status
    .success());
    use std::os::unix::fs::PermissionsExt;
    for file in [
        "ca.crt",
        "ca.key",
        "token.key",
        "token.pub",
        "node.1.crt",
        "node.1.key",
        "node.101.crt",
        "node.101.key",
        "client.ops.crt",
        "client.ops.key",
        "client.sue.crt",
        "client.sue.key",
    ] {
        let meta = std::fs::metadata(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        if file.ends_with(".key") {
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        }
    }
    // Nothing is overwritten without --overwrite.
    let again = certs(&["ca"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--overwrite"));
    assert!(certs(&["ca", "--overwrite"]).status.success());
    // The token names its agent and verifies with the public key.
    let out = certs(&["token", "--agent", "ada", "--ttl", "1h"]);
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let verifier = TokenVerifier::load(&banyan_trust::CertsDir::new(&dir)).unwrap();
    assert_eq!(
        verifier.verify(&token).unwrap().principal().unwrap(),
        Principal::Agent("ada".into())
    );
    let scoped = certs(&["token", "--role", "viewer", "--site", "emea"]);
    assert!(scoped.status.success());
}
