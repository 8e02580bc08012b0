//! Cluster tests: real `banyan core` and `banyan branch` processes on loopback (and
//! in-process clusters with cut links), each test a must-hold property of the cluster.
//!
//! Named by level, in the openraft manner: `t01` the crates' dependency rules, `t10` formation, `t12` the trust boundary (TLS, principals, the authorization table, the audit trail), `t20` replication, `t30`
//! leader loss, `t40` node recovery, `t50` membership, `t60` whole-cluster restart (`t62` backup and restore),
//! `t70` bad input, `t80` agents at their desks (`t88` hostile imports), `t90` branches (`t92` the core lost,
//! `t94`/`t95` one branch cut off from a running core), `t96` the failover drills, `t97` metrics, wallboard and traces, `t98` the demo and its wallboard in a browser.

mod t01_architecture;
mod t05_deploy_manifests;
mod t10_formation;
mod t12_trust;
mod t13_stream_limit;
mod t15_partition;
mod t20_replication;
mod t30_leader_kill;
mod t40_recovery;
mod t41_history;
mod t42_wiped_voter;
mod t44_voter_clock;
mod t46_hostile_snapshot;
mod t47_full_disk;
mod t50_membership;
mod t60_full_restart;
mod t62_backup_restore;
mod t70_bad_input;
mod t75_contact_bad_input;
mod t80_agent_desk;
mod t85_desk_timers;
mod t87_site_lease;
mod t88_hostile_import;
mod t89_damaged_journal;
mod t90_branch;
mod t91_branch_self_service;
mod t92_branch_autonomy;
mod t93_two_branches;
mod t94_branch_cut_off;
mod t95_inproc_branch_cut;
mod t96_drills;
mod t97_observability;
mod t98_demo;
