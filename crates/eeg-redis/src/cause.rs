//! Why Redis could not be written to, in one line for an operator: what is wrong and where to
//! look, then the client's own words. The writer logs each distinct cause once per outage.

use redis::RedisError;

/// What is wrong, as far as the service can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    Dns,
    Refused,
    Timeout,
    Authentication,
    /// The server is a cluster and the service was not told.
    IsCluster,
    /// The service was told of a cluster and the server is not one.
    NotCluster,
    Untrusted,
    WrongName,
    Tls,
    Closed,
    /// The writer's own runtime did not start.
    Runtime,
    /// A record without the fields the keys are made from (never expected: the service wrote it).
    BadRecord,
    Other,
}

impl Problem {
    /// The operator's half of the line.
    pub fn hint(self) -> &'static str {
        match self {
            Problem::Dns => {
                "cannot resolve the host name (DNS; in a VPC, the endpoint's name and the VPC's DNS settings)"
            }
            Problem::Refused => "connection refused (nothing listens on that port)",
            Problem::Timeout => {
                "no answer in time (a security group or network ACL that drops the traffic, or an overloaded server)"
            }
            Problem::Authentication => {
                "authentication failed (REDIS_PASSWORD, REDIS_USERNAME and the user's ACL)"
            }
            Problem::IsCluster => "the server is a cluster: set REDIS_CLUSTER=true",
            Problem::NotCluster => "the server is not a cluster: unset REDIS_CLUSTER",
            Problem::Untrusted => {
                "the server's TLS certificate is not trusted (its CA is neither in the system's store nor in REDIS_TLS_CA_FILE)"
            }
            Problem::WrongName => {
                "the server's TLS certificate does not name the host in REDIS_URL (use the endpoint's DNS name)"
            }
            Problem::Tls => {
                "TLS failed (rediss:// needs in-transit encryption on the server, redis:// needs it off)"
            }
            Problem::Closed => {
                "the connection was closed (rediss:// against a server without TLS, or the server went away)"
            }
            Problem::Runtime => "cannot start its runtime",
            Problem::BadRecord => "a record without session_id or end_ms was not written",
            Problem::Other => "failed",
        }
    }
}

/// A failure: the problem and the words of whatever reported it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{detail}", problem.hint(), if detail.is_empty() { "" } else { ": " })]
pub struct Cause {
    pub problem: Problem,
    pub detail: String,
}

impl Cause {
    pub fn new(problem: Problem, detail: String) -> Cause {
        Cause { problem, detail }
    }

    /// Tells the problem from the client's error (`cluster`: the service was told of one).
    pub fn of(e: &RedisError, cluster: bool) -> Cause {
        let text = e.to_string();
        let lower = text.to_lowercase();
        let problem = if lower.contains("failed to lookup address")
            || lower.contains("name or service not known")
            || lower.contains("no address associated")
            || lower.contains("temporary failure in name resolution")
        {
            Problem::Dns
        } else if e.is_connection_refusal() && lower.contains("refused") {
            Problem::Refused
        } else if e.is_timeout() || lower.contains("timed out") || lower.contains("timeout") {
            Problem::Timeout
        } else if matches!(e.kind(), redis::ErrorKind::AuthenticationFailed)
            || lower.contains("wrongpass")
            || lower.contains("noauth")
            || lower.contains("invalid username-password")
        {
            Problem::Authentication
        } else if lower.contains("moved") && !cluster {
            Problem::IsCluster
        } else if lower.contains("cluster support disabled")
            || (cluster && lower.contains("cluster_slots"))
        {
            Problem::NotCluster
        } else if lower.contains("unknownissuer")
            || lower.contains("unknown issuer")
            || lower.contains("self-signed")
            || lower.contains("self signed")
        {
            Problem::Untrusted
        } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
            Problem::WrongName
        } else if lower.contains("tls") || lower.contains("ssl") || lower.contains("certificate") {
            Problem::Tls
        } else if e.is_connection_dropped() || lower.contains("connection reset") {
            Problem::Closed
        } else {
            Problem::Other
        };
        Cause::new(problem, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_reads_hint_then_detail() {
        let c = Cause::new(Problem::Dns, "redis.internal has no address".into());
        assert_eq!(
            c.to_string(),
            "cannot resolve the host name (DNS; in a VPC, the endpoint's name and the VPC's DNS settings): redis.internal has no address"
        );
        assert_eq!(
            Cause::new(Problem::BadRecord, String::new()).to_string(),
            "a record without session_id or end_ms was not written"
        );
    }

    #[test]
    fn the_clients_words_tell_the_problem() {
        let err = |kind, text: &'static str| RedisError::from((kind, "x", text.to_string()));
        let auth = err(redis::ErrorKind::AuthenticationFailed, "WRONGPASS invalid");
        assert_eq!(Cause::of(&auth, false).problem, Problem::Authentication);
        let moved = err(redis::ErrorKind::Client, "MOVED 3999 127.0.0.1:6381");
        assert_eq!(Cause::of(&moved, false).problem, Problem::IsCluster);
        let slots = err(redis::ErrorKind::Client, "ERR cluster support disabled");
        assert_eq!(Cause::of(&slots, true).problem, Problem::NotCluster);
        let issuer = err(
            redis::ErrorKind::Client,
            "invalid peer certificate: UnknownIssuer",
        );
        assert_eq!(Cause::of(&issuer, false).problem, Problem::Untrusted);
    }
}
