//! The public `ContactCenter` service of a core node (customers so far).
//!
//! Writes go through Raft on the leader; a follower forwards them once. Reads are
//! linearizable unless the caller asks for `READ_CONSISTENCY_LOCAL`, in which case the
//! node answers from its own applied state and says which log index that was.

use banyan_domain::state::CustomerQuery;
use banyan_domain::{Command, DomainError, Event};
use banyan_proto::v1::contact_center_client::ContactCenterClient;
use banyan_proto::v1::contact_center_server::{ContactCenter, ContactCenterServer};
use banyan_proto::v1::{
    Customer, FindCustomersRequest, FindCustomersResponse, GetCustomerRequest, ReadConsistency,
    UpsertCustomerRequest,
};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::errors::ServiceError;
use crate::forward::{caller_timeout, forwarded, tag_leader, was_forwarded, Forwarder};
use crate::node::CoreNode;

/// Metadata key on read replies: the log index the answering node had applied.
pub const APPLIED_INDEX_KEY: &str = "x-banyan-applied-index";

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

#[derive(Clone)]
pub struct ContactCenterService {
    node: CoreNode,
    forwarder: Forwarder,
}

impl ContactCenterService {
    pub fn new(node: CoreNode, forwarder: Forwarder) -> Self {
        Self { node, forwarder }
    }

    pub fn into_server(self) -> ContactCenterServer<Self> {
        ContactCenterServer::new(self)
    }

    /// Prepares a read: `Ok(None)` when this node may answer from its own state (a local
    /// read, or leadership confirmed), `Ok(Some(leader))` when the read must be forwarded,
    /// `Err` with the status to return otherwise.
    async fn leader_for_read(
        &self,
        consistency: i32,
        already_forwarded: bool,
    ) -> Result<Option<tonic::transport::Channel>, Status> {
        let consistency = ReadConsistency::try_from(consistency).map_err(|_| {
            Status::invalid_argument(format!("consistency: unknown value {consistency}"))
        })?;
        if consistency == ReadConsistency::Local {
            return Ok(None);
        }
        match self.node.linearize().await {
            Ok(()) => Ok(None),
            Err(ServiceError::NotLeader(hint)) if !already_forwarded => {
                self.forwarder.leader_channel(&hint).map(Some)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn with_applied_index<T>(&self, message: T, index: u64) -> Response<T> {
        let mut response = Response::new(message);
        response
            .metadata_mut()
            .insert(APPLIED_INDEX_KEY, MetadataValue::from(index));
        response
    }
}

fn invalid(e: DomainError) -> Status {
    ServiceError::from(e).into()
}

#[tonic::async_trait]
impl ContactCenter for ContactCenterService {
    async fn upsert_customer(
        &self,
        request: Request<UpsertCustomerRequest>,
    ) -> Result<Response<Customer>, Status> {
        let already_forwarded = was_forwarded(&request);
        let timeout = caller_timeout(&request);
        let message = request.into_inner();
        let command = Command::UpsertCustomer {
            customer: convert::customer_input(message.customer.clone()).map_err(invalid)?,
            request_id: convert::request_id(message.request_id.clone()).map_err(invalid)?,
        };
        match self.node.propose(command).await {
            Ok(events) => match events.first() {
                Some(Event::CustomerUpserted(c)) => {
                    Ok(Response::new(convert::customer_to_proto(c)))
                }
                None => Err(Status::internal("upsert applied without an event")),
            },
            Err(ServiceError::NotLeader(hint)) if !already_forwarded => {
                let channel = self.forwarder.leader_channel(&hint)?;
                tracing::debug!(leader = ?hint.id, "forwarding UpsertCustomer");
                let reply = ContactCenterClient::new(channel)
                    .upsert_customer(forwarded(message, timeout))
                    .await;
                tag_leader(reply, &hint)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get_customer(
        &self,
        request: Request<GetCustomerRequest>,
    ) -> Result<Response<Customer>, Status> {
        let already_forwarded = was_forwarded(&request);
        let timeout = caller_timeout(&request);
        let message = request.into_inner();
        banyan_domain::customer::validate_id("id", &message.id).map_err(invalid)?;
        if let Some(leader) = self
            .leader_for_read(message.consistency, already_forwarded)
            .await?
        {
            return ContactCenterClient::new(leader)
                .get_customer(forwarded(message, timeout))
                .await;
        }
        let applied = self.node.applied();
        let index = applied.applied_index();
        let state = applied.read();
        let customer = state
            .domain
            .customer(&message.id)
            .ok_or_else(|| invalid(DomainError::not_found("id", &message.id)))?;
        Ok(self.with_applied_index(convert::customer_to_proto(customer), index))
    }

    async fn find_customers(
        &self,
        request: Request<FindCustomersRequest>,
    ) -> Result<Response<FindCustomersResponse>, Status> {
        let already_forwarded = was_forwarded(&request);
        let timeout = caller_timeout(&request);
        let message = request.into_inner();
        let limit = match message.limit {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(Status::invalid_argument(format!(
                    "limit: {n} is above the maximum of {MAX_PAGE}"
                )))
            }
            n => n,
        };
        let query = CustomerQuery {
            phone: non_empty(&message.phone, "phone", 64)?,
            email: non_empty(&message.email, "email", 254)?,
            name_prefix: non_empty(&message.name_prefix, "name_prefix", 256)?,
            tier: convert::tier_from_proto("tier", message.tier).map_err(invalid)?,
            after_id: match message.page_token.as_str() {
                "" => None,
                token => {
                    banyan_domain::customer::validate_id("page_token", token).map_err(invalid)?;
                    Some(token.to_owned())
                }
            },
            limit: limit as usize + 1,
        };
        if let Some(leader) = self
            .leader_for_read(message.consistency, already_forwarded)
            .await?
        {
            return ContactCenterClient::new(leader)
                .find_customers(forwarded(message, timeout))
                .await;
        }
        let applied = self.node.applied();
        let index = applied.applied_index();
        let state = applied.read();
        let mut found = state.domain.find_customers(&query);
        let next_page_token = if found.len() > limit as usize {
            found.truncate(limit as usize);
            found.last().map(|c| c.id().to_owned()).unwrap_or_default()
        } else {
            String::new()
        };
        let reply = FindCustomersResponse {
            customers: found.into_iter().map(convert::customer_to_proto).collect(),
            next_page_token,
            applied_index: index,
        };
        Ok(self.with_applied_index(reply, index))
    }
}

fn non_empty(value: &str, field: &str, max: usize) -> Result<Option<String>, Status> {
    if value.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field}: {} bytes, at most {max} allowed",
            value.len()
        )));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}
