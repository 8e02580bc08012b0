//! The invariant checker: judges the final state read from every node against a client
//! history (DESIGN.md section 2).
//!
//! For the customer workload it proves:
//! * no acknowledged write is lost: every `Ok` upsert is present on every node;
//! * nothing is applied twice: each workload id was upserted once, so its version is 1;
//! * nothing appears from nowhere: every stored workload id was sent by the workload;
//! * refused writes changed nothing: no `Failed` upsert is present;
//! * replicas agree: every node holds the same customers with the same versions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use banyan_proto::v1::Customer;

use crate::history::{History, Outcome};

/// The customers one node holds, read after the faults healed.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// The node's id, so a violation names the replica that broke.
    pub node: u64,
    /// Every customer the node holds, workload and others alike.
    pub customers: Vec<Customer>,
}

/// A broken invariant, with enough detail to find it in the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A write the client saw succeed is missing from a node: the worst loss.
    LostAcknowledged {
        /// The node that lost it.
        node: u64,
        /// The customer id the client wrote.
        id: String,
    },
    /// A write sent once was applied more than once (its version passed 1).
    AppliedTwice {
        /// The node holding the repeated write.
        node: u64,
        /// The customer id that was written once.
        id: String,
        /// The version found; each extra apply adds one.
        version: u64,
    },
    /// A workload id the client never sent: state appeared from nowhere.
    Phantom {
        /// The node holding it.
        node: u64,
        /// The unknown customer id.
        id: String,
    },
    /// A write the cluster refused still took effect, so the refusal lied.
    RefusedButApplied {
        /// The node holding it.
        node: u64,
        /// The customer id whose upsert was refused.
        id: String,
    },
    /// Two replicas disagree on a customer's presence or version.
    Diverged {
        /// The reference node (the first one read).
        node: u64,
        /// The node that differs from it.
        other: u64,
        /// The customer id they disagree on.
        id: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::LostAcknowledged { node, id } => {
                write!(f, "node {node}: acknowledged write {id} is missing")
            }
            Violation::AppliedTwice { node, id, version } => {
                write!(f, "node {node}: {id} applied {version} times")
            }
            Violation::Phantom { node, id } => write!(f, "node {node}: {id} was never written"),
            Violation::RefusedButApplied { node, id } => {
                write!(f, "node {node}: refused write {id} is present")
            }
            Violation::Diverged { node, other, id } => {
                write!(f, "nodes {node} and {other} disagree on {id}")
            }
        }
    }
}

/// What the checker found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Writes the client saw succeed; each must be on every node.
    pub acknowledged: usize,
    /// Writes the cluster refused; none may be present.
    pub failed: usize,
    /// Writes whose outcome the client never learned (timeout, dropped link).
    pub unknown: usize,
    /// Unknown writes that did take effect.
    pub unknown_applied: usize,
    /// Every broken invariant found; empty means the run passed.
    pub violations: Vec<Violation>,
}

impl CheckReport {
    /// Whether the run kept every invariant, for tests to assert on.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acknowledged, {} refused, {} unknown ({} of them applied); {} violations",
            self.acknowledged,
            self.failed,
            self.unknown,
            self.unknown_applied,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(20) {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

/// Checks `nodes` against `history`. Only ids starting with `prefix` are the workload's;
/// other customers are ignored except for replica agreement.
pub fn check_customers(history: &History, nodes: &[NodeState], prefix: &str) -> CheckReport {
    let mut report = CheckReport {
        acknowledged: history.count(Outcome::Ok),
        failed: history.count(Outcome::Failed),
        unknown: history.count(Outcome::Unknown),
        ..Default::default()
    };
    let outcomes: BTreeMap<&str, Outcome> = history
        .operations
        .iter()
        .map(|o| (o.customer_id.as_str(), o.outcome))
        .collect();
    let mut unknown_applied = BTreeSet::new();
    for state in nodes {
        let held: BTreeMap<&str, &Customer> =
            state.customers.iter().map(|c| (c.id.as_str(), c)).collect();
        for op in history.acknowledged() {
            if !held.contains_key(op.customer_id.as_str()) {
                report.violations.push(Violation::LostAcknowledged {
                    node: state.node,
                    id: op.customer_id.clone(),
                });
            }
        }
        for (id, customer) in &held {
            if !id.starts_with(prefix) {
                continue;
            }
            match outcomes.get(id) {
                None => report.violations.push(Violation::Phantom {
                    node: state.node,
                    id: id.to_string(),
                }),
                Some(Outcome::Failed) => report.violations.push(Violation::RefusedButApplied {
                    node: state.node,
                    id: id.to_string(),
                }),
                Some(Outcome::Unknown) => {
                    unknown_applied.insert(id.to_string());
                }
                Some(Outcome::Ok) => {}
            }
            if customer.version != 1 {
                report.violations.push(Violation::AppliedTwice {
                    node: state.node,
                    id: id.to_string(),
                    version: customer.version,
                });
            }
        }
    }
    // Replica agreement, against the first node.
    if let Some((first, rest)) = nodes.split_first() {
        let reference: BTreeMap<&str, u64> = first
            .customers
            .iter()
            .map(|c| (c.id.as_str(), c.version))
            .collect();
        for other in rest {
            let theirs: BTreeMap<&str, u64> = other
                .customers
                .iter()
                .map(|c| (c.id.as_str(), c.version))
                .collect();
            for id in reference
                .keys()
                .chain(theirs.keys())
                .collect::<BTreeSet<_>>()
            {
                if reference.get(id) != theirs.get(id) {
                    report.violations.push(Violation::Diverged {
                        node: first.node,
                        other: other.node,
                        id: id.to_string(),
                    });
                }
            }
        }
    }
    report.unknown_applied = unknown_applied.len();
    report
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::Operation;

    fn op(id: &str, outcome: Outcome) -> Operation {
        Operation {
            customer_id: id.into(),
            outcome,
            invoked: Duration::ZERO,
            completed: Duration::ZERO,
        }
    }

    fn customer(id: &str, version: u64) -> Customer {
        Customer {
            id: id.into(),
            version,
            ..Default::default()
        }
    }

    fn history() -> History {
        History {
            operations: vec![
                op("w-1", Outcome::Ok),
                op("w-2", Outcome::Unknown),
                op("w-3", Outcome::Failed),
            ],
        }
    }

    #[test]
    fn accepts_a_correct_final_state() {
        let nodes = [1, 2].map(|node| NodeState {
            node,
            customers: vec![customer("w-1", 1), customer("w-2", 1), customer("other", 3)],
        });
        let report = check_customers(&history(), &nodes, "w-");
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.unknown_applied, 1);
    }

    #[test]
    fn reports_each_kind_of_violation() {
        let nodes = [
            NodeState {
                node: 1,
                customers: vec![customer("w-1", 2), customer("w-3", 1), customer("w-9", 1)],
            },
            NodeState {
                node: 2,
                customers: vec![customer("w-3", 1), customer("w-9", 1)],
            },
        ];
        let report = check_customers(&history(), &nodes, "w-");
        let has = |v: Violation| report.violations.contains(&v);
        assert!(has(Violation::AppliedTwice {
            node: 1,
            id: "w-1".into(),
            version: 2
        }));
        assert!(has(Violation::LostAcknowledged {
            node: 2,
            id: "w-1".into()
        }));
        assert!(has(Violation::RefusedButApplied {
            node: 1,
            id: "w-3".into()
        }));
        assert!(has(Violation::Phantom {
            node: 1,
            id: "w-9".into()
        }));
        assert!(has(Violation::Diverged {
            node: 1,
            other: 2,
            id: "w-1".into()
        }));
    }
}
