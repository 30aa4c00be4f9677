//! Authentication that librdkafka's properties cannot express: SASL/OAUTHBEARER tokens made
//! by the application (AWS MSK IAM), shared by every client of a process.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::ConsumerContext;

/// Why no token could be made or handed over.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The broker asks for OAUTHBEARER and nothing makes tokens.
    #[error("sasl.mechanism=OAUTHBEARER needs a token source (KAFKA_SASL_MECHANISM=AWS_MSK_IAM)")]
    NoSource,
    /// What the token needs (the AWS configuration, the credentials) did not come in time.
    #[error("{waiting_for} did not arrive within {} s", after.as_secs_f64())]
    Timeout {
        waiting_for: &'static str,
        after: Duration,
    },
    /// The AWS configuration names no way to get credentials.
    #[error("the AWS configuration has no credentials provider")]
    NoCredentialsProvider,
    /// The signer's own runtime could not start, or stopped.
    #[error("the MSK IAM signer: {0}")]
    Signer(#[source] std::io::Error),
    /// Signing failed (e.g. the credentials were refused by the provider).
    #[error("signing an MSK IAM token: {0}")]
    Signing(#[source] Box<dyn Error + Send + Sync>),
    /// A token or principal with a NUL byte, which librdkafka cannot take.
    #[error("token has a NUL byte")]
    NulByte,
    /// librdkafka refused the token; its reason.
    #[error("setting the token: {0}")]
    Refused(String),
}

/// Produces SASL/OAUTHBEARER tokens. Called on a client's polling thread, so it must return
/// within a bounded time.
pub trait TokenSource: Send + Sync {
    fn token(&self) -> Result<OAuthToken, TokenError>;
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
            None => Err(TokenError::NoSource.into()),
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
    pub fn set_token_now<C: ClientContext>(&self, client: &Client<C>) -> Result<(), TokenError> {
        let Some(source) = &self.tokens else {
            return Ok(());
        };
        let token = source.token()?;
        let c = |s: &str| std::ffi::CString::new(s).map_err(|_| TokenError::NulByte);
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
            Err(TokenError::Refused(msg.to_string_lossy().into_owned()))
        }
    }
}

pub use rdkafka::client::OAuthToken;

/// A client context that only authenticates, for clients with no callbacks of their own.
#[derive(Debug, Default, Clone)]
pub struct AuthContext(pub Auth);

impl ClientContext for AuthContext {
    crate::answer_token_refresh!(|ctx| ctx.0);
}

impl ConsumerContext for AuthContext {}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl TokenSource for Fixed {
        fn token(&self) -> Result<OAuthToken, TokenError> {
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
