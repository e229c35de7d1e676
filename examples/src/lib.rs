//! Examples of oneloop.
