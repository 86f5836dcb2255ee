//! Wiring: settings → store → routes and delivery worker → a bound listener. Tests build the real
//! application on port 0 through the same path as `serve`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::account::Accounts;
use crate::admin::{self, AdminState};
use crate::config::Settings;
use crate::fanout::worker::{DeliveryWorker, InternalConsumer, Wake};
use crate::fanout::Targets;
use crate::followup::FollowUps;
use crate::ingest::{self, plain_error, IngestState, Intake};
use crate::store::{Store, StoreError, DELIVERY_CHANNEL};

pub struct Application {
    listener: TcpListener,
    router: Router,
    store: Store,
    worker: Option<DeliveryWorker>,
    wake: Wake,
    follow_ups: Arc<FollowUps>,
    /// Accounts whose running jobs are reconciled on a timer, and how often.
    periodic: Vec<(String, Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

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
        let intake = Intake { store: store.clone(), targets: targets.clone(), wake: wake.clone() };
        let follow_ups = Arc::new(FollowUps::new(&settings.accounts, intake.clone()));
        let internal: Arc<dyn InternalConsumer> = follow_ups.clone();
        let worker = (settings.delivery.enabled && !targets.all().is_empty()).then(|| {
            DeliveryWorker::new(store.clone(), targets, settings.delivery.clone(), wake.clone(), Some(internal))
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
        Ok(Self { listener, router: router(settings, intake, admin), store, worker, wake, follow_ups, periodic })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves (and delivers) until `shutdown` completes, then lets in-flight requests and
    /// deliveries finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stop_workers, workers_stopped) = watch::channel(false);
        let mut background = JoinSet::new();
        if let Some(worker) = self.worker {
            if let Store::Postgres(pool) = &self.store {
                background.spawn(listen_for_deliveries(pool.clone(), self.wake.clone(), workers_stopped.clone()));
            }
            background.spawn(worker.run(workers_stopped.clone()));
        }
        for (account, interval) in self.periodic {
            background.spawn(self.follow_ups.clone().reconcile_periodically(
                account,
                interval,
                workers_stopped.clone(),
            ));
        }
        let result = axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown).await;
        let _ = stop_workers.send(true);
        while background.join_next().await.is_some() {}
        self.store.close().await;
        result
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

pub fn router(settings: &Settings, intake: Intake, admin: Option<AdminState>) -> Router {
    let accounts = Accounts::new(&settings.accounts);
    let ingest_state = IngestState { accounts, intake, body_limit: settings.server.body_limit_bytes };
    let mut routes = ingest::routes(ingest_state);
    if let Some(admin) = admin {
        routes = routes.merge(admin::routes(admin));
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
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}
