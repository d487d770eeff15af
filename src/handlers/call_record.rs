//! Call records (`service_exchange1_privatenumberCallRecord`): each record of
//! an XB call becomes one call-log event `{"user", "houseid"}` on
//! `house_exchange1_GetPhoneWriteLog`, attributed through the binding `subId`
//! (still bound, or unbound within the retention), published once per
//! `callId`.
//!
//! # Once per callId
//! 1. **Claim.** A script checks the dedupe mark `PrivateNumber_calllog:<callId>`
//!    and, when there is none, finds the binding and claims the callId with a
//!    lease (a token, expiring after the handler timeout) in one step. A copy
//!    that meets `1` is acknowledged without publishing; one that meets a
//!    lease is retried later.
//! 2. **Publish.** Only the claim's holder publishes. The publish and its
//!    confirm run in a task of their own, which the handler timeout does not
//!    cut short, and which renews the lease every third of its length until
//!    the broker answers: a lease cannot expire while its publish may still be
//!    confirmed (a broker alarm that blocks publishes for minutes included).
//!    A publish the broker certainly did not route (nack, unroutable, missing
//!    exchange) releases the lease; one whose fate is unknown (the connection
//!    died before the confirm) keeps it until it expires.
//! 3. **Commit.** After the confirm the mark becomes `1` for the dedupe TTL.
//!    If Redis refuses the write, the record is retried with the signed header
//!    `axn-call-log-confirmed: <callId>`; the retry writes the mark and never
//!    publishes, however long the refusal lasts.
//!
//! What remains is the contract's one allowed duplicate: a crash (of the
//! process, or of the broker connection before the confirm arrives) after
//! the broker routed the event and before the mark. Downstream drops that
//! copy by `message_id`. The argument is written out in docs/reliability.md.
//!
//! Aliyun's SecretReport field names are accepted as they are, and a body
//! that is a JSON array is handled record by record.

use std::{
    collections::BTreeSet,
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use lapin::BasicProperties;
use serde_json::Value;

use super::{Ctx, HandlerError, Outcome, Part, Reason, fields::Fields, kind_of};
use crate::{amqp::publisher::PublishError, phone::mask_digits_in, store::Claim};

/// One call record. Only `sub_id` and `call_id` matter to the effect; the
/// rest is carried for logs.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub sub_id: String,
    pub call_id: String,
    pub plat_id: Option<u64>,
    pub call_type: Option<u64>,
    pub start_time: Option<String>,
    pub release_time: Option<String>,
}

/// A record of a batch with the JSON it came from (`None` for a body that is
/// a single object: the delivered message is the record).
#[derive(Debug)]
pub struct Item {
    pub body: Option<Vec<u8>>,
    pub record: Result<CallRecord, HandlerError>,
}

/// The records of one message, each with its own outcome.
#[derive(Debug)]
pub struct Batch(pub Vec<Item>);

impl Batch {
    pub fn sub_ids(&self) -> BTreeSet<String> {
        self.0
            .iter()
            .filter_map(|i| i.record.as_ref().ok().map(|r| r.sub_id.clone()))
            .collect()
    }
}

pub fn parse_record(value: &Value) -> Result<CallRecord, HandlerError> {
    let Some(map) = value.as_object() else {
        return Err(HandlerError::permanent(
            Reason::NotAnObject,
            format!("call record is JSON {}, not an object", kind_of(value)),
        ));
    };
    let f = Fields(map);
    Ok(CallRecord {
        sub_id: f.id(&["subId", "sub_id"])?,
        call_id: f.id(&["callId", "call_id"])?,
        plat_id: f.opt_uint(&["platId"])?,
        call_type: f.opt_uint(&["callType", "call_type"])?,
        start_time: f.opt_text(&["startTime", "start_time"])?,
        release_time: f.opt_text(&["releaseTime", "release_time"])?,
    })
}

/// Parses a body: one record, or an array of at most `max_records` records
/// (a longer one is dead-lettered whole, as `batch_too_large`: one message
/// must not become tens of thousands of dead letters).
pub fn parse(value: Value, max_records: usize) -> Result<Batch, HandlerError> {
    match value {
        Value::Array(records) if records.is_empty() => Err(HandlerError::permanent(
            Reason::EmptyBatch,
            "body is an empty array",
        )),
        Value::Array(records) if records.len() > max_records => Err(HandlerError::permanent(
            Reason::BatchTooLarge,
            format!(
                "body is an array of {} records, the limit is {max_records}",
                records.len()
            ),
        )),
        Value::Array(records) => Ok(Batch(
            records
                .into_iter()
                .map(|r| Item {
                    body: Some(serde_json::to_vec(&r).unwrap_or_default()),
                    record: parse_record(&r),
                })
                .collect(),
        )),
        Value::Object(_) => Ok(Batch(vec![Item {
            body: None,
            record: parse_record(&value),
        }])),
        other => Err(HandlerError::permanent(
            Reason::NotAnObject,
            format!(
                "body is JSON {}, not an object or an array of objects",
                kind_of(&other)
            ),
        )),
    }
}

/// Applies each record; `confirmed` is the callId whose event an earlier
/// attempt saw confirmed (signed header), which is committed, not published.
pub async fn apply(batch: Batch, ctx: &Ctx, confirmed: Option<&str>) -> Vec<Part> {
    let mut parts = Vec::with_capacity(batch.0.len());
    for item in batch.0 {
        let (outcome, confirmed_call_id) = match item.record {
            Err(e) => (Outcome::Failed(e), None),
            Ok(record) if confirmed == Some(record.call_id.as_str()) => {
                let _slot = ctx.slots.take().await;
                match commit(ctx, &record.call_id).await {
                    Ok(()) => (Outcome::Applied("committed"), None),
                    Err(e) => (Outcome::Failed(e), Some(record.call_id)),
                }
            }
            Ok(record) => match apply_record(&record, ctx).await {
                Ok(o) => (o, None),
                Err(Failure { error, confirmed }) => {
                    (Outcome::Failed(error), confirmed.then_some(record.call_id))
                }
            },
        };
        parts.push(Part {
            body: item.body,
            outcome,
            confirmed_call_id,
        });
    }
    parts
}

/// A record that failed; `confirmed` when its event is confirmed already.
struct Failure {
    error: HandlerError,
    confirmed: bool,
}

impl From<HandlerError> for Failure {
    fn from(error: HandlerError) -> Self {
        Failure {
            error,
            confirmed: false,
        }
    }
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        HandlerError::from(e).into()
    }
}

#[tracing::instrument(name = "call_record", level = "debug", skip_all, fields(call_id = %mask_digits_in(&r.call_id), sub_id = %mask_digits_in(&r.sub_id)))]
async fn apply_record(r: &CallRecord, ctx: &Ctx) -> Result<Outcome, Failure> {
    let slot = ctx.slots.take().await;
    let token = claim_token();
    let binding = match ctx
        .store
        .claim_call(&r.call_id, &r.sub_id, &token, ctx.timeout)
        .await?
    {
        Claim::Duplicate => return Ok(Outcome::Applied("duplicate")),
        Claim::Unattributed => return Ok(Outcome::Parked),
        Claim::Busy => {
            return Err(HandlerError::transient(
                "another attempt holds this callId's publish lease; retrying later",
            )
            .into());
        }
        Claim::Claimed(binding) => binding,
    };
    let event = match call_log_event(&binding) {
        Ok(event) => event,
        Err(e) => {
            release(ctx, &r.call_id, &token).await;
            return Err(e.into());
        }
    };
    // Its own task: if the handler times out, the publication still ends
    // with a confirm (and the mark) or a release, holding its lease meanwhile.
    let publication = tokio::spawn(publish_and_commit(
        ctx.clone(),
        r.call_id.clone(),
        token,
        event,
    ));
    // Waiting for the broker's confirm holds no slot (prefetch bounds it).
    drop(slot);
    match publication.await {
        Ok(Ok(())) => Ok(Outcome::Applied("published")),
        Ok(Err(failure)) => Err(failure),
        Err(join) => {
            Err(HandlerError::transient(format!("the publish task failed: {join}")).into())
        }
    }
}

async fn publish_and_commit(
    ctx: Ctx,
    call_id: String,
    token: String,
    event: Vec<u8>,
) -> Result<(), Failure> {
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(call_id.as_str().into());
    let published_at = std::time::Instant::now();
    // One await on a helper: the publish future, live across two awaits in
    // there, would otherwise sit beside the commit's in this task, whose
    // size is copied several times per call record (docs/performance.md).
    let result = publish_renewing(&ctx, &call_id, &token, &event, props).await;
    match result {
        Ok(()) => {
            ctx.metrics
                .call_log_published(published_at.elapsed().as_secs_f64());
            commit(&ctx, &call_id).await.map_err(|error| Failure {
                error,
                confirmed: true,
            })
        }
        Err(e) => {
            ctx.metrics
                .publish_failed(crate::config::QueueKind::CallRecord);
            if e.definitely_not_published() {
                release(&ctx, &call_id, &token).await;
            }
            Err(HandlerError::transient(format!("call-log event not confirmed: {e}")).into())
        }
    }
}

/// Publishes the call-log event and waits for its confirm, renewing the
/// call's publish lease meanwhile.
async fn publish_renewing(
    ctx: &Ctx,
    call_id: &str,
    token: &str,
    event: &[u8],
    props: BasicProperties,
) -> Result<(), PublishError> {
    let out = &ctx.settings.publish.call_log;
    let every = (ctx.timeout / 3).max(Duration::from_millis(100));
    let publish = ctx
        .publisher
        .publish(&out.exchange, &out.routing_key, event, props);
    tokio::pin!(publish);
    loop {
        tokio::select! {
            r = &mut publish => return r,
            _ = tokio::time::sleep(every) => {
                // Boxed: rare, and its Redis future is large.
                match Box::pin(ctx.store.renew_call(call_id, token, ctx.timeout)).await {
                    Ok(true) => tracing::debug!("publish lease renewed while waiting for the confirm"),
                    Ok(false) => tracing::warn!("the publish lease was lost while waiting for the confirm"),
                    Err(e) => tracing::warn!(error = %e, "could not renew the publish lease"),
                }
            }
        }
    }
}

/// The two fields of an XB binding that the event needs; the binding's other
/// fields are skipped without being built (this runs once per call record).
#[derive(serde::Deserialize)]
struct BindingIds {
    #[serde(rename = "userId", default)]
    user_id: Option<Value>,
    #[serde(rename = "mapId", default)]
    map_id: Option<Value>,
}

/// The event body from the binding's JSON: `user` = its userId, `houseid` =
/// its mapId, both JSON numbers (a numeric string in the binding is accepted).
pub fn call_log_event(binding: &str) -> Result<Vec<u8>, HandlerError> {
    let invalid = |what: &str| {
        HandlerError::permanent(Reason::InvalidBinding, format!("the XB binding {what}"))
    };
    // The error's own text may quote a value of the binding: not repeated.
    let ids: BindingIds = serde_json::from_str(binding).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            invalid("is not a JSON object with one userId and one mapId")
        }
        _ => invalid("is not JSON"),
    })?;
    let user = ids
        .user_id
        .as_ref()
        .and_then(super::fields::as_uint)
        .ok_or_else(|| invalid("lacks a numeric userId"))?;
    let house = ids
        .map_id
        .as_ref()
        .and_then(super::fields::as_uint)
        .ok_or_else(|| invalid("lacks a numeric mapId"))?;
    Ok(format!(r#"{{"user":{user},"houseid":{house}}}"#).into_bytes())
}

/// Marks the callId as published. The event is already confirmed: a few
/// quick tries, then the record is retried as confirmed (see the module).
async fn commit(ctx: &Ctx, call_id: &str) -> Result<(), HandlerError> {
    let ttl = ctx.settings.redis.calllog_dedupe_ttl_secs;
    let mut delay = Duration::from_millis(100);
    let mut last = None;
    for _ in 0..3 {
        match ctx.store.commit_call(call_id, ttl).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(HandlerError::transient(format!(
        "call-log event published but its dedupe mark could not be written: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

async fn release(ctx: &Ctx, call_id: &str, token: &str) {
    if let Err(e) = ctx.store.release_call(call_id, token).await {
        tracing::warn!(error = %e, "could not release the publish lease; it expires by itself");
    }
}

/// A token unique to this attempt in this process on this host.
fn claim_token() -> String {
    static PREFIX: LazyLock<String> = LazyLock::new(|| {
        format!(
            "lease:{}:{}",
            gethostname::gethostname().to_string_lossy(),
            std::process::id()
        )
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}:{}", *PREFIX, NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contract_and_aliyun_field_names_parse_alike() {
        let ours = parse_record(&json!({"platId": 3, "subId": "1000039976446302", "callId": "ab12", "telA": "1", "callType": 0, "startTime": "2026-11-23 10:00:00", "releaseTime": "2026-11-23 10:03:12"})).unwrap();
        let aliyun = parse_record(&json!({"sub_id": 1000039976446302u64, "call_id": "ab12", "phone_no": "13800000000", "secret_no": "17000000000", "peer_no": "13900000000", "call_type": 0, "start_time": "2026-11-23 10:00:00", "release_time": "2026-11-23 10:03:12"})).unwrap();
        assert_eq!(ours.sub_id, aliyun.sub_id);
        assert_eq!(ours.call_id, aliyun.call_id);
        assert_eq!(ours.start_time, aliyun.start_time);
    }

    #[test]
    fn arrays_give_one_item_per_record_with_its_own_verdict() {
        let b = parse(
            json!([{"subId": "1", "callId": "a"}, {"subId": "2"}, 7]),
            10,
        )
        .unwrap();
        assert_eq!(b.0.len(), 3);
        assert!(b.0[0].record.is_ok());
        assert_eq!(
            b.0[1].record.as_ref().unwrap_err().reason(),
            Some(Reason::MissingField)
        );
        assert_eq!(
            b.0[2].record.as_ref().unwrap_err().reason(),
            Some(Reason::NotAnObject)
        );
        assert_eq!(b.0[2].body.as_deref(), Some(&b"7"[..]));
        assert_eq!(b.sub_ids(), BTreeSet::from(["1".to_string()]));
        assert_eq!(
            parse(json!([]), 10).unwrap_err().reason(),
            Some(Reason::EmptyBatch)
        );
        assert_eq!(
            parse(json!("x"), 10).unwrap_err().reason(),
            Some(Reason::NotAnObject)
        );
    }

    #[test]
    fn event_takes_user_and_house_from_the_binding_as_numbers() {
        let e = call_log_event(r#"{"subId":"1","userId":"74705","mapId":123456,"mapClassId":1}"#)
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&e).unwrap(),
            json!({"user": 74705, "houseid": 123456})
        );
        for bad in [
            r#"{"userId":"x","mapId":1}"#,
            r#"{"userId":1}"#,
            r#"{"userId":1,"mapId":2,"userId":3}"#,
            r#"{"userId":null,"mapId":2}"#,
            "[]",
            "7",
            "nope",
            r#"{"userId":1,"mapId":2"#,
        ] {
            assert_eq!(
                call_log_event(bad).unwrap_err().reason(),
                Some(Reason::InvalidBinding),
                "{bad}"
            );
        }
        // Other fields, of any kind, are skipped.
        let e = call_log_event(
            r#"{"subId":"1","userId":7,"mapId":"8","nested":{"a":[1,{"b":null}]},"telX":"13800000000"}"#,
        )
        .unwrap();
        assert_eq!(e, br#"{"user":7,"houseid":8}"#);
    }
}
