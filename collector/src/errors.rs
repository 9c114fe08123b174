//! One table from what went wrong to what a client is told, for gRPC and HTTP alike.
//!
//! Handlers turn their module's errors into a [`Failure`] (a [`Kind`] and a sentence) and
//! answer with [`Failure::grpc`] or [`Failure::http_status`]; [`Kind::table`] is the only place
//! the mapping is written down (the README's status lists follow it).

use axum::http::StatusCode;

use crate::incidents::ActionError;
use crate::register::RegisterError;
use crate::store::StoreError;

/// What kind of failure, as a client needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed or asks for something impossible.
    Invalid,
    /// No credential, or a wrong one.
    Unauthenticated,
    /// A valid credential that may not do this.
    Forbidden,
    NotFound,
    /// The request conflicts with the record's state (e.g. resolving a closed incident).
    Conflict,
    /// The request is larger than allowed.
    TooLarge,
    /// The collector is too busy to take it now; retry later.
    Overloaded,
    /// The store cannot read or write; retry later.
    StoreUnavailable,
    /// The collector is stopping; retry later (elsewhere, or after it restarts).
    ShuttingDown,
    /// A bug: the handler itself failed.
    Internal,
}

impl Kind {
    /// The mapping: HTTP status and gRPC code for each kind.
    pub const fn table(self) -> (StatusCode, tonic::Code) {
        match self {
            Kind::Invalid => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
            Kind::Unauthenticated => (StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated),
            Kind::Forbidden => (StatusCode::FORBIDDEN, tonic::Code::PermissionDenied),
            Kind::NotFound => (StatusCode::NOT_FOUND, tonic::Code::NotFound),
            Kind::Conflict => (StatusCode::CONFLICT, tonic::Code::FailedPrecondition),
            Kind::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::ResourceExhausted,
            ),
            Kind::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable),
            Kind::StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable),
            Kind::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable),
            Kind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal),
        }
    }
}

/// A failure as a client is told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, message)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(Kind::NotFound, format!("{what} not found"))
    }

    pub fn http_status(&self) -> StatusCode {
        self.kind.table().0
    }

    pub fn grpc(&self) -> tonic::Status {
        tonic::Status::new(self.kind.table().1, self.message.clone())
    }
}

impl From<RegisterError> for Failure {
    fn from(error: RegisterError) -> Self {
        match error {
            RegisterError::Store(error) => {
                tracing::debug!(%error, "A register job failed in the store");
                if error.is_full() {
                    Self::new(Kind::StoreUnavailable, "store full")
                } else {
                    Self::new(Kind::StoreUnavailable, "store write failed")
                }
            }
            RegisterError::WriterGone => {
                Self::new(Kind::ShuttingDown, "collector is shutting down")
            }
            RegisterError::Busy => {
                Self::new(Kind::Overloaded, "collector is overloaded; retry later")
            }
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        if let StoreError::TaskFailed(_) = error {
            tracing::error!(%error, "A request handler failed");
            return Self::new(Kind::Internal, "request handler failed");
        }
        tracing::error!(%error, "A store read failed");
        Self::new(Kind::StoreUnavailable, "store read failed")
    }
}

impl From<ActionError> for Failure {
    fn from(error: ActionError) -> Self {
        let kind = match &error {
            ActionError::NotFound(_) => Kind::NotFound,
            ActionError::Conflict { .. } => Kind::Conflict,
            ActionError::Invalid(_) => Kind::Invalid,
        };
        Self::new(kind, error.to_string())
    }
}

impl From<Failure> for tonic::Status {
    fn from(failure: Failure) -> Self {
        failure.grpc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_failed_commit_is_a_store_error_on_both_protocols_not_a_shutdown() {
        let failure = Failure::from(RegisterError::Store(Arc::new(StoreError::Unavailable(
            "disk full",
        ))));
        assert_eq!(failure.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        let status = failure.grpc();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "store write failed");
        let stopping = Failure::from(RegisterError::WriterGone).grpc();
        assert_eq!(stopping.message(), "collector is shutting down");
    }

    #[test]
    fn incident_action_errors_keep_their_meaning() {
        let conflict = Failure::from(ActionError::Conflict {
            number: "INC0000001".into(),
            state: "closed".into(),
            action: "resolved",
        });
        assert_eq!(conflict.http_status(), StatusCode::CONFLICT);
        assert_eq!(
            Failure::from(ActionError::NotFound("x".into())).http_status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            Failure::invalid("bad").grpc().code(),
            tonic::Code::InvalidArgument
        );
    }
}
