//! Request parts as extractors: path parameters, the body size limit, strict JSON.
//!
//! Every rejection is an [`ApiError`], so axum's own plain-text rejections never reach a
//! caller. The body is read by mcsd's own reader rather than axum's `Json`/`DefaultBodyLimit`:
//! past the limit it still drains up to [`OVERSIZE_DRAIN`] so the client reads its 413
//! instead of a reset connection, it keeps the bytes in a buffer wiped on drop (bodies
//! carry PIN verifiers, activation codes and plaintexts), and JSON is taken whatever the
//! `content-type` (no 415), decoded with `deny_unknown_fields` into the types of
//! [`super::wire`].

use axum::body::Body;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::error::ApiError;
use super::wire;

/// The route template's parameters (percent-decoded). One that does not decode (not
/// UTF-8) names nothing this daemon has: `not_found`, like any unknown id.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(Params(t)),
            Err(_) => Err(ApiError::NotFound(format!("no endpoint {} {}", parts.method, parts.uri.path()))),
        }
    }
}

/// The `{id}` of a route template.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Params::<String>::from_request_parts(parts, state).await.map(|Params(id)| Id(id))
    }
}

/// `[api] max_body_bytes`, from the router's state.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Past the limit, a body is still read (and discarded) up to this many bytes so the
/// client can read its 413 instead of seeing a reset connection; beyond it, we hang up.
pub const OVERSIZE_DRAIN: u64 = 16 << 20;

/// The body, in a buffer wiped when the request is done.
pub async fn read_body(req: Request, limit: usize) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    use hyper::body::Body as _;
    let too_large = ApiError::PayloadTooLarge { limit };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64 + OVERSIZE_DRAIN) {
        return Err(too_large);
    }
    let mut body: Body = req.into_body();
    let capacity = declared.unwrap_or(0).min(limit as u64) as usize;
    // Reserved up front so the buffer never reallocates (a reallocation would leave an
    // unwiped copy behind).
    let mut buf = Zeroizing::new(Vec::with_capacity(capacity));
    let mut seen: u64 = 0;
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else { break };
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen > limit as u64 + OVERSIZE_DRAIN {
                return Err(too_large);
            }
            if seen <= limit as u64 {
                if buf.len() + data.len() > buf.capacity() {
                    let mut bigger =
                        Zeroizing::new(Vec::with_capacity((buf.len() + data.len()).max(2 * buf.capacity()).min(limit)));
                    bigger.extend_from_slice(&buf);
                    buf = bigger;
                }
                buf.extend_from_slice(&data);
            }
        }
    }
    if seen > limit as u64 { Err(too_large) } else { Ok(buf) }
}

/// A JSON body decoded strictly into `T` (mcsd's own, not axum's: see above).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T>
where
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = read_body(req, BodyLimit::from_ref(state).0).await?;
        wire::parse(&body).map(Json)
    }
}

/// [`Json`] for a request whose fields are all optional: no body at all is `T::default()`.
pub struct JsonOrNone<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for JsonOrNone<T>
where
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = read_body(req, BodyLimit::from_ref(state).0).await?;
        if body.is_empty() {
            return Ok(JsonOrNone(T::default()));
        }
        wire::parse(&body).map(JsonOrNone)
    }
}

/// A DER body of `content-type: application/timestamp-query` (RFC 3161 over HTTP).
pub struct TimestampQuery(pub Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for TimestampQuery
where
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let ct = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/timestamp-query") {
            return Err(ApiError::bad_request("content-type must be application/timestamp-query (RFC 3161)"));
        }
        let body = read_body(req, BodyLimit::from_ref(state).0).await?;
        Ok(TimestampQuery(body.to_vec()))
    }
}

/// No body at all (GET and DELETE routes).
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody
where
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = read_body(req, BodyLimit::from_ref(state).0).await?;
        wire::no_body(&body).map(|()| NoBody)
    }
}

/// A body that carries nothing: absent, or exactly `{}` (POST routes without fields).
pub struct EmptyObject;

impl<S: Send + Sync> FromRequest<S> for EmptyObject
where
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = read_body(req, BodyLimit::from_ref(state).0).await?;
        wire::empty_object(&body).map(|()| EmptyObject)
    }
}

/// A body read within the limit and not looked at (`GET /v1/keys` never checked it).
pub struct Ignored;

impl<S: Send + Sync> FromRequest<S> for Ignored
where
    BodyLimit: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        read_body(req, BodyLimit::from_ref(state).0).await.map(|_| Ignored)
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use hyper::body::Frame;

    use super::*;

    /// A body of `total` bytes in 64 KiB frames that counts what was read of it.
    struct Counted {
        left: u64,
        read: Arc<AtomicU64>,
    }

    impl hyper::body::Body for Counted {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let n = self.left.min(64 << 10);
            self.left -= n;
            self.read.fetch_add(n, Ordering::SeqCst);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; n as usize])))))
        }

        fn is_end_stream(&self) -> bool {
            self.left == 0
        }
    }

    fn request(total: u64, declared: Option<u64>) -> (Request, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        let mut req = Request::new(Body::new(Counted { left: total, read: read.clone() }));
        if let Some(len) = declared {
            req.headers_mut().insert(CONTENT_LENGTH, len.into());
        }
        (req, read)
    }

    /// Over the limit, the body is still read to its end (within the drain allowance) so
    /// the client gets its 413; far over it, reading stops.
    #[tokio::test]
    async fn oversize_bodies_are_drained_before_413() {
        let limit = 1000;
        let (req, read) = request(2 << 20, None);
        let err = read_body(req, limit).await.err().unwrap();
        assert_eq!((err.code(), err.status()), ("payload_too_large", 413));
        assert_eq!(read.load(Ordering::SeqCst), 2 << 20, "the body was not drained");

        let total = limit as u64 + OVERSIZE_DRAIN + (1 << 20);
        let (req, read) = request(total, None);
        assert_eq!(read_body(req, limit).await.err().unwrap().code(), "payload_too_large");
        assert!(read.load(Ordering::SeqCst) < total, "read past the drain allowance");

        let (req, read) = request(total, Some(total));
        assert_eq!(read_body(req, limit).await.err().unwrap().code(), "payload_too_large");
        assert_eq!(read.load(Ordering::SeqCst), 0, "a declared oversize body is refused unread");

        let (req, _) = request(limit as u64, Some(limit as u64));
        assert_eq!(read_body(req, limit).await.unwrap().len(), limit);
    }

    #[tokio::test]
    async fn strict_json_takes_any_content_type_and_refuses_unknown_fields() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let limit = BodyLimit(100);
        let req = Request::new(Body::from(r#"{"a":1}"#));
        assert!(Json::<T>::from_request(req, &limit).await.is_ok());
        let req = Request::new(Body::from(r#"{"a":1,"b":2}"#));
        let err = Json::<T>::from_request(req, &limit).await.err().unwrap();
        assert_eq!(err.code(), "bad_request");
        assert!(err.to_string().starts_with("invalid JSON body: unknown field `b`"), "{err}");
        let req = Request::new(Body::from(vec![b' '; 101]));
        assert_eq!(Json::<T>::from_request(req, &limit).await.err().unwrap().code(), "payload_too_large");
    }
}
