//! The dev stack behind `credbroker dev`: a dev OpenID provider ([`idp`]), a local identity pool
//! speaking the Cognito Identity protocol ([`pool`]), and a gateway that verifies SigV4 like API
//! Gateway with `aws_iam` ([`gateway`]). None of it is reachable from the Lambda binary or
//! `credbroker serve`.

pub mod gateway;
pub mod idp;
pub mod pool;
