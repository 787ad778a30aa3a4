//! The HTTP API: the only module that knows HTTP and JSON.
//!
//! [`routes`] is the route table, one line per path. A request goes: [`measure`] (latency
//! and the request counter, labelled by route template) → [`observe`] (request id, log
//! span, the audit entry) → [`authenticate`] (no [`Caller`], no handler) → the handler.
//! A handler's extractors check the caller's role ([`caller`]), read the body within the
//! limit and decode it strictly ([`extract`]), and its [`wire`] type validates every
//! encoded value — all before any domain call, so bad input changes no state; then it
//! calls the domain service and renders the answer ([`views`]) or its [`ApiError`].

mod admin;
pub mod caller;
mod delegations;
mod enrollments;
pub mod error;
mod extract;
#[doc(hidden)]
pub mod fuzz;
mod inbox;
mod keys;
mod seals;
mod tasks;
mod verify;
mod views;
mod wire;

pub use caller::{Caller, Unidentified};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRef, MatchedPath, RawPathParams, Request, State};
use axum::http::header::HeaderValue;
use axum::http::{Method, Uri};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use serde_json::Value;

use crate::plugins::PluginHost;
use crate::tasks::TaskService;
use error::{ApiError, ErrorCode};
use extract::BodyLimit;

pub struct Api {
    pub keys: Arc<crate::keys::KeyService>,
    pub tasks: Arc<TaskService>,
    pub seals: Arc<crate::seals::SealService>,
    pub audit: Arc<crate::audit::Audit>,
    pub plugins: Arc<PluginHost>,
    pub max_body_bytes: usize,
}

/// The address of the connection a request came on (set by the listener).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The longest `X-Request-Id` kept from a caller. A longer or otherwise unfit one is
/// replaced by a generated id, so a caller cannot put arbitrary text into logs and audit.
const MAX_REQUEST_ID: usize = 128;

/// The caller's `X-Request-Id` if it is 1 to 128 of `A–Z a–z 0–9 - _ . : /` (so it can
/// go into a log line, a header and an audit entry as it is); else a new UUIDv7
/// (time-ordered, unique across restarts and nodes).
fn request_id(req: &Request) -> String {
    let theirs = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b))
    });
    theirs.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

impl Api {
    pub fn new(
        keys: Arc<crate::keys::KeyService>,
        tasks: Arc<TaskService>,
        seals: Arc<crate::seals::SealService>,
        audit: Arc<crate::audit::Audit>,
        plugins: Arc<PluginHost>,
        max_body_bytes: usize,
    ) -> Self {
        Api { keys, tasks, seals, audit, plugins, max_body_bytes }
    }

    /// The API listener's service. Each request carries its [`Caller`] (or why there is
    /// none, [`Unidentified`]) in its extensions, put there by the server after the TLS
    /// handshake.
    pub fn router(self: &Arc<Self>) -> Router {
        let table = routes();
        crate::metrics::init_routes(table.iter().map(|(path, _)| *path).chain([UNMATCHED]));
        assemble(table)
            .layer(from_fn_with_state(self.clone(), observe))
            .layer(from_fn(measure))
            .with_state(self.clone())
    }
}

/// The state every handler takes.
type Ctx = State<Arc<Api>>;

impl FromRef<Arc<Api>> for BodyLimit {
    fn from_ref(api: &Arc<Api>) -> BodyLimit {
        BodyLimit(api.max_body_bytes)
    }
}

/// A path template of API.md and what each method on it does.
pub type Route<S> = (&'static str, MethodRouter<S>);

/// Every route of the API listener. Generic over the router's state only so tests can
/// route requests without the domain services.
pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    Arc<Api>: FromRef<S>,
    BodyLimit: FromRef<S>,
{
    vec![
        ("/v1/enrollments", post(enrollments::create)),
        ("/v1/enrollments/{id}/activate", post(enrollments::activate)),
        ("/v1/keys", get(keys::list)),
        ("/v1/keys/{id}", get(keys::get)),
        ("/v1/keys/{id}/sign", post(keys::sign)),
        ("/v1/keys/{id}/decrypt", post(keys::decrypt)),
        ("/v1/keys/{id}/pin", post(keys::change_pin)),
        ("/v1/keys/{id}/pin-reset", post(keys::open_pin_reset)),
        ("/v1/keys/{id}/pin/reset", post(keys::reset_pin)),
        ("/v1/keys/{id}/unlock", post(keys::unlock)),
        ("/v1/keys/{id}/revoke", post(keys::revoke)),
        ("/v1/keys/{id}/suspend", post(keys::suspend)),
        ("/v1/keys/{id}/resume", post(keys::resume)),
        ("/v1/keys/{id}/successor", post(keys::successor)),
        ("/v1/keys/{id}/platforms", post(keys::authorize_platform)),
        ("/v1/keys/{id}/platforms/{platform}", delete(keys::remove_platform)),
        ("/v1/keys/{id}/delegations", get(delegations::list).post(delegations::create)),
        ("/v1/delegations/{id}", get(delegations::get)),
        ("/v1/delegations/{id}/accept", post(delegations::accept)),
        ("/v1/delegations/{id}/reshare", post(delegations::reshare)),
        ("/v1/delegations/{id}/share", post(delegations::share)),
        ("/v1/delegations/{id}/activate", post(delegations::activate)),
        ("/v1/delegations/{id}/revoke", post(delegations::revoke)),
        ("/v1/inbox", get(inbox::get)),
        ("/v1/approvals/{id}", get(tasks::approval).post(tasks::decide_approval)),
        ("/v1/devices", get(inbox::devices)),
        ("/v1/tasks", post(tasks::create)),
        ("/v1/tasks/batch/cosign", post(tasks::batch_cosign)),
        ("/v1/tasks/{id}", get(tasks::get)),
        ("/v1/tasks/{id}/claim", post(tasks::claim)),
        ("/v1/tasks/{id}/cosign", post(tasks::cosign)),
        ("/v1/tasks/{id}/complete", post(tasks::complete)),
        ("/v1/tasks/{id}/reject", post(tasks::reject)),
        ("/v1/tasks/{id}/result", get(tasks::result)),
        ("/v1/tasks/{id}/seals", get(tasks::seals)),
        ("/v1/tasks/{id}/placement", post(tasks::place)),
        ("/v1/seals", get(seals::list).post(seals::create)),
        ("/v1/seals/{id}", get(seals::get)),
        ("/v1/seals/{id}/revoke", post(seals::revoke)),
        ("/v1/seals/{id}/image", post(seals::change_image)),
        ("/v1/seals/{id}/grants", post(seals::grant)),
        ("/v1/seals/{id}/grants/{key_id}", delete(seals::ungrant)),
        ("/v1/verify/signature", post(verify::signature)),
        ("/v1/verify/seal", post(verify::seal)),
        ("/v1/verify/pdf", post(verify::pdf)),
        ("/v1/timestamp", post(verify::timestamp)),
        ("/v1/audit", get(admin::audit)),
        ("/v1/plugins", get(admin::plugins)),
        ("/v1/plugins/{name}/crl", get(admin::crl)),
        ("/v1/plugins/{name}/status", get(admin::status)),
    ]
}

/// The table with its two fallbacks (unknown path; known path, wrong method), every
/// request authenticated first.
fn assemble<S: Clone + Send + Sync + 'static>(routes: Vec<Route<S>>) -> Router<S> {
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| router.route(path, methods))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(unmatched)
        .layer(from_fn(authenticate))
}

async fn unmatched(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no endpoint {method} {}", uri.path()))
}

/// Axum adds the `Allow` header to this answer.
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("no endpoint {method} {}: see Allow", uri.path()))
}

/// The metric label of requests that match no route: one series, whatever the path.
const UNMATCHED: &str = "unmatched";

fn route_of(req: &Request) -> String {
    req.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned()
}

/// A bounded method label: any other token a client sends is `other`.
fn method_label(m: &Method) -> &'static str {
    [Method::GET, Method::POST, Method::DELETE, Method::HEAD, Method::PUT, Method::PATCH, Method::OPTIONS]
        .iter()
        .find(|known| *known == m)
        .map_or("other", |known| known.as_str())
}

fn code_of(resp: &Response) -> &'static str {
    resp.extensions().get::<ErrorCode>().map_or("ok", |c| c.0)
}

/// Latency and the request counter, by route template, method and answer code.
async fn measure(req: Request, next: Next) -> Response {
    let route = route_of(&req);
    let method = method_label(req.method());
    let _timer =
        crate::metrics::Timer::start(crate::metrics::METRICS.api_duration.with_label_values(&[route.as_str()]));
    let resp = next.run(req).await;
    crate::metrics::METRICS.api_requests.with_label_values(&[route.as_str(), method, code_of(&resp)]).inc();
    resp
}

/// A certificate that verified but gave no role is answered here, before any extractor.
async fn authenticate(req: Request, next: Next) -> Response {
    if req.extensions().get::<Caller>().is_some() {
        return next.run(req).await;
    }
    caller::unauthenticated(req.extensions()).into_response()
}

/// The ids a route template names, for the log span and the audit entry.
#[derive(Default)]
struct Ids {
    id: Option<String>,
    key_id: Option<String>,
}

impl Ids {
    fn of(params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>) -> Ids {
        let mut ids = Ids::default();
        for (name, value) in params.iter().flatten() {
            match name {
                "id" => ids.id = Some(value.to_owned()),
                "key_id" => ids.key_id = Some(value.to_owned()),
                _ => {}
            }
        }
        ids
    }
}

/// The request's id, log span and access-log line; its audit entry, durable before the
/// answer.
async fn observe(
    State(api): State<Arc<Api>>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&req);
    let method = req.method().clone();
    let route = route_of(&req);
    let ids = Ids::of(params);
    let caller = req.extensions().get::<Caller>().cloned();
    let peer = req.extensions().get::<Peer>().map(|p| p.0);
    // Ids only: never a token, PIN proof or body field.
    let key_id = if route.starts_with("/v1/keys/") { ids.id.as_deref().unwrap_or("") } else { "" };
    let span = tracing::info_span!("request", id = %request_id, %method, route = %route,
        role = caller.as_ref().map_or("none", |c| c.role().as_str()),
        caller = caller.as_ref().map_or("", |c| c.identity()),
        key_id = %key_id);
    // The span rides on the future (never `enter()` across an await: the guard would
    // stay on whichever thread polled last and mark other requests' lines).
    let handled = async {
        // A domain step that carries out the request in one store transaction writes its
        // audit entry there (so a crash cannot split them); then this layer writes none.
        let platform = match &caller {
            Some(Caller::Gateway { platform, .. }) => Some(platform.clone()),
            _ => None,
        };
        let entry = crate::audit::RequestEntry::new(
            format!("{method} {route}"),
            audit_actor(caller.as_ref()),
            platform,
            crate::audit::RequestOrigin { request_id: request_id.clone(), peer: peer.map(|p| p.ip().to_string()) },
        );
        let mut resp = entry.scope(next.run(req)).await;
        let code = code_of(&resp);
        // Every state-changing request goes into the audit chain, durably, before the answer.
        if method != Method::GET
            && method != Method::HEAD
            && !route.starts_with("/v1/verify/")
            && !entry.written()
            && let Err(e) = api.audit_request(caller.as_ref(), &entry, &method, &route, &ids, code).await
        {
            tracing::error!(error = %e, "audit entry not written; refusing to answer success");
            resp = ApiError::Internal.into_response();
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        // The access log: one line per request, answered or refused.
        tracing::info!(
            target: "mcsd::access",
            peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            status = resp.status().as_u16(),
            code = code_of(&resp),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "{method} {route}"
        );
        resp
    };
    tracing::Instrument::instrument(handled, span).await
}

/// Who an audit entry names as the actor.
pub(crate) fn audit_actor(caller: Option<&Caller>) -> String {
    match caller {
        Some(c) => format!("{}:{}", c.role().as_str(), c.identity()),
        None => "unauthenticated".into(),
    }
}

impl Api {
    async fn audit_request(
        &self,
        caller: Option<&Caller>,
        entry: &crate::audit::RequestEntry,
        method: &Method,
        route: &str,
        ids: &Ids,
        code: &str,
    ) -> Result<(), crate::store::StoreError> {
        let (mut key_id, mut task_id, mut platform, mut detail) = (None, None, None, Value::Null);
        // The section of the template: `/v1/<section>/…`.
        match route.split('/').nth(2) {
            Some("keys") => key_id = ids.id.clone(),
            Some("tasks") => {
                if let Some(t) = ids.id.as_deref().and_then(|t| self.tasks.for_audit(t)) {
                    key_id = t.key_id.clone();
                    platform = Some(t.platform.clone()).filter(|p| !p.is_empty());
                    detail = crate::tasks::audit_detail(&t);
                }
                task_id = ids.id.clone();
            }
            Some("seals") => detail = crate::audit::seal_detail(ids.id.as_deref(), ids.key_id.as_deref()),
            Some("enrollments") => detail = crate::audit::enrollment_detail(ids.id.as_deref()),
            _ => {}
        }
        if let Some(Caller::Gateway { platform: p, .. }) = caller {
            platform = Some(p.clone());
        }
        self.audit
            .record(crate::audit::Event {
                event: format!("{method} {route}"),
                actor: audit_actor(caller),
                key_id,
                platform,
                task_id,
                outcome: code.to_owned(),
                detail: entry.annotate(detail),
                origin: Some(entry.origin.clone()),
            })
            .await
    }
}

/// The answer to a request that ran past `[api.limits] request_timeout_secs`: `internal`
/// (the cause is logged). What it had changed is as durable as any unanswered request's.
pub fn timed_out() -> Response {
    ApiError::Internal.into_response()
}

/// The hand-written router ignored trailing slashes (`/v1/keys/` was `/v1/keys`); the
/// server calls this before routing so that it still does.
pub fn trim_trailing_slashes<B>(req: &mut axum::http::Request<B>) {
    let path = req.uri().path();
    let trimmed = path.trim_end_matches('/');
    if trimmed.len() == path.len() || trimmed.is_empty() {
        return;
    }
    let rebuilt = match req.uri().query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = rebuilt.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::http::header::ALLOW;
    use http_body_util::BodyExt;
    use tower_service::Service;

    /// Router state for tests that never reach a handler: routing, fallbacks, layers.
    #[derive(Clone)]
    struct NoApi;

    impl FromRef<NoApi> for Arc<Api> {
        fn from_ref(_: &NoApi) -> Arc<Api> {
            panic!("these tests never reach a handler")
        }
    }

    impl FromRef<NoApi> for BodyLimit {
        fn from_ref(_: &NoApi) -> BodyLimit {
            BodyLimit(1024)
        }
    }

    fn test_router() -> Router {
        assemble(routes::<NoApi>()).layer(from_fn(measure)).with_state(NoApi)
    }

    async fn call(method: Method, path: &str) -> (StatusCode, Option<String>, Value) {
        let mut req = axum::http::Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        req.extensions_mut().insert(Caller::Admin { subject: "CN=test".into() });
        let resp = test_router().call(req).await.unwrap();
        let allow = resp.headers().get(ALLOW).map(|v| v.to_str().unwrap().to_owned());
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, allow, serde_json::from_slice(&body).unwrap())
    }

    /// The OpenAPI document must list every route the router serves.
    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc = include_str!("../../../docs/openapi.yaml");
        let table = routes::<Arc<Api>>();
        for (path, _) in &table {
            assert!(doc.contains(&format!("\n  {path}:\n")), "{path} is missing from docs/openapi.yaml");
        }
        assert!(table.len() >= 30, "found only {} routes", table.len());
    }

    #[tokio::test]
    async fn a_wrong_method_on_a_known_path_is_405_with_allow() {
        let (status, allow, body) = call(Method::GET, "/v1/enrollments").await;
        assert_eq!((status, allow.as_deref()), (StatusCode::METHOD_NOT_ALLOWED, Some("POST")));
        assert_eq!(body["error"]["code"], "not_found", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("GET /v1/enrollments"), "{body}");

        let (status, allow, body) = call(Method::PUT, "/v1/seals").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let allow = allow.unwrap();
        assert!(allow.contains("GET") && allow.contains("POST") && !allow.contains("PUT"), "{allow}");
        assert_eq!(body["error"]["code"], "not_found");

        // A path with parameters, and one whose static segment shadows a parameter.
        let (status, allow, _) = call(Method::GET, "/v1/keys/k_1/platforms/p").await;
        assert_eq!((status, allow.as_deref()), (StatusCode::METHOD_NOT_ALLOWED, Some("DELETE")));
        let (status, allow, _) = call(Method::GET, "/v1/tasks/batch/cosign").await;
        assert_eq!((status, allow.as_deref()), (StatusCode::METHOD_NOT_ALLOWED, Some("POST")));

        // An unknown path keeps its answer.
        let (status, allow, body) = call(Method::GET, "/v1/nothing").await;
        assert_eq!((status, allow), (StatusCode::NOT_FOUND, None));
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(body["error"]["message"], "no endpoint GET /v1/nothing");
    }

    /// Junk paths share the single `unmatched` series: no caller can create new ones.
    #[tokio::test]
    async fn junk_paths_get_the_unmatched_label() {
        let counter =
            || crate::metrics::METRICS.api_requests.with_label_values(&["unmatched", "GET", "not_found"]).get();
        let before = counter();
        let junk = ["/v1/keys/k_1/junk-3f9a", "/etc/passwd-3f9a", "/v1/junk-3f9a/x/y/z", "/v1/tasks/t/1/2/3f9a"];
        for path in junk {
            assert_eq!(call(Method::GET, path).await.0, StatusCode::NOT_FOUND);
        }
        assert!(counter() >= before + junk.len() as u64);
        let text = String::from_utf8(crate::metrics::render()).unwrap();
        assert!(!text.contains("3f9a"), "a raw path became a label:\n{text}");
        // A matched route is labelled by its template, never by its ids.
        call(Method::GET, "/v1/seals/s_3f9a/grants/k_1").await;
        let text = String::from_utf8(crate::metrics::render()).unwrap();
        assert!(!text.contains("3f9a") && text.contains(r#"route="/v1/seals/{id}/grants/{key_id}""#), "{text}");
        // Nor does an invented method make a series of its own.
        assert_eq!(method_label(&Method::from_bytes(b"BREW3F9A").unwrap()), "other");
    }

    /// A request without a caller is answered before any handler, whatever the path.
    #[tokio::test]
    async fn no_caller_is_unauthenticated() {
        for path in ["/v1/keys", "/v1/nothing"] {
            let mut req = axum::http::Request::builder().uri(path).body(Body::empty()).unwrap();
            req.extensions_mut().insert(Unidentified("no role for this certificate".into()));
            let resp = test_router().call(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["message"], "no role for this certificate");
        }
    }

    #[test]
    fn trailing_slashes_are_ignored() {
        let mut req = axum::http::Request::builder().uri("/v1/keys/k_1//?token=a").body(()).unwrap();
        trim_trailing_slashes(&mut req);
        assert_eq!(req.uri().to_string(), "/v1/keys/k_1?token=a");
        let mut root = axum::http::Request::builder().uri("/").body(()).unwrap();
        trim_trailing_slashes(&mut root);
        assert_eq!(root.uri().path(), "/");
    }
}
