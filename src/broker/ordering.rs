//! Per-entity ordering at concurrency above 1.
//!
//! The consume loop calls [`Sequencer::enter`] for each delivery, in delivery
//! order, with the entities the message is about. The returned [`Turn`]
//! resolves once every earlier message about any of those entities has
//! finished (been settled), so messages about one entity apply one after
//! another in delivery order while messages about different entities run
//! concurrently. Nothing is held per entity once its last message is done.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::watch;

/// One per input queue, shared by every session of that queue, so that a
/// message redelivered after a reconnect still waits for one still running.
#[derive(Default)]
pub struct Sequencer {
    /// entity -> (sequence number, done-signal) of its latest message.
    latest: Mutex<HashMap<String, (u64, watch::Receiver<()>)>>,
    next: AtomicU64,
}

/// A message's place in line. Dropping it (when the message is settled, or
/// abandoned) lets the next message about the same entities go.
pub struct Turn {
    sequencer: Arc<Sequencer>,
    seq: u64,
    keys: BTreeSet<String>,
    waits: Vec<watch::Receiver<()>>,
    _done: watch::Sender<()>,
}

impl Sequencer {
    /// Takes a place in line behind every earlier message about `keys`.
    pub fn enter(self: &Arc<Self>, keys: BTreeSet<String>) -> Turn {
        let (done, signal) = watch::channel(());
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        // keys is a set: a message never waits for itself.
        let waits = keys
            .iter()
            .filter_map(|k| {
                latest
                    .insert(k.clone(), (seq, signal.clone()))
                    .map(|(_, rx)| rx)
            })
            .collect();
        Turn {
            sequencer: Arc::clone(self),
            seq,
            keys,
            waits,
            _done: done,
        }
    }

    /// Entities with a message in line (for tests and metrics).
    pub fn len(&self) -> usize {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Turn {
    /// Resolves when every earlier message about these entities is done.
    pub async fn ready(&mut self) {
        for w in &mut self.waits {
            // The sender never sends; changed() errs once it is dropped.
            while w.changed().await.is_ok() {}
        }
        self.waits.clear();
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut latest = self
            .sequencer
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for k in &self.keys {
            if latest.get(k).is_some_and(|(seq, _)| *seq == self.seq) {
                latest.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn keys(ks: &[&str]) -> BTreeSet<String> {
        ks.iter().map(|k| k.to_string()).collect()
    }

    #[tokio::test]
    async fn same_entity_runs_in_entry_order_others_run_at_once() {
        let s = Arc::new(Sequencer::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        // a1 is slow; a2 must wait for it; b1 must not.
        for (name, key, delay) in [
            ("a1", "a", 50u64),
            ("b1", "b", 0),
            ("a2", "a", 0),
            ("a3", "a", 0),
        ] {
            let mut turn = s.enter(keys(&[key]));
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                turn.ready().await;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                log.lock().unwrap().push(name);
                drop(turn);
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), ["b1", "a1", "a2", "a3"]);
        assert!(s.is_empty(), "no entity is remembered once done");
    }

    #[tokio::test]
    async fn a_message_about_two_entities_waits_for_both() {
        let s = Arc::new(Sequencer::default());
        let first_a = s.enter(keys(&["a"]));
        let first_b = s.enter(keys(&["b"]));
        let mut both = s.enter(keys(&["a", "b"]));
        drop(first_a);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), both.ready())
                .await
                .is_err()
        );
        drop(first_b);
        tokio::time::timeout(Duration::from_secs(1), both.ready())
            .await
            .expect("runs once both are done");
    }
}
