//! One bound and one error mapping for every Kubernetes API call (404 and 409 kept apart,
//! everything else as text for the caller's own error).

use std::future::Future;

use super::API_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum ApiFail {
    #[error("not found")]
    NotFound,
    #[error("already exists or conflicts: {0}")]
    Conflict(String),
    #[error("the Kubernetes API did not answer within {}s", API_TIMEOUT.as_secs())]
    TimedOut,
    #[error(transparent)]
    Other(kube::Error),
}

impl From<kube::Error> for ApiFail {
    fn from(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) if status.code == 404 => Self::NotFound,
            kube::Error::Api(status) if status.code == 409 => Self::Conflict(status.message),
            other => Self::Other(other),
        }
    }
}

/// Runs one API call with the timeout every call gets.
pub async fn call<T>(request: impl Future<Output = kube::Result<T>>) -> Result<T, ApiFail> {
    match tokio::time::timeout(API_TIMEOUT, request).await {
        Ok(result) => result.map_err(ApiFail::from),
        Err(_) => Err(ApiFail::TimedOut),
    }
}
