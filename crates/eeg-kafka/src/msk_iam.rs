//! AWS MSK IAM access control: SASL/OAUTHBEARER tokens that are SigV4-presigned
//! `kafka-cluster:Connect` URLs, signed with the credentials of the AWS default chain (on ECS,
//! the task role through the container credentials endpoint).
//!
//! librdkafka asks for a token synchronously on a client's polling thread, while the AWS SDK
//! is async. The signer therefore runs on a private one-thread runtime, and the polling thread
//! waits for it with a deadline: a credentials endpoint that does not answer delays a token
//! refresh by at most that deadline, never a poll forever (librdkafka retries a failed
//! refresh by itself).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::SharedCredentialsProvider;
use rdkafka::client::OAuthToken;

use crate::auth::{TokenError, TokenSource};

/// How much earlier than its real expiry (the signer's `X-Amz-Expires`, 900 s) the token is
/// reported to expire. librdkafka refreshes at 80 % of the reported lifetime, so a 10-minute
/// report renews after 8 minutes and leaves 7 minutes for retries before the broker would
/// see an expired token.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// The shortest lifetime reported, for a token signed with a clock already past most of its
/// validity: librdkafka then asks again within a minute.
const MIN_REPORTED: Duration = Duration::from_secs(60);

/// Signs MSK IAM tokens. Built once per process and shared by all its clients.
pub struct MskIam {
    region: Region,
    credentials: SharedCredentialsProvider,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    timeout: Duration,
    /// Whether a token was signed yet: the first is logged, the refreshes are not.
    signed: AtomicBool,
}

impl Drop for MskIam {
    fn drop(&mut self) {
        // The last client may go away inside an async context, where a blocking runtime
        // shutdown would panic.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl fmt::Debug for MskIam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MskIam")
            .field("region", &self.region.as_ref())
            .finish_non_exhaustive()
    }
}

impl MskIam {
    /// Uses the AWS default credential chain (environment, profile, web identity, ECS
    /// container credentials, EC2 instance metadata). Nothing is fetched here: the chain is
    /// asked when the first token is needed.
    pub fn from_default_chain(region: &str, timeout: Duration) -> Result<MskIam, TokenError> {
        let runtime = runtime()?;
        let region = Region::new(region.to_string());
        let loader = aws_config::defaults(BehaviorVersion::latest()).region(region.clone());
        let config = run_on(&runtime, timeout, "the AWS configuration", loader.load())?;
        let credentials = config
            .credentials_provider()
            .ok_or(TokenError::NoCredentialsProvider)?;
        Ok(MskIam {
            region,
            credentials,
            runtime: Some(runtime),
            timeout,
            signed: AtomicBool::new(false),
        })
    }

    /// Uses the given credentials provider (static keys in tests, an assumed role).
    pub fn with_credentials(
        region: &str,
        credentials: SharedCredentialsProvider,
        timeout: Duration,
    ) -> Result<MskIam, TokenError> {
        Ok(MskIam {
            region: Region::new(region.to_string()),
            credentials,
            runtime: Some(runtime()?),
            timeout,
            signed: AtomicBool::new(false),
        })
    }
}

impl TokenSource for MskIam {
    fn token(&self) -> Result<OAuthToken, TokenError> {
        let sign = aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
            self.region.clone(),
            self.credentials.clone(),
        );
        let runtime = self.runtime.as_ref().expect("runtime until drop");
        let (token, expiry_ms) = run_on(runtime, self.timeout, "the AWS credentials", sign)?
            .map_err(|e| TokenError::Signing(Box::new(e)))?;
        if self.signed.swap(true, Ordering::Relaxed) {
            tracing::debug!("signed a fresh MSK IAM token");
        } else {
            tracing::info!(region = %self.region, "signed the first MSK IAM token");
        }
        Ok(OAuthToken {
            token,
            principal_name: String::new(),
            lifetime_ms: reported_lifetime_ms(expiry_ms),
        })
    }

    fn describe(&self) -> String {
        format!("AWS_MSK_IAM in {}", self.region)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, TokenError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("msk-iam")
        .enable_all()
        .build()
        .map_err(TokenError::Signer)
}

/// Runs `fut` on `runtime` and waits at most `timeout` for it, from any thread: also from a
/// thread that is itself inside an async runtime, where `block_on` would panic.
fn run_on<F>(
    runtime: &tokio::runtime::Runtime,
    timeout: Duration,
    waiting_for: &'static str,
    fut: F,
) -> Result<F::Output, TokenError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let out = tokio::time::timeout(timeout, fut).await;
        let _ = tx.send(out);
    });
    match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Timeout) => Err(TokenError::Timeout {
            waiting_for,
            after: timeout,
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Err(TokenError::Signer(std::io::Error::other("stopped")))
        }
    }
}

/// The lifetime librdkafka is told: well before the token's real expiry, but never in the
/// past (librdkafka refuses a token that has already expired).
fn reported_lifetime_ms(expiry_ms: i64) -> i64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let early = expiry_ms - EXPIRY_MARGIN.as_millis() as i64;
    early.max(now_ms + MIN_REPORTED.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;

    /// How long a presigned token is valid (the signer's `X-Amz-Expires`).
    const TOKEN_VALIDITY: Duration = Duration::from_secs(900);
    use base64::Engine;

    const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn signer(region: &str) -> MskIam {
        let creds = Credentials::new(KEY_ID, SECRET, None, None, "static");
        MskIam::with_credentials(
            region,
            SharedCredentialsProvider::new(creds),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    #[test]
    fn a_token_is_a_presigned_connect_url_for_the_region() {
        let before = now_ms();
        let token = signer("eu-west-1").token().unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.token)
            .expect("the token is unpadded base64url");
        let url = url::Url::parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert_eq!(url.scheme(), "https");
        assert_eq!(url.host_str(), Some("kafka.eu-west-1.amazonaws.com"));
        let q = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("no {name} in {url}"))
        };
        assert_eq!(q("Action"), "kafka-cluster:Connect");
        assert_eq!(q("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
        assert_eq!(q("X-Amz-Expires"), "900");
        let credential = q("X-Amz-Credential");
        assert!(
            credential.starts_with(&format!("{KEY_ID}/")),
            "{credential}"
        );
        assert!(
            credential.ends_with("/eu-west-1/kafka-cluster/aws4_request"),
            "{credential}"
        );
        let signature = q("X-Amz-Signature");
        assert_eq!(signature.len(), 64);
        assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()));
        // The secret signs; it never travels.
        assert!(!url.as_str().contains(SECRET));
        assert!(!url.as_str().contains("wJalrXUtnFEMI"));

        // Reported well before the 15-minute expiry, and in the future.
        let expiry = before + TOKEN_VALIDITY.as_millis() as i64;
        assert!(
            token.lifetime_ms > now_ms() + 9 * 60_000,
            "{}",
            token.lifetime_ms
        );
        assert!(
            token.lifetime_ms <= expiry - 4 * 60_000,
            "{}",
            token.lifetime_ms
        );
    }

    #[test]
    fn each_region_signs_for_its_own_endpoint() {
        let token = signer("us-east-2").token().unwrap();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token.token)
            .unwrap();
        let url = String::from_utf8(url).unwrap();
        assert!(
            url.starts_with("https://kafka.us-east-2.amazonaws.com/"),
            "{url}"
        );
        assert!(url.contains("%2Fus-east-2%2Fkafka-cluster%2F"), "{url}");
    }

    #[test]
    fn tokens_can_be_made_from_inside_an_async_runtime() {
        // librdkafka may call back on a thread that runs a runtime of its own.
        let outer = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = signer("eu-west-1");
        let token = outer.block_on(async { s.token().map(|t| t.token) });
        assert!(token.is_ok(), "{token:?}");
        // And the last owner may be dropped there too.
        outer.block_on(async move { drop(s) });
    }

    #[test]
    fn credentials_that_never_arrive_fail_within_the_deadline() {
        #[derive(Debug)]
        struct Never;
        impl aws_credential_types::provider::ProvideCredentials for Never {
            fn provide_credentials<'a>(
                &'a self,
            ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                aws_credential_types::provider::future::ProvideCredentials::new(
                    std::future::pending(),
                )
            }
        }
        let s = MskIam::with_credentials(
            "eu-west-1",
            SharedCredentialsProvider::new(Never),
            Duration::from_millis(200),
        )
        .unwrap();
        let err = s.token().map(|t| t.token).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Timeout {
                    waiting_for: "the AWS credentials",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("did not arrive within 0.2 s"),
            "{err}"
        );
    }

    #[test]
    fn the_reported_lifetime_is_never_in_the_past() {
        let stale = now_ms() - 1000;
        assert!(reported_lifetime_ms(stale) > now_ms());
        let fresh = now_ms() + TOKEN_VALIDITY.as_millis() as i64;
        assert_eq!(
            reported_lifetime_ms(fresh),
            fresh - EXPIRY_MARGIN.as_millis() as i64
        );
    }

    #[test]
    fn debug_output_carries_no_credentials() {
        let s = format!(
            "{:?} {}",
            signer("eu-west-1"),
            signer("eu-west-1").describe()
        );
        assert!(!s.contains(SECRET) && !s.contains(KEY_ID), "{s}");
    }
}
