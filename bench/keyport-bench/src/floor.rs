//! The floor: a proxy that only forwards and streams, on the same stack
//! as `keyport serve` (hyper-util's server, axum, reqwest with the same
//! client settings). Keyport is measured against it, so the ratios show
//! the cost of what Keyport adds: token check, key injection, header
//! filtering, CORS, the usage reader and the request log.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::header::{self, HeaderMap};
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::error::BenchError;

/// Same idle time for pooled upstream connections as Keyport's client.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Hop-by-hop headers (RFC 9110, section 7.6.1), which a proxy must not
/// forward.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct Floor {
    client: reqwest::Client,
    /// Scheme and authority of the mock, without a trailing slash.
    upstream: String,
}

/// Serves the floor on `listener`, forwarding every request to `upstream`
/// plus the request's path and query, until the process ends.
pub async fn serve(listener: TcpListener, upstream: String) -> Result<(), BenchError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .build()
        .map_err(|error| BenchError::command("the floor's HTTP client", error.to_string()))?;
    let floor = Arc::new(Floor {
        client,
        upstream: upstream.trim_end_matches('/').to_string(),
    });
    let router = Router::new().fallback(forward).with_state(floor);
    let service = TowerToHyperService::new(router);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(State(floor): State<Arc<Floor>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let url = format!("{}{target}", floor.upstream);
    let mut headers = parts.headers;
    remove_hop_by_hop(&mut headers);
    headers.remove(header::HOST);

    let mut upstream_request = floor.client.request(parts.method, url).headers(headers);
    if !http_body::Body::is_end_stream(&body) {
        upstream_request =
            upstream_request.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let upstream = match upstream_request.send().await {
        Ok(upstream) => upstream,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };

    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    remove_hop_by_hop(&mut headers);
    let mut response = Response::new(Body::from_stream(upstream.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::api::Api;
    use crate::client::{self, StreamCall, Workload};
    use crate::mock;

    async fn listener() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        (listener, address)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_pass_through_the_floor_whole() {
        let (mock_listener, mock_address) = listener().await;
        let mock_task = tokio::spawn(mock::serve(mock_listener));
        let (floor_listener, floor_address) = listener().await;
        let floor_task = tokio::spawn(serve(floor_listener, mock_address));

        for api in Api::ALL {
            let query = api
                .fixed_query(true)
                .map_or(String::new(), |q| format!("{q}&"));
            let url = format!(
                "{floor_address}{}?{query}events=5&interval_us=20000",
                api.mock_path(true)
            );
            let call =
                StreamCall::new(url, &api.headers("kp_test"), api.request_body(true)).unwrap();
            let (samples, _) = client::run(Arc::new(call), 2, Workload::Count(2))
                .await
                .unwrap();
            assert_eq!(samples.len(), 4, "{api:?}");
            for sample in samples {
                assert_eq!(sample.error, None, "{api:?}");
                assert_eq!(sample.events, 5, "{api:?}");
                assert!(sample.ttfb.is_some(), "{api:?}");
                // The mock paces events 20 ms apart, so a stream that was
                // not buffered spans about 80 ms between its first and last
                // event. Half of that leaves room for a loaded machine.
                let span = sample.last_event.unwrap() - sample.first_event.unwrap();
                assert!(
                    span >= std::time::Duration::from_millis(40),
                    "{api:?}: {span:?}"
                );
            }
        }
        mock_task.abort();
        floor_task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_json_passes_through_the_floor() {
        let (mock_listener, mock_address) = listener().await;
        let mock_task = tokio::spawn(mock::serve(mock_listener));
        let (floor_listener, floor_address) = listener().await;
        let floor_task = tokio::spawn(serve(floor_listener, mock_address));

        let body = format!("{{\"model\":\"x\",\"pad\":\"{}\"}}", "x".repeat(1 << 20));
        let response = reqwest::Client::new()
            .post(format!("{floor_address}/v1/chat/completions?size=1048576"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.bytes().await.unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        mock_task.abort();
        floor_task.abort();
    }
}
