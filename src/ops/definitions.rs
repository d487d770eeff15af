//! `axn-worker definitions`: the worker's topology as a RabbitMQ definitions
//! file (`rabbitmqctl import_definitions`, or `load_definitions` at boot), for
//! SREs who own the topology and run the worker with `passive = true`. It is
//! generated from the same `amqp::topology::specs` the worker declares, so
//! the two cannot drift; `deploy/rabbitmq/definitions.json` is this output for
//! the shipped config.toml (a test keeps it so).

use lapin::types::AMQPValue;
use serde_json::{Map, Value, json};

use crate::{amqp::topology, config::Settings};

fn to_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::Boolean(b) => json!(b),
        other => Value::String(format!("{other:?}")),
    }
}

/// `definitions` arguments.
#[derive(clap::Args)]
pub struct DefinitionsArgs {
    /// The vhost to put the queues in.
    #[arg(long, default_value = "/")]
    vhost: String,
}

impl DefinitionsArgs {
    pub fn run(self, settings: &Settings) -> anyhow::Result<()> {
        outln!("{:#}", definitions(settings, &self.vhost));
        Ok(())
    }
}

/// The definitions document for `settings`, on vhost `vhost`.
pub fn definitions(settings: &Settings, vhost: &str) -> Value {
    let queues: Vec<Value> = topology::specs(settings)
        .into_iter()
        .map(|s| {
            let args: Map<String, Value> =
                s.arguments.inner().iter().map(|(k, v)| (k.as_str().to_owned(), to_json(v))).collect();
            json!({"name": s.name, "vhost": vhost, "durable": true, "auto_delete": false, "arguments": args})
        })
        .collect();
    json!({"queues": queues, "exchanges": [], "bindings": []})
}
