//! Caretaker's wire protocol: the generated `caretaker.v1` messages and gRPC stubs.
//!
//! The `.proto` sources live in `proto/caretaker/v1/`; `build.rs` compiles them with protox so
//! builds need no system `protoc`. Enable the `server` feature for the collector side; the
//! agent uses the default `client` feature only.

pub mod v1 {
    #![allow(clippy::doc_markdown, clippy::large_enum_variant)] // generated code
    tonic::include_proto!("caretaker.v1");
}

pub use prost;
pub use prost_types;
