//! oneloop on a tokio current-thread runtime, owned or attached to a LocalSet.
