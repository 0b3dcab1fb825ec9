//! HTTP forwarding: the request in origin-form to the vetted address (a pooled connection to it
//! or a new one), hop-by-hop and `Proxy-*` headers removed both ways.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::response::Parts;
use hyper::{Request, Response, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::tunnel::dial;
use super::{ProxyBody, Shared};
use crate::io::{Counted, Counters};
use crate::reason::ProxyReason;
use crate::road::{Leave, OpenEnd};
use crate::upstream::{CloseOnDrop, Pool, PoolKey, Tracked, Upstream};

/// Most header names a `Connection` header may list for removal.
const MAX_CONNECTION_TOKENS: usize = 32;

/// A forwarded request's response head, its body still to come.
#[derive(Debug)]
pub(super) struct Forwarded {
    parts: Parts,
    body: Incoming,
    close: CloseOnDrop,
    reuse: (Arc<Pool>, PoolKey, Upstream),
}

impl Forwarded {
    /// The response to the client; the body's end sends the close record, finishing `end`.
    pub(super) fn respond(self, end: Option<Box<dyn OpenEnd>>) -> Response<ProxyBody> {
        let mut close = self.close;
        close.end = end;
        let body = Tracked {
            inner: self.body,
            close,
            reuse: Some(self.reuse),
        };
        Response::from_parts(self.parts, body.boxed())
    }
}

/// Sends `req` to `key.dialed` and waits for the response head. On failure, answers the close
/// guard back with the reason.
pub(super) async fn forward(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    key: PoolKey,
    mut close: CloseOnDrop,
    leave: &Leave,
) -> Result<Forwarded, (CloseOnDrop, ProxyReason)> {
    let Ok(host) = HeaderValue::from_str(&key.authority) else {
        return Err((close, ProxyReason::UpstreamFailed));
    };
    // INVARIANT (vetted-dial): a pooled connection was dialed to exactly `key.dialed`, the
    // address this request's own decision vetted, for the same agent and authority.
    let pooled = match shared.pool.take(&key, shared.deps.limits.idle_timeout) {
        Some(mut upstream) => match upstream.sender.ready().await {
            Ok(()) => Some(upstream),
            Err(_) => None,
        },
        None => None,
    };
    let mut upstream = match pooled {
        Some(upstream) => upstream,
        None => {
            let stream = match dial(shared, key.dialed, leave).await {
                Ok(stream) => stream,
                Err(reason) => return Err((close, reason)),
            };
            let counters = Arc::new(Counters::default());
            let io = TokioIo::new(Counted::new(stream, Arc::clone(&counters)));
            let Ok((sender, connection)) = hyper::client::conn::http1::handshake(io).await else {
                return Err((close, ProxyReason::UpstreamFailed));
            };
            tokio::spawn(connection);
            Upstream {
                sender,
                counters,
                idle_since: Instant::now(),
            }
        }
    };
    close.measure(&upstream.counters);
    let (mut parts, body) = req.into_parts();
    let origin_form = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.uri = origin_form;
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.insert(header::HOST, host);
    let request = Request::from_parts(parts, body);
    let idle = shared.deps.limits.idle_timeout;
    match tokio::time::timeout(idle, upstream.sender.send_request(request)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            close.set_reason(ProxyReason::Closed);
            Ok(Forwarded {
                parts,
                body,
                close,
                reuse: (Arc::clone(&shared.pool), key, upstream),
            })
        }
        Ok(Err(_)) => Err((close, ProxyReason::UpstreamFailed)),
        Err(_) => Err((close, ProxyReason::UpstreamTimeout)),
    }
}

/// Removes hop-by-hop headers, the ones `Connection` names, and every `Proxy-*` header, so
/// `Proxy-Authorization` never reaches a target.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .take(MAX_CONNECTION_TOKENS)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &[(&str, &str)], kept: &[&str]) {
        let mut headers = HeaderMap::new();
        for (name, value) in input {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut got: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        got.sort_unstable();
        assert_eq!(got, kept);
    }

    #[test]
    fn hop_by_hop_and_proxy_headers_are_removed() {
        check(
            &[
                ("host", "a"),
                ("accept", "*/*"),
                ("proxy-authorization", "Basic x"),
                ("proxy-connection", "keep-alive"),
                ("connection", "x-secret, keep-alive"),
                ("x-secret", "1"),
                ("keep-alive", "5"),
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "websocket"),
                ("x-request-id", "r1"),
            ],
            &["accept", "host", "x-request-id"],
        );
    }
}
