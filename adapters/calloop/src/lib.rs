//! oneloop inside a calloop event loop: Smithay-style compositors and clients.
