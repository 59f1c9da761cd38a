//! What a toggle request asks for, validated before anything is written.
//!
//! `{"campaign_id": "<uuid>", "action": "activate"}` toggles one campaign;
//! `{"campaign_ids": [...], "action": ...}` (1 to 50 distinct ids) several,
//! each on its own (its own audit row, rate-limit slot and answer). The
//! service role acting for a person names them in `requested_by`; a user
//! never does (they are who their JWT says).

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_shared::error::{ApiError, ErrorCode, Problem};
use uuid::Uuid;

/// Campaigns in one batch.
pub const MAX_BATCH: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Activate,
    Deactivate,
    Pause,
    Resume,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "activate" => Some(Action::Activate),
            "deactivate" => Some(Action::Deactivate),
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Activate => "activate",
            Action::Deactivate => "deactivate",
            Action::Pause => "pause",
            Action::Resume => "resume",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToggleRequest {
    pub campaigns: Vec<Uuid>,
    pub action: Action,
    /// `campaign_ids` was sent: answer with one result per campaign.
    pub batch: bool,
    pub requested_by: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    campaign_id: Option<Value>,
    campaign_ids: Option<Value>,
    action: Option<Value>,
    requested_by: Option<Value>,
}

/// Parses and validates the body; every problem is reported at once.
pub fn parse(body: &[u8], service_role: bool) -> Result<ToggleRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body is not JSON"))?;
    if !value.is_object() {
        return Err(invalid(vec![Problem::new(
            "(body)",
            "must be a JSON object",
        )]));
    }
    let body: Body = serde_json::from_value(value).map_err(|e| {
        let field = e
            .to_string()
            .split('`')
            .nth(1)
            .unwrap_or("(body)")
            .to_string();
        invalid(vec![Problem::new(
            field,
            "is not a field of a toggle request",
        )])
    })?;
    let mut problems = Vec::new();

    let action = match &body.action {
        Some(Value::String(a)) => Action::parse(a),
        _ => None,
    };
    if action.is_none() {
        problems.push(Problem::new(
            "action",
            "must be one of activate, deactivate, pause, resume",
        ));
    }

    let mut campaigns = Vec::new();
    let batch = body.campaign_ids.is_some();
    match (&body.campaign_id, &body.campaign_ids) {
        (Some(_), Some(_)) => problems.push(Problem::new(
            "campaign_ids",
            "send campaign_id or campaign_ids, not both",
        )),
        (None, None) => problems.push(Problem::new("campaign_id", "is required")),
        (Some(id), None) => match uuid_of(id) {
            Some(id) => campaigns.push(id),
            None => problems.push(Problem::new("campaign_id", "must be a UUID")),
        },
        (None, Some(Value::Array(ids))) if (1..=MAX_BATCH).contains(&ids.len()) => {
            for (i, id) in ids.iter().enumerate() {
                match uuid_of(id) {
                    Some(id) if campaigns.contains(&id) => problems.push(Problem::new(
                        format!("campaign_ids[{i}]"),
                        "is listed twice",
                    )),
                    Some(id) => campaigns.push(id),
                    None => {
                        problems.push(Problem::new(format!("campaign_ids[{i}]"), "must be a UUID"))
                    }
                }
            }
        }
        (None, Some(_)) => problems.push(Problem::new(
            "campaign_ids",
            format!("must be an array of 1 to {MAX_BATCH} campaign ids"),
        )),
    }

    let requested_by = match (&body.requested_by, service_role) {
        (None, _) => None,
        (Some(_), false) => {
            problems.push(Problem::new(
                "requested_by",
                "only the service role names the person it acts for",
            ));
            None
        }
        (Some(Value::String(who)), true)
            if (1..=200).contains(&who.chars().count()) && !who.chars().any(char::is_control) =>
        {
            Some(who.clone())
        }
        (Some(_), true) => {
            problems.push(Problem::new("requested_by", "must be 1 to 200 characters"));
            None
        }
    };
    if service_role && requested_by.is_none() && body.requested_by.is_none() {
        problems.push(Problem::new(
            "requested_by",
            "the service role must name the person it acts for",
        ));
    }

    match (action, problems.is_empty()) {
        (Some(action), true) => Ok(ToggleRequest {
            campaigns,
            action,
            batch,
            requested_by,
        }),
        _ => Err(invalid(problems)),
    }
}

fn uuid_of(value: &Value) -> Option<Uuid> {
    value.as_str().and_then(|s| Uuid::try_parse(s).ok())
}

fn invalid(problems: Vec<Problem>) -> ApiError {
    ApiError::invalid("the toggle request is invalid", problems)
}

/// `X-Idempotency-Key`: 1 to 255 visible ASCII characters, when sent.
pub fn idempotency_key(header: Option<String>) -> Result<Option<String>, ApiError> {
    match header {
        None => Ok(None),
        Some(key)
            if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key))
        }
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidHeader,
            "X-Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// The key each campaign of a request is recorded under: the key itself for
/// one campaign, `<key>:<campaign id>` for each campaign of a batch (its
/// sha256 when that would pass the 255 characters a key may have).
pub fn item_key(key: &Option<String>, request: &ToggleRequest, campaign: Uuid) -> Option<String> {
    key.as_ref().map(|key| {
        if !request.batch {
            return key.clone();
        }
        let item = format!("{key}:{campaign}");
        if item.len() <= 255 {
            item
        } else {
            format!("sha256:{}", hex::encode(Sha256::digest(item.as_bytes())))
        }
    })
}

/// What makes two requests under one key "the same request".
pub fn request_hash(request: &ToggleRequest, campaign: Uuid) -> String {
    let canonical = format!(
        "{}\n{}\n{}\n{}",
        request.action.as_str(),
        campaign,
        request.batch,
        request.requested_by.as_deref().unwrap_or("")
    );
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "6f1c1c1e-8a6e-4e0e-9b8e-2f0c7c0d8a11";

    fn fields(err: &ApiError) -> Vec<String> {
        err.details
            .as_ref()
            .and_then(|d| d.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|p| p["field"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn one_campaign_or_a_batch() {
        let one = parse(
            format!(r#"{{"campaign_id":"{ID}","action":"pause"}}"#).as_bytes(),
            false,
        )
        .unwrap();
        assert_eq!(
            (one.campaigns.len(), one.action, one.batch),
            (1, Action::Pause, false)
        );
        let batch = parse(
            format!(r#"{{"campaign_ids":["{ID}","00000000-0000-4000-8000-000000000001"],"action":"resume"}}"#)
                .as_bytes(),
            false,
        )
        .unwrap();
        assert_eq!((batch.campaigns.len(), batch.batch), (2, true));
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let err = parse(br#"{"campaign_id":"nope","action":"explode"}"#, false).unwrap_err();
        assert_eq!(err.code, ErrorCode::ValidationFailed);
        assert_eq!(fields(&err), ["action", "campaign_id"]);
        let err = parse(br#"{"action":"activate"}"#, false).unwrap_err();
        assert_eq!(fields(&err), ["campaign_id"]);
        let err = parse(
            format!(r#"{{"campaign_ids":["{ID}","{ID}",7],"action":"activate"}}"#).as_bytes(),
            false,
        )
        .unwrap_err();
        assert_eq!(fields(&err), ["campaign_ids[1]", "campaign_ids[2]"]);
        let err = parse(br#"{"campaign_ids":[],"action":"activate"}"#, false).unwrap_err();
        assert_eq!(fields(&err), ["campaign_ids"]);
        let err = parse(
            format!(r#"{{"campaign_id":"{ID}","action":"activate","extra":1}}"#).as_bytes(),
            false,
        )
        .unwrap_err();
        assert_eq!(fields(&err), ["extra"]);
        assert_eq!(
            parse(b"[1]", false).unwrap_err().code,
            ErrorCode::ValidationFailed
        );
        assert_eq!(parse(b"{", false).unwrap_err().code, ErrorCode::InvalidJson);
    }

    #[test]
    fn only_the_service_role_acts_for_someone_and_it_must_say_for_whom() {
        let body =
            format!(r#"{{"campaign_id":"{ID}","action":"activate","requested_by":"alice"}}"#);
        let err = parse(body.as_bytes(), false).unwrap_err();
        assert_eq!(fields(&err), ["requested_by"]);
        assert_eq!(
            parse(body.as_bytes(), true)
                .unwrap()
                .requested_by
                .as_deref(),
            Some("alice")
        );
        let anonymous = format!(r#"{{"campaign_id":"{ID}","action":"activate"}}"#);
        assert_eq!(
            fields(&parse(anonymous.as_bytes(), true).unwrap_err()),
            ["requested_by"]
        );
    }

    #[test]
    fn idempotency_keys_are_bounded_and_a_batch_keys_each_campaign() {
        assert_eq!(idempotency_key(None).unwrap(), None);
        assert!(idempotency_key(Some("k".repeat(255))).unwrap().is_some());
        for bad in ["", "has space", "é"] {
            assert_eq!(
                idempotency_key(Some(bad.into())).unwrap_err().code,
                ErrorCode::InvalidHeader
            );
        }
        assert!(idempotency_key(Some("k".repeat(256))).is_err());
        let id = Uuid::parse_str(ID).unwrap();
        let one = parse(
            format!(r#"{{"campaign_id":"{ID}","action":"pause"}}"#).as_bytes(),
            false,
        )
        .unwrap();
        assert_eq!(
            item_key(&Some("k1".into()), &one, id).as_deref(),
            Some("k1")
        );
        let batch = ToggleRequest {
            batch: true,
            ..one.clone()
        };
        assert_eq!(
            item_key(&Some("k1".into()), &batch, id),
            Some(format!("k1:{ID}"))
        );
        assert_ne!(
            request_hash(&one, id),
            request_hash(
                &ToggleRequest {
                    action: Action::Resume,
                    ..one.clone()
                },
                id
            )
        );
        assert_eq!(request_hash(&one, id), request_hash(&one.clone(), id));
    }

    proptest! {
        /// Any body is a request or a 4xx; never a panic.
        #[test]
        fn any_body_is_a_request_or_a_client_error(body in "\\PC{0,200}", service in any::<bool>()) {
            if let Err(err) = parse(body.as_bytes(), service) {
                prop_assert!((400..500).contains(&err.status()));
            }
        }
    }
}
