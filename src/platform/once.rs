//! Repeated requests (docs/platform-api.md, "Repeated requests"). Every
//! operation that changes state claims its request (operation + parsed
//! parameters) in Redis before it works, so identical requests in flight, on
//! any replica, run once: the others wait for the first and get its answer.
//! The three operations that would otherwise take a second number or make a
//! second binding (BindAxByplatform, UserBindLinShiNumber, GetCallNumber)
//! keep a successful answer for [`REPLAY_SECS`], with the state it describes
//! ("holds"); a repeat gets it only while every hold still holds, and runs
//! afresh once one does not (the number released, the binding ended). The
//! others are idempotent by state: a repeat that comes after the first ended
//! runs again and answers from the state it finds.

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
/// How long a claim keeps identical requests waiting when the process that
/// holds it died mid-request (a live one ends its claim when it answers).
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

/// What an operation did: its answer and, for a replayable success, the
/// state it describes (empty: not stored).
pub struct Done {
    pub answer: Answer,
    pub holds: Vec<Hold>,
}

impl From<Answer> for Done {
    fn from(answer: Answer) -> Self {
        Done {
            answer,
            holds: Vec::new(),
        }
    }
}

/// A stored answer, as kept in `PrivateNumber_api_replay:<fingerprint>`.
#[derive(Serialize, Deserialize)]
struct Stored {
    m: String,
    b: Vec<Value>,
    holds: Vec<Hold>,
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
        loop {
            let claim = self
                .store
                .claim_request(fingerprint, &token, CLAIM_LEASE_MS)
                .await
                .map_err(redis_failed)?;
            match claim {
                Claim::Claimed => break,
                Claim::Answer(text) => match serde_json::from_str::<Stored>(&text) {
                    Ok(stored) => {
                        return Ok(Answer::Ok {
                            message: stored.m,
                            body: stored.b,
                        });
                    }
                    // Only this module writes them: not one of ours.
                    Err(e) => {
                        tracing::warn!(error = %e, "platform API: a stored answer it cannot read");
                        return Err(Answer::fail("内部错误[无法读取已保存的应答]"));
                    }
                },
                Claim::Wait => {}
            }
            if Instant::now() >= deadline {
                return Err(Answer::fail(IN_PROGRESS));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        let done = work.await;
        let stored = match &done {
            Ok(Done {
                answer: Answer::Ok { message, body },
                holds,
            }) if !holds.is_empty() => serde_json::to_string(&Stored {
                m: message.clone(),
                b: body.clone(),
                holds: holds.clone(),
            })
            .ok(),
            _ => None,
        };
        if let Err(e) = self
            .store
            .finish_request(fingerprint, &token, stored.as_deref(), REPLAY_SECS)
            .await
        {
            // The claim ends with its lease; identical requests wait until then.
            tracing::warn!(error = %e, "platform API: a request's claim not ended");
        }
        done.map(|d| d.answer)
    }
}
