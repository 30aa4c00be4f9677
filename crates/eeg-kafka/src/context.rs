//! The callbacks every client context of the pipeline shares, as one macro.

/// The items of an `impl ClientContext` that every client context of the pipeline shares:
/// the answer to librdkafka's token refreshes from an [`crate::Auth`] (`|ctx| ctx.auth` names where
/// the context keeps it), and librdkafka's `log`, `error` and `stats_raw` callbacks through
/// the process's de-duplicating logger ([`crate::client_log`]; a context's own `stats` still gets
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
