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
#[cfg(feature = "msk-iam")]
pub mod msk_iam;

/// The items of an `impl ClientContext` that every client context of the pipeline shares:
/// the answer to librdkafka's token refreshes from an [`Auth`] (`|ctx| ctx.auth` names where
/// the context keeps it), and librdkafka's `log`, `error` and `stats_raw` callbacks through
/// the process's de-duplicating logger ([`client_log`]; a context's own `stats` still gets
/// the statistics). So all clients authenticate the same way, and a failure repeated by
/// every client, many times a second, is logged once.
///
/// `answer_token_refresh!(only |ctx| ctx.auth)` is the token refresh alone, for a context
/// with `log` and `error` callbacks of its own.
#[macro_export]
macro_rules! answer_token_refresh {
    (|$ctx:ident| $auth:expr) => {
        $crate::answer_token_refresh!(only | $ctx | $auth);

        fn log(&self, level: $crate::client_log::RDKafkaLogLevel, fac: &str, message: &str) {
            $crate::client_log::log(level, fac, message);
        }

        fn error(&self, error: $crate::client_log::KafkaError, reason: &str) {
            $crate::client_log::error(&error, reason);
        }

        fn stats_raw(&self, statistics: &[u8]) {
            if let Some(statistics) = $crate::client_log::statistics(statistics) {
                <Self as $crate::client_log::ClientContext>::stats(self, statistics);
            }
        }
    };
    (only |$ctx:ident| $auth:expr) => {
        const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

        fn generate_oauth_token(
            &self,
            _config: Option<&str>,
        ) -> Result<$crate::OAuthToken, Box<dyn std::error::Error>> {
            let $ctx = self;
            $auth.oauth_token()
        }
    };
}

pub use auth::{Auth, AuthContext, OAuthToken, TokenError, TokenSource};
