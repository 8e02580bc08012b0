//! One branch is cut off from a core that stays up, under a steady stream of contacts at
//! the core and at the branch: the core stops offering to the site's agents when the
//! site's lease runs out, the branch starts routing on its own only after that, and,
//! judged from both sides' events, no agent is ever over capacity and no contact is held
//! twice. Healed, the branch hands its work over once and every acknowledged contact is
//! served.

use std::time::Duration;

use banyan_client::{Client, RetryPolicy};
use banyan_env::wall_clock_ms;
use banyan_harness::desk::DeskBehaviour;
use banyan_harness::{
    check_branch_sides, check_contacts, wait_until, BranchLinks, ContactFeed, DeskAgent,
    LocalCluster,
};
use banyan_proto::v1::{self as pb, EventKind, ReadConsistency};
use banyan_tests::{agents_served, put_agents, put_queue, site_status, three_nodes, DEADLINE};

const SITE: &str = "emea";

fn contact_at(site: &str) -> pb::CreateContactRequest {
    pb::CreateContactRequest {
        channel: pb::Channel::Voice.into(),
        queue_id: "q".into(),
        site: site.into(),
        ..Default::default()
    }
}

async fn site_mode(core: &Client) -> Option<i32> {
    site_status(core, SITE).await.map(|s| s.mode)
}

/// A core of three, branch 101 of the site behind links it can cut, a queue and the site's
/// two agents (and one elsewhere), with the site leased and the branch serving all three.
struct Leased {
    cluster: LocalCluster,
    branch_addr: String,
    links: BranchLinks,
    core: Client,
    branch: Client,
}

async fn leased_branch(lease_ttl: &str) -> Leased {
    let (mut cluster, _) = three_nodes(&[]).await;
    let (branch_addr, links) = cluster
        .start_branch_behind_links(
            101,
            SITE,
            &["--lease-ttl", lease_ttl, "--max-clock-skew", "500ms"],
        )
        .unwrap();
    let core = cluster.client().unwrap();
    let queue = pb::Queue {
        id: "q".into(),
        name: "Q".into(),
        wrap_up_ms: Some(0),
        ..Default::default()
    };
    put_queue(&core, queue).await;
    put_agents(&core, &[("lea", SITE), ("max", SITE), ("kai", "apac")]).await;
    let quick = RetryPolicy {
        total_timeout: Duration::from_secs(3),
        follow_leader: false,
        ..RetryPolicy::default()
    };
    let branch = Client::new([&branch_addr], quick, &cluster.security()).unwrap();
    wait_leased(&core, &branch, "the branch leased with every agent")
        .await
        .unwrap();
    Leased {
        cluster,
        branch_addr,
        links,
        core,
        branch,
    }
}

/// Waits until the core shows the site leased and the branch serves every agent.
async fn wait_leased(core: &Client, branch: &Client, what: &str) -> anyhow::Result<()> {
    wait_until(what, DEADLINE, || {
        let (core, branch) = (core.clone(), branch.clone());
        async move {
            let leased = site_mode(&core).await? == pb::SiteMode::Leased as i32;
            (leased && agents_served(&branch).await? == 3).then_some(())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t94_a_branch_cut_off_from_a_running_core_routes_alone_only_after_its_lease_ran_out() {
    let Leased {
        cluster,
        branch_addr,
        links,
        core,
        branch,
    } = leased_branch("2s").await;

    let talk = DeskBehaviour {
        talk: Duration::from_millis(150),
        ..Default::default()
    };
    let core_addrs: Vec<String> = [1, 2, 3].map(|id| cluster.addr(id).unwrap()).into();
    let desks = vec![
        DeskAgent::start(
            "lea",
            vec![branch_addr.clone()],
            talk.clone(),
            cluster.agent_security("lea").unwrap(),
        ),
        DeskAgent::start(
            "max",
            vec![branch_addr.clone()],
            talk.clone(),
            cluster.agent_security("max").unwrap(),
        ),
        DeskAgent::start(
            "kai",
            core_addrs,
            talk,
            cluster.agent_security("kai").unwrap(),
        ),
    ];
    let every = Duration::from_millis(300);
    let feeds = [
        ContactFeed::start(branch.clone(), "t94-branch-", contact_at(SITE), every),
        ContactFeed::start(core.clone(), "t94-core-", contact_at(SITE), every),
        ContactFeed::start(core.clone(), "t94-apac-", contact_at("apac"), every),
    ];
    let [at_branch, _, at_apac] = &feeds;
    at_branch.wait_more(5, DEADLINE).await.unwrap();

    links.cut();
    wait_until("the core fencing the site", DEADLINE, || {
        let core = core.clone();
        async move { (site_mode(&core).await? == pb::SiteMode::Lapsed as i32).then_some(()) }
    })
    .await
    .unwrap();
    wait_until("the branch routing its site alone", DEADLINE, || {
        let branch = branch.clone();
        async move { (agents_served(&branch).await? == 2).then_some(()) }
    })
    .await
    .unwrap();
    // The branch's own side of the story: its events from the start of its autonomy until
    // it hands its work over and ends the stream.
    let branch_side = cluster.collect_events(101, 1).unwrap();
    // Both sides keep working: the branch for its site, the core for the other one.
    at_branch.wait_more(8, DEADLINE).await.unwrap();
    at_apac.wait_more(5, DEADLINE).await.unwrap();
    wait_until(
        "the branch's agents finishing contacts alone",
        DEADLINE,
        || {
            let branch = branch.clone();
            async move {
                let list = pb::ListContactsRequest {
                    state: pb::ContactState::Completed.into(),
                    consistency: ReadConsistency::Local.into(),
                    ..Default::default()
                };
                let done = branch.list_contacts(list).await.ok()?.contacts;
                (done
                    .iter()
                    .filter(|c| c.request_id.starts_with("t94-branch-"))
                    .count()
                    >= 4)
                    .then_some(())
            }
        },
    )
    .await
    .unwrap_or_else(|e| {
        let agents = futures::executor::block_on(async {
            let list = pb::ListAgentsRequest {
                consistency: ReadConsistency::Local.into(),
                ..Default::default()
            };
            branch.list_agents(list).await.map(|r| r.agents)
        });
        panic!(
            "{e}\nagents at the branch: {agents:#?}\n{}",
            cluster.log_tail(101, 20)
        )
    });

    links.heal();
    wait_leased(&core, &branch, "the branch reconciled and leased again")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(30)));
    let branch_events = tokio::time::timeout(DEADLINE, branch_side)
        .await
        .expect("the branch ends its own event stream when it reconciles")
        .unwrap()
        .unwrap();
    at_branch.wait_more(3, DEADLINE).await.unwrap();
    let mut ops = Vec::new();
    for feed in feeds {
        ops.extend(feed.stop().await);
    }
    let acknowledged: Vec<String> = ops.iter().filter_map(|o| o.contact_id.clone()).collect();
    wait_until("every acknowledged contact served", DEADLINE * 2, || {
        let (core, acknowledged) = (core.clone(), acknowledged.clone());
        async move {
            let all = core
                .all_contacts(ReadConsistency::Linearizable)
                .await
                .ok()?;
            let done = all
                .iter()
                .filter(|c| {
                    acknowledged.contains(&c.id) && c.state == pb::ContactState::Completed as i32
                })
                .count();
            (done == acknowledged.len()).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(30)));
    for desk in desks {
        desk.stop().await;
    }

    let (mut nodes, committed) = cluster.final_contacts(&[1, 2, 3], DEADLINE).await.unwrap();
    let leader = cluster.wait_for_leader(&[1, 2, 3], DEADLINE).await.unwrap();
    let core_events = cluster.events(leader, committed, DEADLINE).await.unwrap();
    // The branch's replica ends where the core is.
    let at_core = nodes[0].contacts.clone();
    let replica = wait_until("the branch's replica caught up", DEADLINE, || {
        let (branch, at_core) = (branch.clone(), at_core.clone());
        async move {
            let mine = branch.all_contacts(ReadConsistency::Local).await.ok()?;
            (mine.len() == at_core.len()).then_some(mine)
        }
    })
    .await
    .unwrap();
    nodes.push(banyan_harness::NodeContacts {
        node: 101,
        contacts: replica,
    });

    let report = check_contacts(&ops, &nodes, &core_events, "t94-");
    assert!(report.is_ok(), "{report}");
    let sides = check_branch_sides(&core_events, &branch_events, SITE);
    assert!(sides.is_ok(), "{sides}");
    let local_offers = branch_events
        .iter()
        .filter(|e| e.kind == EventKind::ContactOffered as i32)
        .count();
    assert!(local_offers > 0, "the branch routed on its own");
    assert!(
        core_events
            .iter()
            .any(|e| e.kind == EventKind::LeaseLapsed as i32 && e.site_id == SITE),
        "the core fenced the site"
    );
    eprintln!(
        "t94: {report}; branch alone: {} events, {local_offers} offers",
        branch_events.len()
    );
}

/// Regression: a renewal that reached the core but whose answer was lost did not count at
/// the branch, which went alone TTL after the last renewal it saw answered while the core,
/// which had applied the later ones, still held the site's lease and routed to its agents.
/// The link here delivers every byte the branch sends and drops every byte coming back
/// (a one-way failure, or a leader that commits renewals late), so the core keeps
/// renewing a lease the branch never hears about until the connection is given up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t94_a_branch_whose_renewals_land_unanswered_routes_alone_only_after_the_lease_they_renewed(
) {
    let Leased {
        cluster,
        links,
        core,
        branch,
        ..
    } = leased_branch("3s").await;

    let muted_at = wall_clock_ms();
    links.mute_answers();
    let alone_at = wait_until("the branch routing its site alone", DEADLINE, || {
        let branch = branch.clone();
        async move { (agents_served(&branch).await? == 2).then(wall_clock_ms) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail(101, 30)));
    // Every renewal the branch sent before it went alone has reached the core by now.
    let site = site_status(&core, SITE).await.expect("the site's status");
    assert!(
        site.lease_expires_ms <= alone_at,
        "the branch routed alone {} ms after the answers stopped, while the core held the \
         site's lease {} ms longer",
        alone_at - muted_at,
        site.lease_expires_ms - alone_at
    );
    // Past the TTL (3 s) from the mute: a renewal sent after it renewed the lease.
    assert!(
        site.lease_expires_ms > muted_at + 3_000,
        "a renewal sent after the answers stopped reached the core"
    );

    links.heal();
    wait_leased(&core, &branch, "the branch reconciled and leased again")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_log_tails(30)));
}
