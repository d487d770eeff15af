//! Repeated requests (docs/platform-api.md, "Repeated requests"). Every
//! operation that changes state claims its request (operation + parsed
//! parameters) in Redis before it works, so identical requests in flight, on
//! any replica, run once: the others wait for the first and get its answer,
//! success or failure. After that the record serves later repeats only for
//! the three operations that would otherwise take a second number or make a
//! second binding (BindAxByplatform, UserBindLinShiNumber, GetCallNumber):
//! a success is kept for [`REPLAY_SECS`] with the state it describes
//! ("holds", and for an XB binding its expiry), and a repeat gets it only
//! while every hold still holds; once one does not (the number released,
//! the binding ended or expired) the request runs afresh. The other
//! operations are idempotent by state: a repeat that comes after the first
//! ended runs again and answers from the state it finds.

use std::{future::Future, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use super::{
    Platform,
    api::{Answer, Step},
    ax::redis_failed,
};
use crate::store::platform::Claim;

/// How long a stored answer may be replayed (while its holds hold).
pub const REPLAY_SECS: u64 = 60;
/// How long the record of a request that serves no later repeat is kept for
/// the duplicates that waited on it (they ask every 50 ms at most).
const WAITERS_MS: u64 = 5_000;
/// How long a claim keeps identical requests waiting when the process that
/// holds it died mid-request (a live one ends its claim when it answers).
/// Above the longest operation: `[platform.aliyun] timeout_secs` is at
/// most 30 (config::validate).
const CLAIM_LEASE_MS: u64 = 60_000;
/// How long a duplicate waits for the first request's answer before it is
/// told to retry: below `[http] request_timeout_secs`' default (30 s).
const WAIT_FOR_FIRST: Duration = Duration::from_secs(20);

/// The answer to a duplicate that waited longer than [`WAIT_FOR_FIRST`].
pub const IN_PROGRESS: &str = "内部错误[相同的请求正在处理中,请稍后重试]";

/// One state a stored answer describes: the value of a hash field (or of a
/// string key, with an empty field) that must be unchanged for a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold(pub String, pub String, pub String);

/// What an operation did: its answer and, for a success that later repeats
/// may get, the state it describes (empty: for the waiting duplicates only)
/// and when it stops being true anyway (epoch seconds; 0: never).
pub struct Done {
    pub answer: Answer,
    pub holds: Vec<Hold>,
    pub until: u64,
}

impl From<Answer> for Done {
    fn from(answer: Answer) -> Self {
        Done {
            answer,
            holds: Vec::new(),
            until: 0,
        }
    }
}

/// A request's record, as kept in `PrivateNumber_api_replay:<fingerprint>`.
#[derive(Serialize, Deserialize)]
struct Record {
    /// The claim it ended.
    t: String,
    ok: bool,
    m: String,
    b: Vec<Value>,
    holds: Vec<Hold>,
    until: u64,
}

impl Platform {
    /// Runs `work` as the one request `fingerprint` (see the module doc).
    pub async fn once(
        &self,
        fingerprint: &str,
        work: impl Future<Output = Step<Done>>,
    ) -> Step<Answer> {
        let token = format!("{:016x}", rand::random::<u64>());
        let deadline = Instant::now() + WAIT_FOR_FIRST;
        let mut pause = Duration::from_millis(5);
        let mut waited = String::new();
        loop {
            let claim = self
                .store
                .claim_request(fingerprint, &token, CLAIM_LEASE_MS, &waited)
                .await
                .map_err(redis_failed)?;
            match claim {
                Claim::Claimed => break,
                Claim::Answer(text) => match serde_json::from_str::<Record>(&text) {
                    Ok(r) if r.ok => {
                        return Ok(Answer::Ok {
                            message: r.m,
                            body: r.b,
                        });
                    }
                    Ok(r) => {
                        return Ok(Answer::Fail {
                            message: r.m,
                            body: r.b,
                        });
                    }
                    // Only this module writes them: not one of ours.
                    Err(e) => {
                        tracing::warn!(error = %e, "platform API: a stored answer it cannot read");
                        return Err(Answer::fail("内部错误[无法读取已保存的应答]"));
                    }
                },
                Claim::Wait(other) => waited = other,
            }
            if Instant::now() >= deadline {
                return Err(Answer::fail(IN_PROGRESS));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        let done = work.await;
        let (answer, holds, until) = match &done {
            Ok(d) => (&d.answer, d.holds.clone(), d.until),
            Err(a) => (a, Vec::new(), 0),
        };
        let (ok, m, b) = match answer {
            Answer::Ok { message, body } => (true, message.clone(), body.clone()),
            Answer::Fail { message, body } => (false, message.clone(), body.clone()),
        };
        // Only a success with holds serves later repeats.
        let holds = if ok { holds } else { Vec::new() };
        let ttl_ms = if holds.is_empty() {
            WAITERS_MS
        } else {
            REPLAY_SECS * 1000
        };
        let record = Record {
            t: token.clone(),
            ok,
            m,
            b,
            holds,
            until,
        };
        let stored = serde_json::to_string(&record).unwrap_or_default();
        if let Err(e) = self
            .store
            .finish_request(fingerprint, &token, &stored, ttl_ms)
            .await
        {
            // The claim ends with its lease; identical requests wait until then.
            tracing::warn!(error = %e, "platform API: a request's claim not ended");
        }
        done.map(|d| d.answer)
    }
}
