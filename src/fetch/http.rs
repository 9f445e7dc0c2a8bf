//! The HTTP side of `usctl fetch`: one blocking client (ureq, rustls) shared by the workers, and
//! a GET that may ask for the rest of a file (`Range: bytes=N-`), answered as where the body
//! starts in the file. Statuses are answers, not errors: the caller decides what each means.

use std::io::Read;
use std::time::Duration;

/// Redirects followed before a download fails.
pub const MAX_REDIRECTS: u32 = 5;
/// Connecting (name resolution and TLS included) may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection that sends nothing for this long is given up (the transfer counts as cut).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What a server answered to a GET.
pub enum Answer {
    /// 200 (`start` 0) or 206: the body holds the file's bytes from `start` on; `total` is the
    /// file's size when the server says it (Content-Length of a 200, the `/total` of a 206's
    /// Content-Range).
    Bytes { start: u64, total: Option<u64>, body: Box<dyn Read + Send> },
    /// 416: the range asked for is not in the file.
    RangeNotSatisfiable,
    /// Any other status, with its reason phrase (e.g. 404 "Not Found").
    Status { code: u16, reason: String },
}

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// User-Agent `usctl/<version>`, the timeouts above, redirects followed up to `MAX_REDIRECTS`,
    /// proxies from the usual environment variables (`HTTPS_PROXY`, `NO_PROXY`, …).
    pub fn new() -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(MAX_REDIRECTS)
            .user_agent(format!("usctl/{}", env!("CARGO_PKG_VERSION")))
            .timeout_resolve(Some(CONNECT_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(IDLE_TIMEOUT))
            .timeout_per_write(Some(IDLE_TIMEOUT))
            .build();
        Client { agent: config.into() }
    }

    /// GETs `url`, from byte `from` on when it is not 0. Err: why no answer came (no connection,
    /// too many redirects, a timeout, a malformed answer).
    pub fn get(&self, url: &str, from: u64) -> Result<Answer, String> {
        // Identity: a compressed body would not be the file's bytes, nor a range of them.
        let mut request = self.agent.get(url).header("Accept-Encoding", "identity");
        if from > 0 {
            request = request.header("Range", format!("bytes={from}-"));
        }
        let response = request.call().map_err(|e| match e {
            ureq::Error::TooManyRedirects => format!("more than {MAX_REDIRECTS} redirects"),
            e => e.to_string(),
        })?;
        let status = response.status();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        match status.as_u16() {
            200 => {
                let total = header("content-length").and_then(|v| v.trim().parse().ok());
                Ok(Answer::Bytes { start: 0, total, body: Box::new(response.into_body().into_reader()) })
            }
            206 => {
                let range = header("content-range").ok_or("the server answered 206 (partial content) without a Content-Range")?;
                let (start, total) = content_range(&range)
                    .ok_or_else(|| format!("the server answered 206 with Content-Range '{range}', which is not 'bytes START-END/TOTAL'"))?;
                Ok(Answer::Bytes { start, total, body: Box::new(response.into_body().into_reader()) })
            }
            416 => Ok(Answer::RangeNotSatisfiable),
            code => Ok(Answer::Status { code, reason: status.canonical_reason().unwrap_or("").to_string() }),
        }
    }
}

/// (start, total) of a Content-Range `bytes START-END/TOTAL` (TOTAL may be `*`: unknown).
pub fn content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.trim().split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 500-999/1000"), Some((500, Some(1000))));
        assert_eq!(content_range("bytes 0-0/*"), Some((0, None)));
        assert_eq!(content_range("bytes 5-4/10"), None);
        assert_eq!(content_range("bytes */1000"), None);
        assert_eq!(content_range("items 0-1/2"), None);
    }
}
