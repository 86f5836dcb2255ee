//! The store's one error type. Database errors keep their cause; `Arc` lets a failure shared by
//! every callback of a group commit be handed to each of them.

use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(Arc<sqlx::Error>),
    #[error("migration failed: {0}")]
    Migrate(Arc<sqlx::migrate::MigrateError>),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDirectory { path: std::path::PathBuf, source: Arc<std::io::Error> },
    /// The row an operation is about is not stored.
    #[error("{0} is not stored")]
    Missing(String),
    /// The task that committed a group failed (a panic): its callbacks' fate is unknown.
    #[error("the storing task failed")]
    TaskFailed,
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(Arc::new(error))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(Arc::new(error))
    }
}
