//! A GTK 4 dashboard fed by oneloop running inside GTK's own main loop.
//!
//! One thread, one loop: `oneloop_glib::attach` puts oneloop into the
//! default main context that `gtk::Application::run` iterates. The window
//! shows
//!
//! - a clock driven by `call_later` (a chain of one-second timers),
//! - results of CPU-bound work done by `run_in_executor` on a thread pool,
//!   started from a GTK button's `clicked` handler,
//! - lines read from a socket through `add_reader` (a writer thread plays a
//!   sensor feeding it),
//! - an HTTP server (hyper over oneloop, `oneloop-hyper`) serving the
//!   dashboard's own state, and a "Fetch" button that GETs it with
//!   hyper-util's pooled client, a tokio-based library, through the tokio
//!   bridge (`oneloop_tokio::enable`): no second runtime, no channel,
//!   the response lands on the GUI thread where the label is set,
//! - a host-native GLib heartbeat that shows the UI never froze.
//!
//! ```text
//! cargo run -p oneloop-examples --bin gtk_dashboard
//! xvfb-run -a cargo run -p oneloop-examples --bin gtk_dashboard -- --self-test [--screenshot docs/gtk-dashboard.png]
//! ```
//!
//! `--self-test` drives the window from a oneloop task (clicks the buttons,
//! waits for the clock, the pool result, the socket lines and the HTTP
//! round trip), checks that
//! the widgets show them, optionally renders the window to a PNG, quits, and
//! exits with status 0 only if every check passed.
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gtk::prelude::*;
use gtk::{gdk, glib};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use oneloop::Loop;

/// The widgets the loop updates, and what the self-test reads back.
struct Dashboard {
    window: gtk::ApplicationWindow,
    clock: gtk::Label,
    ticks: Cell<u32>,
    compute: gtk::Button,
    result: gtk::Label,
    results: Cell<u32>,
    feed: gtk::Label,
    lines: RefCell<Vec<String>>,
    feed_status: gtk::Label,
    /// The HTTP server's address and request count.
    http_server: gtk::Label,
    served: Cell<u32>,
    addr: Cell<Option<SocketAddr>>,
    server: RefCell<Option<oneloop::Server>>,
    fetch: gtk::Button,
    http_result: gtk::Label,
    fetches: Cell<u32>,
    heartbeat: gtk::Label,
    beats: Cell<u32>,
    /// The longest gap between two heartbeats: the UI's worst stall.
    worst_gap: Cell<Duration>,
    last_beat: Cell<Option<Instant>>,
}

/// Options from the command line.
#[derive(Default)]
struct Options {
    self_test: bool,
    screenshot: Option<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--self-test" => opts.self_test = true,
            "--screenshot" => {
                opts.screenshot = Some(args.next().ok_or("--screenshot needs a path")?);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gtk_dashboard: {e}\nusage: gtk_dashboard [--self-test] [--screenshot FILE]");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = gtk::init() {
        eprintln!("gtk_dashboard: cannot open a display: {e}");
        return ExitCode::FAILURE;
    }
    // oneloop inside GTK's main loop: the default context that
    // `Application::run` iterates.
    let lp = match oneloop_glib::attach(&glib::MainContext::default()) {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("gtk_dashboard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = gtk::Application::builder()
        .application_id("org.oneloop.GtkDashboard")
        .flags(gtk::gio::ApplicationFlags::NON_UNIQUE)
        .build();
    let verdict: Rc<Cell<Option<bool>>> = Rc::new(Cell::new(None));
    let opts = Rc::new(opts);
    {
        let (lp, verdict, opts) = (lp.clone(), verdict.clone(), opts.clone());
        app.connect_activate(move |app| {
            let dash = build_ui(app);
            if let Err(e) = start_feeds(&lp, &dash) {
                eprintln!("gtk_dashboard: {e}");
                verdict.set(Some(false));
                app.quit();
                return;
            }
            dash.window.present();
            if opts.self_test {
                start_self_test(&lp, app, &dash, &opts, &verdict);
            }
        });
    }
    // Our own flags are not GApplication's: do not pass them on.
    let status = app.run_with_args(&["gtk_dashboard"]);
    let closed = lp.close();
    if opts.self_test {
        return match (verdict.get(), closed) {
            (Some(true), Ok(())) => {
                println!("gtk_dashboard self-test: 1 passed, 0 failed");
                ExitCode::SUCCESS
            }
            _ => {
                println!("gtk_dashboard self-test: 0 passed, 1 failed");
                ExitCode::FAILURE
            }
        };
    }
    if status != glib::ExitCode::SUCCESS || closed.is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn heading(text: &str) -> gtk::Label {
    let l = gtk::Label::new(None);
    l.set_markup(&format!("<b>{}</b>", glib::markup_escape_text(text)));
    l.set_xalign(0.0);
    l
}

fn value_label(text: &str) -> gtk::Label {
    let l = gtk::Label::new(Some(text));
    l.set_xalign(0.0);
    l.set_wrap(true);
    l
}

fn build_ui(app: &gtk::Application) -> Rc<Dashboard> {
    let window = gtk::ApplicationWindow::builder()
        .application(app)
        .title("oneloop · GTK dashboard")
        .default_width(560)
        .default_height(470)
        .build();
    let grid = gtk::Grid::builder()
        .row_spacing(10)
        .column_spacing(18)
        .margin_top(18)
        .margin_bottom(18)
        .margin_start(18)
        .margin_end(18)
        .build();
    let title = gtk::Label::new(None);
    title.set_markup("<big><b>oneloop inside GTK's main loop</b></big>");
    title.set_xalign(0.0);
    grid.attach(&title, 0, 0, 2, 1);

    let clock = value_label("--:--:--");
    grid.attach(&heading("Clock (call_later)"), 0, 1, 1, 1);
    grid.attach(&clock, 1, 1, 1, 1);

    let compute = gtk::Button::with_label("Count primes on the pool");
    let result = value_label("not run yet");
    grid.attach(&heading("Thread pool (run_in_executor)"), 0, 2, 1, 1);
    grid.attach(&compute, 1, 2, 1, 1);
    grid.attach(&result, 1, 3, 1, 1);

    let feed_status = value_label("waiting for the sensor");
    let feed = value_label("");
    feed.set_yalign(0.0);
    feed.add_css_class("monospace");
    grid.attach(&heading("Socket feed (add_reader)"), 0, 4, 1, 1);
    grid.attach(&feed_status, 1, 4, 1, 1);
    grid.attach(&feed, 1, 5, 1, 1);

    let http_server = value_label("starting…");
    let fetch = gtk::Button::with_label("Fetch /status with hyper-util (tokio bridge)");
    fetch.set_sensitive(false);
    let http_result = value_label("not fetched yet");
    grid.attach(&heading("HTTP server (hyper over oneloop)"), 0, 6, 1, 1);
    grid.attach(&http_server, 1, 6, 1, 1);
    grid.attach(&heading("HTTP client (tokio-based)"), 0, 7, 1, 1);
    grid.attach(&fetch, 1, 7, 1, 1);
    grid.attach(&http_result, 1, 8, 1, 1);

    let heartbeat = value_label("0 beats");
    grid.attach(&heading("UI heartbeat (GLib timeout)"), 0, 9, 1, 1);
    grid.attach(&heartbeat, 1, 9, 1, 1);

    window.set_child(Some(&grid));
    Rc::new(Dashboard {
        window,
        clock,
        ticks: Cell::new(0),
        compute,
        result,
        results: Cell::new(0),
        feed,
        lines: RefCell::new(Vec::new()),
        feed_status,
        http_server,
        served: Cell::new(0),
        addr: Cell::new(None),
        server: RefCell::new(None),
        fetch,
        http_result,
        fetches: Cell::new(0),
        heartbeat,
        beats: Cell::new(0),
        worst_gap: Cell::new(Duration::ZERO),
        last_beat: Cell::new(None),
    })
}

/// Wall-clock time of day, UTC, as `HH:MM:SS`.
fn time_of_day() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// The clock: one `call_later` per second, each scheduling the next.
fn tick(lp: &Loop, dash: &Rc<Dashboard>) {
    dash.clock.set_text(&time_of_day());
    dash.ticks.set(dash.ticks.get() + 1);
    let (lp2, dash2) = (lp.clone(), dash.clone());
    // Closed at exit: nothing more to schedule then.
    let _ = lp.call_later(Duration::from_secs(1), move || tick(&lp2, &dash2));
}

/// CPU-bound work for the pool.
fn count_primes(below: u32) -> usize {
    (2..below)
        .filter(|&n| (2..).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .count()
}

fn start_feeds(lp: &Loop, dash: &Rc<Dashboard>) -> oneloop::Result<()> {
    tick(lp, dash);

    // A GTK signal handler starts oneloop work: it runs at once (EM-02).
    {
        let (lp, d) = (lp.clone(), dash.clone());
        dash.compute.connect_clicked(move |button| {
            button.set_sensitive(false);
            d.result.set_text("counting on a worker thread…");
            let (lp2, d2) = (lp.clone(), d.clone());
            let started = Instant::now();
            let job = lp.spawn(async move {
                let below = 300_000;
                let n = lp2.run_in_executor(move || count_primes(below))?.await?;
                d2.result.set_text(&format!(
                    "{n} primes below {below}, counted on the pool in {} ms",
                    started.elapsed().as_millis()
                ));
                d2.results.set(d2.results.get() + 1);
                d2.compute.set_sensitive(true);
                Ok::<_, oneloop::Error>(())
            });
            if let Err(e) = job {
                d.result.set_text(&format!("could not start: {e}"));
            }
        });
    }

    // The sensor: a thread writing lines into a socket; oneloop reads them.
    let (reader, mut writer) = UnixStream::pair().map_err(oneloop::Error::from)?;
    reader.set_nonblocking(true).map_err(oneloop::Error::from)?;
    std::thread::spawn(move || {
        for i in 1..=12u32 {
            let line = format!("sensor #{i:02}: {:.1} °C\n", 20.0 + f64::from(i % 7) * 0.7);
            if writer.write_all(line.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(120));
        }
        // Dropping the writer closes the socket: the reader sees EOF.
    });
    let reader = Rc::new(reader);
    let pending = RefCell::new(Vec::<u8>::new());
    let (lp2, d, r) = (lp.clone(), dash.clone(), reader.clone());
    lp.add_reader(&*reader, move || {
        let mut buf = [0u8; 4096];
        match (&*r).read(&mut buf) {
            Ok(0) => {
                lp2.remove_reader(&*r);
                d.feed_status.set_text(&format!(
                    "{} lines, sensor closed the socket",
                    d.lines.borrow().len()
                ));
            }
            Ok(n) => {
                let mut pending = pending.borrow_mut();
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    d.lines
                        .borrow_mut()
                        .push(String::from_utf8_lossy(&line).trim_end().to_string());
                }
                let lines = d.lines.borrow();
                let shown: Vec<&str> = lines
                    .iter()
                    .rev()
                    .take(4)
                    .rev()
                    .map(String::as_str)
                    .collect();
                d.feed.set_text(&shown.join("\n"));
                d.feed_status
                    .set_text(&format!("{} lines received", lines.len()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                lp2.remove_reader(&*r);
                d.feed_status.set_text(&format!("read error: {e}"));
            }
        }
    })?;

    start_http(lp, dash)?;

    // A host-native GLib timer: if oneloop hogged the thread, its gaps
    // would show it.
    let d = dash.clone();
    glib::timeout_add_local(Duration::from_millis(50), move || {
        let now = Instant::now();
        if let Some(last) = d.last_beat.replace(Some(now)) {
            d.worst_gap.set(d.worst_gap.get().max(now - last));
        }
        d.beats.set(d.beats.get() + 1);
        d.heartbeat.set_text(&format!(
            "{} beats, longest gap {} ms",
            d.beats.get(),
            d.worst_gap.get().as_millis()
        ));
        glib::ControlFlow::Continue
    });
    Ok(())
}

/// What `/status` answers: the dashboard's own state.
fn status_text(d: &Dashboard) -> String {
    format!(
        "{} clock ticks, {} sensor lines, {} pool results, {} heartbeats",
        d.ticks.get(),
        d.lines.borrow().len(),
        d.results.get(),
        d.beats.get()
    )
}

/// An HTTP server on the GUI thread (hyper over oneloop streams), and a
/// button that fetches from it with hyper-util's pooled client: tokio's
/// `HttpConnector` and executor, working here because the tokio bridge is
/// on. Both run in oneloop tasks on GTK's thread and set labels directly.
fn start_http(lp: &Loop, dash: &Rc<Dashboard>) -> oneloop::Result<()> {
    oneloop_tokio::enable(lp)?;
    let d = dash.clone();
    let timer = oneloop_hyper::LoopTimer::new(lp);
    let serving = lp.start_server(
        move |reader, writer| {
            let io = oneloop_hyper::HyperIo::new(
                oneloop::Stream::join(reader, writer).expect("one connection's halves"),
            );
            let d = d.clone();
            let service = hyper::service::service_fn(move |_request| {
                d.served.set(d.served.get() + 1);
                if let Some(addr) = d.addr.get() {
                    d.http_server.set_text(&format!(
                        "serving http://{addr}/status · requests served: {}",
                        d.served.get()
                    ));
                }
                let body = Full::new(Bytes::from(status_text(&d)));
                async move { Ok::<_, Infallible>(hyper::Response::new(body)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(timer.clone())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(io, service);
            async move {
                let _ = conn.await;
            }
        },
        "127.0.0.1:0",
    );
    let d = dash.clone();
    lp.spawn(async move {
        match serving.await {
            Ok(server) => {
                let addr = server.local_addrs()[0].as_inet();
                d.addr.set(addr);
                *d.server.borrow_mut() = Some(server);
                if let Some(addr) = addr {
                    d.http_server.set_text(&format!(
                        "serving http://{addr}/status · requests served: 0"
                    ));
                }
                d.fetch.set_sensitive(true);
            }
            Err(e) => d.http_server.set_text(&format!("cannot serve: {e}")),
        }
    })?;

    let client: Rc<Client<_, Empty<Bytes>>> =
        Rc::new(Client::builder(TokioExecutor::new()).build_http());
    let (lp, d) = (lp.clone(), dash.clone());
    dash.fetch.connect_clicked(move |button| {
        let Some(addr) = d.addr.get() else { return };
        button.set_sensitive(false);
        d.http_result.set_text("fetching…");
        let (d2, client) = (d.clone(), client.clone());
        let started = Instant::now();
        let fetch = lp.spawn(async move {
            let text = match client
                .get(format!("http://{addr}/status").parse().unwrap())
                .await
            {
                Ok(response) => {
                    let status = response.status();
                    match response.into_body().collect().await {
                        Ok(body) => format!(
                            "{status} in {} ms: {}",
                            started.elapsed().as_millis(),
                            String::from_utf8_lossy(&body.to_bytes())
                        ),
                        Err(e) => format!("{status}, body failed: {e}"),
                    }
                }
                Err(e) => format!("request failed: {e}"),
            };
            d2.http_result.set_text(&text);
            d2.fetches.set(d2.fetches.get() + 1);
            d2.fetch.set_sensitive(true);
        });
        if let Err(e) = fetch {
            d.http_result.set_text(&format!("could not start: {e}"));
        }
    });
    Ok(())
}

/// Wait (on oneloop timers) until `done()`, at most `limit`.
async fn wait_for(done: impl Fn() -> bool, limit: Duration) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        if oneloop::sleep(Duration::from_millis(25)).await.is_err() {
            return false;
        }
    }
    true
}

fn start_self_test(
    lp: &Loop,
    app: &gtk::Application,
    dash: &Rc<Dashboard>,
    opts: &Rc<Options>,
    verdict: &Rc<Cell<Option<bool>>>,
) {
    // Host-native watchdog: a lost wake-up fails the test, never hangs it.
    {
        let (app, verdict) = (app.clone(), verdict.clone());
        glib::timeout_add_local_once(Duration::from_secs(60), move || {
            eprintln!("self-test: FAIL: watchdog expired");
            verdict.set(Some(false));
            app.quit();
        });
    }
    let (app, d, opts, v) = (app.clone(), dash.clone(), opts.clone(), verdict.clone());
    let started = lp.spawn(async move {
        let mut failures = Vec::new();
        let mut check = |name: &str, ok: bool| {
            println!("self-test: {} {name}", if ok { "ok  " } else { "FAIL" });
            if !ok {
                failures.push(name.to_string());
            }
        };
        // Let the window map and draw once.
        check(
            "window mapped",
            wait_for(|| d.window.is_mapped(), Duration::from_secs(10)).await,
        );
        // Measure responsiveness from here on: GTK's own start-up (fonts,
        // first frame) is not the loop's doing.
        d.worst_gap.set(Duration::ZERO);
        d.last_beat.set(None);
        let beats_at_start = d.beats.get();
        // Click from code: the handler runs in GTK's signal emission.
        d.compute.emit_clicked();
        check(
            "pool result shown",
            wait_for(|| d.results.get() == 1, Duration::from_secs(20)).await
                && d.result.text().contains("primes below 300000"),
        );
        check(
            "socket lines shown",
            wait_for(
                || d.feed_status.text().contains("sensor closed"),
                Duration::from_secs(20),
            )
            .await
                && d.lines.borrow().len() == 12
                && d.feed.text().contains("sensor #12"),
        );
        check(
            "HTTP server up",
            wait_for(|| d.addr.get().is_some(), Duration::from_secs(10)).await,
        );
        d.fetch.emit_clicked();
        check(
            "HTTP fetched with the tokio-based client, served by hyper over oneloop",
            wait_for(|| d.fetches.get() == 1, Duration::from_secs(20)).await
                && d.http_result.text().starts_with("200 OK")
                && d.http_result.text().contains("sensor lines")
                && d.served.get() == 1
                && d.http_server.text().ends_with("requests served: 1"),
        );
        check(
            "clock ticked",
            wait_for(|| d.ticks.get() >= 3, Duration::from_secs(10)).await
                && d.clock.text().ends_with(" UTC"),
        );
        check(
            "UI stayed responsive (heartbeat gaps < 1 s)",
            d.beats.get() >= beats_at_start + 10 && d.worst_gap.get() < Duration::from_secs(1),
        );
        if let Some(path) = &opts.screenshot {
            // A render can come out blank while GTK is between frames:
            // check the pixels and retry a few frames later.
            let mut saved = false;
            for _ in 0..10 {
                saved = screenshot(&d.window, path);
                if saved || oneloop::sleep(Duration::from_millis(100)).await.is_err() {
                    break;
                }
            }
            check("screenshot saved (not blank)", saved);
        }
        v.set(Some(failures.is_empty()));
        app.quit();
    });
    if started.is_err() {
        verdict.set(Some(false));
    }
}

/// Render `window` to a PNG with its own GSK renderer (works under Xvfb);
/// false if the render is blank or cannot be saved.
fn screenshot(window: &gtk::ApplicationWindow, path: &str) -> bool {
    let paintable = gtk::WidgetPaintable::new(Some(window));
    let (w, h) = (window.width() as f64, window.height() as f64);
    let snapshot = gtk::Snapshot::new();
    // A white page under the window (the theme's background may be
    // translucent where the window has no decorations).
    snapshot.append_color(
        &gdk::RGBA::WHITE,
        &gtk::graphene::Rect::new(0.0, 0.0, w as f32, h as f32),
    );
    paintable.snapshot(&snapshot, w, h);
    let Some(node) = snapshot.to_node() else {
        eprintln!("self-test: nothing to render");
        return false;
    };
    let Some(renderer) = window.renderer() else {
        eprintln!("self-test: the window has no renderer");
        return false;
    };
    let texture = renderer.render_texture(&node, None);
    let (tw, th) = (texture.width() as usize, texture.height() as usize);
    let mut pixels = vec![0u8; tw * th * 4];
    texture.download(&mut pixels, tw * 4);
    let first = &pixels[..4];
    if pixels.chunks_exact(4).all(|p| p == first) {
        eprintln!("self-test: the render came out blank");
        return false;
    }
    match texture.save_to_png(path) {
        Ok(()) => {
            println!("self-test: screenshot written to {path}");
            true
        }
        Err(e) => {
            eprintln!("self-test: cannot write {path}: {e}");
            false
        }
    }
}
