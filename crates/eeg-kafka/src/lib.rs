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

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::ConsumerContext;

pub mod client_log;
#[cfg(feature = "msk-iam")]
pub mod msk_iam;

/// Produces SASL/OAUTHBEARER tokens. Called on a client's polling thread, so it must return
/// within a bounded time.
pub trait TokenSource: Send + Sync {
    fn token(&self) -> Result<OAuthToken, String>;
    /// What kind of token this is, for the start-up line (never a secret).
    fn describe(&self) -> String;
}

/// How a client authenticates beyond its librdkafka properties: nothing, or with tokens from a
/// [`TokenSource`]. Cheap to clone; every client of a process shares one source.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Option<Arc<dyn TokenSource>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tokens {
            None => f.write_str("Auth(properties only)"),
            Some(t) => write!(f, "Auth({})", t.describe()),
        }
    }
}

impl Auth {
    /// Authentication by librdkafka properties alone (PLAINTEXT, SSL, SCRAM, PLAIN).
    pub fn properties_only() -> Auth {
        Auth::default()
    }

    pub fn with_tokens(source: Arc<dyn TokenSource>) -> Auth {
        Auth {
            tokens: Some(source),
        }
    }

    pub fn uses_tokens(&self) -> bool {
        self.tokens.is_some()
    }

    /// The answer to librdkafka's token refresh event.
    pub fn oauth_token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        match &self.tokens {
            Some(source) => source.token().map_err(|e| {
                // librdkafka retries a failed refresh by itself; the line says why it failed.
                tracing::warn!("cannot make a SASL/OAUTHBEARER token: {e}");
                e.into()
            }),
            None => Err("sasl.mechanism=OAUTHBEARER needs a token source \
                         (KAFKA_SASL_MECHANISM=AWS_MSK_IAM)"
                .into()),
        }
    }

    /// A client with tokens has none until it is polled once: librdkafka asks for the first
    /// token through the client's event queue, so a metadata call made before any poll waits
    /// for its whole timeout. `poll` serves that first request.
    pub fn prime(&self, poll: impl FnOnce(Duration)) {
        if self.uses_tokens() {
            poll(Duration::from_millis(100));
        }
    }

    /// Hands a token straight to a client whose event queue nobody polls for token refreshes
    /// (rdkafka's admin client): enough for a short-lived client, as a token lasts minutes.
    pub fn set_token_now<C: ClientContext>(&self, client: &Client<C>) -> Result<(), String> {
        if !self.uses_tokens() {
            return Ok(());
        }
        let token = self.oauth_token().map_err(|e| e.to_string())?;
        let c = |s: &str| std::ffi::CString::new(s).map_err(|_| "token has a NUL byte".to_string());
        let (value, principal) = (c(&token.token)?, c(&token.principal_name)?);
        let mut err = [0 as std::ffi::c_char; 512];
        // SAFETY: the client pointer is live for the borrow of `client`; the strings outlive
        // the call (librdkafka copies them); no extensions are passed; `err` is writable for
        // its stated length.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_oauthbearer_set_token(
                client.native_ptr(),
                value.as_ptr(),
                token.lifetime_ms,
                principal.as_ptr(),
                std::ptr::null_mut(),
                0,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            // SAFETY: librdkafka NUL-terminates the message within `err`.
            let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
            Err(format!("setting the token: {}", msg.to_string_lossy()))
        }
    }
}

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

pub use rdkafka::client::OAuthToken;

/// A client context that only authenticates, for clients with no callbacks of their own.
#[derive(Debug, Default, Clone)]
pub struct AuthContext(pub Auth);

impl ClientContext for AuthContext {
    answer_token_refresh!(|ctx| ctx.0);
}

impl ConsumerContext for AuthContext {}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl TokenSource for Fixed {
        fn token(&self) -> Result<OAuthToken, String> {
            Ok(OAuthToken {
                token: "t".into(),
                principal_name: String::new(),
                lifetime_ms: 1,
            })
        }
        fn describe(&self) -> String {
            "fixed".into()
        }
    }

    #[test]
    fn without_a_token_source_the_error_names_the_setting() {
        let err = Auth::properties_only()
            .oauth_token()
            .map(|t| t.token)
            .unwrap_err();
        assert!(err.to_string().contains("AWS_MSK_IAM"), "{err}");
    }

    #[test]
    fn priming_polls_only_clients_with_tokens() {
        let mut polled = false;
        Auth::properties_only().prime(|_| polled = true);
        assert!(!polled);
        Auth::with_tokens(Arc::new(Fixed)).prime(|_| polled = true);
        assert!(polled);
    }

    #[test]
    fn the_debug_form_describes_the_source_only() {
        assert_eq!(
            format!("{:?}", Auth::with_tokens(Arc::new(Fixed))),
            "Auth(fixed)"
        );
    }
}
