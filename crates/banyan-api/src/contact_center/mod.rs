//! The public `ContactCenter` service of a core node.
//!
//! Writes are domain commands committed by the backend ([`Backend::submit`]: on the core
//! through the leader, which a follower hands the command to once), applied on this node
//! before the answer, which comes from this node's own state. Reads are linearizable unless the caller asks for
//! `READ_CONSISTENCY_LOCAL`, in which case the node answers from its own applied state and
//! says which log index that was (metadata `x-banyan-applied-index` and the reply).
//!
//! # Layout
//! * this file: the service, its write and read helpers, and the trait implementation;
//! * [`watch`]: the `WatchEvents` stream.

mod watch;

use banyan_client::trace::{self, TraceContext};
use banyan_domain::state::{ContactQuery, CustomerQuery};
use banyan_domain::{Action, Command, DomainError, Event, Principal, State};
use banyan_proto::v1::contact_center_client::ContactCenterClient;
use banyan_proto::v1::contact_center_server::{ContactCenter, ContactCenterServer};
use banyan_proto::v1::{self as pb, ReadConsistency};
use banyan_raft::{History, HistoryCursor};
use banyan_trust::{policy, principal_of};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::convert;
use crate::errors::{denied, invalid, unreadable, ApiError};
use crate::forward::{relay, was_forwarded};
use crate::{Backend, Committed};

/// Metadata key on read replies: the log index the answering node had applied.
pub const APPLIED_INDEX_KEY: &str = "x-banyan-applied-index";

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// The `ContactCenter` gRPC service over any node, core voter or branch: contacts,
/// customers, queues, agents and the event watch.
#[derive(Clone)]
pub struct ContactCenterService<B> {
    node: B,
}

impl<B: Backend> ContactCenterService<B> {
    /// Answers reads from `node`'s state (or its leader) and commits writes through it.
    pub fn new(node: B) -> Self {
        Self { node }
    }

    /// The service as tonic serves it, for the node's one listener.
    pub fn into_server(self) -> ContactCenterServer<Self> {
        ContactCenterServer::new(self)
    }

    /// Prepares a read: `Ok(None)` when this node may answer from its own state (a local
    /// read, or leadership confirmed), `Ok(Some(leader))` when the read must be forwarded,
    /// `Err` with the status to return otherwise.
    async fn leader_for_read<T>(
        &self,
        request: &Request<T>,
        consistency: i32,
    ) -> Result<Option<ContactCenterClient<tonic::transport::Channel>>, ApiError> {
        let consistency = ReadConsistency::try_from(consistency).map_err(|_| {
            DomainError::invalid("consistency", format!("unknown value {consistency}"))
        })?;
        if consistency == ReadConsistency::Local {
            return Ok(None);
        }
        let target = self.node.read_target(was_forwarded(request)).await?;
        Ok(target.map(ContactCenterClient::new))
    }

    /// Runs `read` on this node's applied state and tags the reply with its index.
    fn read<T>(
        &self,
        read: impl FnOnce(&State, u64) -> Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        self.read_with_history(|state, _, index| read(state, index))
    }

    /// [`read`](Self::read), with the node's history store for finished contacts that
    /// left the routing state (`None` where there is none).
    fn read_with_history<T>(
        &self,
        read: impl FnOnce(&State, Option<&History>, u64) -> Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        let applied = self.node.applied();
        let index = applied.applied_index();
        let state = applied.read();
        let message = read(&state.domain, applied.history(), index)?;
        Ok(with_index(message, index))
    }

    /// Runs `read` on this node's history store alone, without the applied state's lock
    /// (a long scan of history must not hold up applying).
    fn read_history<T>(
        &self,
        read: impl FnOnce(&History, u64) -> Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        let applied = self.node.applied();
        let index = applied.applied_index();
        let history = applied.history().ok_or_else(|| {
            ApiError::unavailable(
                "this node serves its site alone and reads no history now; ask the core",
            )
        })?;
        Ok(with_index(read(history, index)?, index))
    }

    /// Commits a command through the leader.
    async fn write(
        &self,
        by: &Principal,
        action: Action,
        request_id: &str,
    ) -> Result<Committed, ApiError> {
        let request_id = convert::request_id(request_id.to_owned())?;
        self.check_scope(by, &action)?;
        self.node
            .submit(Command::with_request_id(action, request_id).by(by.clone()))
            .await
    }

    /// A site-limited principal acts only on its own site's contacts (the method table
    /// already said it may act at all).
    fn check_scope(&self, by: &Principal, action: &Action) -> Result<(), ApiError> {
        let applied = self.node.applied();
        let state = applied.read();
        crate::scope::check_scope(&state.domain, by, action)
    }

    /// Answers a write with the object it wrote, as this node has it now.
    fn read_back<T>(
        &self,
        what: &str,
        id: &str,
        find: impl FnOnce(&State) -> Option<T>,
    ) -> Result<Response<T>, Status> {
        self.read(|state, _| {
            find(state)
                .ok_or_else(|| ApiError::Fatal(format!("{what} {id} missing after its write")))
        })
    }

    fn reply_contact(&self, id: &str) -> Result<Response<pb::Contact>, Status> {
        self.read_back("contact", id, |state| {
            state.contact(id).map(convert::contact_to_proto)
        })
    }
}

/// Page size from a request's `limit`.
fn page_limit(limit: u32) -> Result<usize, ApiError> {
    match limit {
        0 => Ok(DEFAULT_PAGE as usize),
        n if n > MAX_PAGE => Err(invalid(DomainError::invalid(
            "limit",
            format!("{n} is above the maximum of {MAX_PAGE}"),
        ))),
        n => Ok(n as usize),
    }
}

/// A paging token: the id of the last item of the previous page.
fn page_token(token: &str) -> Result<Option<String>, ApiError> {
    convert::optional_id("page_token", token).map_err(invalid)
}

/// Cuts a result fetched with one extra item to `limit`, returning the next page token.
fn paginate<T>(items: &mut Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> String {
    if items.len() > limit {
        items.truncate(limit);
        items.last().map(id).unwrap_or_default()
    } else {
        String::new()
    }
}

fn non_empty(value: &str, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    if value.len() > max {
        return Err(invalid(DomainError::invalid(
            field,
            format!("{} bytes, at most {max} allowed", value.len()),
        )));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// The contact a write was about: the one its first event names.
fn contact_of(committed: &Committed) -> Result<String, ApiError> {
    committed
        .events
        .iter()
        .find_map(|e| e.contact_id().map(str::to_owned))
        .ok_or_else(|| ApiError::Fatal("contact write applied without a contact event".into()))
}

#[tonic::async_trait]
impl<B: Backend> ContactCenter for ContactCenterService<B> {
    async fn create_contact(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        // The contact's trace starts here (or continues the caller's): every call this
        // node makes for it carries the trace id, and the core logs it too.
        let context = TraceContext::continue_or_start(request.metadata());
        let by = principal_of(&request)?;
        let message = request.into_inner();
        let span = tracing::info_span!(
            "create_contact",
            trace_id = %context.trace_id,
            node_id = self.node.node_id(),
            site = %message.site,
            contact_id = tracing::field::Empty,
        );
        let work = async move {
            let input = convert::contact_input(&message).map_err(invalid)?;
            let request_id = convert::request_id(message.request_id.clone()).map_err(invalid)?;
            let reply = if let Some(answer) = self
                .node
                .self_serve(&input, request_id.as_deref(), &by)
                .await
            {
                answer.map(|contact| convert::contact_to_proto(&contact))?
            } else {
                let committed = self
                    .write(&by, Action::CreateContact(input), &message.request_id)
                    .await?;
                self.reply_contact(&contact_of(&committed)?)?.into_inner()
            };
            tracing::Span::current().record("contact_id", reply.id.as_str());
            tracing::info!(
                state = ?pb::ContactState::try_from(reply.state).unwrap_or_default(),
                queue_id = %reply.queue_id,
                "contact created"
            );
            Ok(Response::new(reply))
        };
        trace::scope(context, work.instrument(span)).await
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let id = convert::required_id("id", &request.get_ref().id).map_err(invalid)?;
        if let Some(mut leader) = self
            .leader_for_read(&request, request.get_ref().consistency)
            .await?
        {
            return leader.get_contact(relay(request)).await;
        }
        let by = principal_of(&request)?;
        self.read_with_history(|state, history, _| {
            // A finished contact the routing state let go is in the history store.
            let contact = match state.contact(&id) {
                Some(contact) => std::borrow::Cow::Borrowed(contact),
                None => history
                    .map(|h| h.get(&id))
                    .transpose()
                    .map_err(unreadable)?
                    .flatten()
                    .map(std::borrow::Cow::Owned)
                    .ok_or_else(|| invalid(DomainError::not_found("id", &id)))?,
            };
            policy::check_site(Some(&by), &contact.origin_site, "read contact").map_err(denied)?;
            Ok(convert::contact_to_proto(&contact))
        })
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        let m = request.get_ref();
        let limit = page_limit(m.limit)?;
        let range = finished_range(m.finished_from_ms, m.finished_to_ms)?;
        let query = ContactQuery {
            queue_id: convert::optional_id("queue_id", &m.queue_id).map_err(invalid)?,
            agent_id: convert::optional_id("agent_id", &m.agent_id).map_err(invalid)?,
            customer_id: convert::optional_id("customer_id", &m.customer_id).map_err(invalid)?,
            state: convert::contact_state_filter("state", m.state).map_err(invalid)?,
            // A site-limited reader lists its site's contacts.
            origin_site: principal_of(&request)?.site_scope().map(str::to_owned),
            after_id: match range {
                None => page_token(&m.page_token)?,
                Some(_) => None,
            },
            limit: limit + 1,
        };
        let cursor = match range {
            Some(_) => history_token(&m.page_token)?,
            None => None,
        };
        if let Some(mut leader) = self.leader_for_read(&request, m.consistency).await? {
            return leader.list_contacts(relay(request)).await;
        }
        if let Some((from_ms, to_ms)) = range {
            return self.read_history(|history, index| {
                let (found, next_page_token) =
                    finished_page(history, &query, from_ms, to_ms, cursor, limit)?;
                Ok(pb::ListContactsResponse {
                    contacts: found.iter().map(convert::contact_to_proto).collect(),
                    next_page_token,
                    applied_index: index,
                })
            });
        }
        self.read(|state, index| {
            let mut found = state.list_contacts(&query);
            let next_page_token = paginate(&mut found, limit, |c| c.id.clone());
            Ok(pb::ListContactsResponse {
                contacts: found.into_iter().map(convert::contact_to_proto).collect(),
                next_page_token,
                applied_index: index,
            })
        })
    }

    async fn export_history(
        &self,
        request: Request<pb::ExportHistoryRequest>,
    ) -> Result<Response<pb::ExportHistoryResponse>, Status> {
        let m = request.get_ref();
        let limit = page_limit(m.limit)?;
        let (from_ms, to_ms) =
            finished_range(m.finished_from_ms, m.finished_to_ms)?.unwrap_or((i64::MIN, i64::MAX));
        let cursor = history_token(&m.page_token)?;
        // A site-limited reader exports its site's contacts.
        let query = ContactQuery {
            origin_site: principal_of(&request)?.site_scope().map(str::to_owned),
            ..Default::default()
        };
        self.read_history(|history, _| {
            let (found, next_page_token) =
                finished_page(history, &query, from_ms, to_ms, cursor, limit)?;
            let records = found
                .iter()
                .filter_map(banyan_domain::cdr::DetailRecord::of)
                .map(|r| serde_json::to_string(&r).map_err(|e| ApiError::fatal(e.to_string())))
                .collect::<Result<_, _>>()?;
            Ok(pb::ExportHistoryResponse {
                records,
                next_page_token,
            })
        })
    }

    async fn complete_contact(
        &self,
        request: Request<pb::CompleteContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let by = principal_of(&request)?;
        let m = request.into_inner();
        let contact_id = convert::required_id("contact_id", &m.contact_id).map_err(invalid)?;
        let action = Action::CompleteContact {
            contact_id: contact_id.clone(),
            agent_id: m.agent_id,
            disposition: m.disposition,
            notes: m.notes,
        };
        self.write(&by, action, &m.request_id).await?;
        self.reply_contact(&contact_id)
    }

    async fn abandon_contact(
        &self,
        request: Request<pb::AbandonContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let by = principal_of(&request)?;
        let m = request.into_inner();
        let contact_id = convert::required_id("contact_id", &m.contact_id).map_err(invalid)?;
        let action = Action::AbandonContact {
            contact_id: contact_id.clone(),
        };
        self.write(&by, action, &m.request_id).await?;
        self.reply_contact(&contact_id)
    }

    async fn transfer_contact(
        &self,
        request: Request<pb::TransferContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let by = principal_of(&request)?;
        let m = request.into_inner();
        let contact_id = convert::required_id("contact_id", &m.contact_id).map_err(invalid)?;
        let action = Action::TransferContact {
            contact_id: contact_id.clone(),
            queue_id: convert::required_id("queue_id", &m.queue_id).map_err(invalid)?,
        };
        let committed = self.write(&by, action, &m.request_id).await?;
        // Answer with the new contact in the target queue.
        let new_id = committed
            .events
            .iter()
            .find_map(|e| match e {
                Event::ContactTransferred { new_contact_id, .. } => Some(new_contact_id.clone()),
                _ => None,
            })
            .unwrap_or(contact_id);
        self.reply_contact(&new_id)
    }

    async fn upsert_customer(
        &self,
        request: Request<pb::UpsertCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let by = principal_of(&request)?;
        let m = request.into_inner();
        let input = convert::customer_input(m.customer).map_err(invalid)?;
        let committed = self
            .write(&by, Action::UpsertCustomer(input), &m.request_id)
            .await?;
        match committed.events.first() {
            Some(Event::CustomerUpserted(c)) => Ok(Response::new(convert::customer_to_proto(c))),
            _ => Err(ApiError::Fatal("upsert applied without an event".into()).into()),
        }
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let id = convert::required_id("id", &request.get_ref().id).map_err(invalid)?;
        if let Some(mut leader) = self
            .leader_for_read(&request, request.get_ref().consistency)
            .await?
        {
            return leader.get_customer(relay(request)).await;
        }
        let by = principal_of(&request)?;
        self.read_with_history(|state, history, _| {
            if let Principal::Agent(agent) = &by {
                // An agent reads the customers of the contacts offered to it or held by it.
                let serves = state.agent(agent).is_some_and(|a| {
                    a.held
                        .keys()
                        .filter_map(|c| state.contact(c))
                        .any(|c| c.customer_id == id)
                });
                if !serves {
                    return Err(denied(banyan_trust::Denied::new(
                        Some(&by),
                        format!("read customer {id} (not a customer of its contacts)"),
                    )));
                }
            }
            let customer = state
                .customer(&id)
                .ok_or_else(|| invalid(DomainError::not_found("id", &id)))?;
            let mut reply = convert::customer_to_proto(customer);
            reply.history = customer_history(state, history, &id)?;
            Ok(reply)
        })
    }

    async fn find_customers(
        &self,
        request: Request<pb::FindCustomersRequest>,
    ) -> Result<Response<pb::FindCustomersResponse>, Status> {
        if let Principal::Agent(_) = principal_of(&request)? {
            return Err(denied(banyan_trust::Denied::new(
                request.extensions().get::<Principal>(),
                "search customers (an agent reads its contacts' customers only)",
            ))
            .into());
        }
        let m = request.get_ref();
        let limit = page_limit(m.limit)?;
        let query = CustomerQuery {
            phone: non_empty(&m.phone, "phone", 64)?,
            email: non_empty(&m.email, "email", 254)?,
            name_prefix: non_empty(&m.name_prefix, "name_prefix", 256)?,
            tier: convert::tier_from_proto("tier", m.tier).map_err(invalid)?,
            after_id: page_token(&m.page_token)?,
            limit: limit + 1,
        };
        if let Some(mut leader) = self.leader_for_read(&request, m.consistency).await? {
            return leader.find_customers(relay(request)).await;
        }
        self.read(|state, index| {
            let mut found = state.find_customers(&query);
            let next_page_token = paginate(&mut found, limit, |c| c.id().to_owned());
            Ok(pb::FindCustomersResponse {
                customers: found.into_iter().map(convert::customer_to_proto).collect(),
                next_page_token,
                applied_index: index,
            })
        })
    }

    async fn upsert_queue(
        &self,
        request: Request<pb::UpsertQueueRequest>,
    ) -> Result<Response<pb::Queue>, Status> {
        let by = principal_of(&request)?;
        let m = request.into_inner();
        let input = convert::queue_input(m.queue).map_err(invalid)?;
        let id = input.id.clone();
        self.write(&by, Action::UpsertQueue(input), &m.request_id)
            .await?;
        self.read_back("queue", &id, |state| {
            state.queue(&id).map(convert::queue_to_proto)
        })
    }

    async fn list_queues(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        if let Some(mut leader) = self
            .leader_for_read(&request, request.get_ref().consistency)
            .await?
        {
            return leader.list_queues(relay(request)).await;
        }
        self.read(|state, index| {
            Ok(pb::ListQueuesResponse {
                queues: state.queues().map(convert::queue_to_proto).collect(),
                applied_index: index,
            })
        })
    }

    async fn get_queue_stats(
        &self,
        request: Request<pb::GetQueueStatsRequest>,
    ) -> Result<Response<pb::QueueStats>, Status> {
        let id = convert::required_id("queue_id", &request.get_ref().queue_id).map_err(invalid)?;
        if let Some(mut leader) = self
            .leader_for_read(&request, request.get_ref().consistency)
            .await?
        {
            return leader.get_queue_stats(relay(request)).await;
        }
        self.read(|state, _| {
            let (Some(stats), Some(queue)) = (state.queue_stats(&id), state.queue(&id)) else {
                return Err(invalid(DomainError::not_found("queue_id", &id)));
            };
            Ok(convert::queue_stats_to_proto(
                &stats,
                queue,
                state.clock_ms(),
            ))
        })
    }

    async fn upsert_agent(
        &self,
        request: Request<pb::UpsertAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let by = principal_of(&request)?;
        let m = request.into_inner();
        let input = convert::agent_input(m.agent).map_err(invalid)?;
        let id = input.id.clone();
        self.write(&by, Action::UpsertAgent(input), &m.request_id)
            .await?;
        self.read_back("agent", &id, |state| {
            state.agent(&id).map(convert::agent_to_proto)
        })
    }

    async fn revoke_agent_tokens(
        &self,
        request: Request<pb::RevokeAgentTokensRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let by = principal_of(&request)?;
        let m = request.into_inner();
        let id = convert::required_id("agent_id", &m.agent_id).map_err(invalid)?;
        let action = Action::RevokeAgentTokens {
            agent_id: id.clone(),
        };
        self.write(&by, action, &m.request_id).await?;
        self.read_back("agent", &id, |state| {
            state.agent(&id).map(convert::agent_to_proto)
        })
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let scope = principal_of(&request)?.site_scope().map(str::to_owned);
        let m = request.get_ref();
        let site = convert::optional_id("site", &m.site).map_err(invalid)?;
        if let (Some(scope), Some(site)) = (&scope, &site) {
            if scope != site {
                return Err(denied(banyan_trust::Denied::new(
                    request.extensions().get::<Principal>(),
                    format!("list the agents of site {site:?} (limited to site {scope:?})"),
                ))
                .into());
            }
        }
        let site = site.or(scope);
        let wanted = convert::agent_state_filter("state", m.state).map_err(invalid)?;
        if let Some(mut leader) = self.leader_for_read(&request, m.consistency).await? {
            return leader.list_agents(relay(request)).await;
        }
        self.read(|state, index| {
            let agents = state
                .agents()
                .filter(|a| site.as_ref().is_none_or(|s| a.input.site == *s))
                .map(convert::agent_to_proto)
                .filter(|a| wanted.is_none_or(|w| a.state == w as i32))
                .collect();
            Ok(pb::ListAgentsResponse {
                agents,
                applied_index: index,
            })
        })
    }

    type WatchEventsStream = watch::EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        // A site-limited watcher sees its site's events only.
        let scope = principal_of(&request)?.site_scope().map(str::to_owned);
        Ok(Response::new(watch::watch(
            &self.node,
            request.into_inner(),
            scope,
        )?))
    }
}

/// The most finished contacts `GetCustomer` returns in a customer's history.
const CUSTOMER_HISTORY_LEN: usize = 1_000;

/// A customer's finished contacts, oldest first: the newest [`CUSTOMER_HISTORY_LEN`] of the
/// history store, with what the routing state remembers (written before the store
/// existed) where the store lacks it.
fn customer_history(
    state: &State,
    history: Option<&History>,
    id: &str,
) -> Result<Vec<pb::HistoryEntry>, ApiError> {
    let stored = match history {
        Some(history) => history
            .of_customer(id, CUSTOMER_HISTORY_LEN)
            .map_err(unreadable)?,
        None => Vec::new(),
    };
    let mut entries: Vec<pb::HistoryEntry> =
        stored.iter().map(convert::finished_to_history).collect();
    let known: std::collections::BTreeSet<String> =
        entries.iter().map(|e| e.contact_id.clone()).collect();
    entries.extend(
        state
            .customer_history(id)
            .filter(|e| !known.contains(&e.contact_id))
            .map(convert::history_to_proto),
    );
    entries.sort_by(|a, b| (a.ended_ms, &a.contact_id).cmp(&(b.ended_ms, &b.contact_id)));
    let over = entries.len().saturating_sub(CUSTOMER_HISTORY_LEN);
    entries.drain(..over);
    Ok(entries)
}

/// The most history records one `ListContacts` page looks at: a filter that matches few
/// contacts answers a short page with a token to go on, instead of scanning all history.
const MAX_HISTORY_SCAN: usize = 20_000;

/// The finished-time range of a `ListContacts` request, if it asks for one: `to` 0 is
/// open-ended.
fn finished_range(from_ms: i64, to_ms: i64) -> Result<Option<(i64, i64)>, ApiError> {
    if from_ms == 0 && to_ms == 0 {
        return Ok(None);
    }
    let to_ms = if to_ms == 0 { i64::MAX } else { to_ms };
    if from_ms >= to_ms {
        return Err(invalid(DomainError::invalid(
            "finished_to_ms",
            format!("{to_ms} is not after finished_from_ms {from_ms}"),
        )));
    }
    Ok(Some((from_ms, to_ms)))
}

/// A history page token: the finish time and id of the last record looked at.
fn history_token(token: &str) -> Result<Option<HistoryCursor>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        invalid(DomainError::invalid(
            "page_token",
            "not a token of a finished-time listing",
        ))
    };
    let (ms, id) = token.split_once(':').ok_or_else(bad)?;
    let ms = ms.parse::<i64>().map_err(|_| bad())?;
    convert::optional_id("page_token", id).map_err(invalid)?;
    Ok(Some((ms, id.to_owned())))
}

/// One page of finished contacts in `from_ms..to_ms` matching `query`, in the order they
/// finished, and the token of the next page (empty at the end).
fn finished_page(
    history: &History,
    query: &ContactQuery,
    from_ms: i64,
    to_ms: i64,
    mut cursor: Option<HistoryCursor>,
    limit: usize,
) -> Result<(Vec<banyan_domain::Contact>, String), ApiError> {
    let mut found = Vec::new();
    let mut scanned = 0;
    while scanned < MAX_HISTORY_SCAN {
        let chunk = history
            .finished_between(from_ms, to_ms, cursor.as_ref(), 500)
            .map_err(unreadable)?;
        let Some(last) = chunk.last() else {
            return Ok((found, String::new()));
        };
        let at_end = chunk.len() < 500;
        cursor = Some((last.finished_ms().unwrap_or_default(), last.id.clone()));
        for contact in chunk {
            scanned += 1;
            if !query.matches(&contact) {
                continue;
            }
            let here = (
                contact.finished_ms().unwrap_or_default(),
                contact.id.clone(),
            );
            found.push(contact);
            if found.len() == limit {
                return Ok((found, format!("{}:{}", here.0, here.1)));
            }
        }
        if at_end {
            return Ok((found, String::new()));
        }
    }
    let token = cursor.map(|(ms, id)| format!("{ms}:{id}"));
    Ok((found, token.unwrap_or_default()))
}

/// A reply tagged with the applied index it was read at.
fn with_index<T>(message: T, index: u64) -> Response<T> {
    let mut response = Response::new(message);
    response
        .metadata_mut()
        .insert(APPLIED_INDEX_KEY, MetadataValue::from(index));
    response
}
