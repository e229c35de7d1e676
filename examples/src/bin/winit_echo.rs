//! A winit window whose event loop hosts oneloop in guest mode.
//!
//! winit offers no fd API and no way to add a timer source: only
//! `EventLoopProxy::send_event`, a thread-safe "deliver this to my event
//! loop". That is all guest mode (`oneloop-guest`) needs: the proxy is the
//! host hook, and each `Job` comes back as a user event that the handler
//! runs on the GUI thread. oneloop's I/O wait runs on a helper thread;
//! every callback, task step and timer runs on the GUI thread, so the code
//! below updates the window's state directly, with no channel.
//!
//! The window shows a TCP echo round trip (a oneloop echo server and a
//! client stream on 127.0.0.1), a counter driven by a oneloop timer, and
//! the thread everything ran on. It is drawn on the CPU with softbuffer, in
//! an 8x8 bitmap font.
//!
//! ```text
//! cargo run -p oneloop-examples --bin winit_echo
//! xvfb-run -a cargo run -p oneloop-examples --bin winit_echo -- --self-test [--screenshot docs/winit-echo.png]
//! ```
//!
//! `--self-test` waits for the echo and ten timer ticks, reads the window's
//! pixels back from the X server, checks that they show the drawing, writes
//! them as a PNG if asked, and exits 0 only if every check passed. Closing
//! the window cancels the guest run; the app exits once the guest is done.
#![forbid(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::rc::Rc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use oneloop::Loop;
use oneloop_guest::{GuestRun, Job};
use winit::application::ApplicationHandler;
use winit::dpi::LogicalSize;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, EventLoop, EventLoopProxy};
use winit::window::{Window, WindowId};

/// What the window shows; written by oneloop callbacks on the GUI thread.
#[derive(Default)]
struct Ui {
    echo: Option<String>,
    round_trip: Option<Duration>,
    ticks: u32,
    /// Every oneloop callback and task step that touched the UI ran on
    /// this thread (checked each time).
    off_thread: u32,
}

/// The host's user event: a step of the guest to run on this thread.
struct GuestJob(Job);

struct Options {
    self_test: bool,
    screenshot: Option<String>,
}

struct App {
    opts: Options,
    proxy: EventLoopProxy<GuestJob>,
    gui_thread: ThreadId,
    ui: Rc<RefCell<Ui>>,
    window: Option<Rc<Window>>,
    surface: Option<softbuffer::Surface<Rc<Window>, Rc<Window>>>,
    run: Option<GuestRun>,
    /// Set by the guest run's done callback: the app may exit.
    done: Rc<Cell<Option<bool>>>,
    verdict: Option<bool>,
}

const TICKS: u32 = 10;

impl App {
    fn start_guest(&mut self, window: Rc<Window>) -> oneloop::Result<()> {
        let proxy = std::sync::Mutex::new(self.proxy.clone());
        // The host hook: winit delivers the job as a user event.
        let host = move |job: Job| {
            let proxy = proxy.lock().unwrap_or_else(|e| e.into_inner());
            // Fails only once the event loop is gone: the job is dropped
            // with it.
            let _ = proxy.send_event(GuestJob(job));
        };
        let (ui, gui, done) = (self.ui.clone(), self.gui_thread, self.done.clone());
        let self_test = self.self_test_wanted();
        let run = oneloop_guest::start_guest_run(
            host,
            move |lp| guest_main(lp, ui, window, gui, self_test),
            move |out: oneloop::Result<oneloop::Result<()>>| {
                let ok = matches!(out, Ok(Ok(())));
                if !ok {
                    eprintln!("winit_echo: the guest run ended with {out:?}");
                }
                done.set(Some(ok));
            },
        )?;
        self.run = Some(run);
        Ok(())
    }

    fn self_test_wanted(&self) -> bool {
        self.opts.self_test
    }

    fn redraw(&mut self) {
        let (Some(window), Some(surface)) = (&self.window, &mut self.surface) else {
            return;
        };
        let size = window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height)) else {
            return;
        };
        if surface.resize(w, h).is_err() {
            return;
        }
        let Ok(mut buffer) = surface.buffer_mut() else {
            return;
        };
        let mut canvas = Canvas {
            pixels: &mut buffer,
            width: size.width as usize,
            height: size.height as usize,
        };
        canvas.fill(0x00_1e_24_30);
        let ui = self.ui.borrow();
        canvas.text(16, 16, "oneloop in winit (guest mode)", 3, 0x00_f0_f0_f0);
        let echo = match (&ui.echo, ui.round_trip) {
            (Some(e), Some(rt)) => format!("echo: {e} ({} us)", rt.as_micros()),
            _ => "echo: waiting...".to_owned(),
        };
        canvas.text(16, 64, &echo, 2, 0x00_7f_d8_8f);
        canvas.text(
            16,
            96,
            &format!("timer ticks: {}", ui.ticks),
            2,
            0x00_ff_c8_57,
        );
        let threads = if ui.off_thread == 0 {
            "every callback on the GUI thread"
        } else {
            "a callback ran OFF the GUI thread"
        };
        canvas.text(16, 128, threads, 2, 0x00_9f_c5_ff);
        // The counter as a bar: one block per tick.
        for i in 0..ui.ticks.min(TICKS) as usize {
            canvas.rect(16 + i * 28, 168, 22, 22, 0x00_ff_c8_57);
        }
        drop(ui);
        let _ = buffer.present();
    }

    /// Read the window back from the X server and judge it.
    fn check_window(&mut self) -> bool {
        let Some(surface) = &mut self.surface else {
            return false;
        };
        let Some(window) = &self.window else {
            return false;
        };
        let size = window.inner_size();
        let pixels = match surface.fetch() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("self-test: cannot read the window back: {e}");
                return false;
            }
        };
        let background = pixels
            .iter()
            .filter(|&&p| p & 0xff_ff_ff == 0x1e_24_30)
            .count();
        let counter = pixels
            .iter()
            .filter(|&&p| p & 0xff_ff_ff == 0xff_c8_57)
            .count();
        let shows = background > pixels.len() / 2 && counter > 22 * 22 * (TICKS as usize);
        println!(
            "self-test: {} the window shows the drawing ({} px, {background} background, {counter} counter)",
            if shows { "ok  " } else { "FAIL" },
            pixels.len()
        );
        if let Some(path) = &self.opts.screenshot {
            match write_png(path, size.width, size.height, &pixels) {
                Ok(()) => println!("self-test: screenshot written to {path}"),
                Err(e) => {
                    eprintln!("self-test: cannot write {path}: {e}");
                    return false;
                }
            }
        }
        shows
    }
}

impl ApplicationHandler<GuestJob> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        let attrs = Window::default_attributes()
            .with_title("oneloop in winit")
            .with_inner_size(LogicalSize::new(720.0, 220.0));
        let window = match event_loop.create_window(attrs) {
            Ok(w) => Rc::new(w),
            Err(e) => {
                eprintln!("winit_echo: cannot create a window: {e}");
                self.verdict = Some(false);
                event_loop.exit();
                return;
            }
        };
        let surface = softbuffer::Context::new(window.clone())
            .and_then(|cx| softbuffer::Surface::new(&cx, window.clone()));
        match surface {
            Ok(s) => self.surface = Some(s),
            Err(e) => {
                eprintln!("winit_echo: cannot draw into the window: {e}");
                self.verdict = Some(false);
                event_loop.exit();
                return;
            }
        }
        self.window = Some(window.clone());
        if let Err(e) = self.start_guest(window) {
            eprintln!("winit_echo: cannot start oneloop in guest mode: {e}");
            self.verdict = Some(false);
            event_loop.exit();
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, job: GuestJob) {
        // A step of oneloop: its callbacks run here, on the GUI thread.
        job.0.run();
        if let Some(ok) = self.done.take() {
            let mut verdict = ok;
            if self.opts.self_test {
                self.redraw();
                verdict &= self.check_window();
            }
            self.verdict = Some(verdict);
            event_loop.exit();
        }
    }

    fn window_event(&mut self, _: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::RedrawRequested => self.redraw(),
            WindowEvent::CloseRequested => {
                // End the guest run; its done callback exits the app.
                if let Some(run) = &self.run {
                    run.cancel();
                }
            }
            _ => {}
        }
    }
}

/// The guest run's main future: an echo server and client, and a timer,
/// updating the UI directly (this is the GUI thread).
async fn guest_main(
    lp: Loop,
    ui: Rc<RefCell<Ui>>,
    window: Rc<Window>,
    gui: ThreadId,
    self_test: bool,
) -> oneloop::Result<()> {
    let on_gui = {
        let ui = ui.clone();
        move || {
            if std::thread::current().id() != gui {
                ui.borrow_mut().off_thread += 1;
            }
        }
    };
    // An echo server: each connection's bytes go straight back.
    let server = lp
        .start_server(
            |mut reader, mut writer| async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = reader.read(&mut buf).await {
                    if n == 0 || writer.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            },
            "127.0.0.1:0",
        )
        .await?;
    let addr = server.local_addrs()[0]
        .as_inet()
        .ok_or_else(|| oneloop::Error::new(oneloop::ErrorKind::Io, "no TCP address"))?;
    // A timer: a counter the window shows, one tick per 100 ms.
    let ticker = lp.spawn({
        let (ui, window, on_gui) = (ui.clone(), window.clone(), on_gui.clone());
        async move {
            loop {
                oneloop::sleep(Duration::from_millis(100)).await?;
                on_gui();
                ui.borrow_mut().ticks += 1;
                window.request_redraw();
                if self_test && ui.borrow().ticks >= TICKS {
                    return Ok::<_, oneloop::Error>(());
                }
            }
        }
    })?;
    // The client: one round trip through the server.
    let mut stream = lp.open_stream(addr).await?;
    let start = Instant::now();
    stream.write_all(b"hello, winit").await?;
    let mut echoed = [0u8; 12];
    stream.read_exact(&mut echoed).await?;
    on_gui();
    {
        let mut ui = ui.borrow_mut();
        ui.round_trip = Some(start.elapsed());
        ui.echo = Some(String::from_utf8_lossy(&echoed).into_owned());
    }
    window.request_redraw();
    drop(stream);
    // Without --self-test the window stays until it is closed (which
    // cancels this future).
    ticker.await??;
    server.close();
    let ui = ui.borrow();
    if ui.echo.as_deref() != Some("hello, winit") || ui.off_thread != 0 {
        return Err(oneloop::Error::new(
            oneloop::ErrorKind::InvalidState,
            format!(
                "echo {:?}, {} callbacks off the GUI thread",
                ui.echo, ui.off_thread
            ),
        ));
    }
    println!(
        "self-test: ok   echo round trip ({:?}) and {} timer ticks, all on the GUI thread",
        ui.round_trip.unwrap_or_default(),
        ui.ticks
    );
    Ok(())
}

/// A software framebuffer with just enough drawing for this window.
struct Canvas<'a> {
    pixels: &'a mut [u32],
    width: usize,
    height: usize,
}

impl Canvas<'_> {
    fn fill(&mut self, color: u32) {
        self.pixels.fill(color);
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, color: u32) {
        for row in y..(y + h).min(self.height) {
            for col in x..(x + w).min(self.width) {
                self.pixels[row * self.width + col] = color;
            }
        }
    }

    /// `s` in the 8x8 font, each font pixel `scale` screen pixels.
    fn text(&mut self, x: usize, y: usize, s: &str, scale: usize, color: u32) {
        use font8x8::UnicodeFonts;
        for (i, ch) in s.chars().enumerate() {
            let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else {
                continue;
            };
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if bits & (1 << gx) != 0 {
                        self.rect(
                            x + (i * 8 + gx) * scale,
                            y + gy * scale,
                            scale,
                            scale,
                            color,
                        );
                    }
                }
            }
        }
    }
}

fn write_png(path: &str, width: u32, height: u32, pixels: &[u32]) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    let rgb: Vec<u8> = pixels
        .iter()
        .flat_map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8])
        .collect();
    writer.write_image_data(&rgb).map_err(std::io::Error::other)
}

fn parse_options() -> Result<Options, String> {
    let mut opts = Options {
        self_test: false,
        screenshot: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--self-test" => opts.self_test = true,
            "--screenshot" => {
                opts.screenshot = Some(args.next().ok_or("--screenshot needs a path")?);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("winit_echo: {e}\nusage: winit_echo [--self-test] [--screenshot FILE]");
            return ExitCode::from(2);
        }
    };
    let self_test = opts.self_test;
    if self_test {
        // A hang fails the self-test instead of blocking CI.
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(60));
            eprintln!("self-test: FAIL: watchdog expired after 60 s");
            println!("winit_echo self-test: 0 passed, 1 failed");
            std::process::exit(1);
        });
    }
    let event_loop = match EventLoop::<GuestJob>::with_user_event().build() {
        Ok(el) => el,
        Err(e) => {
            eprintln!("winit_echo: cannot open a display: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut app = App {
        opts,
        proxy: event_loop.create_proxy(),
        gui_thread: std::thread::current().id(),
        ui: Rc::default(),
        window: None,
        surface: None,
        run: None,
        done: Rc::default(),
        verdict: None,
    };
    if let Err(e) = event_loop.run_app(&mut app) {
        eprintln!("winit_echo: the event loop failed: {e}");
        return ExitCode::FAILURE;
    }
    let ok = app.verdict == Some(true);
    if self_test {
        println!(
            "winit_echo self-test: {} passed, {} failed",
            u32::from(ok),
            u32::from(!ok)
        );
    }
    if ok || !self_test {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
