//! The service against a real Kafka-protocol broker: `KAFKA_BOOTSTRAP_SERVERS` when set
//! (any Kafka-compatible broker), otherwise the local tansu broker that `scripts/broker`
//! starts. Every test uses its own topics and consumer group, so tests run in parallel and
//! against a shared broker. One module per area; `support` holds what they share.

mod support;
// What the tests of files share with these: the Chromium the pages are tested with.
#[path = "../common/mod.rs"]
mod common;

mod auth;
mod chaos;
mod dead_letters;
mod delivery;
mod epochs;
mod health;
mod memory;
mod outages;
mod protobuf;
mod redis_cache;
mod replay;
mod tail;
mod topics;
