//! One sweep: ask the database which services are due, probe them (a bounded
//! number at a time), record every sample in one call, and repeat until none
//! is due or the time budget is spent.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use switchyard_shared::correlation;
use switchyard_shared::fetch::{self, FetchError};
use switchyard_shared::postgrest::{Client, RpcError};
use switchyard_shared::rpc::observability::{
    HealthSample, ListServicesToProbe, RecordHealthBatch, ServiceToProbe, Transition,
};
use switchyard_shared::time::now_ms;
use worker::Method;

use crate::config::Settings;
use crate::probe::{self, Outcome};

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub rounds: u32,
    pub probed: u32,
    pub healthy: u32,
    pub degraded: u32,
    pub failing: u32,
    /// Status changes the database made (into or out of `down` alert).
    pub transitions: Vec<Transition>,
    /// Due services were left for the next invocation.
    pub out_of_time: bool,
    pub elapsed_ms: i64,
}

pub async fn run(
    client: &Client,
    settings: &Settings,
    correlation_id: &str,
) -> Result<Summary, RpcError> {
    let started = now_ms();
    let mut summary = Summary::default();
    loop {
        if now_ms() - started >= settings.time_budget_ms as i64 {
            summary.out_of_time = true;
            break;
        }
        let due = ListServicesToProbe {
            max_services: settings.batch_size,
        };
        let services = client.call(&due, correlation_id).await?;
        if services.is_empty() {
            break;
        }
        let samples = probe_all(&services, settings.concurrency, correlation_id).await;
        for sample in &samples {
            match sample.status {
                "healthy" => summary.healthy += 1,
                "degraded" => summary.degraded += 1,
                _ => summary.failing += 1,
            }
        }
        let batch = RecordHealthBatch {
            samples,
            correlation_id: correlation_id.into(),
        };
        let recorded = client.call(&batch, correlation_id).await?;
        summary.rounds += 1;
        summary.probed += recorded.recorded;
        summary.transitions.extend(recorded.transitions);
        if services.len() < settings.batch_size as usize {
            break;
        }
    }
    summary.elapsed_ms = now_ms() - started;
    Ok(summary)
}

async fn probe_all(
    services: &[ServiceToProbe],
    concurrency: usize,
    correlation_id: &str,
) -> Vec<HealthSample> {
    stream::iter(services)
        .map(|service| probe_one(service, correlation_id))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn probe_one(service: &ServiceToProbe, correlation_id: &str) -> HealthSample {
    let started = now_ms();
    let outcome = attempt(service, correlation_id).await;
    probe::sample(service, &outcome, (now_ms() - started).max(0) as u64)
}

async fn attempt(service: &ServiceToProbe, correlation_id: &str) -> Outcome {
    let headers = [
        ("user-agent", "switchyard-health-check"),
        (correlation::HEADER, correlation_id),
    ];
    // A POST probe sends no body: the registry holds none.
    let method = Method::from(service.method.clone());
    let request = match fetch::request(method, &service.url, &headers) {
        Ok(request) => request,
        Err(e) => return Outcome::NotSent(e.to_string()),
    };
    match fetch::send(request, Duration::from_millis(service.timeout_ms), &[]).await {
        Ok(answer) => Outcome::Answered {
            status: answer.status,
            body: answer.body,
        },
        Err(FetchError::Timeout(_)) => Outcome::TimedOut,
        Err(FetchError::Transport(why)) => Outcome::Unreachable(why),
    }
}
