//! hyper 1.x on any oneloop loop: the default loop, tokio, smol, glib
//! (a GTK app's GUI thread) and calloop, owned or attached.
//!
//! hyper is runtime-independent: it asks for three things, and this crate
//! gives them over oneloop.
//!
//! | hyper asks for | here | notes |
//! |---|---|---|
//! | `hyper::rt::Read + Write` | [`HyperIo`] around a [`oneloop::Stream`] (or any `futures::io::AsyncBufRead + AsyncWrite`) | no `unsafe`: reads copy out of the transport's buffer with `ReadBufCursor::put_slice` |
//! | `hyper::rt::Executor` (http2's streams, the client's background work) | [`LoopExecutor`]: `!Send` futures as tasks of the loop | the futures run on the loop's thread |
//! | `hyper::rt::Timer` (`header_read_timeout`, keep-alive, http2 pings) | [`LoopTimer`]: a `Send + Sync` timer whose sleeps are loop timers | a dropped sleep cancels its loop timer |
//!
//! Connections are `!Send` (a oneloop stream belongs to its loop's thread):
//! serve each with [`LoopExecutor::spawn`] or `Loop::spawn`.
//!
//! # A server and a client
//!
//! ```
//! use std::convert::Infallible;
//! use http_body_util::{BodyExt, Empty, Full};
//! use hyper::body::Bytes;
//! use oneloop_hyper::{HyperIo, LoopTimer};
//!
//! let lp = oneloop::Loop::new()?; // or any adapter's loop
//! let body = lp.run_until_complete(async {
//!     let lp = oneloop::get_running_loop()?;
//!     // Serve HTTP/1.1: one task per connection.
//!     let timer = LoopTimer::new(&lp);
//!     let server = lp
//!         .start_server(
//!             move |reader, writer| {
//!                 let io = HyperIo::new(oneloop::Stream::join(reader, writer).unwrap());
//!                 let service = hyper::service::service_fn(|_req| async {
//!                     Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("hello"))))
//!                 });
//!                 let conn = hyper::server::conn::http1::Builder::new()
//!                     .timer(timer.clone())
//!                     .header_read_timeout(std::time::Duration::from_secs(5))
//!                     .serve_connection(io, service);
//!                 async move {
//!                     let _ = conn.await;
//!                 }
//!             },
//!             "127.0.0.1:0",
//!         )
//!         .await?;
//!     let addr = server.local_addrs()[0].as_inet().unwrap();
//!     // A client on the same loop and thread.
//!     let io = HyperIo::new(lp.open_stream(addr).await?);
//!     let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
//!     lp.spawn(conn)?;
//!     let request = hyper::Request::get("/").body(Empty::<Bytes>::new())?;
//!     let response = sender.send_request(request).await?;
//!     let body = response.into_body().collect().await?.to_bytes();
//!     server.close();
//!     Ok::<_, Box<dyn std::error::Error>>(body)
//! })??;
//! assert_eq!(body, "hello");
//! lp.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What needs `Send`, and the tokio bridge
//!
//! hyper-util's pooled client (`hyper_util::client::legacy::Client`) needs
//! a `Send` executor and `Send` connections, which a oneloop stream is not.
//! On a loop with the tokio bridge (`oneloop_tokio::enable(&lp)`) use it as
//! on tokio, with `TokioExecutor` and its `HttpConnector`: the pool's
//! connections live on the bridge's runtime, the responses are awaited in
//! the loop's tasks. The same holds for reqwest.
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod executor;
mod io;
mod timer;

pub use executor::LoopExecutor;
pub use io::HyperIo;
pub use timer::{LoopSleep, LoopTimer};
