//! The composition root. `Services` is the one place where the store, accounts, targets, wake-ups,
//! metrics, intake and follow-ups are built and tied together; `serve`, the command-line commands
//! and the tests all start from it. `Application` adds what `serve` needs on top: a bound listener,
//! the routes, the delivery worker and the background tasks. Tests build the real application on
//! port 0 through the same path as `serve`.

mod background;
mod connections;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::account::Accounts;
use crate::admin::{self, AdminState};
use crate::completeness::Completeness;
use crate::config::{RetentionSettings, Settings};
use crate::console::{self, ConsoleServices, ConsoleState};
use crate::fanout::worker::{DeliveryWorker, InternalConsumer, Wake};
use crate::fanout::Targets;
use crate::followup::FollowUps;
use crate::ingest::{self, IngestState};
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::probes::{self, Probes};
use crate::store::{Store, StoreError};
use connections::ConnectionLimits;

/// Everything the relay's work is made of, built once from the settings.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub accounts: Accounts,
    pub targets: Targets,
    pub wake: Wake,
    pub metrics: Metrics,
    pub intake: Intake,
    pub follow_ups: Arc<FollowUps>,
    pub completeness: Arc<Completeness>,
}

impl Services {
    /// Connects to the database (without migrating it) and builds the rest.
    pub async fn connect(settings: &Settings) -> Result<Services, StoreError> {
        let store = Store::connect(&settings.database).await?;
        Ok(Services::with_store(settings, store))
    }

    pub fn with_store(settings: &Settings, store: Store) -> Services {
        let accounts = Accounts::new(&settings.accounts);
        let targets = Targets::new(&settings.targets, &settings.accounts, settings.delivery.internal_timeout);
        let wake = Wake::new(&targets);
        let metrics = Metrics::new();
        let intake = Intake::new(store.clone(), targets.clone(), wake.clone(), metrics.clone());
        let follow_ups = Arc::new(FollowUps::new(accounts.clone(), intake.clone()));
        let completeness = Arc::new(Completeness::new(accounts.clone(), intake.clone(), settings.completeness.clone()));
        Services { store, accounts, targets, wake, metrics, intake, follow_ups, completeness }
    }

    pub async fn close(&self) {
        self.store.close().await;
    }
}

pub struct Application {
    listener: TcpListener,
    /// `/metrics`, on a port of its own.
    metrics: Option<(TcpListener, Router)>,
    draining: Arc<AtomicBool>,
    limits: ConnectionLimits,
    drain: Duration,
    shutdown_timeout: Duration,
    router: Router,
    services: Services,
    /// The delivery worker's own connections, when it has them.
    worker_store: Option<Store>,
    worker: Option<DeliveryWorker>,
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
        let services = Services::connect(settings).await?;
        if settings.database.migrate_on_start {
            services.store.migrate().await?;
        }
        let addr = settings.server.listen;
        let listener = connections::bind(addr).map_err(|source| StartError::Listen { addr, source })?;
        let limits = ConnectionLimits {
            header_timeout: settings.server.header_timeout,
            idle_timeout: settings.server.idle_timeout,
            max_connections: connections::effective_max_connections(
                settings.server.max_connections,
                connections::raise_file_limit(),
            ),
        };
        let delivering = settings.delivery.enabled && !services.targets.all().is_empty();
        // The delivery worker has connections of its own: a burst of callbacks that holds every
        // pooled connection would otherwise starve it (docs/BENCHMARKS.md).
        let worker_store = delivering.then(|| services.store.with_own_connections(WORKER_CONNECTIONS));
        let worker = worker_store.as_ref().map(|store| {
            let internal: Arc<dyn InternalConsumer> = services.follow_ups.clone();
            DeliveryWorker::new(
                store.clone(),
                services.targets.clone(),
                settings.delivery.clone(),
                services.wake.clone(),
                Some(internal),
                services.metrics.clone(),
            )
        });
        let periodic = settings
            .accounts
            .iter()
            .filter_map(|a| a.reconcile_interval.map(|every| (a.name.clone(), every)))
            .collect();
        let draining = Arc::new(AtomicBool::new(false));
        let metrics = match settings.metrics.enabled {
            true => {
                let addr = settings.metrics.listen;
                let listener = connections::bind(addr).map_err(|source| StartError::Listen { addr, source })?;
                let token = settings.admin.token.clone().filter(|_| settings.metrics.require_admin_token);
                let routes = server::metrics_route(services.metrics.clone(), services.store.clone(), token);
                Some((listener, server::with_middleware(routes)))
            }
            false => None,
        };
        Ok(Self {
            listener,
            metrics,
            limits,
            drain: settings.server.drain,
            shutdown_timeout: settings.server.shutdown_timeout,
            router: router(settings, &services, draining.clone()),
            draining,
            services,
            worker_store,
            worker,
            periodic,
            retention: settings.retention.clone(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(listener, _)| listener.local_addr().expect("a bound listener has an address"))
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    pub fn store(&self) -> &Store {
        &self.services.store
    }

    /// Serves (and delivers) until `shutdown` completes. Then: `/readyz` answers 503 for the drain
    /// time while requests are still served; then no new connection is accepted, in-flight
    /// requests and deliveries finish; after `shutdown_timeout` the rest is abandoned (claims are
    /// leases, so another replica takes them over).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let (stop_workers, workers_stopped) = watch::channel(false);
        let services = &self.services;
        let mut background = JoinSet::new();
        if let Some(worker) = self.worker {
            let (store, wake, stop) = (services.store.clone(), services.wake.clone(), workers_stopped.clone());
            background.spawn(async move { store.watch_deliveries(move || wake.all(), stop).await });
            background.spawn(worker.run(workers_stopped.clone()));
        }
        if self.retention.enabled() {
            background.spawn(background::purge_periodically(
                services.store.clone(),
                self.retention.clone(),
                workers_stopped.clone(),
            ));
        }
        background.spawn(background::refresh_queue_figures(
            services.store.clone(),
            services.metrics.clone(),
            services.targets.clone(),
            workers_stopped.clone(),
        ));
        background.spawn(services.completeness.clone().check_periodically(workers_stopped.clone()));
        for (account, interval) in self.periodic {
            background.spawn(services.follow_ups.clone().reconcile_periodically(
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
        if let Some((listener, router)) = self.metrics {
            // A handful of scrapers at most; the same deadlines as the public port.
            let limits = ConnectionLimits { max_connections: METRICS_CONNECTIONS, ..self.limits };
            let mut stopped = workers_stopped.clone();
            background.spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                if let Err(e) = connections::serve(listener, router, limits, stop).await {
                    tracing::warn!(error = %e, "the metrics listener stopped");
                }
            });
        }
        let mut server = tokio::spawn(connections::serve(self.listener, self.router, self.limits, graceful));
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
        self.services.close().await;
        if let Some(worker_store) = &self.worker_store {
            worker_store.close().await;
        }
        result
    }
}

/// Connections the metrics listener keeps at most.
const METRICS_CONNECTIONS: usize = 32;

/// Every route the public port answers: callbacks, probes and the admin API (with a token).
fn router(settings: &Settings, services: &Services, draining: Arc<AtomicBool>) -> Router {
    let ingest_state = IngestState::new(&settings.server, services.accounts.clone(), services.intake.clone());
    let probes = Probes { store: services.store.clone(), draining };
    let mut routes = ingest::routes(ingest_state).merge(probes::routes(probes));
    if let Some(token) = &settings.admin.token {
        let admin = AdminState {
            token: token.clone(),
            store: services.store.clone(),
            wake: services.wake.clone(),
            intake: services.intake.clone(),
            accounts: services.accounts.clone(),
            completeness: services.completeness.clone(),
        };
        routes = routes.merge(server::limited(admin::routes(admin), server::ADMIN_CONCURRENCY));
        let secure_cookies = settings.server.public_url.as_deref().is_some_and(|url| url.starts_with("https://"));
        let console_services = ConsoleServices {
            store: services.store.clone(),
            accounts: services.accounts.clone(),
            completeness: services.completeness.clone(),
            targets: services.targets.clone(),
            wake: services.wake.clone(),
        };
        let console = ConsoleState::new(token.clone(), console_services, secure_cookies);
        routes = routes.merge(server::limited(console::routes(console), server::ADMIN_CONCURRENCY));
    }
    server::with_middleware(routes)
}
