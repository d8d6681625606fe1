//! The HTTP routes: `POST /login` and the middleware stack around it.
//!
//! The handler only decides between 200 and 401. Everything else is done by
//! layers, and the order of the layers is the design:
//!
//! ```text
// ANCHOR: layers
//! metrics::track        counts, times and logs whatever comes out, 500s
//!                       included, and 499 for a request dropped before its answer
//!   CatchPanicLayer     a panic becomes a JSON 500 instead of a dropped connection
//!     body limit        413 for bodies over LOGIN_BODY_LIMIT
//!       POST /login     200 or 401; JSON errors 400 / 408 / 415; 405 for other methods
// ANCHOR_END: layers
//! ```

use std::any::Any;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::{UserStore, VerifyFailed};
use crate::error::ApiError;
use crate::limits::Limits;
use crate::metrics::{Metrics, TrackLayer};
use crate::metrics_listener::MetricsListener;
use crate::throttle::Throttle;
use crate::web_config::WebConfig;

/// Largest accepted login body. Credentials are small; anything bigger is
/// either a mistake or an attempt to make us buffer memory.
pub const LOGIN_BODY_LIMIT: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Known users.
    pub users: Arc<UserStore>,
    /// The registry the middleware records into.
    pub metrics: Arc<Metrics>,
    /// What clients may make the server wait for.
    pub limits: Limits,
    /// How many login attempts each client address may make.
    pub throttle: Arc<Throttle>,
    /// Who may connect to the metrics listener, and what each client may hold.
    pub metrics_listener: Arc<MetricsListener>,
}

impl AppState {
    /// State with the given users, a fresh registry, the default limits and the
    /// default throttle.
    #[must_use]
    pub fn new(users: UserStore) -> Self {
        let users = Arc::new(users);
        let metrics = Arc::new(Metrics::new());
        let load = users.hashing().load();
        let threads = users.hashing().threads();
        metrics.gauge_fn(
            "login_hashing_queued",
            "Logins waiting for a password hashing thread.",
            {
                let load = load.clone();
                move || load.queued()
            },
        );
        metrics.gauge_fn(
            "login_hashing_busy",
            "Password hashing threads busy with a verification.",
            move || load.busy(),
        );
        metrics.gauge_fn(
            "login_hashing_threads",
            "Password hashing threads: verifications that can run at once.",
            move || threads,
        );
        Self {
            users,
            metrics,
            limits: Limits::default(),
            throttle: Arc::new(Throttle::default()),
            metrics_listener: Arc::new(MetricsListener::default()),
        }
        .with_limits(Limits::default())
        .with_throttle(Throttle::default())
    }

    /// The same state with other limits.
    #[must_use]
    pub fn with_limits(self, limits: Limits) -> Self {
        self.metrics.set_connection_budget(limits.max_connections);
        Self { limits, ..self }
    }

    /// The same state with other settings for the metrics listener.
    #[must_use]
    pub fn with_metrics_listener(self, metrics_listener: MetricsListener) -> Self {
        Self {
            metrics_listener: Arc::new(metrics_listener),
            ..self
        }
    }

    /// The same state with another throttle (call it before serving).
    #[must_use]
    pub fn with_throttle(self, throttle: Throttle) -> Self {
        let throttle = Arc::new(throttle);
        let remembered = Arc::clone(&throttle);
        self.metrics.gauge_fn(
            "login_throttle_clients",
            "Client addresses the login throttle remembers (recent ones only).",
            move || remembered.clients(),
        );
        Self { throttle, ..self }
    }
}

// ANCHOR: credentials
/// The body of `POST /login`: a JSON object with two strings.
pub struct Credentials {
    /// Who is logging in.
    pub username: String,
    /// Their password; never logged, never stored.
    pub password: String,
}

/// The body of a successful login.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoginOk {
    /// A short confirmation.
    pub message: String,
}
// ANCHOR_END: credentials

// ANCHOR: object_only
/// Only from a JSON object. serde's derived `Deserialize` also fills a struct
/// from an array of its fields in order, so `["user","pass"]` would log in: a
/// second form of the API that nobody documented, tested or asked for.
impl<'de> Deserialize<'de> for Credentials {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The fields, with serde's own messages for one missing or mistyped.
        #[derive(Deserialize)]
        struct Fields {
            username: String,
            password: String,
        }
        struct AnObject;
        impl<'de> serde::de::Visitor<'de> for AnObject {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Fields, A::Error> {
                Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        let Fields { username, password } = deserializer.deserialize_map(AnObject)?;
        Ok(Self { username, password })
    }
}
// ANCHOR_END: object_only

// ANCHOR: handler
/// `POST /login`: 200 for valid credentials, 401 for anything else; 429 for a
/// client over its attempts, 503 when too busy to check at once.
pub async fn login(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<LoginOk>, ApiError> {
    // A body declared too large is refused before a byte of it is read: a
    // client that sent `Expect: 100-continue` is never invited to send it.
    if declared_length(request.headers()).is_some_and(|length| length > LOGIN_BODY_LIMIT) {
        return Err(ApiError::payload_too_large(LOGIN_BODY_LIMIT));
    }
    // A request that came through a listener has its peer's address; one
    // handed to the router in-process (a test, a benchmark) has none, and no
    // client to throttle.
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| state.throttle.client(*peer, request.headers()));
    // The body must arrive within the body timeout, however slowly it trickles.
    let body = tokio::time::timeout(
        state.limits.body_timeout,
        Json::<Credentials>::from_request(request, &state),
    )
    .await
    .map_err(|_| ApiError::body_timeout(state.limits.body_timeout))?;
    let Json(credentials) = body.map_err(reject)?;
    // A well-formed attempt costs a hash: it is what the throttle counts.
    if let Some(client) = client {
        state.throttle.check(client).map_err(|wait| {
            tracing::info!(%client, "login attempt throttled");
            ApiError::too_many_attempts(wait)
        })?;
    }
    let valid = state
        .users
        .verify(
            &credentials.username,
            credentials.password,
            state.limits.max_hash_wait,
        )
        .await
        .map_err(|failed| match failed {
            VerifyFailed::Busy { retry_after } => ApiError::busy(retry_after),
            VerifyFailed::Failed => ApiError::internal(),
        })?;
    if valid {
        Ok(Json(LoginOk {
            message: "Login successful".to_owned(),
        }))
    } else {
        Err(ApiError::invalid_credentials())
    }
}
// ANCHOR_END: handler

/// The body's length as the `Content-Length` header declares it, if it does.
fn declared_length(headers: &axum::http::HeaderMap) -> Option<usize> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

// ANCHOR: reject
/// Turns axum's JSON extractor rejections into our JSON errors.
fn reject(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the credentials with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::payload_too_large(LOGIN_BODY_LIMIT)
        }
        // The connection ended mid-body: nobody will read an answer, but the
        // request is counted as abandoned, not as a malformed one.
        JsonRejection::BytesRejection(ref error) if client_went_away(error) => {
            ApiError::client_closed_request()
        }
        // Valid JSON of the wrong shape: a missing field, a wrong type, an
        // array instead of an object. The serde message names the field,
        // never the value.
        JsonRejection::JsonDataError(error) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!(
                "Expected {{\"username\": string, \"password\": string}}: {}",
                cause(&error)
            ),
        ),
        other => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("The body is not valid JSON: {}", cause(&other)),
        ),
    }
}

/// What serde said, without the sentence axum puts in front of it ("Failed to
/// parse the request body as JSON"), which our own message already says.
fn cause<'a>(
    rejection: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    rejection.source().unwrap_or(rejection)
}

/// Whether reading the body failed because the connection ended early
/// (rather than, say, because the chunked encoding was malformed).
fn client_went_away(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
            );
        }
        cause = error.source();
    }
    false
}
// ANCHOR_END: reject

// ANCHOR: instrument
/// Wraps a route in the production stack: metrics outermost, so it sees the
/// final status of everything inside, including panics turned into 500s.
pub fn instrument(route: MethodRouter<AppState>, metrics: Arc<Metrics>) -> MethodRouter<AppState> {
    wrap_in_layers(route, Some(TrackLayer::new(metrics)))
}

/// The layers around a route, inside the metrics layer when there is one: a
/// JSON 405 for other methods, panics turned into JSON 500s, the body limit.
/// One `layer` call for them all: each call boxes the route again.
fn wrap_in_layers(
    route: MethodRouter<AppState>,
    track: Option<TrackLayer>,
) -> MethodRouter<AppState> {
    route
        .fallback(|| async { ApiError::method_not_allowed() })
        .layer(
            ServiceBuilder::new()
                .option_layer(track)
                .layer(CatchPanicLayer::custom(panic_to_500))
                .layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)),
        )
}
// ANCHOR_END: instrument

fn panic_to_500(_panic: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::internal().into_response()
}

// ANCHOR: app
/// The application router: `POST /login`, instrumented, and JSON 404s.
pub fn app(state: AppState) -> Router {
    let login = instrument(post(login), Arc::clone(&state.metrics));
    with_login(login, state)
}
// ANCHOR_END: app

/// [`app`] without the metrics layer (which also writes the log line), and
/// nothing else changed: what the lab compares with to measure what the layer
/// costs. (For the lab: the `testing` feature.)
#[cfg(feature = "testing")]
pub fn app_without_metrics(state: AppState) -> Router {
    with_login(wrap_in_layers(post(login), None), state)
}

// ANCHOR: unmatched
/// Every other path: a JSON 404, counted in `login_unmatched_requests_total`
/// and never under its path, which a scanner could vary without end.
fn with_login(login: MethodRouter<AppState>, state: AppState) -> Router {
    Router::new()
        .route("/login", login)
        .fallback(|State(state): State<AppState>| async move {
            state.metrics.count_unmatched();
            ApiError::not_found()
        })
        .with_state(state)
}
// ANCHOR_END: unmatched

/// The metrics router, served on its own listener: `GET /metrics`, behind
/// the credentials of `web` when it asks for any.
pub fn metrics_app(metrics: Arc<Metrics>, web: Option<Arc<WebConfig>>) -> Router {
    let page = {
        let metrics = Arc::clone(&metrics);
        Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = Arc::clone(&metrics);
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                        metrics.render(),
                    )
                }
            }),
        )
    };
    match web.filter(|web| web.asks_for_credentials()) {
        Some(web) => page.layer(axum::middleware::from_fn(move |request, next| {
            require_credentials(Arc::clone(&web), Arc::clone(&metrics), request, next)
        })),
        None => page,
    }
}

// ANCHOR: require_credentials
/// Lets through a scrape whose `Authorization` the web configuration accepts;
/// answers any other 401 with the challenges, and counts it by reason. The
/// check runs on a blocking thread, one at a time: a password hash takes about
/// a tenth of a second by design, and a client guessing passwords must not take
/// more than one core from the server.
async fn require_credentials(
    web: Arc<WebConfig>,
    metrics: Arc<Metrics>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    let checked = {
        let _turn = ONE_AT_A_TIME.acquire().await;
        let web = Arc::clone(&web);
        tokio::task::spawn_blocking(move || web.check(authorization.as_ref())).await
    };
    match checked {
        Ok(Ok(())) => next.run(request).await,
        Ok(Err(reason)) => {
            metrics.count_unauthorized_scrape(reason);
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this listener needs the credentials of its web configuration",
            )
            .into_response();
            for challenge in web.challenges() {
                response
                    .headers_mut()
                    .append(header::WWW_AUTHENTICATE, challenge);
            }
            response
        }
        Err(_) => ApiError::internal().into_response(),
    }
}
// ANCHOR_END: require_credentials
