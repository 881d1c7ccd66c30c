//! A byte cap on what the Kubernetes API answers. kube-rs reads a list answer whole and a
//! watch line by line with no bound, so a tower layer on the client's service counts the
//! bytes of every answer as they stream in: a list or get answer may be at most the cap,
//! a watch (one long answer that lives for minutes) at most the cap per event line.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::{Request, Response, Uri};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tower::BoxError;

/// Default of [`super::ClusterSourceConfig::max_response_bytes`]: 256 MiB, far above a
/// page of 500 objects.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 256 << 20;

/// An answer (or one watch event) grew past the cap.
#[derive(Debug, thiserror::Error)]
#[error("the Kubernetes API answered more than {cap_bytes} bytes{what}, the limit: raise kubernetes.max_response_bytes")]
pub struct TooLarge {
    /// The cap that was hit.
    pub cap_bytes: u64,
    what: &'static str,
}

/// The layer: wraps every answer's body in a [`CappedBody`].
#[derive(Debug, Clone, Copy)]
pub struct CapLayer {
    cap_bytes: u64,
}

impl CapLayer {
    /// Answers longer than `cap_bytes` (watch events, each) fail.
    pub fn new(cap_bytes: u64) -> Self {
        CapLayer { cap_bytes }
    }
}

impl<S> tower::Layer<S> for CapLayer {
    type Service = Cap<S>;

    fn layer(&self, inner: S) -> Cap<S> {
        Cap {
            inner,
            cap_bytes: self.cap_bytes,
        }
    }
}

/// The service [`CapLayer`] makes.
#[derive(Debug, Clone)]
pub struct Cap<S> {
    inner: S,
    cap_bytes: u64,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Cap<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: Send + 'static,
{
    type Response = Response<CappedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let per_line = is_watch(request.uri());
        let cap_bytes = self.cap_bytes;
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| CappedBody {
                inner,
                cap_bytes,
                per_line,
                seen: 0,
            }))
        })
    }
}

fn is_watch(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(k, v)| k == "watch" && v != "false" && v != "0")
    })
}

/// A body that fails once more than its cap has arrived (per line, for a watch).
#[derive(Debug)]
pub struct CappedBody<B> {
    inner: B,
    cap_bytes: u64,
    per_line: bool,
    seen: u64,
}

impl<B> CappedBody<B> {
    /// Counts `data`; whether the cap is now exceeded.
    fn count(&mut self, data: &[u8]) -> bool {
        if !self.per_line {
            self.seen += data.len() as u64;
            return self.seen > self.cap_bytes;
        }
        let mut pieces = data.split(|b| *b == b'\n').peekable();
        while let Some(piece) = pieces.next() {
            self.seen += piece.len() as u64;
            if self.seen > self.cap_bytes {
                return true;
            }
            if pieces.peek().is_some() {
                self.seen = 0;
            }
        }
        false
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if frame.data_ref().is_some_and(|d| this.count(d)) {
                    let what = if this.per_line {
                        " in one watch event"
                    } else {
                        ""
                    };
                    return Poll::Ready(Some(Err(Box::new(TooLarge {
                        cap_bytes: this.cap_bytes,
                        what,
                    }))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(per_line: bool) -> CappedBody<()> {
        CappedBody {
            inner: (),
            cap_bytes: 10,
            per_line,
            seen: 0,
        }
    }

    #[test]
    fn a_whole_answer_counts_every_byte() {
        let mut b = body(false);
        assert!(!b.count(b"12345\n"));
        assert!(!b.count(b"1234"));
        assert!(b.count(b"x"));
    }

    #[test]
    fn a_watch_counts_each_line() {
        let mut b = body(true);
        for _ in 0..100 {
            assert!(!b.count(b"123456789\n"));
        }
        assert!(!b.count(b"12345"));
        assert!(!b.count(b"67890\n1"));
        assert!(b.count(b"234567890x"));
    }

    #[test]
    fn only_watch_requests_count_per_line() {
        assert!(is_watch(&"/api/v1/pods?watch=true&x=1".parse().unwrap()));
        assert!(is_watch(&"/api/v1/pods?watch=1".parse().unwrap()));
        assert!(!is_watch(&"/api/v1/pods?watch=false".parse().unwrap()));
        assert!(!is_watch(&"/api/v1/pods?limit=500".parse().unwrap()));
    }
}
