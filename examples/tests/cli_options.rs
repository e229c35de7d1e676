//! `Options::parse`: the command line every example shares.

use oneloop_examples::{CliError, LoopKind, Options};

fn parse(args: &[&str]) -> Result<Options, CliError> {
    Options::parse(args.iter().map(|s| s.to_string()), 7000, |_, _| Ok(false))
}

#[test]
fn defaults() {
    let o = parse(&[]).unwrap();
    assert_eq!(o.loop_kind, LoopKind::Native);
    assert_eq!(o.addr(), "127.0.0.1:7000");
}

#[test]
fn both_spellings_and_ipv6_hosts() {
    let o = parse(&["--loop=calloop", "--host", "::1", "--port", "0"]).unwrap();
    assert_eq!(o.loop_kind, LoopKind::Calloop);
    assert_eq!(o.addr(), "[::1]:0");
    let o = parse(&["--host=[::1]", "--port=9"]).unwrap();
    assert_eq!(o.addr(), "[::1]:9");
}

#[test]
fn help() {
    assert_eq!(parse(&["--help"]), Err(CliError::Help));
    assert_eq!(parse(&["--loop", "glib", "-h"]), Err(CliError::Help));
}

#[test]
fn mistakes_say_what_is_wrong() {
    let msg = |args: &[&str]| match parse(args) {
        Err(CliError::Invalid(m)) => m,
        other => panic!("{args:?}: {other:?}"),
    };
    assert!(msg(&["--port"]).contains("--port needs a value"));
    assert!(msg(&["--port", "70000"]).contains("not a valid number"));
    assert!(msg(&["--loop", "uv"]).contains("unknown loop"));
    assert!(msg(&["--verbose", "1"]).contains("unknown option --verbose"));
    assert!(msg(&["7000"]).contains("unexpected argument"));
}

#[test]
fn seconds() {
    let d = Options::seconds("--grace", "0.25").unwrap();
    assert_eq!(d, std::time::Duration::from_millis(250));
    for bad in ["-1", "soon", "NaN", "inf"] {
        let err = Options::seconds("--grace", bad).unwrap_err();
        assert!(
            matches!(&err, CliError::Invalid(m) if m.contains("--grace")),
            "{bad}: {err:?}"
        );
    }
}

/// A binary's own options reach its callback, and its errors come back.
#[test]
fn extra_options() {
    let mut seen = Vec::new();
    let o = Options::parse(
        ["--max-backlog", "10", "--port", "1"].map(String::from),
        7001,
        |name, value| {
            if name == "--max-backlog" {
                seen.push(Options::number::<usize>(name, value)?);
                return Ok(true);
            }
            Ok(false)
        },
    )
    .unwrap();
    assert_eq!(seen, [10]);
    assert_eq!(o.port, 1);
    let err = Options::parse(
        ["--max-backlog", "x"].map(String::from),
        7001,
        |name, value| Options::number::<usize>(name, value).map(|_| true),
    );
    assert!(matches!(err, Err(CliError::Invalid(m)) if m.contains("--max-backlog")));
}
