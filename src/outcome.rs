//! The failure vocabulary every layer shares: why a message was
//! dead-lettered ([`Reason`]), how applying it failed ([`HandlerError`]),
//! what happened to it ([`Outcome`]) and to which body ([`Part`]). It imports
//! none of the worker's other modules, so handlers, the consume loop, the
//! metrics and the operator commands can all name it without importing each
//! other.

/// Why a message was dead-lettered; the `axn-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    BodyTooLarge,
    NotUtf8,
    InvalidJson,
    NotAnObject,
    EmptyBatch,
    /// A call-record array with more records than `max_batch_records`.
    BatchTooLarge,
    MissingField,
    InvalidField,
    InvalidNumber,
    UnknownAction,
    /// The XB binding a call record refers to lacks a numeric userId/mapId.
    InvalidBinding,
    /// Transient failures outlasted `max_attempts`; `axn-error` has the last.
    RetriesExhausted,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::BodyTooLarge,
        Reason::NotUtf8,
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::EmptyBatch,
        Reason::BatchTooLarge,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::InvalidNumber,
        Reason::UnknownAction,
        Reason::InvalidBinding,
        Reason::RetriesExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BodyTooLarge => "body_too_large",
            Reason::NotUtf8 => "not_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::EmptyBatch => "empty_batch",
            Reason::BatchTooLarge => "batch_too_large",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::InvalidNumber => "invalid_number",
            Reason::UnknownAction => "unknown_action",
            Reason::InvalidBinding => "invalid_binding",
            Reason::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// A failure of one message (or one record of a batch).
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Retrying cannot help: dead-letter now.
    #[error("{reason}: {detail}", reason = reason.as_str())]
    Permanent { reason: Reason, detail: String },
    /// Redis or the broker failed, or the handler timed out: retry later.
    #[error("{0}")]
    Transient(String),
}

impl HandlerError {
    pub fn permanent(reason: Reason, detail: impl Into<String>) -> Self {
        HandlerError::Permanent {
            reason,
            detail: detail.into(),
        }
    }
    pub fn transient(detail: impl Into<String>) -> Self {
        HandlerError::Transient(detail.into())
    }
    pub fn reason(&self) -> Option<Reason> {
        match self {
            HandlerError::Permanent { reason, .. } => Some(*reason),
            HandlerError::Transient(_) => None,
        }
    }
}

impl From<redis::RedisError> for HandlerError {
    fn from(e: redis::RedisError) -> Self {
        HandlerError::Transient(format!("redis: {e}"))
    }
}

/// What happened to one message, or one record of a batch.
#[derive(Debug)]
pub enum Outcome {
    /// The effect is durable in Redis (and any event is confirmed); the label
    /// says which effect, for logs (`unbound`, `duplicate`, ...).
    Applied(&'static str),
    /// A call record no binding explains: goes to `<queue>.unattributed`.
    Parked,
    Failed(HandlerError),
}

/// An outcome and the body it concerns: `None` is the delivered message
/// itself; a record of a batch carries its own JSON, so that it alone is
/// retried, parked or dead-lettered.
#[derive(Debug)]
pub struct Part {
    pub body: Option<Vec<u8>>,
    pub outcome: Outcome,
    /// Set when this part's call-log event was confirmed but its dedupe mark
    /// could not be written: the retry copy carries it (signed), so the retry
    /// writes the mark instead of publishing again.
    pub confirmed_call_id: Option<String>,
}

impl Part {
    pub fn whole(outcome: Outcome) -> Self {
        Part {
            body: None,
            outcome,
            confirmed_call_id: None,
        }
    }
}
