//! Outbound HTTP with a deadline, over `worker::Fetch`.
//!
//! Workers' fetch has no timeout of its own: the request races a `Delay`, and
//! the loser is aborted so no connection is left behind.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// What came back: the status, the headers the caller asked to keep, the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    pub headers: Vec<(String, Option<String>)>,
    pub body: String,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No complete answer within the deadline; the request was aborted.
    Timeout(Duration),
    /// The connection failed (refused, reset, DNS) or the request was invalid.
    Transport(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Timeout(t) => write!(f, "no answer within {} ms", t.as_millis()),
            FetchError::Transport(why) => write!(f, "connection failed: {why}"),
        }
    }
}

/// A POST of `body` with exactly these headers. (Its own function rather than
/// `request(Method::Post, ..)`: a method known here keeps the code for the
/// others out of functions that only post.)
pub fn post(url: &str, headers: &[(&str, &str)], body: String) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(header_map(headers)?)
        .with_body(Some(body.into()));
    Request::new_with_init(url, &init)
}

/// A body-less request (GET, HEAD, ...) with exactly these headers.
pub fn request(method: Method, url: &str, headers: &[(&str, &str)]) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(header_map(headers)?);
    Request::new_with_init(url, &init)
}

fn header_map(headers: &[(&str, &str)]) -> worker::Result<Headers> {
    let map = Headers::new();
    for (name, value) in headers {
        map.set(name, value)?;
    }
    Ok(map)
}

/// Sends `request` and reads the whole body, or gives up after `timeout`.
/// `keep_headers` names the response headers the caller needs.
pub async fn send(
    request: Request,
    timeout: Duration,
    keep_headers: &[&str],
) -> Result<Fetched, FetchError> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let mut response = Fetch::Request(request).send_with_signal(&signal).await?;
        let status = response.status_code();
        let headers = keep_headers
            .iter()
            .map(|name| {
                let value = response.headers().get(name).ok().flatten();
                (name.to_string(), value)
            })
            .collect();
        let body = response.text().await?;
        Ok::<_, worker::Error>(Fetched {
            status,
            headers,
            body,
        })
    };
    // Bound to a name so the select temporary is dropped before `signal`.
    let outcome = match select(Box::pin(call), Delay::from(timeout)).await {
        Either::Left((Ok(fetched), _)) => Ok(fetched),
        Either::Left((Err(e), _)) => Err(FetchError::Transport(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(FetchError::Timeout(timeout))
        }
    };
    outcome
}
