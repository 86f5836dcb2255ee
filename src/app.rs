//! Wiring: settings → store → routes → a bound listener. Tests build the real application on port
//! 0 through the same path as `serve`.

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::account::Accounts;
use crate::config::Settings;
use crate::ingest::{self, plain_error, IngestState};
use crate::store::{Store, StoreError};

pub struct Application {
    listener: TcpListener,
    router: Router,
    store: Store,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let store = Store::connect(&settings.database).await?;
        if settings.database.migrate_on_start {
            store.migrate().await?;
        }
        let addr = settings.listen_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        Ok(Self {
            listener,
            router: router(settings, store.clone()),
            store,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        self.store.close().await;
        result
    }
}

pub fn router(settings: &Settings, store: Store) -> Router {
    let ingest_state = IngestState {
        accounts: Accounts::new(&settings.accounts),
        store,
        body_limit: settings.server.body_limit_bytes,
    };
    ingest::routes(ingest_state)
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
