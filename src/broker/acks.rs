//! Coalesced acknowledgements for one consume channel.
//!
//! Every settled delivery is acknowledged as soon as it is settled, never
//! later; what this adds is that deliveries settled at about the same time
//! share frames. The consume loop [`register`](AckBatcher::register)s each
//! delivery tag in delivery order; [`settle`](AckBatcher::settle) records a
//! delivery's verdict and, when no sender is running, spawns one (on the
//! session's task tracker, so a shutdown waits for it) that sends until
//! nothing is left. The message's own task does not wait for its ack, so it
//! lets the next message about its entities go at once. Each round sends:
//!
//! 1. the requeueing nacks, one frame each (rare: a publish that failed);
//! 2. one `basic.ack` with `multiple` for the run of acked deliveries that
//!    starts at the oldest unsettled-before-now tag (the broker acknowledges
//!    every unacknowledged tag up to it on this channel, and all of those are
//!    ours and settled);
//! 3. a plain `basic.ack` for each acked delivery behind a still-running one,
//!    so that a slow message never holds back the acks of later ones.
//!
//! Nacks go out (and are awaited) before the `multiple` ack that could
//! otherwise cover them. The ack frames of one round are sent while the next
//! settles collect, so under load a frame carries several deliveries; the
//! broker's work per ack is what bounds a consumer's rate (docs/performance.md).
//!
//! A batcher belongs to one channel of one session: delivery tags are per
//! channel, and lapin refuses (`Ok(false)`) an ack through an [`Acker`] whose
//! channel has closed, so a tag of a lost session can never ack a message of
//! the next one.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use lapin::{
    Acker,
    options::{BasicAckOptions, BasicNackOptions},
};
use tokio_util::task::TaskTracker;

/// What to tell the broker about one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Done (applied, or moved durably to a retry, dead-letter or parking queue).
    Ack,
    /// Put back on its queue (its move could not be made durable).
    Requeue,
}

pub struct AckBatcher {
    state: Mutex<State>,
    /// Where senders run (the session's tracker: the drain waits for them).
    tracker: TaskTracker,
}

#[derive(Default)]
struct State {
    /// Delivered and not yet sent to the broker, by tag; `None` while the
    /// message is still being handled.
    open: BTreeMap<u64, Option<(Verdict, Acker)>>,
    /// A task is sending; new verdicts are left for it.
    sending: bool,
}

/// The frames of one round, in the order they must be sent.
#[derive(Debug, Default, PartialEq)]
pub struct Round<A> {
    pub requeue: Vec<A>,
    /// The newest delivery of the leading run, and how many it covers.
    pub multiple: Option<(A, usize)>,
    pub single: Vec<A>,
}

impl<A> Round<A> {
    fn is_empty(&self) -> bool {
        self.requeue.is_empty() && self.multiple.is_none() && self.single.is_empty()
    }
}

impl AckBatcher {
    pub fn new(tracker: TaskTracker) -> Arc<Self> {
        Arc::new(AckBatcher {
            state: Mutex::default(),
            tracker,
        })
    }

    /// The state; a panic elsewhere never poisons it for good (nothing in
    /// its critical sections can leave it half-changed).
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a delivery, in delivery order, before it is handled.
    pub fn register(&self, tag: u64) {
        self.state().open.insert(tag, None);
    }

    /// Records the verdict of a registered delivery; unless a sender is
    /// running, starts one.
    pub fn settle(self: &Arc<Self>, tag: u64, verdict: Verdict, acker: Acker) {
        {
            let mut state = self.state();
            state.open.insert(tag, Some((verdict, acker)));
            if state.sending {
                return;
            }
            state.sending = true;
        }
        let this = Arc::clone(self);
        self.tracker.spawn(async move { this.send_all().await });
    }

    /// Sends every verdict there is, round after round, until none is left;
    /// only then does another `settle` start a sender.
    async fn send_all(&self) {
        loop {
            let round = {
                let mut state = self.state();
                let round = take_round(&mut state.open);
                if round.is_empty() {
                    state.sending = false;
                    return;
                }
                round
            };
            send(round).await;
        }
    }
}

/// Removes from `open` every delivery with a verdict and groups them into
/// frames: see the module's documentation.
pub fn take_round<A>(open: &mut BTreeMap<u64, Option<(Verdict, A)>>) -> Round<A> {
    let mut round = Round {
        requeue: Vec::new(),
        multiple: None,
        single: Vec::new(),
    };
    let decided: Vec<u64> = open
        .iter()
        .filter(|(_, slot)| slot.is_some())
        .map(|(tag, _)| *tag)
        .collect();
    if decided.is_empty() {
        return round;
    }
    // The leading run: decided tags from the oldest open one, up to the first
    // delivery still in hand. Requeued ones inside it are nacked first, and
    // the multiple ack then covers only acked ones.
    let first_open = open
        .iter()
        .find(|(_, slot)| slot.is_none())
        .map(|(t, _)| *t);
    let mut run = 0;
    let mut newest_acked = None;
    for tag in decided {
        let Some((verdict, acker)) = open.remove(&tag).flatten() else {
            continue;
        };
        let leading = first_open.is_none_or(|f| tag < f);
        match verdict {
            Verdict::Requeue => round.requeue.push(acker),
            Verdict::Ack if leading => {
                run += 1;
                // The previous newest is covered by this one's `multiple`.
                newest_acked = Some(acker);
            }
            Verdict::Ack => round.single.push(acker),
        }
    }
    round.multiple = newest_acked.map(|a| (a, run));
    round
}

async fn send(round: Round<Acker>) {
    let mut gone = 0usize;
    for acker in round.requeue {
        let requeue = BasicNackOptions {
            requeue: true,
            ..Default::default()
        };
        match acker.nack(requeue).await {
            Ok(true) => {}
            Ok(false) => gone += 1,
            Err(e) => {
                tracing::warn!(error = %e, "nack failed; the broker will redeliver the message")
            }
        }
    }
    let acks = round
        .multiple
        .map(|(a, n)| (a, n, true))
        .into_iter()
        .chain(round.single.into_iter().map(|a| (a, 1, false)));
    for (acker, covered, multiple) in acks {
        match acker.ack(BasicAckOptions { multiple }).await {
            Ok(true) => {}
            Ok(false) => gone += covered,
            Err(e) => tracing::warn!(
                error = %e,
                messages = covered,
                "ack failed; the broker will redeliver the messages"
            ),
        }
    }
    // The channel closed since the deliveries: the broker has requeued them
    // and will deliver them again; their effects are idempotent, so that is
    // safe, but say so.
    if gone > 0 {
        tracing::warn!(
            messages = gone,
            "ack not sent: the deliveries' channel is gone; the broker will redeliver them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(slots: &[(u64, Option<Verdict>)]) -> BTreeMap<u64, Option<(Verdict, u64)>> {
        slots
            .iter()
            .map(|&(tag, v)| (tag, v.map(|v| (v, tag))))
            .collect()
    }

    #[test]
    fn a_leading_run_is_one_multiple_ack() {
        use Verdict::Ack;
        let mut o = open(&[(1, Some(Ack)), (2, Some(Ack)), (3, Some(Ack)), (4, None)]);
        let r = take_round(&mut o);
        assert_eq!(r.multiple, Some((3, 3)));
        assert!(r.single.is_empty() && r.requeue.is_empty());
        assert_eq!(o.keys().copied().collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn acks_behind_a_running_message_are_not_held_back() {
        use Verdict::Ack;
        let mut o = open(&[(5, None), (6, Some(Ack)), (7, Some(Ack))]);
        let r = take_round(&mut o);
        assert_eq!(r.multiple, None);
        assert_eq!(r.single, vec![6, 7]);
        // 5 finishes later: a multiple ack of 5 covers only 5, since 6 and 7
        // are no longer unacknowledged at the broker.
        o.insert(5, Some((Ack, 5)));
        o.insert(8, None);
        let r = take_round(&mut o);
        assert_eq!(r.multiple, Some((5, 1)));
        assert!(take_round(&mut o).is_empty());
    }

    #[test]
    fn requeues_go_first_and_the_run_skips_them() {
        use Verdict::{Ack, Requeue};
        let mut o = open(&[
            (1, Some(Ack)),
            (2, Some(Requeue)),
            (3, Some(Ack)),
            (4, None),
            (5, Some(Requeue)),
            (6, Some(Ack)),
        ]);
        let r = take_round(&mut o);
        assert_eq!(r.requeue, vec![2, 5]);
        assert_eq!(r.multiple, Some((3, 2)));
        assert_eq!(r.single, vec![6]);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn nothing_decided_is_an_empty_round() {
        let mut o = open(&[(1, None), (2, None)]);
        assert!(take_round(&mut o).is_empty());
        assert_eq!(o.len(), 2);
        assert!(take_round(&mut BTreeMap::<u64, Option<(Verdict, u64)>>::new()).is_empty());
    }
}
