//! One sweep: claim the reconciler (`reconcile_begin`; another sweep in
//! progress means this one does nothing), read every workflow from n8n page
//! by page (250 a page), hand the whole list to `reconcile_apply`, which
//! fixes drift set-based, then re-publish the active campaigns whose workflow
//! n8n dropped, verify each (GET and its webhooks' preflight), and record
//! the metrics (`reconcile_finish`).
//!
//! A sweep that cannot read all of n8n applies nothing: a partial list would
//! mark the unread workflows deleted.

use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{json, Value};
use switchyard_shared::error::ApiError;
use switchyard_shared::log::Log;
use switchyard_shared::n8n::{self, N8nError, Workflow};
use switchyard_shared::postgrest::Client;
use switchyard_shared::rpc::campaigns::{
    BreakerRecord, BreakerState, ReconcileApply, ReconcileBegin, ReconcileFinish, Reconciled,
    RecordRepublish, Republish, SweepSummary, SweptWorkflow,
};
use switchyard_shared::time;
use worker::Delay;

/// More pages than this (250 000 workflows) means a cursor that never ends.
const MAX_PAGES: usize = 1000;
/// How long a re-published workflow's webhooks may take to register.
const WEBHOOK_CHECKS: u32 = 20;
const WEBHOOK_CHECK_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Another sweep held the reconciler.
    pub skipped: bool,
    pub workflows_seen: usize,
    pub reconciled: Option<Reconciled>,
    pub summary: Option<SweepSummary>,
}

pub async fn sweep(
    client: &Client,
    n8n_settings: &n8n::Settings,
    correlation_id: &str,
) -> Result<Outcome, ApiError> {
    let log = Log::new("campaign-sync", correlation_id);
    let worker = worker_name();
    let begun = client
        .call(&ReconcileBegin { p_worker: worker }, correlation_id)
        .await?;
    let Some(run_id) = begun.run_id else {
        return Ok(Outcome {
            skipped: true,
            workflows_seen: 0,
            reconciled: None,
            summary: None,
        });
    };
    let breaker = DbBreaker {
        client,
        correlation_id,
    };
    let api = n8n::Api {
        settings: n8n_settings,
        breaker: &breaker,
    };

    let finish = |error: Option<String>| async move {
        client
            .call(
                &ReconcileFinish {
                    p_run_id: run_id,
                    p_error: error,
                },
                correlation_id,
            )
            .await
    };
    let state = client.call(&BreakerState {}, correlation_id).await?;
    if state.open {
        let summary = finish(Some(
            "the n8n circuit breaker is open; nothing was swept".into(),
        ))
        .await?;
        return Ok(Outcome {
            skipped: false,
            workflows_seen: 0,
            reconciled: None,
            summary: Some(summary),
        });
    }

    let observed_at = chrono::DateTime::from_timestamp_millis(time::now_ms())
        .expect("the clock is within chrono's range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let workflows = match read_all(&api).await {
        Ok(workflows) => workflows,
        Err(err) => {
            let summary = finish(Some(format!("reading n8n's workflows failed: {err}"))).await?;
            return Ok(Outcome {
                skipped: false,
                workflows_seen: 0,
                reconciled: None,
                summary: Some(summary),
            });
        }
    };
    // A successful read closes a half-open breaker.
    if let Err(e) = client
        .call(
            &BreakerRecord {
                p_ok: true,
                p_failure: None,
            },
            correlation_id,
        )
        .await
    {
        log.warn("breaker_record_failed", json!({ "error": e.to_string() }));
    }
    let seen = workflows.len();
    let apply = ReconcileApply {
        p_run_id: run_id,
        p_observed_at: observed_at,
        p_workflows: swept(&workflows),
    };
    let reconciled = client.call(&apply, correlation_id).await?;

    // One publish per workflow, however many campaigns it backs: a second
    // publish would register its triggers again.
    let republished =
        by_workflow(&reconciled.republish)
            .into_iter()
            .map(|(workflow_id, campaigns)| {
                republish(client, &api, run_id, workflow_id, campaigns, correlation_id)
            });
    for result in join_all(republished).await {
        if let Err(e) = result {
            log.error("republish_not_recorded", json!({ "error": e.to_string() }));
        }
    }
    let summary = finish(None).await?;
    Ok(Outcome {
        skipped: false,
        workflows_seen: seen,
        reconciled: Some(reconciled),
        summary: Some(summary),
    })
}

/// Every workflow, following `nextCursor`.
async fn read_all<B: n8n::Breaker>(api: &n8n::Api<'_, B>) -> Result<Vec<Workflow>, N8nError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (page, next) = api.list(cursor.as_deref()).await?;
        all.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
    Err(N8nError::Failed(format!(
        "more than {MAX_PAGES} pages of workflows"
    )))
}

/// What `reconcile_apply` compares: archived workflows count as gone.
pub fn swept(workflows: &[Workflow]) -> Vec<SweptWorkflow> {
    workflows
        .iter()
        .filter(|w| !w.archived)
        .map(|w| SweptWorkflow {
            id: w.id.clone(),
            name: w.name.clone(),
            active: w.published,
        })
        .collect()
}

/// Re-publishes one workflow n8n dropped, checks it took (GET, then each
/// webhook's preflight until it answers as registered), and records the
/// outcome, audited either way.
/// The campaigns to re-publish, grouped by their workflow, in list order.
pub fn by_workflow(items: &[Republish]) -> Vec<(&str, Vec<uuid::Uuid>)> {
    let mut groups: Vec<(&str, Vec<uuid::Uuid>)> = Vec::new();
    for item in items {
        match groups.iter_mut().find(|(w, _)| *w == item.workflow_id) {
            Some((_, campaigns)) => campaigns.push(item.campaign_id),
            None => groups.push((item.workflow_id.as_str(), vec![item.campaign_id])),
        }
    }
    groups
}

async fn republish<B: n8n::Breaker>(
    client: &Client,
    api: &n8n::Api<'_, B>,
    run_id: uuid::Uuid,
    workflow_id: &str,
    campaigns: Vec<uuid::Uuid>,
    correlation_id: &str,
) -> Result<(), ApiError> {
    let outcome = async {
        api.publish(workflow_id).await?;
        let workflow = api.get(workflow_id).await?;
        if !workflow.published {
            return Err(N8nError::Failed(
                "n8n accepted the publish but the workflow is not published".into(),
            ));
        }
        for (method, path) in &workflow.webhooks {
            if !webhook_registers(api, method, path).await {
                return Err(N8nError::Failed(format!(
                    "the webhook {method} /webhook/{path} did not register"
                )));
            }
        }
        Ok(workflow)
    }
    .await;
    for campaign_id in campaigns {
        let record = match &outcome {
            Ok(workflow) => RecordRepublish {
                p_run_id: run_id,
                p_campaign_id: campaign_id,
                p_ok: true,
                p_n8n_status: Some("active".into()),
                p_error: None,
                p_n8n_response: Some(evidence(workflow)),
            },
            Err(err) => RecordRepublish {
                p_run_id: run_id,
                p_campaign_id: campaign_id,
                p_ok: false,
                p_n8n_status: (*err == N8nError::NotFound).then(|| "deleted".to_string()),
                p_error: Some(err.to_string()),
                p_n8n_response: None,
            },
        };
        client.call(&record, correlation_id).await?;
    }
    Ok(())
}

async fn webhook_registers<B: n8n::Breaker>(
    api: &n8n::Api<'_, B>,
    method: &str,
    path: &str,
) -> bool {
    for check in 0..WEBHOOK_CHECKS {
        if check > 0 {
            Delay::from(WEBHOOK_CHECK_INTERVAL).await;
        }
        if api.webhook_live(method, path).await {
            return true;
        }
    }
    false
}

fn evidence(workflow: &Workflow) -> Value {
    json!({ "id": workflow.id, "name": workflow.name, "published": workflow.published,
            "webhooks_verified": workflow.webhooks.iter().map(|(m, p)| format!("{m} {p}")).collect::<Vec<_>>() })
}

fn worker_name() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the platform provides randomness");
    format!("campaign-sync-{}", hex::encode(bytes))
}

struct DbBreaker<'a> {
    client: &'a Client,
    correlation_id: &'a str,
}

impl n8n::Breaker for DbBreaker<'_> {
    async fn failed(&self, why: &str) -> Option<u32> {
        let record = BreakerRecord {
            p_ok: false,
            p_failure: Some(why.chars().take(500).collect()),
        };
        match self.client.call(&record, self.correlation_id).await {
            Ok(state) if state.open => Some(state.retry_after_s.unwrap_or(1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(id: &str, published: bool, archived: bool) -> Workflow {
        Workflow {
            id: id.into(),
            name: format!("wf {id}"),
            published,
            archived,
            webhooks: vec![],
        }
    }

    #[test]
    fn each_workflow_is_republished_once_for_all_its_campaigns() {
        let (a, b, c) = (
            uuid::Uuid::from_u128(1),
            uuid::Uuid::from_u128(2),
            uuid::Uuid::from_u128(3),
        );
        let items = [
            Republish {
                campaign_id: a,
                workflow_id: "w1".into(),
            },
            Republish {
                campaign_id: b,
                workflow_id: "w2".into(),
            },
            Republish {
                campaign_id: c,
                workflow_id: "w1".into(),
            },
        ];
        assert_eq!(
            by_workflow(&items),
            vec![("w1", vec![a, c]), ("w2", vec![b])]
        );
    }

    #[test]
    fn archived_workflows_are_left_out_of_the_sweep() {
        let list = swept(&[
            workflow("a", true, false),
            workflow("b", false, true),
            workflow("c", false, false),
        ]);
        let ids: Vec<_> = list.iter().map(|w| (w.id.as_str(), w.active)).collect();
        assert_eq!(ids, [("a", true), ("c", false)]);
    }
}
