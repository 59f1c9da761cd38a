//! Group commit: the single events an isolate receives while its ingest call
//! is in flight go to the database together, in one call and one transaction
//! (`integration.ingest_event_group`), each answered exactly as if alone. A
//! lone event still takes `ingest_event`, so a quiet isolate is unchanged.
//!
//! The runtime ties I/O to the request that started it, and a request must
//! build its answer in its own context. So:
//! - One call is in flight per isolate at a time. The request that finds none
//!   starts the flush loop under its own `waitUntil`, so the loop's fetches
//!   belong to a request that stays alive while it answers the others.
//! - The loop leaves each answer in its waiter's slot and wakes no one: a
//!   waiter looks at its slot when its own timer fires, so it only ever runs
//!   in its own context. (A waiter woken by the loop, directly or through a
//!   promise it made, was at times polled in another request's context, and
//!   the runtime refused its response there.) The timer also keeps the runtime
//!   from taking a waiter for a hung request.
//! - The loop stops when the queue is empty, or after `MAX_ROUNDS` to stay
//!   inside the platform's `waitUntil` limit; a waiter that then finds events
//!   queued and no loop starts the next one from its own context.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use switchyard_shared::error::ApiError;
use switchyard_shared::postgrest::{Client, RpcError};
use switchyard_shared::rpc::integration::{GroupOutcome, IngestEvent, IngestEventGroup, Ingested};
use worker::{Context, Delay};

/// Events per call: `ingest_event_group`'s limit, and below the 64
/// subtransactions a Postgres backend tracks without spilling to disk.
pub const MAX_GROUP: usize = 50;
/// Calls one loop makes before it hands over (about 5 s at full load).
const MAX_ROUNDS: u32 = 1000;
/// How often a waiter looks for its answer (and for a loop to start).
const POLL: Duration = Duration::from_millis(1);

/// What a waiting request gets back: its result and the size of its group.
pub type Answer = Result<(Ingested, usize), ApiError>;

struct Waiting {
    args: IngestEvent,
    correlation_id: String,
    /// Where the loop leaves the answer.
    reply: Rc<RefCell<Option<Answer>>>,
}

/// The isolate's queue: events not yet sent, and whether a loop sends them.
pub struct Queue<T> {
    waiting: VecDeque<T>,
    flushing: bool,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            waiting: VecDeque::new(),
            flushing: false,
        }
    }
}

impl<T> Queue<T> {
    /// Queues an event; true when the caller must start the loop.
    pub fn join(&mut self, item: T) -> bool {
        self.waiting.push_back(item);
        self.claim_loop()
    }

    /// True when events wait and no loop runs: the caller starts one.
    pub fn claim_loop(&mut self) -> bool {
        if self.flushing || self.waiting.is_empty() {
            return false;
        }
        self.flushing = true;
        true
    }

    /// The next group, oldest first; empty (and the loop over) when none waits.
    pub fn next_group(&mut self, max: usize) -> Vec<T> {
        let n = self.waiting.len().min(max);
        if n == 0 {
            self.flushing = false;
        }
        self.waiting.drain(..n).collect()
    }

    /// The loop stops early; whatever waits is left for a waiter to send.
    pub fn stop(&mut self) {
        self.flushing = false;
    }
}

thread_local! {
    static QUEUE: RefCell<Queue<Waiting>> = RefCell::new(Queue::default());
}

/// Records one event, grouped with whatever else is waiting.
pub async fn ingest(
    ctx: &Context,
    client: &Client,
    args: IngestEvent,
    correlation_id: &str,
) -> Answer {
    let reply = Rc::new(RefCell::new(None));
    let waiting = Waiting {
        args,
        correlation_id: correlation_id.to_string(),
        reply: reply.clone(),
    };
    if QUEUE.with(|q| q.borrow_mut().join(waiting)) {
        ctx.wait_until(flush(client.clone()));
    }
    loop {
        Delay::from(POLL).await;
        if let Some(answer) = reply.borrow_mut().take() {
            return answer;
        }
        if QUEUE.with(|q| q.borrow_mut().claim_loop()) {
            ctx.wait_until(flush(client.clone()));
        }
    }
}

async fn flush(client: Client) {
    for _ in 0..MAX_ROUNDS {
        let group = QUEUE.with(|q| q.borrow_mut().next_group(MAX_GROUP));
        if group.is_empty() {
            return;
        }
        let size = group.len();
        let correlation_id = group[0].correlation_id.clone();
        let (args, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|w| (w.args, w.reply)).unzip();
        let answers = send(&client, args, &correlation_id).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            *reply.borrow_mut() = Some(answer.map(|ingested| (ingested, size)));
        }
    }
    QUEUE.with(|q| q.borrow_mut().stop());
}

/// One call for the group: `ingest_event` for a lone event, else the group RPC.
async fn send(
    client: &Client,
    mut args: Vec<IngestEvent>,
    correlation_id: &str,
) -> Vec<Result<Ingested, ApiError>> {
    let size = args.len();
    if size == 1 {
        let lone = args.pop().expect("one event");
        return vec![client
            .call(&lone, correlation_id)
            .await
            .map_err(RpcError::into_api_error)];
    }
    let outcomes = client
        .call(&IngestEventGroup { p_events: args }, correlation_id)
        .await;
    answers(size, outcomes)
}

/// Each event's answer from the group call's: its own result or refusal, or,
/// when the call failed, that failure for every event of the group.
pub fn answers(
    size: usize,
    outcomes: Result<Vec<GroupOutcome>, RpcError>,
) -> Vec<Result<Ingested, ApiError>> {
    match outcomes {
        Ok(outcomes) if outcomes.len() == size => outcomes
            .into_iter()
            .map(|outcome| match outcome {
                GroupOutcome::Ingested(ingested) => Ok(ingested),
                GroupOutcome::Refused { error } => Err(RpcError::Refused(error).into_api_error()),
            })
            .collect(),
        Ok(outcomes) => {
            let err = RpcError::Decode(format!("{} results for {size} events", outcomes.len()))
                .into_api_error();
            vec![Err(err); size]
        }
        Err(err) => vec![Err(err.into_api_error()); size],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_shared::error::ErrorCode;

    #[test]
    fn the_first_event_starts_the_loop_and_later_ones_join_it() {
        let mut q = Queue::default();
        assert!(q.join(1));
        assert!(!q.join(2));
        assert!(!q.claim_loop(), "a running loop is not claimed twice");
        assert_eq!(q.next_group(50), vec![1, 2]);
        assert!(!q.join(3), "the loop still runs: it sends 3 next");
        assert_eq!(q.next_group(50), vec![3]);
        assert!(q.next_group(50).is_empty());
        assert!(q.join(4), "an empty queue ended the loop, so 4 starts one");
    }

    #[test]
    fn groups_are_oldest_first_and_bounded() {
        let mut q = Queue::default();
        for i in 0..120 {
            q.join(i);
        }
        assert_eq!(q.next_group(50), (0..50).collect::<Vec<_>>());
        assert_eq!(q.next_group(50), (50..100).collect::<Vec<_>>());
        assert_eq!(q.next_group(50), (100..120).collect::<Vec<_>>());
    }

    #[test]
    fn a_stopped_loop_is_claimed_by_a_waiter() {
        let mut q = Queue::default();
        q.join(1);
        q.join(2);
        q.stop();
        assert!(q.claim_loop(), "events wait and no loop runs");
        assert!(!q.claim_loop());
        q.next_group(50);
        q.next_group(50);
        assert!(!q.claim_loop(), "nothing waits");
    }

    fn outcomes(value: serde_json::Value) -> Result<Vec<GroupOutcome>, RpcError> {
        Ok(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn each_event_gets_its_own_result_or_refusal() {
        let got = answers(
            4,
            outcomes(json!([
                { "event_id": "e1", "duplicate": false },
                { "error": { "code": "PT409", "message": "idempotency_conflict",
                             "details": "this idempotency key was already used for a different event", "hint": null } },
                { "event_id": "e3", "duplicate": true },
                { "error": { "code": "22P05", "message": "unsupported Unicode escape sequence", "details": null, "hint": null } },
            ])),
        );
        assert_eq!(got[0].as_ref().unwrap().event_id, "e1");
        assert!(!got[0].as_ref().unwrap().duplicate);
        let conflict = got[1].as_ref().unwrap_err();
        assert_eq!(conflict.code, ErrorCode::IdempotencyConflict);
        assert_eq!(
            conflict.message,
            "this idempotency key was already used for a different event"
        );
        assert!(got[2].as_ref().unwrap().duplicate);
        assert_eq!(
            got[3].as_ref().unwrap_err().code,
            ErrorCode::ValidationFailed
        );
    }

    #[test]
    fn a_failed_call_fails_every_event_alike() {
        let got = answers(
            3,
            Err(RpcError::Unavailable("PostgREST answered 503".into())),
        );
        assert_eq!(got.len(), 3);
        assert!(got
            .iter()
            .all(|a| a.as_ref().unwrap_err().code == ErrorCode::UpstreamUnavailable));
    }

    #[test]
    fn a_result_count_that_does_not_match_is_an_internal_error() {
        let got = answers(
            2,
            outcomes(json!([{ "event_id": "e1", "duplicate": false }])),
        );
        assert_eq!(got.len(), 2);
        assert!(got
            .iter()
            .all(|a| a.as_ref().unwrap_err().code == ErrorCode::Internal));
    }
}
