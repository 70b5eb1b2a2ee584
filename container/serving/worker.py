"""gunicorn's ``gthread`` worker with three changes for an endpoint that must stay healthy under slow clients.

gunicorn's own worker hands a connection to a thread as soon as its first bytes arrive; the thread then
blocks on the socket until the request's headers are complete, with no time limit. Thirty-two connections
that send half a request line each held every thread of every worker, and ``GET /ping`` (SageMaker's health
check, with a 2 s timeout) queued behind them until they closed: a healthy instance would be replaced.

1. **Headers are gathered by the worker's event loop, not by a thread.** A new or kept-alive connection goes
   to the selector the worker already runs; its bytes are collected there until the blank line that ends
   the headers, and only then does it take a thread, with the bytes handed to gunicorn's own parser (which
   still does all the HTTP parsing and its limits). A connection that has not sent its headers within
   ``SERVING_HEADER_TIMEOUT`` seconds gets a JSON 408 and is closed; one whose headers pass ``MAX_HEAD_BYTES``
   without ending gets a 431.
2. **``GET /ping`` has its own threads.** A health check is answered by a separate pool, so neither slow
   bodies nor queued predictions (one at a time per worker) delay it.
3. **Reads have a deadline.** Once a thread holds a connection, every read from the socket (the rest of the
   headers, the body) must finish by ``SERVING_BODY_TIMEOUT`` seconds after the headers arrived (a total,
   not per read: a client trickling one byte at a time cannot extend it); the app answers 408 when it passes.

And errors gunicorn writes itself, before the app sees a request (a malformed request line, a negative
``Content-Length``, a header over ``limit_request_field_size``), are JSON ``{"error", "status"}`` like the
app's, not gunicorn's HTML page: :func:`write_json_error` replaces ``gunicorn.util.write_error`` (the one
function gunicorn writes them with) in the worker processes, which import this module.

Only the server process imports this module (gunicorn names it as the ``worker_class``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import socket
import time
from collections import deque
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn.workers.gthread import TConn, ThreadWorker

from container.serving.protocol import Limits

HEAD_END = b"\r\n\r\n"
# gunicorn's own caps are 4094 bytes for the request line and 8190 per header field (100 fields); a SageMaker
# request has a few short headers. 64 KiB of headers without their end is not a request this server serves.
MAX_HEAD_BYTES = 64 * 1024
PING_THREADS = 2
_HINTS = {
    400: "the request is not valid HTTP/1.1",
    408: "send the whole request without pausing; the server's limits: SERVING_HEADER_TIMEOUT, SERVING_BODY_TIMEOUT",
    414: "the request line is limited to 4094 bytes: put parameters in X-Amzn-SageMaker-Custom-Attributes",
    431: "each header is limited to 8190 bytes and all headers to 64 KiB: send images in the body, not in headers",
}


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error`` with the serving contract's JSON body instead of an HTML page."""
    hint = _HINTS.get(status_int, "see the server log")
    text = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"error": f"{text} ({hint})", "status": status_int}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


util.write_error = write_json_error  # base.Worker.handle_error calls util.write_error at call time


class DeadlineSocket:
    """The connection's socket as gunicorn's parser sees it: each ``recv`` waits at most until ``deadline``
    (``time.monotonic()``), then raises ``TimeoutError``; everything else goes to the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.sock.settimeout(None)

    def recv(self, size: int) -> bytes:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the client did not send the request in time")
            current = self.sock.gettimeout()
            self.sock.settimeout(left if not current else min(current, left))
        return self.sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class ServingWorker(ThreadWorker):
    """See the module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = Limits.from_env()
        self.header_timeout = limits.header_timeout
        self.body_timeout = limits.body_timeout
        self.heading: deque[TConn] = deque()  # connections still sending their headers, oldest first
        self.ping_pool: futures.ThreadPoolExecutor | None = None

    def init_process(self) -> None:
        self.ping_pool = futures.ThreadPoolExecutor(max_workers=PING_THREADS, thread_name_prefix="ping")
        super().init_process()

    # -- headers, in the event loop -----------------------------------------------------------------------
    def accept(self, listener: socket.socket) -> None:
        try:
            client, addr = listener.accept()
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):  # another worker took it
                raise
            return
        self.nr_conns += 1
        self._gather(TConn(self.cfg, client, addr, listener.getsockname()))  # TConn makes it non-blocking

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection's next request: gathered like a new one's."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._gather(conn)

    def _gather(self, conn: TConn, ahead: bytes = b"") -> None:
        conn.head = bytearray(ahead)
        if HEAD_END in conn.head:
            self._dispatch(conn)
            return
        conn.timeout = time.monotonic() + self.header_timeout
        self.heading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_head_bytes, conn))

    def _on_head_bytes(self, conn: TConn, client: socket.socket) -> None:
        try:
            data = client.recv(MAX_HEAD_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client left
            self._drop(conn)
            return
        conn.head += data
        if HEAD_END in conn.head:
            self.poller.unregister(client)
            self.heading.remove(conn)
            self._dispatch(conn)
        elif len(conn.head) > MAX_HEAD_BYTES:
            self._refuse(conn, 431, "Request Header Fields Too Large",
                         f"no end of the headers within {MAX_HEAD_BYTES} bytes")

    def _dispatch(self, conn: TConn) -> None:
        """Headers complete: gunicorn's parser gets the bytes, a thread gets the connection."""
        if conn.parser is None:
            conn.deadline_sock = DeadlineSocket(conn.sock)
            conn.parser = http.get_parser(self.cfg, conn.deadline_sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.head))
        conn.deadline_sock.set_deadline(time.monotonic() + self.body_timeout)
        conn.data_ready = True  # gthread's handle() would otherwise wait for data again
        conn.is_ping = bytes(conn.head[:10]) in (b"GET /ping ", b"GET /ping?")
        conn.head = bytearray()
        self.enqueue_req(conn)

    def enqueue_req(self, conn: TConn) -> None:
        pool = self.ping_pool if getattr(conn, "is_ping", False) and self.ping_pool else self.tpool
        done = pool.submit(self.handle, conn)
        done.add_done_callback(lambda fut: self.method_queue.defer(self.finish_request, conn, fut))

    def handle_request(self, req: Any, conn: TConn) -> bool:
        conn.deadline_sock.set_deadline(time.monotonic() + self.body_timeout)
        try:
            return super().handle_request(req, conn)
        finally:
            conn.deadline_sock.set_deadline(None)
            conn.is_ping = False

    def finish_request(self, conn: TConn, fs: futures.Future) -> None:
        try:
            keep = fs.done() and not fs.cancelled() and fs.result() and self.alive
            ahead = conn.parser.unreader.take_buffered() if keep else b""
        except Exception:
            keep, ahead = False, b""
        if not ahead:
            super().finish_request(conn, fs)
            return
        # a request the client pipelined behind the last one, read ahead into the parser's buffer: its headers
        # may be partial, so it is gathered like any other (gthread would hand it straight to a thread)
        conn.sock.setblocking(False)
        self._gather(conn, ahead)

    # -- time limits ---------------------------------------------------------------------------------------
    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        while self.heading and self.heading[0].timeout <= now:
            self._refuse(self.heading[0], 408, "Request Timeout",
                         f"the request's headers did not arrive within {self.header_timeout:g} s")

    def _refuse(self, conn: TConn, status: int, reason: str, mesg: str) -> None:
        self.log.warning("refused %s: %s %s", conn.client, status, mesg)
        with contextlib.suppress(OSError):
            write_json_error(conn.sock, status, reason, mesg)
        self._drop(conn)

    def _drop(self, conn: TConn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        with contextlib.suppress(ValueError):
            self.heading.remove(conn)
        self.nr_conns -= 1
        conn.close()

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self.ping_pool is not None:
                self.ping_pool.shutdown(wait=False)
