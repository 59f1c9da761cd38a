//! One router run: claim a batch, deliver it (bounded per target), settle it
//! in one call, and repeat until the queue is empty or the time budget is
//! spent. Going idle goes through `release_router`, which only lets the run end
//! when no committed event is left behind (see the router migration).

use std::time::Duration;

use futures_util::future::{join, join_all};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::json;
use switchyard_shared::fetch::{self, FetchError};
use switchyard_shared::log::Log;
use switchyard_shared::postgrest::{Client, RpcError};
use switchyard_shared::rpc::integration::{
    ClaimedEvent, ReleaseRouter, RouterClaim, SettleOutbox, Settlement,
};
use switchyard_shared::time::now_ms;
use worker::Delay;

use crate::config::Settings;
use crate::delivery::{self, Outcome};
/// Pause before claiming again when release found work that the claim did not
/// (rows still locked by a concurrent claim, or a long inserting transaction).
const RECHECK_PAUSE: Duration = Duration::from_millis(50);

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub rounds: u32,
    pub claimed: u32,
    pub acked: u32,
    pub failed: u32,
    pub stale: u32,
    pub released: bool,
    pub handed_off: bool,
    pub elapsed_ms: i64,
}

pub async fn run(
    client: &Client,
    settings: &Settings,
    worker_id: &str,
    correlation_id: &str,
    log: &Log<'_>,
) -> Result<Summary, RpcError> {
    let started = now_ms();
    let out_of_time = || now_ms() - started >= settings.time_budget_ms as i64;
    let claim = || async {
        if out_of_time() {
            return Ok(Vec::new());
        }
        let claim = RouterClaim {
            p_worker: worker_id.into(),
            p_batch_size: settings.batch_size,
            p_lease_seconds: settings.lease_seconds,
        };
        client.call(&claim, correlation_id).await
    };
    let mut summary = Summary::default();
    let mut events = claim().await?;
    loop {
        if events.is_empty() {
            let release = ReleaseRouter {
                p_worker: worker_id.into(),
                p_out_of_time: out_of_time(),
            };
            let released = client.call(&release, correlation_id).await?;
            if released.released {
                summary.released = true;
                summary.handed_off = released.handed_off;
                break;
            }
            Delay::from(RECHECK_PAUSE).await;
            events = claim().await?;
            continue;
        }
        summary.rounds += 1;
        summary.claimed += events.len() as u32;
        let lease_deadline_ms = now_ms() + i64::from(settings.lease_seconds) * 1000;
        let settlements =
            deliver_all(&events, lease_deadline_ms, settings.trace_url.as_deref()).await;
        log_failed_deliveries(log, &events, &settlements);
        // The next claim runs while this batch is settled: one round trip per
        // batch instead of two. Nothing claimed waits on a delivery, so a lease
        // is never spent idle.
        let settle = SettleOutbox {
            p_results: settlements,
        };
        let (settled, next) = join(client.call(&settle, correlation_id), claim()).await;
        let settled = settled?;
        summary.acked += settled.acked;
        summary.failed += settled.failed;
        if !settled.stale.is_empty() {
            log.warn("stale_leases", json!({ "event_ids": settled.stale }));
        }
        summary.stale += settled.stale.len() as u32;
        events = next?;
    }
    summary.elapsed_ms = now_ms() - started;
    Ok(summary)
}

fn log_failed_deliveries(log: &Log<'_>, events: &[ClaimedEvent], settlements: &[Settlement]) {
    for (event, settlement) in events.iter().zip(settlements) {
        if let Some(error) = &settlement.error {
            log.warn(
                "delivery_failed",
                json!({
                    "event_id": event.id,
                    "event_type": event.event_type,
                    "attempt": event.attempts,
                    "target": event.target_url,
                    "error": error,
                    "retry_after_seconds": settlement.retry_after_seconds,
                }),
            );
        }
    }
}

/// Every event of the batch, in parallel across targets and at most the
/// route's `max_concurrency` at a time per target. Settlements come back in
/// claim order.
async fn deliver_all(
    events: &[ClaimedEvent],
    lease_deadline_ms: i64,
    trace_url: Option<&str>,
) -> Vec<Settlement> {
    let groups = delivery::by_target(events);
    let per_target = groups.iter().map(|(_, concurrency, members)| {
        stream::iter(members.iter().copied())
            .map(|i| async move { (i, deliver(&events[i], lease_deadline_ms, trace_url).await) })
            .buffer_unordered(*concurrency)
            .collect::<Vec<_>>()
    });
    let mut settled: Vec<(usize, Settlement)> = join_all(per_target).await.concat();
    settled.sort_by_key(|(i, _)| *i);
    settled.into_iter().map(|(_, s)| s).collect()
}

async fn deliver(
    event: &ClaimedEvent,
    lease_deadline_ms: i64,
    trace_url: Option<&str>,
) -> Settlement {
    let outcome = attempt(event, lease_deadline_ms, trace_url).await;
    delivery::settle(event, &outcome, now_ms())
}

async fn attempt(event: &ClaimedEvent, lease_deadline_ms: i64, trace_url: Option<&str>) -> Outcome {
    let now = now_ms();
    let Some(timeout_ms) = delivery::timeout_ms(event.timeout_ms, lease_deadline_ms, now) else {
        return Outcome::NotAttempted("the lease ran out before the delivery could start".into());
    };
    let body = delivery::body(event, trace_url);
    let headers = match delivery::headers(event, &body, now.div_euclid(1000)) {
        Ok(headers) => headers,
        Err(why) => return Outcome::NotAttempted(why),
    };
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let request = match fetch::post(&event.target_url, &pairs, body) {
        Ok(request) => request,
        Err(e) => return Outcome::NotAttempted(format!("invalid request: {e}")),
    };
    match fetch::send(request, Duration::from_millis(timeout_ms), &["retry-after"]).await {
        Ok(answer) => Outcome::Answered {
            status: answer.status,
            retry_after: answer.header("retry-after").map(str::to_string),
            body: answer.body,
        },
        Err(FetchError::Timeout(_)) => Outcome::TimedOut(timeout_ms),
        Err(FetchError::Transport(why)) => Outcome::Unreachable(why),
    }
}
