//! The http-01 responder (RFC 8555 §8.3): a small HTTP/1.1 server on a loopback port that
//! answers `GET /.well-known/acme-challenge/<token>` with the key authorization of a challenge
//! that a flow has published, and 404 otherwise.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const PREFIX: &str = "/.well-known/acme-challenge/";

#[derive(Default)]
struct State {
    answers: RwLock<HashMap<String, String>>,
    served: AtomicU64,
    unknown: AtomicU64,
}

#[derive(Clone)]
pub struct Responder {
    state: Arc<State>,
}

/// Keeps a token published while it lives.
pub struct Published {
    state: Arc<State>,
    token: String,
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Ok(mut answers) = self.state.answers.write() {
            answers.remove(&self.token);
        }
    }
}

impl Responder {
    pub fn publish(&self, token: &str, key_authorization: String) -> Published {
        if let Ok(mut answers) = self.state.answers.write() {
            answers.insert(token.to_string(), key_authorization);
        }
        Published { state: self.state.clone(), token: token.to_string() }
    }

    /// Challenge requests answered with a key authorization.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }

    /// Requests for anything else (an unknown token, another path or method).
    pub fn unknown(&self) -> u64 {
        self.state.unknown.load(Ordering::Relaxed)
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let found = (request.method() == Method::GET || request.method() == Method::HEAD)
            .then(|| request.uri().path().strip_prefix(PREFIX))
            .flatten()
            .and_then(|token| self.state.answers.read().ok()?.get(token).cloned());
        let (status, body) = match found {
            Some(key_authorization) => {
                self.state.served.fetch_add(1, Ordering::Relaxed);
                (StatusCode::OK, key_authorization)
            }
            None => {
                self.state.unknown.fetch_add(1, Ordering::Relaxed);
                (StatusCode::NOT_FOUND, "not found\n".to_string())
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
        response
    }
}

/// Binds `127.0.0.1:port` and serves until the returned task is aborted.
pub async fn start(port: u16) -> Result<(Responder, JoinHandle<()>)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the http-01 responder to {addr}"))?;
    let responder = Responder { state: Arc::new(State::default()) };
    let serving = responder.clone();
    // Runs for as long as the run does; main aborts it at the end.
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors, for instance: let others finish, then go on.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let responder = serving.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let response = responder.answer(&request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((responder, task))
}
