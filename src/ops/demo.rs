//! `axn-worker demo`: a guided tour against the local services. It runs the
//! real worker in-process under names of its own (queues `axn-demo.*`, keys
//! `axn-demo:*`, so it never touches a running worker's state), seeds one XB
//! binding, publishes the seed's example message of each kind, and prints,
//! step by step, what changed in Redis and what was published. It removes its
//! queues and keys at the end unless told to keep them. Numbers are shown
//! masked, as in the logs.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lapin::{BasicProperties, options::BasicGetOptions};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use super::namespace;
use crate::{
    amqp::{self, headers::REASON_HEADER, publisher::Publisher},
    config::{QueueKind, Settings},
    phone::mask_digits_in,
    startup::Application,
    store::Keys,
};

/// The privacy number the demo's pool starts with.
const X: &str = "17111526089";
const AGENT_PHONE: &str =
    r#"{"userId": "51218", "newPhone": "13800000001", "oldPhone": "", "operatorUser:": "51218"}"#;
const SEED_BLACKLIST: &str = r#"{"platId": 3, "private_number": "13470110001", "action": "add", "userid": "74705", "type": 0}"#;
const SEED_PHONE: &str = r#"{"userId": "74705", "newPhone": "13812345678", "oldPhone": "13998765432", "operatorUser:": "51218"}"#;
const BAD: &str = r#"{"platId": 3, "private_number": "1347011****", "action": "add", "userid": "74705", "type": 0}"#;

/// The demo's settings: `base` renamed under `axn-demo`, declaring its own
/// queues.
pub fn demo_settings(base: &Settings) -> Settings {
    let mut s = namespace::namespaced(base, "axn-demo");
    for kind in QueueKind::ALL {
        s.queues.get_mut(kind).passive = false;
    }
    s.publish.call_log.exchange = String::new();
    s.publish.call_log.passive = false;
    s.http.listen = "127.0.0.1:0".into();
    // The whole flow on this machine: the API in this process, simulated
    // carriers, no credentials.
    s.platform.enabled = true;
    s.platform.role = crate::config::Role::All;
    for carrier in s.platform.carriers.values_mut() {
        *carrier = crate::config::CarrierKind::Simulated;
    }
    s.platform.password = crate::config::Secret::new("");
    s.platform.bearer_token = crate::config::Secret::new("");
    s
}

/// `demo` arguments.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Leave the demo's queues and keys in place to look at them.
    #[arg(long)]
    keep: bool,
}

impl DemoArgs {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        run(settings, &mut std::io::stdout(), self.keep).await
    }
}

/// Runs the tour, writing to `out`. `keep` leaves the demo's queues and keys.
pub async fn run(base: &Settings, out: &mut dyn Write, keep: bool) -> anyhow::Result<()> {
    let settings = demo_settings(base);
    let keys = Keys::new(settings.redis.key_prefix.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = Application::build(settings.clone(), listener)?.with_instance("demo");
    let addr = app.local_addr()?;
    let health = app.health();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(app.run_until_stopped(stop.clone()));

    let result = async {
        wait(Duration::from_secs(20), "the worker to be ready (are RabbitMQ and Redis running?)", || {
            let ready = health.readiness().ready;
            async move { Ok(ready) }
        })
        .await?;
        let url = settings.redis.url.single_url()?;
        let mut redis = crate::store::client(url, url.starts_with("rediss://"), &settings.redis.tls)?
            .get_multiplexed_async_connection()
            .await?;
        let conn = amqp::connect(&settings, &amqp::connection_name(Some("demo-client"))).await?;
        let channel = conn.create_channel().await?;
        let publisher = Publisher::new(conn.create_channel().await?).await?;
        let publish = |kind: QueueKind, body: &'static str| {
            let queue = settings.queues.get(kind).name.clone();
            let publisher = publisher.clone();
            async move {
                let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
                publisher.publish("", &queue, body.as_bytes(), props).await.context("publish")
            }
        };
        writeln!(out, "axn-worker demo: a worker is running with queues axn-demo.* and Redis keys axn-demo:*\n")?;

        // The platform API, from an empty pool (docs/platform-api.md).
        let store = crate::store::Store::new(&settings.redis)?;
        store.import_number(X, 3, 17, 1, crate::handlers::now_epoch()).await?;
        writeln!(out, "1. An operator adds a privacy number to platform 3's pool (axn-worker pool import):")?;
        writeln!(out, "   {}", mask_digits_in(&format!("{X},3,17,1")))?;
        writeln!(out, "   -> {}\n", crate::ops::pool::list(&store).await?.lines().nth(1).unwrap_or_default())?;

        publish(QueueKind::PhoneHistory, AGENT_PHONE).await?;
        writeln!(out, "2. Agent 51218's phone is recorded (MQ176):")?;
        writeln!(out, "   {}", mask_digits_in(AGENT_PHONE))?;
        wait(Duration::from_secs(10), "the agent's phone", || {
            let mut r = redis.clone();
            let k = keys.user_phone();
            async move { Ok(r.hexists::<_, _, bool>(k, "51218").await?) }
        })
        .await?;
        writeln!(out, "   -> HGET {} 51218 = 138****0001\n", keys.user_phone())?;

        let api = |path: String| async move {
            let (_, body) = crate::ops::probe::http_get(addr, &path).await?;
            anyhow::Ok(serde_json::from_str::<serde_json::Value>(&body)?)
        };
        let bind = format!("{}/BindAxByplatform?userId=51218&platformID=3", crate::platform::BASE_B);
        let bound = api(bind.clone()).await?;
        writeln!(out, "3. The agent gets a privacy number (the seed's BindAxByplatform):")?;
        writeln!(out, "   GET {bind}")?;
        writeln!(out, "   -> {}\n", mask_digits_in(&bound.to_string()))?;

        let call = format!(
            "{}/GetCallNumber?xbid=1&userid=51218&Mapclassid=1&Mapid=123456&Contactmapclassid=0&Contactid=0&Mobile=13700051234&expiration=3",
            crate::platform::BASE_A
        );
        let xb = api(call.clone()).await?;
        anyhow::ensure!(xb["ResultCode"] == 2000, "GetCallNumber failed: {}", mask_digits_in(&xb.to_string()));
        let bindings: std::collections::HashMap<String, String> = redis.hgetall(keys.xb()).await?;
        let (sub_id, binding) = bindings.into_iter().next().context("no XB binding")?;
        writeln!(out, "4. The agent calls customer B through X for 3 s (the seed's GetCallNumber):")?;
        writeln!(out, "   GET {}", mask_digits_in(&call))?;
        writeln!(out, "   -> DataBody {}", mask_digits_in(&xb["DataBody"].to_string()))?;
        writeln!(out, "   -> HGET {} {sub_id} = {}\n", keys.xb(), mask_digits_in(&binding))?;

        let record = format!(r#"{{"platId": 3, "subId": "{sub_id}", "callId": "demo-call-1", "telA": "1380000****", "telX": "{X}", "telB": "1370005****", "callType": 0, "startTime": "2026-11-23 10:00:00", "releaseTime": "2026-11-23 10:03:12"}}"#);
        let queue = settings.queues.call_record.name.clone();
        let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
        publisher.publish("", &queue, record.as_bytes(), props).await.context("publish")?;
        writeln!(out, "5. The carrier reports the call ({}):", settings.queues.call_record.name)?;
        writeln!(out, "   {}", mask_digits_in(&record))?;
        let out_queue = settings.publish.call_log.routing_key.clone();
        let event = take(&channel, &out_queue, "the call-log event").await?;
        let id = event.properties.message_id().as_ref().map(|s| s.to_string()).unwrap_or_default();
        writeln!(out, "   -> published to {out_queue}: {} (message_id {id})", String::from_utf8_lossy(&event.data))?;
        // The mark turns from the publish lease into 1 right after the confirm.
        wait(Duration::from_secs(10), "the dedupe mark", || {
            let mut r = redis.clone();
            let k = keys.calllog("demo-call-1");
            async move { Ok(r.get::<_, Option<String>>(k).await?.as_deref() == Some("1")) }
        })
        .await?;
        writeln!(out, "   -> GET {} = 1 (a second copy of this callId publishes nothing)\n", keys.calllog("demo-call-1"))?;

        writeln!(out, "6. No unbind callback comes: when the binding expires the platform publishes the seed's MQ108 unbind itself, and the worker applies it:")?;
        wait(Duration::from_secs(15), "the unbind", || {
            let mut r = redis.clone();
            let (k, sub) = (keys.xb(), sub_id.clone());
            async move { Ok(!r.hexists::<_, _, bool>(k, sub).await?) }
        })
        .await?;
        let unbound: Option<String> = redis.hget(keys.xb_unbound(), &sub_id).await?;
        let axs: Option<String> = redis.hget(keys.user_axs(), "51218").await?;
        writeln!(out, "   -> HGET {} {sub_id} = (nil)", keys.xb())?;
        writeln!(out, "   -> HGET {} {sub_id} = {}", keys.xb_unbound(), mask_digits_in(&unbound.unwrap_or_default()))?;
        writeln!(out, "   -> HGET {} 51218 = {} (the agent's own number is still shown)\n", keys.user_axs(), mask_digits_in(&axs.unwrap_or_else(|| "(nil)".into())))?;

        publish(QueueKind::Blacklist, SEED_BLACKLIST).await?;
        writeln!(out, "7. Agent 74705 blacklists a B number for outgoing calls (MQ173):")?;
        writeln!(out, "   {}", mask_digits_in(SEED_BLACKLIST))?;
        let black = keys.black(74705, 0);
        wait(Duration::from_secs(10), "the blacklist", || {
            let mut r = redis.clone();
            let k = black.clone();
            async move { Ok(r.sismember::<_, _, bool>(k, "13470110001").await?) }
        })
        .await?;
        writeln!(out, "   -> SMEMBERS {black} = [134****0001]\n")?;

        publish(QueueKind::PhoneHistory, SEED_PHONE).await?;
        writeln!(out, "8. Employee 74705 changes phone (MQ176, with the seed's \"operatorUser:\" key):")?;
        writeln!(out, "   {}", mask_digits_in(SEED_PHONE))?;
        wait(Duration::from_secs(10), "the phone change", || {
            let mut r = redis.clone();
            let k = keys.user_phone();
            async move { Ok(r.hexists::<_, _, bool>(k, "74705").await?) }
        })
        .await?;
        let phones: Vec<String> = redis.zrange(keys.user_phones(74705), 0, -1).await?;
        writeln!(out, "   -> HGET {} 74705 = 138****5678", keys.user_phone())?;
        writeln!(out, "   -> ZRANGE {} = {}", keys.user_phones(74705), mask_digits_in(&phones.join(", ")))?;
        writeln!(out, "   -> HGET {} 139****5432 = 74705 (the old phone still finds its employee)\n", keys.phone_user())?;

        publish(QueueKind::Blacklist, BAD).await?;
        let dlq = settings.queues.blacklist.dlq_name();
        writeln!(out, "9. A producer sends a masked number where a full one is needed:")?;
        writeln!(out, "   {}", mask_digits_in(BAD))?;
        let dead = take(&channel, &dlq, "the dead letter").await?;
        let reason = match dead.properties.headers().as_ref().and_then(|h| h.inner().get(REASON_HEADER)) {
            Some(lapin::types::AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            _ => "?".into(),
        };
        writeln!(out, "   -> moved at once to {dlq} with axn-reason {reason}; never retried, never dropped\n")?;
        writeln!(out, "Done. On a running worker `axn-worker dlq list blacklist` shows such messages and `dlq replay` sends them back.")?;
        let prefix = &settings.redis.key_prefix;
        if keep {
            writeln!(out, "The demo's queues ({}, ...) and keys are left (--keep): `redis-cli --scan --pattern '{prefix}*'`, `rabbitmqctl list_queues name messages | grep {}`.", settings.queues.blacklist.name, settings.queues.blacklist.name.split('.').next().unwrap_or_default())?;
        } else {
            writeln!(out, "The demo's queues ({}, ...) and keys ({prefix}*) are removed now; `axn-worker demo --keep` leaves them to look at.", settings.queues.blacklist.name)?;
        }
        let _ = conn.close(200, "demo done".into()).await;
        Ok::<(), anyhow::Error>(())
    }
    .await;

    stop.cancel();
    let stopped = worker.await.context("the demo worker task failed")?;
    if !keep {
        namespace::cleanup(&settings).await;
    }
    result?;
    stopped
}

async fn wait<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    while !check().await? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Takes the next message of `queue`, waiting up to 10 s.
async fn take(
    channel: &lapin::Channel,
    queue: &str,
    what: &str,
) -> anyhow::Result<lapin::message::Delivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(m) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await?
        {
            return Ok(m.delivery);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
