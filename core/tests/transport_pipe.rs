//! Pipe transports on the default loop, beyond the conformance suite's PI
//! checks.

mod transport_fixtures;

use std::time::Duration;

use oneloop::ErrorKind;
use transport_fixtures::{Recorder, Shared, new_loop, run};

const LIMIT: Duration = Duration::from_secs(10);

/// No PI guarantee covers a regular file: it is refused with
/// `InvalidArgument`, as for `add_reader` (FD-08), not accepted and never
/// read.
#[test]
fn a_regular_file_is_not_a_pipe() {
    let lp = new_loop();
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let err = run(
        &lp,
        LIMIT,
        lp.connect_read_pipe(|| Recorder::new(&Shared::new()), file),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}
