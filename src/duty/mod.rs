//! Validator duty: is the validator doing its job (signing, authoring blocks, staying in
//! the active set, not jailed or slashed), next to the node's health. Pure parts decode
//! what chains answer and judge it (`commits`, `judge`); the shells read it (`feed`: one
//! block follower per CometBFT duty RPC, shared by every validator read through it).

pub mod address;
pub mod beacon;
pub mod commits;
pub mod cosmos_api;
pub mod feed;
pub mod judge;
pub mod read;
