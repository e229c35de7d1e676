//! The oneloop conformance suite: every guarantee of the interface as a check, runnable against any adapter.
