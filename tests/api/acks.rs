//! The coalesced acknowledgements ([`AckBatcher`]) on a real channel: what
//! the broker still holds after a channel closes is exactly what was neither
//! acked nor settled, whatever the order of settling.

use std::collections::BTreeSet;

use axn_worker::{
    broker::acks::{AckBatcher, Verdict},
    config::QueueKind,
};
use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{BasicConsumeOptions, BasicGetOptions, BasicQosOptions},
    types::FieldTable,
};
use tokio_util::task::TaskTracker;

use crate::helpers::{TestApp, test_settings, unique_id};

/// Consumes `n` deliveries from `queue` on a fresh channel.
async fn deliveries(app: &TestApp, queue: &str, n: usize) -> (lapin::Channel, Vec<Delivery>) {
    let ch = app.amqp.create_channel().await.unwrap();
    ch.basic_qos(n as u16, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "acks-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        out.push(consumer.next().await.unwrap().unwrap());
    }
    (ch, out)
}

/// Bodies left in `queue` once nothing holds them.
async fn left_in(app: &TestApp, queue: &str, expected: usize) -> BTreeSet<String> {
    app.eventually("closed channel's deliveries back in the queue", || async {
        app.queue_len(queue).await as usize == expected
    })
    .await;
    let mut bodies = BTreeSet::new();
    while let Some(m) = app
        .channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        bodies.insert(String::from_utf8(m.delivery.data).unwrap());
    }
    bodies
}

#[tokio::test]
async fn acks_never_cover_a_running_or_requeued_delivery() {
    let id = unique_id();
    let app = TestApp::connect(id.clone(), test_settings(&id)).await;
    let queue = app.queue(QueueKind::Blacklist);
    crate::helpers::declare_durable(&app.channel, &queue, FieldTable::default()).await;
    for i in 0..6 {
        app.publish_to(&queue, i.to_string().as_bytes(), Default::default())
            .await;
    }

    let (ch, mut d) = deliveries(&app, &queue, 6).await;
    // The senders run on this tracker: waiting for it = every verdict sent.
    let tracker = TaskTracker::new();
    tracker.close();
    let batcher = AckBatcher::new(tracker.clone());
    for m in &d {
        batcher.register(m.delivery_tag);
    }
    let settle = |m: &Delivery, v| batcher.settle(m.delivery_tag, v, m.acker.clone());
    // 0 and 5 are still running; 1, 3, 4 are done and 2 goes back: the acks
    // behind 0 go out at once and none of them covers 0 or 2.
    settle(&d[1], Verdict::Ack);
    settle(&d[2], Verdict::Requeue);
    settle(&d[3], Verdict::Ack);
    settle(&d[4], Verdict::Ack);
    tracker.wait().await;
    // 0 finishes: its ack (a `multiple` one, leading the open deliveries)
    // must not cover 2, requeued, nor anything but 0.
    settle(&d[0], Verdict::Ack);
    tracker.wait().await;
    let _ = ch.close(200, "".into()).await;
    assert_eq!(
        left_in(&app, &queue, 2).await,
        BTreeSet::from(["2".to_owned(), "5".to_owned()]),
        "only the running delivery and the requeued one are left"
    );

    // A run settled together from the oldest open delivery: all acked.
    for i in 0..4 {
        app.publish_to(&queue, i.to_string().as_bytes(), Default::default())
            .await;
    }
    let (ch, rest) = deliveries(&app, &queue, 4).await;
    d = rest;
    let batcher = AckBatcher::new(tracker.clone());
    for m in &d {
        batcher.register(m.delivery_tag);
    }
    let settle = |m: &Delivery| batcher.settle(m.delivery_tag, Verdict::Ack, m.acker.clone());
    // One round: a `multiple` ack for 0-1, a plain one for 3 (2 is running).
    settle(&d[3]);
    settle(&d[1]);
    settle(&d[0]);
    tracker.wait().await;
    let _ = ch.close(200, "".into()).await;
    assert_eq!(
        left_in(&app, &queue, 1).await,
        BTreeSet::from(["2".to_owned()]),
        "the three settled are acked, the running one is back"
    );
}
