//! The checks, one module per guarantee group; each function's first doc
//! line states the guarantee it proves.
//!
//! Every check takes an [`Env`](crate::Env): a fresh loop from the adapter's
//! factory, built on the thread that runs the check. Checks use only the
//! public `oneloop` interface, and fail by panicking with a message that says
//! what broke.

pub mod callbacks;
pub mod cancellation;
pub mod embedding;
pub mod errors;
pub mod executor;
pub mod fd;
pub mod flow;
pub mod futures;
pub mod guest;
pub mod lifecycle;
pub mod pipes;
pub mod policy;
pub mod signals;
pub mod subprocess;
pub mod tasks;
pub mod tcp;
pub mod threads;
pub mod timers;
pub mod udp;
pub mod unix;

mod proto;
mod support;
pub(crate) use support::{
    ASLEEP_UNKNOWN, Signal, Trace, push, trace, wait_for_loop_asleep, yield_now,
};
