//! Kafka client plumbing shared by every client the pipeline creates (the service's consumer
//! and producer, the state reader, the topic probe and admin client, `replay`'s producer).
//!
//! Two things every client context shares:
//! - authentication that librdkafka's properties cannot express: SASL/OAUTHBEARER tokens
//!   produced by the application, as AWS MSK's IAM access control needs. Every client
//!   context holds an [`Auth`] and answers librdkafka's token refresh with
//!   [`Auth::oauth_token`]; clients without OAUTHBEARER never ask.
//! - librdkafka's own log lines and errors, through one de-duplicating logger per process
//!   ([`client_log`]), which also tells the service's health when the brokers are down.

pub mod auth;
pub mod client_log;
mod context;
#[cfg(feature = "msk-iam")]
pub mod msk_iam;

pub use auth::{Auth, AuthContext, OAuthToken, TokenError, TokenSource};
