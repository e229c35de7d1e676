//! The default loop through the `suite!` front end as well, so that the
//! isolated checks' libtest path (each subprocess and signal check re-run
//! alone in a child test process) is exercised.

oneloop_conformance::suite!(oneloop_conformance::native_spec());
