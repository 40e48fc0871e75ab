//! One download of one URL: a conditional GET (ETag, Last-Modified) with reqwest on rustls, the
//! body read chunk by chunk up to a cap, the whole under a timeout.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};

use super::CopyMeta;
use super::update::Failure;

/// What a download brought.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// 304: the copy serving is current.
    NotModified,
    /// A new body.
    Body {
        /// The text.
        text: String,
        /// Its `ETag`, if the server sent one.
        etag: Option<String>,
        /// Its `Last-Modified`, if the server sent one.
        last_modified: Option<String>,
    },
}

/// The HTTP client every download shares (connections are pooled): rustls with the ring
/// provider, the system's roots (rustls-platform-verifier), redirects followed (up to 10), the
/// `HTTPS_PROXY`-style environment honoured.
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    // Installed once per process; an error means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("sinkhole/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Fetches `url`, conditionally on the copy serving (`previous`), taking at most `timeout` and
/// reading at most `max_bytes`.
pub(crate) async fn fetch(
    client: &reqwest::Client,
    url: &str,
    previous: Option<&CopyMeta>,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Fetched, Failure> {
    match tokio::time::timeout(timeout, download(client, url, previous, max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout),
    }
}

async fn download(
    client: &reqwest::Client,
    url: &str,
    previous: Option<&CopyMeta>,
    max_bytes: u64,
) -> Result<Fetched, Failure> {
    let mut request = client.get(url);
    if let Some(meta) = previous {
        if let Some(etag) = &meta.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &meta.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified);
        }
    }
    let mut response = request.send().await.map_err(network)?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && previous.is_some() {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(Failure::Status(status.as_u16()));
    }
    if let Some(length) = response.content_length()
        && length > max_bytes
    {
        return Err(Failure::TooLarge(length));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(Failure::TooLarge((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(body).map_err(|_| Failure::NotText)?;
    Ok(Fetched::Body {
        text,
        etag,
        last_modified,
    })
}

/// A transport error, as the operator reads it: the chain of causes (reqwest's own message is
/// only "error sending request").
fn network(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Timeout;
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    Failure::Network(text)
}
