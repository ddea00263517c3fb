//! Why the server could not start: the library's own error for `run` and its setup steps
//! (the binaries use their own catch-all). Each message says what the operator can fix.

use crate::runtime::RuntimeError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag, or a file a flag names, that cannot be used as it is.
    #[error("{0}")]
    Config(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}")]
    Runtime {
        context: String,
        #[source]
        source: RuntimeError,
    },
    #[error("{context}")]
    Store {
        context: String,
        #[source]
        source: StoreError,
    },
}

impl StartError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
