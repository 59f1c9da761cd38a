//! The typed contract with the SQL functions the edge functions call: one
//! struct per RPC (its arguments, serialised with the SQL parameter names)
//! and its result type. A result missing a key (renamed in SQL) fails to
//! decode; keys added by a later migration are ignored, so the database can
//! be migrated before the functions are redeployed. `manifest()` lists them so a test
//! can hold them against the live database (tests/e2e/rpc_contract.test.mjs).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use crate::postgrest::{PostgrestError, Rpc};

/// JSON sent on verbatim: a `Value` would pass numbers through a 64-bit
/// float, so `18446744073709551617` would be stored rounded.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RawJson(pub Box<RawValue>);

impl Default for RawJson {
    fn default() -> Self {
        RawJson(RawValue::from_string("{}".into()).expect("{} is JSON"))
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Schema `integration`: the outbox, its log and the router's calls.
pub mod integration {
    use super::*;

    /// `integration.ingest_event`: records one signed event.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct IngestEvent {
        pub p_source: String,
        pub p_idempotency_key: String,
        pub p_event_type: String,
        pub p_aggregate_type: String,
        pub p_aggregate_id: String,
        pub p_payload: RawJson,
        pub p_occurred_at: Option<String>,
        pub p_correlation_id: String,
        pub p_scheme: String,
        pub p_signing_key_id: String,
        pub p_replay_digest: Option<String>,
        pub p_replay_expires_at_ms: i64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Ingested {
        /// A UUID; kept as text, since the function only echoes it.
        pub event_id: String,
        pub duplicate: bool,
    }

    impl Rpc for IngestEvent {
        const SCHEMA: &'static str = "integration";
        const NAME: &'static str = "ingest_event";
        type Output = Ingested;
    }

    /// `integration.ingest_event_group`: single events that arrived together,
    /// recorded in one transaction (odoo-webhook's group commit).
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct IngestEventGroup {
        pub p_events: Vec<IngestEvent>,
    }

    /// One event's result in a group: what `ingest_event` answers for it
    /// alone, or its refusal in PostgREST's error shape.
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(untagged)]
    pub enum GroupOutcome {
        Ingested(Ingested),
        Refused { error: PostgrestError },
    }

    impl Rpc for IngestEventGroup {
        const SCHEMA: &'static str = "integration";
        const NAME: &'static str = "ingest_event_group";
        type Output = Vec<GroupOutcome>;
    }

    /// `integration.ingest_events`: records a signed batch in one round trip.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct IngestEvents {
        pub p_source: String,
        pub p_events: Vec<BatchRow>,
        pub p_correlation_id: String,
        pub p_scheme: String,
        pub p_signing_key_id: String,
    }

    /// One event of `ingest_events`' batch.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct BatchRow {
        pub idempotency_key: String,
        pub event_type: String,
        pub aggregate_type: String,
        pub aggregate_id: String,
        pub payload: RawJson,
        pub occurred_at: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub correlation_id: Option<String>,
    }

    /// What became of one event of a batch.
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct BatchOutcome {
        pub status: BatchStatus,
        /// The recorded event's id (for a conflict, the earlier event's, not
        /// shown to the caller).
        pub event_id: String,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum BatchStatus {
        Accepted,
        Duplicate,
        Conflict,
    }

    impl Rpc for IngestEvents {
        const SCHEMA: &'static str = "integration";
        const NAME: &'static str = "ingest_events";
        type Output = Vec<BatchOutcome>;
    }

    /// `integration.router_claim`: leases a batch, keeping the router active.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct RouterClaim {
        pub p_worker: String,
        pub p_batch_size: u32,
        pub p_lease_seconds: u32,
    }

    /// One leased event with its route.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    pub struct ClaimedEvent {
        pub id: Uuid,
        pub lease_token: Uuid,
        pub source: String,
        pub event_type: String,
        pub aggregate_type: String,
        pub aggregate_id: String,
        pub payload: Value,
        pub occurred_at: Option<String>,
        pub correlation_id: String,
        pub attempts: u32,
        pub created_at: String,
        pub target_url: String,
        pub signing_secret: String,
        pub timeout_ms: u64,
        pub max_concurrency: usize,
        /// How the route wants its body: `standard-webhooks`, or `chat` (an
        /// incoming-webhook `{"text"}` for Mattermost or Slack). Absent before
        /// the column existed.
        #[serde(default)]
        pub format: RouteFormat,
    }

    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum RouteFormat {
        #[default]
        StandardWebhooks,
        Chat,
    }

    impl Rpc for RouterClaim {
        const SCHEMA: &'static str = "integration";
        const NAME: &'static str = "router_claim";
        type Output = Vec<ClaimedEvent>;
    }

    /// `integration.settle_outbox`: acks and fails a delivered batch at once.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct SettleOutbox {
        pub p_results: Vec<Settlement>,
    }

    /// One element of `settle_outbox`'s argument.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct Settlement {
        pub id: Uuid,
        pub lease_token: Uuid,
        pub ok: bool,
        pub error: Option<String>,
        pub retry_after_seconds: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub receipt: Option<Receipt>,
    }

    /// What a receiver that acknowledged a delivery said it ran (an n8n
    /// handler: its execution), kept on the event for its trace.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct Receipt {
        pub execution_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub workflow_id: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Settled {
        pub acked: u32,
        pub failed: u32,
        /// Events whose lease had already expired or been settled.
        pub stale: Vec<Uuid>,
    }

    impl Rpc for SettleOutbox {
        const SCHEMA: &'static str = "integration";
        const NAME: &'static str = "settle_outbox";
        type Output = Settled;
    }

    /// `integration.release_router`: the only way a router run ends.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct ReleaseRouter {
        pub p_worker: String,
        pub p_out_of_time: bool,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Released {
        pub released: bool,
        pub handed_off: bool,
    }

    impl Rpc for ReleaseRouter {
        const SCHEMA: &'static str = "integration";
        const NAME: &'static str = "release_router";
        type Output = Released;
    }
    /// `integration.raise_alert`: an alert to the operators' chat, deduplicated
    /// per kind and subject within the alert window.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct RaiseAlert {
        pub p_kind: String,
        pub p_subject: String,
        pub p_summary: String,
        pub p_details: Value,
        pub p_correlation_id: Option<String>,
    }

    impl Rpc for RaiseAlert {
        const SCHEMA: &'static str = "integration";
        const NAME: &'static str = "raise_alert";
        type Output = Value;
    }
}

/// Schema `observability`: the job ledger and service health.
pub mod observability {
    use super::*;

    /// `observability.list_services_to_probe`: enabled services whose
    /// interval has passed, least recently checked first.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct ListServicesToProbe {
        pub max_services: u32,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct ServiceToProbe {
        pub id: i64,
        pub name: String,
        pub url: String,
        pub method: String,
        pub expected_status: u16,
        pub body_match: Option<String>,
        pub timeout_ms: u64,
        pub degraded_ms: u64,
    }

    impl Rpc for ListServicesToProbe {
        const SCHEMA: &'static str = "observability";
        const NAME: &'static str = "list_services_to_probe";
        type Output = Vec<ServiceToProbe>;
    }

    /// `observability.record_health_batch`: a sweep's samples in one call; it
    /// moves each service's status and raises the down/recovery alerts.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct RecordHealthBatch {
        pub samples: Vec<HealthSample>,
        pub correlation_id: String,
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct HealthSample {
        pub service_id: i64,
        /// `healthy`, `degraded` or `failing`: what this probe saw.
        pub status: &'static str,
        pub response_time_ms: u64,
        pub http_status: Option<u16>,
        pub error: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Recorded {
        pub recorded: u32,
        /// Services whose status changed (into or out of `down` raise alerts).
        pub transitions: Vec<Transition>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
    pub struct Transition {
        pub service_id: i64,
        pub from: String,
        pub to: String,
    }

    impl Rpc for RecordHealthBatch {
        const SCHEMA: &'static str = "observability";
        const NAME: &'static str = "record_health_batch";
        type Output = Recorded;
    }
}

/// Schema `ops`: the ops runner's calls (claim, phase progress, finish).
pub mod ops {
    use super::*;
    use serde_json::Map;

    /// `ops.claim_next_run`: the next run to work on, if any.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct ClaimNextRun {
        pub p_worker_id: String,
        pub p_lease_seconds: Option<u32>,
    }

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    pub struct ClaimedRun {
        pub run_id: String,
        pub lease_token: Uuid,
        pub project_id: String,
        pub repository: String,
        pub env: String,
        pub git_sha: String,
        pub git_ref: String,
        pub kind: String,
        /// The project's phases, in order: `{name, provider, ...settings}`.
        pub phases: Vec<Value>,
        /// Per phase: `{started_at, state}` while running, `{done, output}` after.
        pub progress: Map<String, Value>,
        /// Claims of this run so far, this one included.
        pub invocation: u32,
        /// Started before: a yielded run, or one whose runner died.
        pub resumed: bool,
        pub correlation_id: String,
    }

    impl Rpc for ClaimNextRun {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "claim_next_run";
        type Output = Vec<ClaimedRun>;
    }

    /// What every write under a lease answers.
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Lease {
        pub lease_expires_at: String,
        /// An operator cancelled the run: stop and finish it as cancelled.
        pub cancel_requested: bool,
    }

    /// `ops.start_phase`: the run is running this phase (its start event once).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct StartPhase {
        pub p_run_id: String,
        pub p_lease_token: Uuid,
        pub p_phase: String,
        pub p_lease_seconds: Option<u32>,
    }

    impl Rpc for StartPhase {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "start_phase";
        type Output = Lease;
    }

    /// `ops.save_progress`: the phase's provider state, stored before a request.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct SaveProgress {
        pub p_run_id: String,
        pub p_lease_token: Uuid,
        pub p_phase: String,
        pub p_state: Map<String, Value>,
        pub p_lease_seconds: Option<u32>,
    }

    impl Rpc for SaveProgress {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "save_progress";
        type Output = Lease;
    }

    /// `ops.heartbeat_run`: renews the lease while a provider is waited on.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct HeartbeatRun {
        pub p_run_id: String,
        pub p_lease_token: Uuid,
        pub p_lease_seconds: Option<u32>,
    }

    impl Rpc for HeartbeatRun {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "heartbeat_run";
        type Output = Lease;
    }

    /// One `ops.artifacts` row a phase produced.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct Artifact {
        /// image, build_log, sbom, deployment, evidence, ...
        pub kind: String,
        pub name: String,
        pub url: Option<String>,
        pub digest: Option<String>,
        pub metadata: Value,
    }

    /// `ops.complete_phase`: the phase's output and artifacts, and its
    /// completion event.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct CompletePhase {
        pub p_run_id: String,
        pub p_lease_token: Uuid,
        pub p_phase: String,
        pub p_output: Value,
        pub p_artifacts: Vec<Artifact>,
        pub p_lease_seconds: Option<u32>,
    }

    impl Rpc for CompletePhase {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "complete_phase";
        type Output = Lease;
    }

    /// `ops.yield_run`: the invocation's time is spent; the run is released
    /// for the next runner, which the database wakes.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct YieldRun {
        pub p_run_id: String,
        pub p_lease_token: Uuid,
        /// The rest of a wait: no runner takes the run before it is over.
        pub p_resume_in_ms: u32,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Yielded {
        pub run_id: String,
        pub woken: bool,
    }

    impl Rpc for YieldRun {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "yield_run";
        type Output = Yielded;
    }

    /// `ops.finish_run`: the seed's finish, fenced by the lease token.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct FinishRun {
        pub p_run_id: String,
        /// success, failed or cancelled
        pub p_status: String,
        pub p_metadata: Value,
        pub p_lease_token: Option<Uuid>,
        pub p_error: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Finished {
        pub run_id: String,
        pub status: String,
    }

    impl Rpc for FinishRun {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "finish_run";
        type Output = Finished;
    }

    /// `ops.wake_runner_if_due`: a runner whose time is spent while runs
    /// still wait hands them off; the answer is pg_net's request id, or null
    /// when nothing was sent (nothing claimable, or a runner already coming).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct WakeRunnerIfDue {
        pub p_reason: String,
    }

    impl Rpc for WakeRunnerIfDue {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "wake_runner_if_due";
        type Output = Option<i64>;
    }
}

/// Schema `campaigns`: toggles, status webhooks, the reconciler and the
/// shared n8n circuit breaker.
pub mod campaigns {
    use super::*;

    /// `campaigns.toggle_begin`: called as the user (their JWT), so the
    /// campaign must be theirs to see and change.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct ToggleBegin {
        pub p_campaign_id: Uuid,
        pub p_action: String,
        pub p_idempotency_key: Option<String>,
        pub p_request_hash: Option<String>,
        pub p_correlation_id: String,
        /// Only read for the service role, which names the user it acts for.
        pub p_user_id: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(tag = "outcome", rename_all = "snake_case")]
    pub enum Begun {
        /// The first answer given to this idempotency key.
        Replay { http_status: u16, response: Value },
        /// Already in the target state; audited.
        NoOp { http_status: u16, response: Value },
        /// n8n's circuit breaker is open; audited.
        BreakerOpen { retry_after_s: u32 },
        /// The campaign is claimed for this toggle: call n8n, then finish.
        Proceed {
            toggle_id: Uuid,
            version: i32,
            workflow_id: String,
            publish: bool,
            user_id: String,
        },
    }

    impl Rpc for ToggleBegin {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "toggle_begin";
        type Output = Begun;
    }

    /// `campaigns.toggle_finish`: records what n8n did, as the same user.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct ToggleFinish {
        pub p_campaign_id: Uuid,
        pub p_toggle_id: Uuid,
        pub p_version: i32,
        /// `changed` or `failed`.
        pub p_outcome: String,
        pub p_n8n_status: Option<String>,
        pub p_n8n_response: Option<Value>,
        pub p_error_code: Option<String>,
        pub p_error_message: Option<String>,
        pub p_http_status: Option<u16>,
        /// Whether a failure is n8n's final word (stored for the key) or
        /// worth retrying (the key is released).
        pub p_final: bool,
        pub p_idempotency_key: Option<String>,
        pub p_workflow_name: Option<String>,
        pub p_user_id: Option<String>,
    }

    /// What the function answers: the status and the body's fields.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    pub struct Answer {
        pub http_status: u16,
        pub response: Value,
    }

    impl Rpc for ToggleFinish {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "toggle_finish";
        type Output = Answer;
    }

    /// `campaigns.breaker_record`: one n8n attempt's outcome.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct BreakerRecord {
        pub p_ok: bool,
        pub p_failure: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Breaker {
        pub open: bool,
        pub consecutive_failures: i32,
        pub retry_after_s: Option<u32>,
    }

    impl Rpc for BreakerRecord {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "breaker_record";
        type Output = Breaker;
    }

    /// `campaigns.breaker_state`.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct BreakerState {}

    impl Rpc for BreakerState {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "breaker_state";
        type Output = Breaker;
    }

    /// `campaigns.apply_workflow_event`: one status change reported by n8n.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct ApplyWorkflowEvent {
        pub p_event_id: String,
        pub p_workflow_id: String,
        pub p_workflow_name: Option<String>,
        pub p_active: Option<bool>,
        pub p_event_type: String,
        pub p_occurred_at: String,
        pub p_actor: Option<String>,
        pub p_source: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
    pub struct Applied {
        pub duplicate: bool,
        pub applied: u32,
        pub stale: u32,
        pub queued: bool,
    }

    impl Rpc for ApplyWorkflowEvent {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "apply_workflow_event";
        type Output = Applied;
    }

    /// `campaigns.record_sync_failure`: an event that could not be applied.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct RecordSyncFailure {
        pub p_source: String,
        pub p_payload: Value,
        pub p_error: String,
    }

    impl Rpc for RecordSyncFailure {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "record_sync_failure";
        type Output = Uuid;
    }

    /// `campaigns.reconcile_begin`: one sweep at a time.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct ReconcileBegin {
        pub p_worker: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    pub struct Sweep {
        /// None while another sweep holds the lease.
        pub run_id: Option<Uuid>,
    }

    impl Rpc for ReconcileBegin {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "reconcile_begin";
        type Output = Sweep;
    }

    /// `campaigns.reconcile_apply`: a complete sweep of n8n's workflows.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct ReconcileApply {
        pub p_run_id: Uuid,
        pub p_observed_at: String,
        pub p_workflows: Vec<SweptWorkflow>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
    pub struct SweptWorkflow {
        pub id: String,
        pub name: String,
        pub active: bool,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
    pub struct Reconciled {
        pub checked: u32,
        pub updated: u32,
        pub out_of_sync: u32,
        pub marked_deleted: u32,
        pub toggles_settled: u32,
        pub republish: Vec<Republish>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
    pub struct Republish {
        pub campaign_id: Uuid,
        pub workflow_id: String,
    }

    impl Rpc for ReconcileApply {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "reconcile_apply";
        type Output = Reconciled;
    }

    /// `campaigns.record_republish`: one re-publish's outcome, audited.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct RecordRepublish {
        pub p_run_id: Uuid,
        pub p_campaign_id: Uuid,
        pub p_ok: bool,
        pub p_n8n_status: Option<String>,
        pub p_error: Option<String>,
        pub p_n8n_response: Option<Value>,
    }

    impl Rpc for RecordRepublish {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "record_republish";
        type Output = ();
    }

    /// `campaigns.reconcile_finish`: the sweep's metrics, or its error.
    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
    pub struct ReconcileFinish {
        pub p_run_id: Uuid,
        pub p_error: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
    pub struct SweepSummary {
        pub run_id: Uuid,
        pub duration_ms: i64,
        pub checked: Option<u32>,
        pub updated: Option<u32>,
        pub errored: Option<u32>,
        pub out_of_sync: Option<u32>,
        pub republished: u32,
    }

    impl Rpc for ReconcileFinish {
        const SCHEMA: &'static str = "campaigns";
        const NAME: &'static str = "reconcile_finish";
        type Output = SweepSummary;
    }
}

/// The RPCs the agent surfaces (ops-mcp, chatops) call: reads answered as
/// JSON (passed on to the agent as is), approval handles, and the audit.
pub mod agents {
    use super::*;

    macro_rules! json_rpc {
        ($(#[$doc:meta])* $name:ident, $schema:literal, $rpc:literal { $($field:ident : $ty:ty),* $(,)? }) => {
            $(#[$doc])*
            #[derive(Debug, Clone, Default, PartialEq, Serialize)]
            pub struct $name { $(pub $field: $ty),* }

            impl Rpc for $name {
                const SCHEMA: &'static str = $schema;
                const NAME: &'static str = $rpc;
                type Output = Value;
            }
        };
    }

    json_rpc!(
        /// `observability.get_health_summary`: every service and its state.
        GetHealthSummary, "observability", "get_health_summary" {});
    json_rpc!(
        /// `observability.get_job`: one job and its recent events.
        GetJob, "observability", "get_job" { p_job_id: Uuid });
    json_rpc!(
        /// `observability.list_recent_jobs`.
        ListRecentJobs, "observability", "list_recent_jobs" {
            p_limit: u32, p_status: Option<String>, p_job_type: Option<String> });
    json_rpc!(
        /// `ops.get_trace`: one correlation id across every schema.
        GetTrace, "ops", "get_trace" { correlation_id: String });
    json_rpc!(
        /// `ops.get_queue_depth`: every queue's depth and oldest age.
        GetQueueDepth, "ops", "get_queue_depth" {});
    json_rpc!(
        /// `integration.outbox_stats`: the outbox by status.
        OutboxStats, "integration", "outbox_stats" {});
    json_rpc!(
        /// `ops.list_runs`.
        ListRuns, "ops", "list_runs" {
            p_limit: u32, p_project_id: Option<String>, p_status: Option<String> });
    json_rpc!(
        /// `ops.get_run`: one run with its events and artifacts.
        GetRun, "ops", "get_run" { p_run_id: String });
    json_rpc!(
        /// `observability.get_service_probe`: a registered service's probe.
        GetServiceProbe, "observability", "get_service_probe" { p_name: String });
    json_rpc!(
        /// `ops.request_action`: an approval handle instead of the action.
        RequestAction, "ops", "request_action" {
            p_tool: String, p_arguments: Value, p_requested_by: String, p_via: String,
            p_correlation_id: String });
    json_rpc!(
        /// `ops.get_action`: what became of a handle.
        GetAction, "ops", "get_action" { p_handle: String });
    json_rpc!(
        /// `ops.decide_action`: approve or reject a handle.
        DecideAction, "ops", "decide_action" {
            p_handle: String, p_approve: bool, p_comment: Option<String>, p_decided_by: Option<String> });
    json_rpc!(
        /// `ops.whoami`: the signed-in caller, as PostgREST verified them.
        Whoami, "ops", "whoami" {});
    json_rpc!(
        /// `ops.queue_run`: a deploy, waiting for approval in protected environments.
        QueueRun, "ops", "queue_run" {
            p_project_id: String, p_env: String, p_git_sha: String, p_git_ref: String,
            p_requested_by: String, p_metadata: Value, p_correlation_id: String });
    json_rpc!(
        /// `ops.approve_run`: a person approves a run waiting for approval.
        ApproveRun, "ops", "approve_run" { p_run_id: String, p_comment: Option<String>, p_approved_by: String });
    json_rpc!(
        /// `ops.reject_run`.
        RejectRun, "ops", "reject_run" { p_run_id: String, p_comment: Option<String>, p_rejected_by: String });

    /// `ops.record_tool_call`: one audited tool call or chat command.
    #[derive(Debug, Clone, Default, PartialEq, Serialize)]
    pub struct RecordToolCall {
        pub p_caller: String,
        pub p_via: String,
        pub p_tool: String,
        pub p_arguments: Value,
        pub p_outcome: String,
        pub p_detail: Value,
        pub p_correlation_id: String,
        pub p_run_id: Option<String>,
    }

    impl Rpc for RecordToolCall {
        const SCHEMA: &'static str = "ops";
        const NAME: &'static str = "record_tool_call";
        type Output = i64;
    }
}

/// One declared RPC: where it lives and the argument names it is called with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Declared {
    pub schema: &'static str,
    pub name: &'static str,
    pub args: Vec<String>,
}

fn declared<R: Rpc + Default>() -> Declared {
    let args = match serde_json::to_value(R::default()) {
        Ok(Value::Object(fields)) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    };
    Declared {
        schema: R::SCHEMA,
        name: R::NAME,
        args,
    }
}

/// Every RPC the functions call.
pub fn manifest() -> Vec<Declared> {
    use agents::*;
    use campaigns::*;
    use integration::*;
    use observability::*;
    use ops::*;
    vec![
        declared::<IngestEvent>(),
        declared::<IngestEventGroup>(),
        declared::<IngestEvents>(),
        declared::<RouterClaim>(),
        declared::<SettleOutbox>(),
        declared::<ReleaseRouter>(),
        declared::<RaiseAlert>(),
        declared::<ListServicesToProbe>(),
        declared::<RecordHealthBatch>(),
        declared::<ClaimNextRun>(),
        declared::<StartPhase>(),
        declared::<SaveProgress>(),
        declared::<HeartbeatRun>(),
        declared::<CompletePhase>(),
        declared::<YieldRun>(),
        declared::<FinishRun>(),
        declared::<WakeRunnerIfDue>(),
        declared::<ToggleBegin>(),
        declared::<ToggleFinish>(),
        declared::<BreakerRecord>(),
        declared::<BreakerState>(),
        declared::<ApplyWorkflowEvent>(),
        declared::<RecordSyncFailure>(),
        declared::<ReconcileBegin>(),
        declared::<ReconcileApply>(),
        declared::<RecordRepublish>(),
        declared::<ReconcileFinish>(),
        declared::<GetHealthSummary>(),
        declared::<GetJob>(),
        declared::<ListRecentJobs>(),
        declared::<GetTrace>(),
        declared::<GetQueueDepth>(),
        declared::<OutboxStats>(),
        declared::<ListRuns>(),
        declared::<GetRun>(),
        declared::<GetServiceProbe>(),
        declared::<RequestAction>(),
        declared::<GetAction>(),
        declared::<DecideAction>(),
        declared::<Whoami>(),
        declared::<RecordToolCall>(),
        declared::<QueueRun>(),
        declared::<ApproveRun>(),
        declared::<RejectRun>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::integration::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn the_manifest_names_every_argument_sent() {
        let ingest = manifest()
            .into_iter()
            .find(|d| d.name == "ingest_event")
            .unwrap();
        assert_eq!(ingest.schema, "integration");
        assert_eq!(ingest.args.len(), 12);
        assert!(ingest.args.iter().all(|a| a.starts_with("p_")));
    }

    #[test]
    fn results_refuse_missing_keys_and_ignore_added_ones() {
        let ok: Settled =
            serde_json::from_value(json!({ "acked": 2, "failed": 1, "stale": [] })).unwrap();
        assert_eq!((ok.acked, ok.failed), (2, 1));
        for renamed in [
            json!({ "acks": 2, "failed": 1, "stale": [] }),
            json!({ "acked": 2, "failed": 1 }),
        ] {
            assert!(
                serde_json::from_value::<Settled>(renamed.clone()).is_err(),
                "{renamed}"
            );
        }
        let added = json!({ "acked": 2, "failed": 1, "stale": [], "skipped": 0 });
        assert!(serde_json::from_value::<Settled>(added).is_ok());
    }
}
