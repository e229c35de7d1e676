//! The one list of checks. Both front ends (the [`Harness`](crate::Harness)
//! and the [`suite!`](crate::suite) macro) and the generated
//! `docs/guarantees.md` expand from it, so they cannot drift.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use crate::env::Env;
use crate::spec::Caps;

/// How binding a guarantee is (`GUARANTEES.md` §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// PEP 3156 or the asyncio reference states it: it can never be waived.
    Must,
    /// A reference suite tests it or users rely on it: an adapter may list a
    /// reviewed [`Divergence`](crate::Divergence).
    Should,
}

impl Level {
    /// `"MUST"` or `"SHOULD"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The guarantee groups (`GUARANTEES.md` §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// `LC`: loop lifecycle.
    Lifecycle,
    /// `CB`: callbacks.
    Callbacks,
    /// `TM`: timers and the clock.
    Timers,
    /// `TH`: threads.
    Threads,
    /// `FD`: file-descriptor readiness.
    Fd,
    /// `FU`: futures.
    Futures,
    /// `TK`: tasks.
    Tasks,
    /// `CN`: cancellation.
    Cancellation,
    /// `ER`: errors and panics.
    Errors,
    /// `TP`: TCP transports and protocols.
    Tcp,
    /// `FC`: flow control of stream transports.
    Flow,
    /// `UD`: UDP endpoints.
    Udp,
    /// `UX`: Unix-domain stream sockets.
    Unix,
    /// `PI`: pipe transports.
    Pipes,
    /// `SP`: subprocesses.
    Subprocess,
    /// `SG`: signal handlers (each check in a child process).
    Signals,
    /// `EX`: the executor.
    Executor,
    /// `PO`: the current loop and the policy.
    Policy,
    /// `EM`: embedding in a host loop.
    Embedding,
}

impl Group {
    /// Every group, in the order of `GUARANTEES.md`.
    pub const ALL: [Group; 19] = [
        Group::Lifecycle,
        Group::Callbacks,
        Group::Timers,
        Group::Threads,
        Group::Fd,
        Group::Futures,
        Group::Tasks,
        Group::Cancellation,
        Group::Errors,
        Group::Tcp,
        Group::Flow,
        Group::Udp,
        Group::Unix,
        Group::Pipes,
        Group::Subprocess,
        Group::Signals,
        Group::Executor,
        Group::Policy,
        Group::Embedding,
    ];

    /// The ID prefix (`"LC"`, `"CB"`, …).
    pub fn prefix(self) -> &'static str {
        match self {
            Group::Lifecycle => "LC",
            Group::Callbacks => "CB",
            Group::Timers => "TM",
            Group::Threads => "TH",
            Group::Fd => "FD",
            Group::Futures => "FU",
            Group::Tasks => "TK",
            Group::Cancellation => "CN",
            Group::Errors => "ER",
            Group::Tcp => "TP",
            Group::Flow => "FC",
            Group::Udp => "UD",
            Group::Unix => "UX",
            Group::Pipes => "PI",
            Group::Subprocess => "SP",
            Group::Signals => "SG",
            Group::Executor => "EX",
            Group::Policy => "PO",
            Group::Embedding => "EM",
        }
    }

    /// The section title.
    pub fn title(self) -> &'static str {
        match self {
            Group::Lifecycle => "Loop lifecycle",
            Group::Callbacks => "Callbacks",
            Group::Timers => "Timers and clock",
            Group::Threads => "Threads",
            Group::Fd => "File-descriptor readiness",
            Group::Futures => "Futures",
            Group::Tasks => "Tasks",
            Group::Cancellation => "Cancellation",
            Group::Errors => "Errors and panics",
            Group::Tcp => "TCP transports and protocols",
            Group::Flow => "Flow control",
            Group::Udp => "UDP",
            Group::Unix => "Unix sockets",
            Group::Pipes => "Pipes",
            Group::Subprocess => "Subprocesses",
            Group::Signals => "Signals",
            Group::Executor => "Executor",
            Group::Policy => "Current loop and policy",
            Group::Embedding => "Embedding in a host loop",
        }
    }

    /// Whether its checks run each in a child process of their own: signal
    /// dispositions and child processes are process-wide state
    /// (`GUARANTEES.md` §2, point 7).
    pub fn is_isolated(self) -> bool {
        matches!(self, Group::Subprocess | Group::Signals)
    }

    /// The group of an ID such as `"TM-03"` (`UNSUP-FD` belongs to `FD`).
    pub fn of_id(id: &str) -> Option<Group> {
        let prefix = id.strip_prefix("UNSUP-").unwrap_or(id);
        let prefix = prefix.split('-').next()?;
        Group::ALL.into_iter().find(|g| g.prefix() == prefix)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix())
    }
}

/// Which loops a check applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Owned and attached loops alike.
    Any,
    /// Only loops that `run_*` drives: the run/stop semantics. On an attached
    /// loop the host runs the loop, and EM-01 checks that instead.
    Owned,
    /// Only loops attached to a host that runs them.
    Attached,
}

/// One check: a guarantee, and the function that proves it on a loop.
#[derive(Clone, Copy)]
pub struct Check {
    /// The stable ID of `GUARANTEES.md` (`"TM-03"`), or `UNSUP-<cap>` for the
    /// check that a missing capability answers `Unsupported`.
    pub id: &'static str,
    /// MUST or SHOULD.
    pub level: Level,
    /// The group.
    pub group: Group,
    /// The capabilities the check needs; without them it is ignored.
    pub caps: Caps,
    /// Capabilities the adapter must *lack* for the check to apply (the
    /// `UNSUP-*` checks).
    pub absent: Caps,
    /// Which loops it applies to.
    pub mode: Mode,
    /// The check function's name (`"timer_never_early"`).
    pub name: &'static str,
    /// The guarantee, in one sentence.
    pub statement: &'static str,
    /// The check.
    pub run: fn(&Env),
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("id", &self.id)
            .field("level", &self.level)
            .field("caps", &self.caps)
            .field("mode", &self.mode)
            .field("name", &self.name)
            .finish()
    }
}

/// A guarantee of the covered groups that has no check yet, and why.
#[derive(Debug, Clone, Copy)]
pub struct LeftOut {
    /// The ID.
    pub id: &'static str,
    /// MUST or SHOULD.
    pub level: Level,
    /// The guarantee, in one sentence.
    pub statement: &'static str,
    /// Why there is no check yet.
    pub reason: &'static str,
}

/// The guarantees of the covered groups that are not checked yet.
pub const LEFT_OUT: &[LeftOut] = &[];

/// Expands the one list of checks in the form its first token asks for:
/// `[table]` (the registry) or `[suite <spec>]` (one `#[test]` per check).
#[doc(hidden)]
#[macro_export]
macro_rules! __with_checks {
    ($($how:tt)*) => { $crate::__expand_checks! { [$($how)*]
        { lc_01, "LC-01", Must, Lifecycle, (), (), Owned, lifecycle::run_forever_returns_only_after_stop,
          "run_forever() returns only after stop(); stop() from a callback returns normally and that callback runs to its end." }
        { lc_02, "LC-02", Must, Lifecycle, (), (), Owned, lifecycle::nested_run_fails_already_running,
          "run_forever()/run_until_complete() from inside the running loop fail with AlreadyRunning; they neither nest nor deadlock." }
        { lc_03, "LC-03", Must, Lifecycle, (), (), Owned, lifecycle::stop_then_run_loses_no_callback,
          "Run, stop(), run again loses no callback: work queued but not run at the stop runs during the next run." }
        { lc_04, "LC-04", Must, Lifecycle, (), (), Owned, lifecycle::stop_finishes_current_batch_only,
          "stop() while running finishes the batch that was ready when the iteration began, then exits; work queued by that batch runs on the next run." }
        { lc_05, "LC-05", Must, Lifecycle, (), (), Owned, lifecycle::stop_before_run_polls_once,
          "stop() before run_forever(): the run polls once without blocking, runs what is ready, and returns." }
        { lc_06, "LC-06", Should, Lifecycle, (), (), Owned, lifecycle::is_running_until_run_returns,
          "is_running() is true inside callbacks, stays true after stop() until the run returns (D1), and is false afterwards." }
        { lc_07, "LC-07", Must, Lifecycle, (), (), Owned, lifecycle::run_until_complete_returns_output,
          "run_until_complete(f) returns f's result or error, returns at once for a done f, and rejects a future of another loop with InvalidArgument." }
        { lc_08, "LC-08", Must, Lifecycle, (), (), Owned, lifecycle::stop_ends_run_until_complete,
          "stop() before f completes ends run_until_complete(f) with Stopped, and f stays pending." }
        { lc_09, "LC-09", Should, Lifecycle, (), (), Owned, lifecycle::loop_reusable_after_fatal_failure,
          "After a fatal-class failure escapes run_until_complete, the loop runs again, with no stale stop request." }
        { lc_10, "LC-10", Must, Lifecycle, (), (), Owned, lifecycle::close_running_loop_fails,
          "close() on a running loop fails and the loop keeps running; close() is idempotent and makes is_closed() true." }
        { lc_11, "LC-11", Must, Lifecycle, (), (), Any, lifecycle::closed_loop_refuses_work,
          "After close(), every run and scheduling call fails with Closed, remove_* return false, add_reader fails, and queued callbacks are dropped unrun." }
        { cb_01, "CB-01", Must, Callbacks, (), (), Any, callbacks::call_soon_runs_fifo_once,
          "call_soon callbacks run in registration order (FIFO), each exactly once." }
        { cb_02, "CB-02", Must, Callbacks, (), (), Any, callbacks::call_soon_never_runs_inside_call,
          "call_soon never runs the callback inside the call; it runs after call_soon returns, once control is back in the loop." }
        { cb_03, "CB-03", Must, Callbacks, (), (), Any, callbacks::callbacks_never_overlap,
          "Callbacks of every kind never overlap, even when a callback iterates the host loop." }
        { cb_04, "CB-04", Should, Callbacks, (), (), Any, callbacks::requeueing_callback_cannot_starve,
          "A callback that keeps re-queueing itself cannot starve due timers or I/O: work queued during an iteration runs after the next poll." }
        { cb_05, "CB-05", Must, Callbacks, (), (), Any, callbacks::cancelled_handle_never_runs,
          "handle.cancel() before the run prevents the call, even from an earlier callback of the same batch; cancelling later or twice does nothing." }
        { cb_06, "CB-06", Must, Callbacks, (), (), Any, callbacks::only_remote_handle_crosses_threads,
          "Only call_soon_threadsafe may be used from another thread: Loop, handles, futures and tasks are !Send, RemoteLoop is Send + Sync." }
        { tm_01, "TM-01", Must, Timers, (), (), Any, timers::time_is_monotonic,
          "time() is monotonic, never decreases, and advances with real time." }
        { tm_02, "TM-02", Must, Timers, (), (), Any, timers::call_later_is_call_at_time_plus_delay,
          "call_later(d, cb) is call_at(time() + d, cb); each fires exactly once unless cancelled." }
        { tm_03, "TM-03", Should, Timers, (), (), Any, timers::timer_never_early,
          "A timer never fires early: inside the callback time() >= when, and real elapsed time >= the delay (D7)." }
        { tm_04, "TM-04", Should, Timers, (), (), Any, timers::idle_timer_fires_close_to_deadline,
          "On an idle loop a timer fires close to its deadline: never early, at most 250 ms plus the declared resolution late." }
        { tm_05, "TM-05", Must, Timers, (), (), Any, timers::timers_fire_in_deadline_order,
          "Timers with distinct future deadlines fire in deadline order; (SHOULD) deadlines already past fire in deadline order too." }
        { tm_06, "TM-06", Must, Timers, (), (), Any, timers::cancelled_timer_never_fires_nor_waits,
          "A cancelled timer never fires, and the loop does not wait for it." }
        { tm_07, "TM-07", Should, Timers, (), (), Any, timers::far_timers_neither_break_nor_spin,
          "Timers years in the future neither break nor spin the loop: they stay pending and nearer timers still fire." }
        { tm_08, "TM-08", Should, Timers, (), (), Any, timers::tiny_sleeps_do_not_spin,
          "Very small sleeps (1e-2 s down to 1e-10 s) complete without busy-spinning." }
        { tm_09, "TM-09", Should, Timers, (), (), Any, timers::now_refreshed_after_blocking_callback,
          "The loop's notion of now is refreshed after a callback that blocked: call_later(10 ms) issued after blocking still waits 10 ms." }
        { th_01, "TH-01", Must, Threads, (THREADS), (), Any, threads::threadsafe_call_wakes_idle_loop,
          "call_soon_threadsafe from another thread wakes an idle loop blocked in its poll; the callback runs on the loop thread, and a remote stop ends run_forever." }
        { th_02, "TH-02", Must, Threads, (THREADS), (), Any, threads::threadsafe_from_loop_thread_runs_promptly,
          "call_soon_threadsafe from the loop thread, even from a timer callback after the ready queue drained, runs promptly." }
        { th_03, "TH-03", Should, Threads, (THREADS), (), Any, threads::threadsafe_and_call_soon_share_one_fifo,
          "call_soon_threadsafe and call_soon from the loop thread feed one FIFO (D8)." }
        { th_04, "TH-04", Should, Threads, (THREADS), (), Any, threads::many_threads_lose_nothing,
          "N threads each posting M threadsafe callbacks: exactly N*M run, none lost." }
        { th_05, "TH-05", Must, Threads, (THREADS), (), Any, threads::threadsafe_on_closed_loop_is_closed,
          "call_soon_threadsafe on a closed loop returns Closed, from any thread, without panicking." }
        { fd_01, "FD-01", Must, Fd, (FD), (), Any, fd::readiness_is_level_triggered,
          "add_reader/add_writer call back every time the fd is ready, repeatedly (level-triggered), until removed." }
        { fd_02, "FD-02", Must, Fd, (FD), (), Any, fd::second_add_replaces_callback,
          "A second add_reader/add_writer on the same fd replaces the callback; the old one never runs again." }
        { fd_03, "FD-03", Must, Fd, (FD), (), Any, fd::remove_reports_and_silences,
          "remove_reader/remove_writer return whether something was removed; afterwards the callback never fires; any handle to the fd names the same registration." }
        { fd_04, "FD-04", Should, Fd, (FD), (), Any, fd::reader_and_writer_are_independent,
          "Reader and writer on one fd are independent, and switching between them from their own callbacks works." }
        { fd_05, "FD-05", Should, Fd, (FD), (), Any, fd::removed_writer_leaves_loop_idle,
          "After remove_writer on an always-writable fd the loop goes idle instead of spinning." }
        { fd_06, "FD-06", Should, Fd, (FD), (), Any, fd::writer_removed_by_done_callback_runs_once,
          "A writer that completes a future whose done-callback removes the writer is not called a second time." }
        { fd_07, "FD-07", Should, Fd, (FD), (), Any, fd::hangup_is_reported,
          "Peer hang-up or error on a watched fd is reported to the reader and the writer, so the owner sees EOF or the error." }
        { fd_08, "FD-08", Should, Fd, (FD), (), Any, fd::regular_file_rejected,
          "A regular file is rejected with Unsupported or InvalidArgument, not accepted and then never firing." }
        { unsup_fd, "UNSUP-FD", Must, Fd, (), (FD), Any, fd::missing_fd_capability_answers_unsupported,
          "An adapter without fd watching answers Unsupported from add_reader/add_writer instead of silently never calling back." }
        { fu_01, "FU-01", Must, Futures, (), (), Any, futures::new_future_is_pending,
          "A new future is neither done nor cancelled; result() fails with InvalidState and does not block." }
        { fu_02, "FU-02", Must, Futures, (), (), Any, futures::completing_done_future_fails,
          "set_result/set_exception on a done or cancelled future fail with InvalidState; cancel() on a done future returns false." }
        { fu_03, "FU-03", Must, Futures, (), (), Any, futures::cancel_pending_future,
          "cancel() on a pending future returns true and leaves it done and cancelled; result() and exception() report Cancelled." }
        { fu_04, "FU-04", Must, Futures, (), (), Any, futures::done_callbacks_are_queued_in_order,
          "Done-callbacks never run inside set_result/set_exception/cancel: they are queued with call_soon, in registration order, and receive the future." }
        { fu_05, "FU-05", Must, Futures, (), (), Any, futures::remove_done_callback_counts,
          "remove_done_callback removes the callback and returns the count removed; a done-callback that removes others is safe." }
        { fu_06, "FU-06", Should, Futures, (), (), Any, futures::unretrieved_error_reported_on_drop,
          "A failed future whose error was never retrieved is reported when dropped; a retrieved error, a result or a pending future is not." }
        { fu_07, "FU-07", Should, Futures, (EXECUTOR), (), Any, futures::pool_future_result_on_loop_thread,
          "A thread-pool result arrives on the loop thread, and cancelling the wrapper before the job started keeps it from running." }
        { tk_01, "TK-01", Must, Tasks, (), (), Any, tasks::task_runs_on_every_loop,
          "The task scheduler, written only against the public interface, runs tasks to completion on this loop (the PEP's litmus test)." }
        { tk_02, "TK-02", Must, Tasks, (), (), Any, tasks::spawn_does_not_run_body_inline,
          "spawn (create_task) does not run the body inside the call; the first step is queued." }
        { tk_03, "TK-03", Must, Tasks, (), (), Any, tasks::task_is_a_future,
          "A task is a future: its result or error mirrors the coroutine's, and done-callbacks work." }
        { tk_04, "TK-04", Must, Tasks, (), (), Any, tasks::task_steps_never_nest,
          "Task steps never nest: no task is resumed while any task is mid-step on the loop." }
        { tk_05, "TK-05", Should, Tasks, (), (), Any, tasks::current_task_and_all_tasks,
          "current_task() is the running task inside a task and none in a plain callback; all_tasks() lists this loop's pending tasks." }
        { cn_01, "CN-01", Must, Cancellation, (), (), Any, cancellation::cancel_is_delivered_at_next_suspension,
          "task.cancel() on a pending task returns true, is delivered at the next suspension point, and cancelled() becomes true only when the task ends; on a done task it returns false." }
        { cn_02, "CN-02", Must, Cancellation, (), (), Any, cancellation::cancel_cancels_awaited_future,
          "Cancelling a task that awaits a future cancels that future." }
        { cn_03, "CN-03", Must, Cancellation, (), (), Any, cancellation::task_may_catch_cancellation,
          "A task may catch Cancelled, carry on and return a value; it then ends normally and cancelled() is false." }
        { cn_04, "CN-04", Must, Cancellation, (), (), Any, cancellation::cancelling_awaited_future_cancels_task,
          "Cancelling the future a task awaits cancels the task; cancelling both yields one clean cancellation." }
        { cn_05, "CN-05", Should, Cancellation, (), (), Any, cancellation::timeout_cleans_up_before_reporting,
          "A timeout cancels the inner work and finishes its cleanup before reporting TimedOut." }
        { cn_06, "CN-06", Should, Cancellation, (TCP), (), Any, tcp::cancelled_connect_releases_its_fd,
          "Cancelling a pending socket operation (an unanswered connect) releases its fd registration promptly." }
        { er_01, "ER-01", Must, Errors, (), (), Any, errors::callback_panic_is_reported_during_run,
          "A panic in a callback is caught and passed to the exception handler with a context, during the run; the remaining callbacks still run." }
        { er_02, "ER-02", Must, Errors, (), (), Any, errors::exception_handler_can_be_set_and_reset,
          "set_exception_handler installs a handler, None restores the default, and call_exception_handler routes through the current one." }
        { er_03, "ER-03", Should, Errors, (), (), Any, errors::panicking_handler_is_survived,
          "An exception handler that itself panics is caught, and the loop survives." }
        { er_04, "ER-04", Must, Errors, (), (), Owned, errors::fatal_panic_propagates_and_loop_is_reusable,
          "Fatal-class failures (PanicPolicy::Propagate) leave run_*, leave the loop open, and the loop can run again." }
        { er_05, "ER-05", Should, Errors, (TCP), (), Any, tcp::protocol_panic_is_contained,
          "A panic in a protocol method goes to the exception handler naming the method; that transport is torn down with connection_lost once; the loop and other connections carry on." }
        { tp_01, "TP-01", Must, Tcp, (TCP), (), Any, tcp::protocol_call_order,
          "Protocol call order: connection_made once, data_received*, eof_received at most once, connection_lost once; nothing after it." }
        { tp_02, "TP-02", Must, Tcp, (TCP), (), Any, tcp::data_is_whole_and_in_order,
          "data_received always gets non-empty bytes, and their concatenation is exactly what the peer sent, whatever the chunking." }
        { tp_03, "TP-03", Should, Tcp, (TCP), (), Any, tcp::create_connection_resolves_after_made,
          "create_connection resolves only after connection_made has run (D2)." }
        { tp_04, "TP-04", Must, Tcp, (TCP), (), Any, tcp::write_never_blocks_and_keeps_order,
          "write() never blocks, buffers and keeps order; writing after close or abort is a defined error, never a crash." }
        { tp_05, "TP-05", Must, Tcp, (TCP), (), Any, tcp::close_flushes_then_loses_cleanly,
          "close() flushes the buffer, then connection_lost(None); no data_received after close(); is_closing() is true at once." }
        { tp_06, "TP-06", Must, Tcp, (TCP), (), Any, tcp::abort_discards_and_loses_later,
          "abort() discards the buffer and connection_lost(None) follows, never from inside abort(); abort twice or abort then close raise nothing." }
        { tp_07, "TP-07", Must, Tcp, (TCP), (), Any, tcp::eof_half_close_and_write_eof,
          "eof_received false closes, true keeps the connection half-open; write_eof sends EOF after the buffer, is idempotent, and writing after it fails; can_write_eof is true for TCP." }
        { tp_08, "TP-08", Should, Tcp, (TCP), (), Any, tcp::clean_close_and_reset_are_told_apart,
          "A clean peer close gives eof_received then connection_lost(None); a reset gives connection_lost(err)." }
        { tp_09, "TP-09", Must, Tcp, (TCP), (), Any, tcp::server_factory_close_and_extra_info,
          "One factory call per accepted connection; Server.close() refuses new connections and keeps the old, wait_closed resolves after they end; get_extra_info answers names and the default." }
        { tp_10, "TP-10", Should, Tcp, (TCP), (), Any, tcp::failure_in_connection_made_still_completes,
          "abort(), close() or a panic inside connection_made: create_connection still completes and connection_lost runs once." }
        { tp_11, "TP-11", Should, Tcp, (TCP), (), Any, tcp::adopted_socket_and_bind_errors,
          "An adopted accepted socket gives the same sequence; address in use and refused connections fail the create call and make no protocol." }
        { fc_01, "FC-01", Must, Flow, (TCP), (), Any, flow::pause_and_resume_pair_around_the_marks,
          "pause_writing once when the buffer goes strictly above high, resume_writing once at or below low, paired; a peer that never reads bounds the writer." }
        { fc_02, "FC-02", Must, Flow, (TCP), (), Any, flow::write_buffer_limits_checked_and_exact,
          "set_write_buffer_limits requires 0 <= low <= high; high alone gives low <= high; high = 0 pauses whenever anything is buffered; get_write_buffer_size is exact." }
        { fc_03, "FC-03", Should, Flow, (TCP), (), Any, flow::pause_comes_with_the_crossing_write,
          "pause_writing runs inside the write() that crossed the mark, or right after the protocol method that wrote, never re-entrantly." }
        { fc_04, "FC-04", Must, Flow, (TCP), (), Any, flow::pause_reading_holds_data_back,
          "After pause_reading no data_received until resume_reading, and the socket is not read; both are idempotent and do nothing on a closing transport." }
        { fc_05, "FC-05", Should, Flow, (TCP), (), Any, flow::pause_reading_in_connection_made,
          "pause_reading inside connection_made holds back the first read, even of data already waiting." }
        { fc_06, "FC-06", Should, Flow, (TCP), (), Any, flow::resume_writing_may_write_elsewhere,
          "resume_writing may write to another transport; closing while reading is paused completes." }
        { ud_01, "UD-01", Must, Udp, (UDP), (), Any, udp::datagram_call_order,
          "Datagram call order: connection_made once, then datagram_received/error_received, then connection_lost once." }
        { ud_02, "UD-02", Must, Udp, (UDP), (), Any, udp::datagrams_whole_with_source,
          "sendto(data, addr), or to the remote_addr given at creation; each datagram arrives whole with its source address." }
        { ud_03, "UD-03", Should, Udp, (UDP), (), Any, udp::error_received_does_not_close,
          "error_received does not close the endpoint: sending to a port with no listener does not break later receives." }
        { ud_04, "UD-04", Must, Udp, (UDP), (), Any, udp::close_abort_and_adopted_socket,
          "close() leads to connection_lost(None), abort() discards queued datagrams, and an endpoint can be made from a bound socket." }
        { ux_01, "UX-01", Should, Unix, (UNIX), (), Any, unix::unix_stream_follows_tcp_sequence,
          "Unix stream servers and connections follow the TCP protocol sequence; a missing path fails without a protocol." }
        { pi_01, "PI-01", Must, Pipes, (PIPES), (), Any, pipes::read_pipe_sequence,
          "A read pipe: connection_made, data_received*, eof_received, then exactly one connection_lost when the write end closes." }
        { pi_02, "PI-02", Must, Pipes, (PIPES), (), Any, pipes::write_pipe_in_order,
          "A write pipe: only connection_made and connection_lost (and flow control) are called, and the bytes arrive in order." }
        { pi_03, "PI-03", Should, Pipes, (PIPES), (), Any, pipes::write_pipe_learns_reader_closed,
          "A write pipe whose reader closes gets connection_lost without having to write." }
        { pi_04, "PI-04", Should, Pipes, (PIPES), (), Any, pipes::pty_as_read_and_write_pipe,
          "A PTY works as a read pipe, a write pipe, and both at once; transports left open when the loop closes can be inspected and dropped." }
        { sp_01, "SP-01", Must, Subprocess, (SUBPROCESS), (), Any, subprocess::call_order_and_output,
          "Subprocess call order: made once, pipe data, each pipe lost once, process_exited once, connection_lost once after all of them." }
        { sp_02, "SP-02", Must, Subprocess, (SUBPROCESS), (), Any, subprocess::returncode_and_pid,
          "get_returncode() is none while the child runs, then its code (-N when killed by signal N); get_pid() is the child's pid." }
        { sp_03, "SP-03", Must, Subprocess, (SUBPROCESS), (), Any, subprocess::stdin_writable_and_null_stdio,
          "get_pipe_transport(0) is writable; null stdio has no pipe transports; close() after exit is harmless." }
        { sp_04, "SP-04", Should, Subprocess, (SUBPROCESS), (), Any, subprocess::signals_delivered_and_default_dispositions,
          "kill, terminate and send_signal are delivered, and the child starts with default signal dispositions." }
        { sp_05, "SP-05", Should, Subprocess, (SUBPROCESS), (), Any, subprocess::stderr_to_stdout_and_early_close,
          "stderr=STDOUT merges into fd 1 with no fd-2 transport; closing stdout early makes the child's next write fail." }
        { sp_06, "SP-06", Should, Subprocess, (SUBPROCESS), (), Any, subprocess::exit_seen_while_grandchild_holds_pipes,
          "Exit is detected from the OS, not pipe EOF: a grandchild holding the pipes does not delay process_exited." }
        { sp_07, "SP-07", Should, Subprocess, (SUBPROCESS), (), Any, subprocess::output_before_exit_not_lost,
          "Output written just before exit is not lost: after process_exited the rest arrives and each pipe reaches EOF." }
        { sg_01, "SG-01", Must, Signals, (SIGNALS), (), Owned, signals::handler_runs_as_loop_callback,
          "A signal handler runs as an ordinary serialized loop callback and may use the loop." }
        { sg_02, "SG-02", Must, Signals, (SIGNALS), (), Any, signals::invalid_signals_refused,
          "Invalid signal numbers fail with InvalidArgument, SIGKILL fails, and removing a SIGKILL handler returns false." }
        { sg_03, "SG-03", Must, Signals, (SIGNALS), (), Owned, signals::second_add_replaces,
          "Adding again for a signal replaces the handler; remove_signal_handler returns true, then false." }
        { sg_04, "SG-04", Must, Signals, (SIGNALS), (), Owned, signals::signal_wakes_blocked_loop,
          "A signal arriving while the loop is blocked in its poll wakes the loop." }
        { sg_05, "SG-05", Should, Signals, (SIGNALS), (), Owned, signals::remove_restores_default_disposition,
          "Removing a handler restores the previous disposition, and a run after a caught signal is not interrupted again." }
        { sg_06, "SG-06", Should, Signals, (SIGNALS), (), Owned, signals::signal_state_left_unchanged,
          "A loop without signal handlers leaves the process's signal state unchanged; closing one with handlers restores it." }
        { sg_07, "SG-07", Must, Signals, (SIGNALS), (), Any, signals::unable_loop_refuses_explicitly,
          "A loop that cannot handle signals (off the main thread, attached to a host) fails add_signal_handler with Unsupported." }
        { ex_01, "EX-01", Must, Executor, (EXECUTOR), (), Any, executor::run_in_executor_runs_off_thread,
          "run_in_executor runs f off the loop thread and delivers its result as a loop future, even on an idle loop; set_default_executor replaces the pool." }
        { ex_02, "EX-02", Should, Executor, (EXECUTOR), (), Any, executor::shutdown_default_executor_waits,
          "shutdown_default_executor waits for the pool; the default pool then refuses work; a cancelled executor future never calls back into a closed loop." }
        { po_01, "PO-01", Must, Policy, (), (), Any, policy::get_running_loop_inside_and_outside,
          "get_running_loop() inside a callback or task is this loop; outside any run it fails with NotRunning." }
        { po_02, "PO-02", Must, Policy, (), (), Any, policy::current_loop_lookup_never_empty,
          "The current-loop lookup returns the loop that was set or fails; setting none makes it fail." }
        { po_03, "PO-03", Should, Policy, (), (), Any, policy::current_loop_is_per_thread,
          "The current loop is per thread, and two loops cannot run on one thread at the same time." }
        { po_04, "PO-04", Should, Policy, (), (), Any, policy::fresh_loops_are_independent,
          "A fresh, independent loop can be built without touching process-global defaults, and again after the first is closed." }
        { em_01, "EM-01", Must, Embedding, (HOST), (), Attached, embedding::attached_loop_refuses_runs,
          "A loop embedded in a host that runs it says so: run_* fail with AlreadyRunning and is_running() is true while attached." }
        { em_02, "EM-02", Must, Embedding, (HOST), (), Any, embedding::host_callback_work_wakes_loop,
          "Work created from a host-native callback (call_soon, set_result, a task, a timer) runs without any other event arriving." }
        { em_03, "EM-03", Should, Embedding, (HOST), (), Any, embedding::nested_host_loop_never_reenters,
          "While a callback runs a nested host loop, no oneloop callback or task step re-enters; afterwards the deferred work runs in order." }
        { em_04, "EM-04", Should, Embedding, (HOST), (), Owned, embedding::stop_unwinds_nested_host_loop,
          "stop() quits the loop even while the host is iterated recursively: every nesting level unwinds." }
        { em_05, "EM-05", Should, Embedding, (HOST), (), Owned, embedding::host_quit_has_defined_outcome,
          "A host-initiated quit ends run_until_complete with Stopped instead of hanging." }
        { em_06, "EM-06", Should, Embedding, (HOST), (), Owned, embedding::host_iteration_outside_run_runs_nothing,
          "Iterating the host while the loop is not running runs no oneloop callback." }
        { em_07, "EM-07", Should, Embedding, (HOST), (), Any, embedding::dispatch_and_host_do_not_starve,
          "A stream of oneloop callbacks cannot starve host callbacks, and a stream of host callbacks cannot starve oneloop." }
        { em_08, "EM-08", Should, Embedding, (HOST), (), Attached, embedding::host_driven_iterations_dispatch_once,
          "A host-driven loop: get_running_loop() and is_running() hold from setup to close, and host iterations dispatch queued work exactly once." }
        { em_09, "EM-09", Should, Embedding, (HOST GUEST), (), Attached, guest::guest_mode_runs_everything_on_the_host_thread,
          "Guest mode: I/O waits on a helper thread, every callback runs on the host thread through its run-soon hook; signals are the host's, stop() is unsupported, the done callback fires after full cleanup." }
        { em_10, "EM-10", Should, Embedding, (HOST), (), Any, embedding::one_loop_per_host_context,
          "A loop bound to a host context is unique while open and can be made again after close; its clock and declared resolution match the host." }
    } };
}

/// The expansion arms of [`__with_checks!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __expand_checks {
    ([table] $({ $t:ident, $id:literal, $lvl:ident, $grp:ident, ($($cap:ident)*), ($($absent:ident)*),
        $mode:ident, $m:ident :: $f:ident, $st:literal })*) => {
        &[$(
            $crate::Check {
                id: $id,
                level: $crate::Level::$lvl,
                group: $crate::Group::$grp,
                caps: $crate::Caps::NONE $(.union($crate::Caps::$cap))*,
                absent: $crate::Caps::NONE $(.union($crate::Caps::$absent))*,
                mode: $crate::Mode::$mode,
                name: stringify!($f),
                statement: $st,
                run: $crate::checks::$m::$f,
            },
        )*]
    };
    ([suite $spec:expr] $({ $t:ident, $id:literal, $lvl:ident, $grp:ident, ($($cap:ident)*), ($($absent:ident)*),
        $mode:ident, $m:ident :: $f:ident, $st:literal })*) => {
        $(
            #[allow(non_snake_case)]
            mod $t {
                #[allow(unused_imports)]
                use super::*;
                #[doc = $st]
                #[test]
                fn $f() {
                    $crate::__private::run_for_test(&$spec, $id);
                }
            }
        )*
    };
}

/// Every check, in the order of `GUARANTEES.md`.
pub const CHECKS: &[Check] = crate::__with_checks!(table);

/// Every check, after asserting once that the IDs are unique and well formed.
///
/// # Panics
/// If two checks share an ID, or an ID is also listed as left out: a broken
/// registry is a bug of this crate, caught by its own tests.
pub fn checks() -> &'static [Check] {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let mut seen = HashSet::new();
        for c in CHECKS {
            assert!(seen.insert(c.id), "duplicate check ID {}", c.id);
            assert!(
                Group::of_id(c.id) == Some(c.group),
                "check {} is filed under group {}",
                c.id,
                c.group
            );
        }
        for l in LEFT_OUT {
            assert!(seen.insert(l.id), "{} is both checked and left out", l.id);
        }
    });
    CHECKS
}

/// The check with this ID.
pub fn check(id: &str) -> Option<&'static Check> {
    checks().iter().find(|c| c.id == id)
}
