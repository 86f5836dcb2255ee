//! Wiring: settings → store → routes and delivery worker → a bound listener. Tests build the real
//! application on port 0 through the same path as `serve`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::account::Accounts;
use crate::admin::{self, AdminState};
use crate::config::{DatabaseSettings, RetentionSettings, Settings};
use crate::fanout::worker::{DeliveryWorker, InternalConsumer, Wake};
use crate::fanout::Targets;
use crate::followup::FollowUps;
use crate::ingest::{self, plain_error, IngestState, Intake};
use crate::metrics::Metrics;
use crate::probes::{self, Probes};
use crate::secret::Secret;
use crate::store::{Store, StoreError, DELIVERY_CHANNEL};

pub struct Application {
    listener: TcpListener,
    draining: Arc<AtomicBool>,
    header_timeout: Duration,
    drain: Duration,
    shutdown_timeout: Duration,
    router: Router,
    store: Store,
    /// The delivery worker's own connections, when it has them.
    worker_store: Option<Store>,
    worker: Option<DeliveryWorker>,
    wake: Wake,
    follow_ups: Arc<FollowUps>,
    /// Accounts whose running jobs are reconciled on a timer, and how often.
    periodic: Vec<(String, Duration)>,
    retention: RetentionSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Connections of the delivery worker's own pool on Postgres: its claims and the group commits of
/// finished attempts, across targets.
const WORKER_CONNECTIONS: u32 = 3;

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let store = Store::connect(&settings.database).await?;
        if settings.database.migrate_on_start {
            store.migrate().await?;
        }
        let addr = settings.listen_addr();
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen { addr, source })?;
        let targets = Targets::new(&settings.targets, &settings.accounts);
        let wake = Wake::new(&targets);
        let metrics = Metrics::new();
        let intake = Intake::new(store.clone(), targets.clone(), wake.clone(), metrics.clone());
        let follow_ups = Arc::new(FollowUps::new(&settings.accounts, intake.clone()));
        let internal: Arc<dyn InternalConsumer> = follow_ups.clone();
        let delivering = settings.delivery.enabled && !targets.all().is_empty();
        // On Postgres the delivery worker has connections of its own: a burst of callbacks that
        // holds every pooled connection would otherwise starve it (BENCHMARKS.md). SQLite has one
        // writer connection anyway.
        let worker_store = match &store {
            Store::Postgres(_) if delivering => Some(
                Store::connect(&DatabaseSettings { max_connections: WORKER_CONNECTIONS, ..settings.database.clone() })
                    .await?,
            ),
            _ => None,
        };
        let worker = delivering.then(|| {
            DeliveryWorker::new(
                worker_store.clone().unwrap_or_else(|| store.clone()),
                targets.clone(),
                settings.delivery.clone(),
                wake.clone(),
                Some(internal),
                metrics.clone(),
            )
        });
        let periodic = settings
            .accounts
            .iter()
            .filter_map(|a| a.reconcile_interval_secs.map(|s| (a.name.clone(), Duration::from_secs_f64(s))))
            .collect();
        let admin = (!settings.admin.token.is_empty()).then(|| AdminState {
            token: settings.admin.token.clone(),
            store: store.clone(),
            wake: wake.clone(),
        });
        let draining = Arc::new(AtomicBool::new(false));
        let probes = Probes { store: store.clone(), draining: draining.clone() };
        let exposition = settings.metrics.enabled.then(|| MetricsState {
            metrics,
            store: store.clone(),
            targets: targets.all().iter().map(|t| t.name.clone()).collect(),
            token: settings.metrics.require_admin_token.then(|| settings.admin.token.clone()),
        });
        Ok(Self {
            listener,
            draining,
            header_timeout: Duration::from_millis(settings.server.header_timeout_ms),
            drain: Duration::from_secs(settings.server.drain_secs),
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
            router: router(settings, intake, admin, probes, exposition),
            store,
            worker_store,
            worker,
            wake,
            follow_ups,
            periodic,
            retention: settings.retention.clone(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves (and delivers) until `shutdown` completes. Then: `/readyz` answers 503 for the drain
    /// time while requests are still served; then no new connection is accepted, in-flight
    /// requests and deliveries finish; after `shutdown_timeout` the rest is abandoned (claims are
    /// leases, so another replica takes them over).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stop_workers, workers_stopped) = watch::channel(false);
        let mut background = JoinSet::new();
        if let Some(worker) = self.worker {
            if let Store::Postgres(pool) = &self.store {
                background.spawn(listen_for_deliveries(pool.clone(), self.wake.clone(), workers_stopped.clone()));
            }
            background.spawn(worker.run(workers_stopped.clone()));
        }
        if self.retention.enabled() {
            background.spawn(purge_periodically(self.store.clone(), self.retention.clone(), workers_stopped.clone()));
        }
        for (account, interval) in self.periodic {
            background.spawn(self.follow_ups.clone().reconcile_periodically(
                account,
                interval,
                workers_stopped.clone(),
            ));
        }
        let (begun, shutdown_begun) = tokio::sync::oneshot::channel::<()>();
        let (draining, drain) = (self.draining.clone(), self.drain);
        let graceful = async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
            let _ = begun.send(());
            tracing::info!(drain_secs = drain.as_secs(), "shutdown begun: draining");
            tokio::time::sleep(drain).await;
        };
        let mut server = tokio::spawn(serve_connections(self.listener, self.router, self.header_timeout, graceful));
        let ended_early = tokio::select! {
            _ = shutdown_begun => None,
            result = &mut server => Some(result),
        };
        let finish = async {
            let result = match ended_early {
                Some(result) => result,
                None => server.await,
            };
            let _ = stop_workers.send(true);
            while background.join_next().await.is_some() {}
            result
        };
        let result = match tokio::time::timeout(self.drain + self.shutdown_timeout, finish).await {
            Ok(joined) => joined.map_err(std::io::Error::other).and_then(|served| served),
            Err(_) => {
                tracing::error!(
                    timeout_secs = self.shutdown_timeout.as_secs(),
                    "shutdown timed out; exiting with work in flight"
                );
                Ok(())
            }
        };
        self.store.close().await;
        if let Some(worker_store) = &self.worker_store {
            worker_store.close().await;
        }
        result
    }
}

/// Request headers beyond this are refused with 431 before any handler runs (the platform sends a
/// few hundred bytes). Bodies are streamed and limited separately (`server.body_limit_bytes`).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Accepts connections until `shutdown`, then lets the open ones finish their requests. Served with
/// hyper's own builder rather than `axum::serve` for one reason: a timer, so that a client that
/// trickles its request headers is disconnected after `header_timeout`.
async fn serve_connections(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut builder = ConnectionBuilder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_HEADER_BYTES);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little rather than spin.
                        tracing::warn!(error = %e, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Applies retention now and then. Several replicas may run it at once; each statement is
/// idempotent, so that only costs a little work.
async fn purge_periodically(store: Store, retention: RetentionSettings, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_secs(retention.interval_secs);
    while !*stop.borrow() {
        match store.purge(&retention.cutoffs(chrono::Utc::now())).await {
            Ok(report) => tracing::debug!(?report, "retention applied"),
            Err(e) => tracing::warn!(error = %e, "retention could not run; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Other replicas' commits wake this one's worker (Postgres NOTIFY). Polling still covers a lost
/// connection; this only makes delivery prompt.
async fn listen_for_deliveries(pool: sqlx::PgPool, wake: Wake, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let listen = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(DELIVERY_CHANNEL).await?;
            loop {
                listener.recv().await?;
                wake.all();
            }
        };
        tokio::select! {
            result = listen => {
                let result: Result<(), sqlx::Error> = result;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "delivery listener lost its connection; reconnecting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = stop.changed() => {}
        }
    }
}

pub fn router(
    settings: &Settings,
    intake: Intake,
    admin: Option<AdminState>,
    probes: Probes,
    metrics: Option<MetricsState>,
) -> Router {
    let accounts = Accounts::new(&settings.accounts);
    let ingest_state = IngestState {
        accounts,
        intake,
        body_limit: settings.server.body_limit_bytes,
        body_timeout: Duration::from_millis(settings.server.body_timeout_ms),
    };
    let mut routes = ingest::routes(ingest_state).merge(probes::routes(probes));
    if let Some(admin) = admin {
        routes = routes.merge(admin::routes(admin));
    }
    if let Some(metrics) = metrics {
        routes = routes.route("/metrics", get(render_metrics).with_state(metrics));
    }
    routes
        .fallback(|| async { plain_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            plain_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .layer(
            TraceLayer::new_for_http()
                // The path only: the query string carries the callback key.
                .make_span_with(|request: &Request| {
                    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
                    tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn_with_state(
            Arc::new(Semaphore::new(settings.server.max_concurrent_requests)),
            limit_concurrency,
        ))
        .layer(middleware::from_fn(request_id))
}

/// Beyond the configured number of requests at once, answer 503 at once instead of queueing: the
/// platform retries, and the relay stays responsive for the requests it has.
async fn limit_concurrency(State(slots): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let Ok(_slot) = slots.try_acquire() else {
        tracing::warn!("overloaded: refusing a request");
        let mut refused =
            plain_error(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests at once; retry");
        refused.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return refused;
    };
    next.run(request).await
}

#[derive(Clone)]
pub struct MetricsState {
    metrics: Metrics,
    store: Store,
    targets: Vec<String>,
    /// Set when scraping needs the admin token.
    token: Option<Secret>,
}

async fn render_metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if state.token.as_ref().is_some_and(|token| !admin::bearer_matches(token, &headers)) {
        return plain_error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token");
    }
    match state.metrics.render(&state.store, &state.targets).await {
        Ok(text) => {
            ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the store does not answer");
            plain_error(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", "metrics need the database")
        }
    }
}

const REQUEST_ID: &str = "x-request-id";

/// Takes the caller's `x-request-id` (when it is short, printable text) or makes one, so that the
/// request's log lines and its answer carry the same id.
async fn request_id(mut request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::getrandom(&mut bytes);
        hex::encode(bytes)
    });
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}
