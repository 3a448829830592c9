//! Connecting: URL forms, client timeouts, and one connection type over
//! standalone and Cluster.

use crate::ConnectError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use std::time::Duration;

/// The scheme that selects Redis Cluster.
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Where to connect, parsed from the URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A `redis://`, `rediss://` or `unix://` URL, handed to redis-rs as is.
    Standalone(String),
    /// One `redis://` URL per seed node.
    Cluster(Vec<String>),
}

/// Parses `redis://host:port[/db]` or `redis+cluster://[user:pass@]h:p,h:p,...`.
pub(crate) fn parse_target(url: &str) -> Result<Target, ConnectError> {
    let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
        return if url.contains("://") {
            Ok(Target::Standalone(url.to_owned()))
        } else {
            Err(ConnectError::Url(
                "expected redis://host:port[/db] or redis+cluster://host:port,host:port".into(),
            ))
        };
    };
    // Credentials, when given, apply to every node (Cluster nodes share ACLs).
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, rest),
    };
    let hosts = hosts.trim_end_matches('/');
    if hosts.contains('/') {
        return Err(ConnectError::Url(
            "a redis+cluster:// URL takes no database number (Cluster has only database 0)".into(),
        ));
    }
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| match credentials {
            Some(credentials) => format!("redis://{credentials}@{host}"),
            None => format!("redis://{host}"),
        })
        .collect();
    if nodes.is_empty() {
        return Err(ConnectError::Url(
            "redis+cluster:// needs at least one host:port".into(),
        ));
    }
    Ok(Target::Cluster(nodes))
}

/// A connection to standalone Redis or to a Cluster. Both are multiplexed and
/// cheap to clone (one socket per node, shared): each operation clones one.
#[derive(Clone)]
pub(crate) enum Conn {
    /// Reconnects in the background after a dropped connection.
    Standalone(ConnectionManager),
    /// Follows MOVED/ASK and refreshes the slot map on its own.
    Cluster(ClusterConnection),
}

/// Opens a connection whose connection attempts time out after `timeout`
/// (and, in Cluster, each retried request too; the store bounds every call).
pub(crate) async fn open(target: &Target, timeout: Duration) -> Result<Conn, ConnectError> {
    let unavailable = |e: redis::RedisError| ConnectError::Unavailable(e.to_string());
    match target {
        Target::Standalone(url) => {
            let client =
                redis::Client::open(url.as_str()).map_err(|e| ConnectError::Url(e.to_string()))?;
            // One connection attempt per reconnection, no backoff: redis-rs's
            // backoff starts at a second, during which every call would wait
            // and time out. Without it a refused connection fails the call at
            // once (Unavailable), the next call tries again, and a returning
            // server is picked up by the first request after it is back.
            //
            // No response timeout of redis-rs's own: every call already runs
            // under the store's deadline (`RedisStore::call`), and a second
            // timer per round trip is measurable CPU (docs/performance.md).
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(timeout)
                .set_number_of_retries(0);
            let manager = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(unavailable)?;
            Ok(Conn::Standalone(manager))
        }
        Target::Cluster(nodes) => {
            let client = ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // The default is 16 retries with growing waits, far past any
                // sensible request deadline; the store's own timeout bounds
                // each call, so a few quick retries (for MOVED during a
                // failover or resharding) are all that helps.
                .retries(3)
                .min_retry_wait(10)
                .max_retry_wait(200)
                .build()
                .map_err(|e| ConnectError::Url(e.to_string()))?;
            let connection = client.get_async_connection().await.map_err(unavailable)?;
            Ok(Conn::Cluster(connection))
        }
    }
}

impl Conn {
    /// `host:port` of every primary that serves slots (Cluster), from
    /// `CLUSTER SLOTS`; `None` in standalone mode.
    pub(crate) async fn primaries(&mut self) -> RedisResult<Option<Vec<(String, u16)>>> {
        let Conn::Cluster(cluster) = self else {
            return Ok(None);
        };
        let reply = cluster
            .route_command(
                &redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            )
            .await?;
        let ranges: Vec<Vec<Value>> = redis::from_redis_value(&reply)?;
        let mut primaries = Vec::new();
        for range in ranges {
            // [start, end, [host, port, id, ...], replicas...]
            let Some(primary) = range.get(2) else {
                continue;
            };
            let node: Vec<Value> = redis::from_redis_value(primary)?;
            let (Some(host), Some(port)) = (node.first(), node.get(1)) else {
                continue;
            };
            let host: String = redis::from_redis_value(host)?;
            let port: u16 = redis::from_redis_value(port)?;
            if !primaries.contains(&(host.clone(), port)) {
                primaries.push((host, port));
            }
        }
        Ok(Some(primaries))
    }

    /// Sends `cmd` to one node by address (Cluster), or to the server.
    pub(crate) async fn on_node(
        &mut self,
        cmd: &Cmd,
        node: Option<&(String, u16)>,
    ) -> RedisResult<Value> {
        match (self, node) {
            (Conn::Cluster(cluster), Some((host, port))) => {
                let routing = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                cluster
                    .route_command(cmd, RoutingInfo::SingleNode(routing))
                    .await
            }
            (conn, _) => conn.req_packed_command(cmd).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_commands(cmd, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_mode() {
        assert_eq!(
            parse_target("redis://127.0.0.1:6379/2").unwrap(),
            Target::Standalone("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            parse_target("redis+cluster://127.0.0.1:7001, 127.0.0.1:7002,").unwrap(),
            Target::Cluster(vec![
                "redis://127.0.0.1:7001".into(),
                "redis://127.0.0.1:7002".into()
            ])
        );
        assert_eq!(
            parse_target("redis+cluster://u:p@a:1,b:2/").unwrap(),
            Target::Cluster(vec!["redis://u:p@a:1".into(), "redis://u:p@b:2".into()])
        );
        assert!(parse_target("redis+cluster://").is_err());
        assert!(parse_target("redis+cluster://a:1/3").is_err());
        assert!(parse_target("localhost:6379").is_err());
    }
}
