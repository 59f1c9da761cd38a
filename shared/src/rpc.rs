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

use crate::postgrest::Rpc;

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
    use integration::*;
    use observability::*;
    use ops::*;
    vec![
        declared::<IngestEvent>(),
        declared::<RouterClaim>(),
        declared::<SettleOutbox>(),
        declared::<ReleaseRouter>(),
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
