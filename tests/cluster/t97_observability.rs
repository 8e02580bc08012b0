//! What operators read off a running cluster: every node's `/metrics` carries the Raft,
//! contact-center, branch and gRPC figures and they move as work arrives; the wallboard's
//! page and its data are served by every node; and one contact created at a branch shows
//! up in the branch's and the core's JSON logs under one trace id.

use std::collections::BTreeMap;
use std::time::Duration;

use banyan_client::trace::{self, TraceContext};
use banyan_client::{Client, RetryPolicy};
use banyan_harness::desk::DeskBehaviour;
use banyan_harness::{http_get, http_get_as, wait_until, DeskAgent};
use banyan_proto::v1 as pb;
use banyan_tests::{cluster, put_agents, put_queue, DEADLINE};

/// `name{labels}` → value, from a Prometheus text page.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(http: &str, token: &str) -> BTreeMap<String, f64> {
    let (code, body) = http_get_as(http, "/metrics", Some(token))
        .await
        .expect("scrape");
    assert_eq!(code, 200, "{body}");
    samples(&body)
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| {
        panic!(
            "no sample {key} in\n{}",
            samples.keys().cloned().collect::<Vec<_>>().join("\n")
        )
    })
}

fn has_family(samples: &BTreeMap<String, f64>, family: &str) -> bool {
    samples
        .keys()
        .any(|k| k == family || k.starts_with(&format!("{family}{{")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t97_metrics_move_the_wallboard_serves_and_one_contact_is_one_trace() {
    let mut cluster = cluster(&["--log-format", "json"]);
    cluster.enable_http();
    cluster.start_voters(&[1, 2, 3]).unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let branch_addr = cluster
        .start_branch(101, "emea", &["--lease-ttl", "3s"])
        .unwrap();
    let core = cluster.client().unwrap();
    put_queue(
        &core,
        pb::Queue {
            id: "q".into(),
            name: "Queue".into(),
            wrap_up_ms: Some(0),
            ..Default::default()
        },
    )
    .await;
    put_agents(&core, &[("a1", "emea")]).await;
    let branch = Client::new([&branch_addr], RetryPolicy::default(), &cluster.security()).unwrap();
    wait_until("the branch holds the agent", DEADLINE, || {
        let branch = branch.clone();
        async move {
            let list = pb::ListAgentsRequest {
                consistency: pb::ReadConsistency::Local.into(),
                ..Default::default()
            };
            let agents = branch.list_agents(list).await.ok()?.agents;
            (!agents.is_empty()).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(20)));
    let desk = DeskAgent::start(
        "a1",
        vec![branch_addr.clone()],
        DeskBehaviour {
            talk: Duration::from_millis(50),
            ..Default::default()
        },
        cluster.agent_security("a1").unwrap(),
    );

    // The site's figures come from its branch's lease renewals.
    wait_until("the branch's site leased", DEADLINE, || {
        let core = core.clone();
        async move {
            let status = core.status().await.ok()?;
            status
                .sites
                .iter()
                .any(|s| s.site_id == "emea" && s.mode == pb::SiteMode::Leased as i32)
                .then_some(())
        }
    })
    .await
    .unwrap();
    let token = cluster.viewer_token().expect("a secure cluster");
    let core_http = cluster.http_addr(leader).unwrap();
    let branch_http = cluster.http_addr(101).unwrap();
    let before_core = scrape(&core_http, &token).await;
    let before_branch = scrape(&branch_http, &token).await;
    for family in [
        "banyan_raft_term",
        "banyan_raft_leader_id",
        "banyan_raft_commit_index",
        "banyan_raft_applied_index",
        "banyan_raft_replication_lag_entries",
        "banyan_raft_snapshots_built_total",
        "banyan_raft_purged_index",
        "banyan_raft_log_purges_total",
        "banyan_queue_waiting",
        "banyan_queue_longest_wait_seconds",
        "banyan_queue_entered_total",
        "banyan_queue_offers_total",
        "banyan_agents",
        "banyan_time_to_offer_seconds_bucket",
        "banyan_branch_mode",
        "banyan_branch_journal_backlog",
        "banyan_grpc_requests_total",
        "banyan_grpc_request_duration_seconds_bucket",
    ] {
        assert!(has_family(&before_core, family), "core lacks {family}");
    }
    for family in [
        "banyan_branch_outbox_backlog",
        "banyan_branch_seconds_since_core_answered",
        "banyan_raft_applied_index",
    ] {
        assert!(has_family(&before_branch, family), "branch lacks {family}");
    }
    // The leader reports how far the branch (a learner) trails it.
    value(
        &before_core,
        "banyan_raft_replication_lag_entries{peer=\"101\",member=\"learner\"}",
    );
    assert_eq!(
        value(
            &before_branch,
            "banyan_branch_mode{site=\"emea\",mode=\"through_core\"}"
        ),
        1.0
    );

    // One contact with a trace the caller started, then a few more without.
    let caller = TraceContext::new();
    let traced = trace::scope(
        caller.clone(),
        branch.create_contact(pb::CreateContactRequest {
            queue_id: "q".into(),
            channel: pb::Channel::Voice.into(),
            site: "emea".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    for _ in 0..4 {
        branch
            .create_contact(pb::CreateContactRequest {
                queue_id: "q".into(),
                channel: pb::Channel::Chat.into(),
                site: "emea".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let create =
        "banyan_grpc_requests_total{method=\"/banyan.v1.ContactCenter/CreateContact\",code=\"Ok\"}";
    let (after_core, after_branch) = wait_until("the figures to move", DEADLINE, || {
        let (core_http, branch_http) = (core_http.clone(), branch_http.clone());
        let token = token.clone();
        async move {
            let core = scrape(&core_http, &token).await;
            let branch = scrape(&branch_http, &token).await;
            let served = core
                .get("banyan_queue_handled_total{queue=\"q\"}")
                .is_some_and(|n| *n >= 5.0);
            let offered = core
                .get("banyan_time_to_offer_seconds_count")
                .is_some_and(|n| *n >= 5.0);
            // The agent's desk session is open at the branch while it works.
            let open = branch
                .get("banyan_grpc_in_flight{method=\"/banyan.v1.AgentDesk/Session\"}")
                .is_some_and(|n| *n >= 1.0);
            (served && offered && open).then_some((core, branch))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(20)));
    assert!(
        value(&after_core, "banyan_raft_applied_index")
            > value(&before_core, "banyan_raft_applied_index")
    );
    assert_eq!(
        value(&after_core, "banyan_queue_entered_total{queue=\"q\"}"),
        5.0
    );
    assert!(value(&after_core, "banyan_queue_offers_total{queue=\"q\"}") >= 5.0);
    assert_eq!(
        value(&after_branch, create) - before_branch.get(create).copied().unwrap_or(0.0),
        5.0
    );
    // The branch's writes reached the core as forwarded commands, counted where served.
    let mut forwarded = 0.0;
    for id in [1, 2, 3] {
        let page = scrape(&cluster.http_addr(id).unwrap(), &token).await;
        forwarded += page
            .get("banyan_grpc_requests_total{method=\"/banyan.v1.CommandForwarding/Propose\",code=\"Ok\"}")
            .copied()
            .unwrap_or(0.0);
    }
    assert!(forwarded >= 5.0, "{forwarded}");
    assert!(
        value(&after_branch, "banyan_time_to_offer_seconds_count") >= 5.0,
        "the branch observes the offers it applied"
    );
    desk.stop().await;

    // A refusal is counted with its code; an agent's session stream when it ends.
    let refused = branch
        .create_contact(pb::CreateContactRequest {
            channel: pb::Channel::Voice.into(),
            site: "emea".into(),
            ..Default::default()
        })
        .await
        .expect_err("no queue");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    wait_until("the refusal and the ended session counted", DEADLINE, || {
        let branch_http = branch_http.clone();
        let token = token.clone();
        async move {
            let page = scrape(&branch_http, &token).await;
            let invalid = page
                .get("banyan_grpc_requests_total{method=\"/banyan.v1.ContactCenter/CreateContact\",code=\"InvalidArgument\"}")
                .is_some_and(|n| *n >= 1.0);
            let session = page.iter().any(|(key, n)| {
                key.starts_with("banyan_grpc_requests_total{method=\"/banyan.v1.AgentDesk/Session\"")
                    && *n >= 1.0
            });
            (invalid && session).then_some(())
        }
    })
    .await
    .unwrap();

    // gRPC health and reflection, on a core node and the branch alike.
    for addr in [cluster.addr(leader).unwrap(), branch_addr.clone()] {
        let channel = banyan_client::channel(&cluster.security(), &addr).unwrap();
        let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest {
                service: "banyan.v1.ContactCenter".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        use tonic_reflection::pb::v1::{
            server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ServerReflectionRequest,
        };
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(futures::stream::iter([ask]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
            panic!("no service list from {addr}: {answer:?}");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        for wanted in ["banyan.v1.ContactCenter", "banyan.v1.AgentDesk"] {
            assert!(names.contains(&wanted), "{addr} lists {names:?}");
        }
    }

    // The alert rules and the dashboard parse and name only metrics the nodes export.
    let exported: std::collections::BTreeSet<String> = after_core
        .keys()
        .chain(after_branch.keys())
        .map(|k| k.split('{').next().unwrap_or(k).to_owned())
        .collect();
    let deploy = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let alerts = std::fs::read_to_string(deploy.join("prometheus/alerts.yaml")).unwrap();
    let rules: serde_yaml::Value = serde_yaml::from_str(&alerts).unwrap();
    assert!(rules["groups"][0]["rules"].as_sequence().unwrap().len() >= 4);
    let dashboard = std::fs::read_to_string(deploy.join("grafana/banyan-dashboard.json")).unwrap();
    let panels: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(panels["panels"].as_array().unwrap().len() >= 10);
    for (file, text) in [
        ("alerts.yaml", &alerts),
        ("banyan-dashboard.json", &dashboard),
    ] {
        let mut rest = text.as_str();
        while let Some(at) = rest.find("banyan_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            // Histograms are exported as their _bucket, _sum and _count series.
            let series = [
                name.clone(),
                format!("{name}_bucket"),
                format!("{name}_count"),
            ];
            let known = series.iter().any(|s| exported.contains(s))
                || exported.contains(name.trim_end_matches("_bucket"));
            assert!(known, "{file} names {name}, which no node exports");
        }
    }

    // The wallboard: its page, and the picture it draws, on a core node and the branch;
    // without a token they answer 401, health and readiness answer anyone.
    for http in [&core_http, &branch_http] {
        for path in ["/", "/api/wallboard", "/metrics"] {
            let (code, _) = http_get(http, path).await.unwrap();
            assert_eq!(code, 401, "{path} without a token");
        }
        assert_eq!(http_get(http, "/healthz").await.unwrap().0, 200);
        let (code, page) = http_get_as(http, "/", Some(&token)).await.unwrap();
        assert_eq!(code, 200);
        assert!(
            page.contains("wallboard.js") && page.contains("id=\"queues\""),
            "{page}"
        );
        let (code, json) = http_get_as(http, "/api/wallboard", Some(&token))
            .await
            .unwrap();
        assert_eq!(code, 200, "{json}");
        let picture: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(picture["queues"][0]["id"], "q", "{picture}");
        assert_eq!(picture["queues"][0]["entered"], 5, "{picture}");
        assert!(
            picture["cluster"]["members"].as_array().unwrap().len() == 4,
            "{picture}"
        );
        assert_eq!(picture["branches"][0]["site"], "emea", "{picture}");
        let (code, _) = http_get_as(http, "/wallboard.js", Some(&token))
            .await
            .unwrap();
        assert_eq!(code, 200);
    }

    // The traced contact: the branch logged it in a span with the caller's trace id, and
    // the core node that committed it logged it with the same one.
    let spans_with = |id: u64, message: &str| -> Vec<serde_json::Value> {
        cluster
            .log_tail(id, usize::MAX)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["message"] == message)
            .map(|l| l["span"].clone())
            .collect()
    };
    let at_branch = spans_with(101, "contact created");
    let span = at_branch
        .iter()
        .find(|s| s["contact_id"] == traced.id.as_str())
        .unwrap_or_else(|| panic!("no branch span for {}: {at_branch:?}", traced.id));
    assert_eq!(span["trace_id"], caller.trace_id.as_str(), "{span}");
    assert_eq!(span["node_id"], 101, "{span}");
    assert_eq!(span["site"], "emea", "{span}");
    let at_core: Vec<serde_json::Value> = [1, 2, 3]
        .into_iter()
        .flat_map(|id| spans_with(id, "contact created for a branch"))
        .filter(|s| s["contact_id"] == traced.id.as_str())
        .collect();
    assert_eq!(at_core.len(), 1, "{at_core:?}");
    assert_eq!(
        at_core[0]["trace_id"],
        caller.trace_id.as_str(),
        "{:?}",
        at_core[0]
    );
    // The untraced contacts got a trace of their own at the branch, carried to the core.
    let others: Vec<&serde_json::Value> = at_branch
        .iter()
        .filter(|s| s["contact_id"] != traced.id.as_str())
        .collect();
    assert_eq!(others.len(), 4, "{at_branch:?}");
    for span in others {
        let trace_id = span["trace_id"].as_str().unwrap();
        assert_ne!(trace_id, caller.trace_id);
        let core_side = [1, 2, 3]
            .into_iter()
            .flat_map(|id| spans_with(id, "contact created for a branch"))
            .find(|s| s["contact_id"] == span["contact_id"])
            .expect("the core logged it");
        assert_eq!(core_side["trace_id"], trace_id);
    }
}
