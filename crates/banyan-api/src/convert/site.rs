//! Sites, their leases and their branches' reports.

use banyan_domain::{BranchMode, BranchReport, DomainError, Site, SiteMode};
use banyan_proto::v1;

/// The mode a branch reports with its lease renewal; unspecified counts as connected.
pub fn branch_mode_from_proto(field: &str, value: i32) -> Result<BranchMode, DomainError> {
    match v1::BranchMode::try_from(value) {
        Ok(v1::BranchMode::Unspecified | v1::BranchMode::Connected) => Ok(BranchMode::Connected),
        Ok(v1::BranchMode::Autonomous) => Ok(BranchMode::Autonomous),
        Ok(v1::BranchMode::Reconciling) => Ok(BranchMode::Reconciling),
        Err(_) => Err(DomainError::invalid(
            field,
            format!("unknown branch mode {value}"),
        )),
    }
}

/// A branch's mode as a site's status reports it.
pub fn branch_mode_to_proto(mode: BranchMode) -> v1::BranchMode {
    match mode {
        BranchMode::Connected => v1::BranchMode::Connected,
        BranchMode::Autonomous => v1::BranchMode::Autonomous,
        BranchMode::Reconciling => v1::BranchMode::Reconciling,
    }
}

/// The branch's report carried by a renewal, validated.
pub fn branch_report(request: &v1::RenewLeaseRequest) -> Result<BranchReport, DomainError> {
    if request.node_id == 0 {
        return Err(DomainError::invalid(
            "node_id",
            "must be a positive integer",
        ));
    }
    Ok(BranchReport {
        node_id: request.node_id,
        mode: branch_mode_from_proto("mode", request.mode)?,
        journal_backlog: request.journal_backlog,
    })
}

/// A site as the status shows it at cluster time `now_ms`; replication figures and the
/// agent count are filled in by the caller, which knows them.
pub fn site_status(site: &Site, now_ms: i64) -> v1::SiteStatus {
    let report = site.branch.unwrap_or_default();
    v1::SiteStatus {
        site_id: site.input.id.clone(),
        name: site.input.name.clone(),
        region: site.input.region.clone(),
        mode: match site.mode(now_ms) {
            SiteMode::Core => v1::SiteMode::Core,
            SiteMode::Leased => v1::SiteMode::Leased,
            SiteMode::Lapsed => v1::SiteMode::Lapsed,
        }
        .into(),
        lease_expires_ms: site.lease_expires_ms.unwrap_or(0),
        branch_node_id: report.node_id,
        branch_mode: if site.branch.is_some() {
            branch_mode_to_proto(report.mode).into()
        } else {
            v1::BranchMode::Unspecified.into()
        },
        journal_backlog: report.journal_backlog,
        last_renewal_ms: site.last_renewal_ms.unwrap_or(0),
        ..Default::default()
    }
}
