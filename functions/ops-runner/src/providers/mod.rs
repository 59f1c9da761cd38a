//! The phase providers. Each is a state machine over real-shaped HTTP APIs
//! (see `provider.rs`); `github` holds what the GitHub ones share.

pub mod github;
pub mod github_actions;
pub mod github_artifacts;
pub mod github_deployments;
pub mod http_checks;
