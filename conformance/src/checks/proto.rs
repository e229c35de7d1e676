//! The stream-protocol fixture the transport checks share: a [`Recorder`]
//! that asserts the PEP 3156 state machine on every call (CPython's
//! `MyBaseProto` pattern), so every check that uses it checks TP-01, TP-02
//! and FC-01's pairing for free, and the helpers that connect one.

use std::cell::RefCell;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use oneloop::{Error, ErrorKind, Protocol, Transport};

use crate::Env;

/// How long a blocking peer waits before it fails (never a pass).
pub(crate) const PEER_LIMIT: Duration = Duration::from_secs(10);

/// Where a stream protocol is in its life (TP-01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Initial,
    Connected,
    Eof,
    Closed,
}

/// One protocol call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Made,
    Data(usize),
    Eof,
    Lost(Option<ErrorKind>),
    Pause,
    Resume,
    /// A marker a hook pushed, to order protocol calls against it.
    Mark(&'static str),
}

/// What a [`Recorder`] saw.
#[derive(Debug)]
pub(crate) struct Seen {
    phase: Phase,
    events: Vec<Event>,
    data: Vec<u8>,
    transport: Option<Transport>,
    lost_error: Option<Error>,
    violations: Vec<String>,
    paused: bool,
}

/// The shared record of one protocol, cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Shared(Rc<RefCell<Seen>>);

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared(Rc::new(RefCell::new(Seen {
            phase: Phase::Initial,
            events: Vec::new(),
            data: Vec::new(),
            transport: None,
            lost_error: None,
            violations: Vec::new(),
            paused: false,
        })))
    }
    pub(crate) fn phase(&self) -> Phase {
        self.0.borrow().phase
    }
    pub(crate) fn events(&self) -> Vec<Event> {
        self.0.borrow().events.clone()
    }
    pub(crate) fn data(&self) -> Vec<u8> {
        self.0.borrow().data.clone()
    }
    pub(crate) fn data_len(&self) -> usize {
        self.0.borrow().data.len()
    }
    pub(crate) fn paused(&self) -> bool {
        self.0.borrow().paused
    }
    /// The transport `connection_made` gave.
    ///
    /// # Panics
    /// Before `connection_made` or after `connection_lost`.
    pub(crate) fn transport(&self) -> Transport {
        self.0
            .borrow()
            .transport
            .clone()
            .expect("connection_made ran and connection_lost did not yet")
    }
    pub(crate) fn lost(&self) -> bool {
        self.phase() == Phase::Closed
    }
    pub(crate) fn lost_error(&self) -> Option<Error> {
        self.0.borrow().lost_error.clone()
    }
    pub(crate) fn count(&self, e: &Event) -> usize {
        self.0.borrow().events.iter().filter(|x| *x == e).count()
    }
    pub(crate) fn mark(&self, m: &'static str) {
        self.0.borrow_mut().events.push(Event::Mark(m));
    }
    /// No call out of order so far (TP-01, TP-02, FC-01).
    pub(crate) fn assert_clean(&self) {
        let s = self.0.borrow();
        assert!(
            s.violations.is_empty(),
            "protocol state machine violated: {:?} (calls: {:?})",
            s.violations,
            s.events
        );
    }
    /// Clean, made once and lost exactly once.
    pub(crate) fn assert_complete(&self) {
        self.assert_clean();
        let ev = self.events();
        let lost = ev.iter().filter(|e| matches!(e, Event::Lost(_))).count();
        assert_eq!(lost, 1, "TP-01: connection_lost exactly once: {ev:?}");
        assert_eq!(
            self.count(&Event::Made),
            1,
            "TP-01: connection_made exactly once: {ev:?}"
        );
    }
    fn violation(&self, what: String) {
        self.0.borrow_mut().violations.push(what);
    }
}

type Hook = Option<Box<dyn FnMut(&Transport)>>;
type DataHook = Option<Box<dyn FnMut(&Transport, &[u8])>>;

/// A stream protocol that records every call and checks the call order, with
/// optional hooks for behaviour.
pub(crate) struct Recorder {
    shared: Shared,
    pub(crate) keep_open_on_eof: bool,
    pub(crate) on_made: Hook,
    pub(crate) on_data: DataHook,
    pub(crate) on_eof: Hook,
    pub(crate) on_resume: Hook,
}

impl Recorder {
    pub(crate) fn new(shared: &Shared) -> Recorder {
        Recorder {
            shared: shared.clone(),
            keep_open_on_eof: false,
            on_made: None,
            on_data: None,
            on_eof: None,
            on_resume: None,
        }
    }
    /// A recording echo protocol.
    pub(crate) fn echo(shared: &Shared) -> Recorder {
        let mut r = Recorder::new(shared);
        r.on_data = Some(Box::new(|t: &Transport, d: &[u8]| {
            t.write(d).expect("echo write");
        }));
        r
    }
    fn transport(&self) -> Option<Transport> {
        self.shared.0.borrow().transport.clone()
    }
    fn enter(&self, call: &str, allowed: &[Phase]) {
        let p = self.shared.phase();
        if !allowed.contains(&p) {
            self.shared.violation(format!("{call} in phase {p:?}"));
        }
    }
}

impl Protocol for Recorder {
    fn connection_made(&mut self, transport: &Transport) {
        self.enter("connection_made", &[Phase::Initial]);
        {
            let mut s = self.shared.0.borrow_mut();
            s.phase = Phase::Connected;
            s.events.push(Event::Made);
            s.transport = Some(transport.clone());
        }
        if let Some(h) = &mut self.on_made {
            h(transport);
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        self.enter("data_received", &[Phase::Connected]);
        if data.is_empty() {
            self.shared
                .violation("TP-02: data_received with no bytes".into());
        }
        {
            let mut s = self.shared.0.borrow_mut();
            s.events.push(Event::Data(data.len()));
            s.data.extend_from_slice(data);
        }
        let t = self.transport();
        if let (Some(h), Some(t)) = (&mut self.on_data, t) {
            h(&t, data);
        }
    }

    fn eof_received(&mut self) -> bool {
        self.enter("eof_received", &[Phase::Connected]);
        {
            let mut s = self.shared.0.borrow_mut();
            s.phase = Phase::Eof;
            s.events.push(Event::Eof);
        }
        let t = self.transport();
        if let (Some(h), Some(t)) = (&mut self.on_eof, t) {
            h(&t);
        }
        self.keep_open_on_eof
    }

    fn connection_lost(&mut self, error: Option<Error>) {
        self.enter("connection_lost", &[Phase::Connected, Phase::Eof]);
        let mut s = self.shared.0.borrow_mut();
        s.phase = Phase::Closed;
        s.events.push(Event::Lost(error.as_ref().map(Error::kind)));
        s.lost_error = error;
        // No cycle outlives the connection.
        s.transport = None;
    }

    fn pause_writing(&mut self) {
        self.enter("pause_writing", &[Phase::Connected, Phase::Eof]);
        if self.shared.paused() {
            self.shared.violation("FC-01: pause_writing twice".into());
        }
        let mut s = self.shared.0.borrow_mut();
        s.paused = true;
        s.events.push(Event::Pause);
    }

    fn resume_writing(&mut self) {
        self.enter("resume_writing", &[Phase::Connected, Phase::Eof]);
        if !self.shared.paused() {
            self.shared
                .violation("FC-01: resume_writing without pause_writing".into());
        }
        {
            let mut s = self.shared.0.borrow_mut();
            s.paused = false;
            s.events.push(Event::Resume);
        }
        let t = self.transport();
        if let (Some(h), Some(t)) = (&mut self.on_resume, t) {
            h(&t);
        }
    }
}

/// A TCP listener on an ephemeral loopback port.
pub(crate) fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let a = l.local_addr().expect("its address");
    (l, a)
}

/// A loopback port that refuses connections, and the socket that holds
/// it: bound, so no other test's socket takes the port while it lives, but
/// not listening. (Binding and releasing a port races: a server elsewhere
/// may bind it before the connect.)
pub(crate) fn refusing_port() -> (socket2::Socket, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind a loopback port");
    let a = s
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("its address");
    (s, a)
}

/// `n` bytes of a pattern that shows reordering and loss.
pub(crate) fn pattern(n: usize) -> Vec<u8> {
    pattern_from(0, n)
}

/// `len` bytes of [`pattern`]'s sequence, from its byte `from` on.
pub(crate) fn pattern_from(from: usize, len: usize) -> Vec<u8> {
    (from..from + len)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect()
}

/// More than a loopback connection whose peer never reads takes into the
/// kernel; a writer that gets this far without buffering a byte has lost
/// data or blocked.
pub(crate) const KERNEL_CAP: usize = 256 << 20;

/// Writes [`pattern`]'s sequence to `t` in `chunk`-byte writes until the
/// transport holds more than `above` bytes — the kernel took all it would
/// and the rest waits in the buffer — and returns how many were written.
/// The peer must not be reading.
///
/// No fixed size can stand in for this loop: Linux autotunes loopback
/// buffers (a send buffer grows up to `net.ipv4.tcp_wmem`'s maximum) and
/// how far they grow differs between machines; 4 MiB fit whole on one CI
/// machine.
pub(crate) fn write_until_buffered(t: &Transport, above: usize, chunk: usize) -> usize {
    let mut written = 0;
    while t.write_buffer_size() <= above {
        assert!(
            written < KERNEL_CAP,
            "wrote {} MiB to a peer that never reads and write() never buffered",
            written >> 20
        );
        t.write(&pattern_from(written, chunk))
            .expect("write on an open transport");
        written += chunk;
    }
    written
}

/// `create_connection` on the loop to a blocking std listener: the
/// transport, its record and the accepted peer (with a read timeout).
pub(crate) fn connected(
    env: &Env,
    make: impl FnOnce(&Shared) -> Recorder + 'static,
) -> (Transport, Shared, TcpStream) {
    let (l, addr) = listener();
    let sh = Shared::new();
    let s2 = sh.clone();
    let t = env
        .run_until(env.lp().create_connection(move || make(&s2), addr))
        .unwrap_or_else(|e| panic!("create_connection to a listener failed: {e}"));
    let (peer, _) = l.accept().expect("accept");
    peer.set_read_timeout(Some(PEER_LIMIT)).expect("timeout");
    peer.set_write_timeout(Some(PEER_LIMIT)).expect("timeout");
    (t, sh, peer)
}

/// A thread that reads from `peer` until EOF or `want` bytes.
pub(crate) fn drain_in_thread(mut peer: TcpStream, want: usize) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut got = Vec::with_capacity(want);
        let mut buf = vec![0; 64 * 1024];
        while got.len() < want {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("the peer's read failed: {e}"),
            }
        }
        got
    })
}

/// Run the loop until a peer thread is done, then join it.
pub(crate) fn join_on_loop<T>(env: &Env, h: thread::JoinHandle<T>) -> T {
    env.run_until_true(|| h.is_finished());
    h.join()
        .unwrap_or_else(|_| panic!("the peer thread panicked"))
}
