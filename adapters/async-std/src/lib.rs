//! oneloop on the async-io engine shared by async-std and smol.
