"""asyncio on oneloop: Python's event loop, run by oneloop's Rust scheduler
on the default loop or on a tokio, GLib, calloop or smol host.

    import asyncio, oneloop
    oneloop.run(main(), host="default")        # like asyncio.run(main())
    asyncio.Runner(loop_factory=oneloop.new_event_loop)
    asyncio.set_event_loop_policy(oneloop.EventLoopPolicy(host="glib"))

See docs/python.md for what runs in Rust and what is asyncio's own code.
"""

from ._loop import HOSTS, EventLoopPolicy, OneloopEventLoop, new_event_loop, run

__all__ = ["HOSTS", "EventLoopPolicy", "OneloopEventLoop", "new_event_loop", "run"]
