//! Talking to the outside world's control planes. Only `providers::aws` imports the AWS SDK.

pub mod aws;
pub mod consul;
