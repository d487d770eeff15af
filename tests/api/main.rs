//! Integration tests: the real application against the real RabbitMQ and
//! Redis on this machine. Every test spawns its own worker with its own queue
//! names and key prefix (see `helpers`), so they run in parallel and leave
//! nothing behind.

mod acks;
mod aliyun;
mod amqp_input;
mod asyncapi;
mod blacklist;
mod call_record;
mod cli;
mod cluster;
mod contract_tools;
mod deploy;
mod docs;
mod failover;
mod failures;
mod faults;
mod helpers;
mod hostile;
mod http_timeouts;
mod io_loop;
mod lifecycle;
mod mapping;
mod once_per_call;
mod operate;
mod operator;
mod ordering;
mod phone_history;
mod platform;
mod platform_hostile;
mod proxy;
mod publish_targets;
mod rabbit_cluster;
mod raw_amqp;
mod tls;
mod xb_unbind;
