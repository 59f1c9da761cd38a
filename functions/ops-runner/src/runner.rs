//! One invocation's work (the seed's Queue -> Claim -> Execute -> Report ->
//! Finish): claim runs one at a time and drive each project phase's provider
//! until the run ends or the time budget is spent. The state a provider
//! changed is stored before each request it asks for and before each wait,
//! under the run's lease, so the next runner (after a yield or a crash)
//! continues exactly there. Providers decide; this module only moves their
//! requests and the database's answers.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Map, Value};
use switchyard_shared::correlation;
use switchyard_shared::fetch::{self, FetchError};
use switchyard_shared::log::Log;
use switchyard_shared::postgrest::{Client, RpcError};
use switchyard_shared::rpc::ops::{
    ClaimNextRun, ClaimedRun, CompletePhase, FinishRun, HeartbeatRun, Lease, SaveProgress,
    StartPhase, WakeRunnerIfDue, YieldRun,
};
use switchyard_shared::time::now_ms;
use worker::Delay;

use crate::config::Settings;
use crate::provider::{self, Answer, Artifact, HttpCall, Method, RunContext, Step};

const NAME: &str = "ops-runner";
/// A request is not started with less time than this left in the budget.
const MIN_TIME_FOR_A_REQUEST_MS: i64 = 1000;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub worker_id: String,
    pub claimed: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
    /// Runs handed to the next invocation, unfinished, at the end of the budget.
    pub yielded: u32,
    /// Runs another runner took over (this one's lease had expired).
    pub lost: u32,
    pub elapsed_ms: i64,
}

/// How one claimed run left this invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Finished(&'static str),
    Yielded,
    Lost,
}

pub async fn run(
    client: &Client,
    settings: &Settings,
    correlation_id: &str,
) -> Result<Summary, RpcError> {
    let started = now_ms();
    let deadline = started + settings.time_budget_ms as i64;
    let mut summary = Summary {
        worker_id: invocation_worker_id(&settings.worker_id),
        ..Summary::default()
    };
    let mut queue_empty = false;
    while deadline - now_ms() > MIN_TIME_FOR_A_REQUEST_MS {
        let claim = ClaimNextRun {
            p_worker_id: summary.worker_id.clone(),
            p_lease_seconds: Some(settings.lease_seconds),
        };
        let Some(claimed) = client
            .call(&claim, correlation_id)
            .await?
            .into_iter()
            .next()
        else {
            queue_empty = true;
            break;
        };
        summary.claimed += 1;
        let run = Worker {
            client,
            settings,
            worker_id: &summary.worker_id,
            run: claimed,
            deadline,
        };
        let outcome = match run.work().await {
            Ok(outcome) => outcome,
            Err(e) => {
                // The database failed mid-run: release the run now (best
                // effort) rather than leave a lease to expire and count as a
                // dead runner.
                let _ = run.yield_run(0).await;
                return Err(e);
            }
        };
        match outcome {
            Outcome::Finished("success") => summary.succeeded += 1,
            Outcome::Finished("cancelled") => summary.cancelled += 1,
            Outcome::Finished(_) => summary.failed += 1,
            Outcome::Yielded => summary.yielded += 1,
            Outcome::Lost => summary.lost += 1,
        }
        if outcome == Outcome::Yielded {
            break;
        }
    }
    // Out of time with runs perhaps still waiting (a yield woke its own
    // successor already): hand them to a new invocation now rather than at
    // pg_cron's next minute.
    if !queue_empty && summary.yielded == 0 {
        let handoff = WakeRunnerIfDue {
            p_reason: "handoff".into(),
        };
        client.call(&handoff, correlation_id).await?;
    }
    summary.elapsed_ms = now_ms() - started;
    Ok(summary)
}

/// The settings' worker id with a suffix per invocation: one isolate serves
/// concurrent invocations, and claims and events should tell them apart.
fn invocation_worker_id(base: &str) -> String {
    let mut bytes = [0u8; 2];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    format!("{base}.{}", hex::encode(bytes))
}

/// A write under the lease, told apart from its refusal because another
/// runner now holds the run.
enum Written<T> {
    Ok(T),
    Lost,
}

fn fenced<T>(result: Result<T, RpcError>) -> Result<Written<T>, RpcError> {
    match result {
        Ok(value) => Ok(Written::Ok(value)),
        Err(RpcError::Refused(e)) if e.message.as_deref() == Some("stale_lease") => {
            Ok(Written::Lost)
        }
        Err(e) => Err(e),
    }
}

struct Worker<'a> {
    client: &'a Client,
    settings: &'a Settings,
    worker_id: &'a str,
    run: ClaimedRun,
    deadline: i64,
}

/// What a phase left to do after a write: go on, or stop.
enum Next {
    Continue,
    Stop(Outcome),
}

impl Worker<'_> {
    fn cid(&self) -> &str {
        &self.run.correlation_id
    }

    fn log(&self) -> Log<'_> {
        Log::new(NAME, &self.run.correlation_id)
    }

    fn lease_seconds(&self) -> Option<u32> {
        Some(self.settings.lease_seconds)
    }

    async fn work(&self) -> Result<Outcome, RpcError> {
        let mut outputs = Map::new();
        for phase in &self.run.phases {
            let name = phase
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let progress = self.run.progress.get(&name);
            if progress
                .and_then(|p| p.get("done"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                let output = progress
                    .and_then(|p| p.get("output"))
                    .cloned()
                    .unwrap_or(json!({}));
                outputs.insert(name, output);
                continue;
            }
            let provider = provider::build(phase, &self.settings.credentials);
            let mut state = progress
                .and_then(|p| p.get("state"))
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut saved = state.clone();
            let mut answer = None;
            let mut context = RunContext {
                run_id: self.run.run_id.clone(),
                project_id: self.run.project_id.clone(),
                repository: self.run.repository.clone(),
                env: self.run.env.clone(),
                git_sha: self.run.git_sha.clone(),
                git_ref: self.run.git_ref.clone(),
                correlation_id: self.run.correlation_id.clone(),
                phase: name.clone(),
                outputs: outputs.clone(),
                now_ms: now_ms(),
            };
            let start = StartPhase {
                p_run_id: self.run.run_id.clone(),
                p_lease_token: self.run.lease_token,
                p_phase: name.clone(),
                p_lease_seconds: self.lease_seconds(),
            };
            let written = fenced(self.client.call(&start, self.cid()).await)?;
            // A resumed phase may have work under way elsewhere to stop.
            let in_phase = provider.as_ref().ok().map(|p| (&**p, &context, &state));
            if let Next::Stop(outcome) = self.after_write(written, in_phase).await? {
                return Ok(outcome);
            }
            let provider = match provider {
                Ok(provider) => provider,
                Err(why) => {
                    return self
                        .finish("failed", Some(format!("{name}: {why}")), &outputs)
                        .await
                }
            };
            loop {
                context.now_ms = now_ms();
                let (call, wait_ms) = match provider.step(&context, &mut state, answer.take()) {
                    Step::Send(call) => (Some(call), 0),
                    Step::Wait { ms } => (None, ms),
                    Step::Fail(why) => {
                        return self
                            .finish("failed", Some(format!("{name}: {why}")), &outputs)
                            .await
                    }
                    Step::Done { output, artifacts } => {
                        let complete = CompletePhase {
                            p_run_id: self.run.run_id.clone(),
                            p_lease_token: self.run.lease_token,
                            p_phase: name.clone(),
                            p_output: output.clone(),
                            p_artifacts: artifacts.into_iter().map(bounded).collect(),
                            p_lease_seconds: self.lease_seconds(),
                        };
                        let written = fenced(self.client.call(&complete, self.cid()).await)?;
                        if let Next::Stop(outcome) = self.after_write(written, None).await? {
                            return Ok(outcome);
                        }
                        outputs.insert(name.clone(), output);
                        break;
                    }
                };
                // A request there is no time left to send is not recorded as
                // about to be sent: the next runner takes this step again from
                // the state stored last (a dispatch stored as sent but never
                // sent would be looked for, not sent).
                if call.is_some() && self.deadline - now_ms() <= MIN_TIME_FOR_A_REQUEST_MS {
                    return self.yield_run(0).await;
                }
                // Store what changed before anything else happens, so a runner
                // that dies from here on leaves it behind; a wait renews the
                // lease either way.
                let written = if state != saved {
                    let save = SaveProgress {
                        p_run_id: self.run.run_id.clone(),
                        p_lease_token: self.run.lease_token,
                        p_phase: name.clone(),
                        p_state: state.clone(),
                        p_lease_seconds: self.lease_seconds(),
                    };
                    saved = state.clone();
                    Some(fenced(self.client.call(&save, self.cid()).await)?)
                } else if call.is_none() {
                    let heartbeat = HeartbeatRun {
                        p_run_id: self.run.run_id.clone(),
                        p_lease_token: self.run.lease_token,
                        p_lease_seconds: self.lease_seconds(),
                    };
                    Some(fenced(self.client.call(&heartbeat, self.cid()).await)?)
                } else {
                    None
                };
                if let Some(written) = written {
                    let in_phase = (&*provider, &context, &state);
                    if let Next::Stop(outcome) = self.after_write(written, Some(in_phase)).await? {
                        return Ok(outcome);
                    }
                }
                // A request stored as about to be sent is sent, whatever time
                // the store took; its timeout shrinks to the budget left.
                let left = self.deadline - now_ms();
                match call {
                    Some(mut call) => {
                        call.timeout_ms = call
                            .timeout_ms
                            .min(left.max(MIN_TIME_FOR_A_REQUEST_MS) as u64);
                        answer = Some(self.send(call).await)
                    }
                    None if left > wait_ms as i64 => {
                        Delay::from(Duration::from_millis(wait_ms)).await
                    }
                    // The rest of the wait is the next runner's, which is not
                    // let in before it is over.
                    None => {
                        return self
                            .yield_run(wait_ms.saturating_sub(left.max(0) as u64))
                            .await
                    }
                }
            }
        }
        self.finish("success", None, &outputs).await
    }

    /// After a write: stop if the run was taken over, or finish it as
    /// cancelled (stopping the provider's work first) if an operator asked.
    async fn after_write(
        &self,
        written: Written<Lease>,
        in_phase: Option<(&dyn provider::Provider, &RunContext, &Map<String, Value>)>,
    ) -> Result<Next, RpcError> {
        let lease = match written {
            Written::Lost => {
                self.log().warn(
                    "run_lost",
                    json!({ "run_id": self.run.run_id, "worker_id": self.worker_id }),
                );
                return Ok(Next::Stop(Outcome::Lost));
            }
            Written::Ok(lease) => lease,
        };
        if !lease.cancel_requested {
            return Ok(Next::Continue);
        }
        if let Some(call) =
            in_phase.and_then(|(provider, context, state)| provider.cancel(context, state))
        {
            let _ = self.send(call).await;
        }
        Ok(Next::Stop(
            self.finish(
                "cancelled",
                Some("cancelled on request".into()),
                &Map::new(),
            )
            .await?,
        ))
    }

    /// Hands the run to the next runner, not before `resume_in_ms`.
    async fn yield_run(&self, resume_in_ms: u64) -> Result<Outcome, RpcError> {
        let release = YieldRun {
            p_run_id: self.run.run_id.clone(),
            p_lease_token: self.run.lease_token,
            p_resume_in_ms: resume_in_ms.min(u32::MAX as u64) as u32,
        };
        Ok(
            match fenced(self.client.call(&release, self.cid()).await)? {
                Written::Ok(yielded) => {
                    self.log().info(
                    "run_yielded",
                    json!({ "run_id": self.run.run_id, "invocation": self.run.invocation, "successor_woken": yielded.woken }),
                );
                    Outcome::Yielded
                }
                Written::Lost => Outcome::Lost,
            },
        )
    }

    async fn finish(
        &self,
        status: &'static str,
        error: Option<String>,
        outputs: &Map<String, Value>,
    ) -> Result<Outcome, RpcError> {
        let finish = FinishRun {
            p_run_id: self.run.run_id.clone(),
            p_status: status.into(),
            p_metadata: json!({
                "worker_id": self.worker_id,
                "phases_completed": outputs.keys().collect::<Vec<_>>(),
                "invocations": self.run.invocation,
            }),
            p_lease_token: Some(self.run.lease_token),
            p_error: error.as_ref().map(|e| e.chars().take(4000).collect()),
        };
        Ok(match fenced(self.client.call(&finish, self.cid()).await)? {
            Written::Ok(_) => {
                let fields = json!({ "run_id": self.run.run_id, "status": status, "error": error, "invocation": self.run.invocation });
                if status == "failed" {
                    self.log().warn("run_finished", fields);
                } else {
                    self.log().info("run_finished", fields);
                }
                Outcome::Finished(status)
            }
            Written::Lost => Outcome::Lost,
        })
    }

    /// Sends a provider's request with the correlation id; the provider gets
    /// what came back (or that nothing did).
    async fn send(&self, call: HttpCall) -> Answer {
        let mut headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers.push(("user-agent", "switchyard-ops-runner"));
        headers.push((correlation::HEADER, self.cid()));
        let request = match (call.method, call.body) {
            (Method::Post, body) => fetch::post(&call.url, &headers, body.unwrap_or_default()),
            (Method::Get, _) => fetch::request(worker::Method::Get, &call.url, &headers),
        };
        let request = match request {
            Ok(request) => request,
            Err(e) => return Answer::Unreachable(e.to_string()),
        };
        match fetch::send(request, Duration::from_millis(call.timeout_ms), &[]).await {
            Ok(fetched) => Answer::Response {
                status: fetched.status,
                body: fetched.body,
            },
            Err(FetchError::Timeout(_)) => Answer::TimedOut,
            Err(FetchError::Transport(why)) => Answer::Unreachable(why),
        }
    }
}

/// An artifact within the table's limits: a name cut to 200 characters, a
/// URL or digest too long to be one left out.
fn bounded(mut artifact: Artifact) -> Artifact {
    if artifact.name.chars().count() > 200 {
        artifact.name = artifact.name.chars().take(200).collect();
    }
    artifact.url = artifact.url.filter(|u| u.len() <= 2000);
    artifact.digest = artifact.digest.filter(|d| d.len() <= 200);
    artifact
}
