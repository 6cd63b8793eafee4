"""Connection hygiene for ``aligner serve``: idle and slow-header connections cannot hold the server.

uvicorn (0.55, its h11 protocol) arms no timer on a fresh connection and cancels its keep-alive
timer on any byte received, so a connection that sends nothing, or one header line every few
seconds, stays open for as long as its client likes; and its ``limit_concurrency`` counts open
connections, so 512 such sockets made every real request a plain-text 503 (issue 21: 520 idle
sockets locked everyone out; a fresh idle one lived ≥ 150 s, a slow-header one ≥ 90 s).

The protocol here is uvicorn's own h11 protocol with three additions:

* a **head deadline**: from the moment a connection opens, and again from the end of each response,
  the client has ``header_timeout`` seconds to deliver a complete request head. Otherwise the
  connection is closed — silently if it sent nothing, with a 408 (OpenAI JSON error) if it had
  started a head. Bytes trickled in do not extend it.
* a **connection cap with eviction**: beyond ``max_connections`` open connections, a new one
  closes the connection that has waited longest for a request head (idle or slow), so idle
  sockets can never crowd out a real client; only when every connection is busy with a request
  is the newcomer refused (503 JSON).
* malformed requests get their 400 as an OpenAI JSON error instead of uvicorn's plain text.

The request limit (``--limit-concurrency``) is counted on requests, not sockets, by
:class:`RequestLimitMiddleware` in the app. WebSocket upgrades are off (``ws="none"``): the proxy
has no WebSocket route, and an upgraded socket would leave this protocol's deadlines behind.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

log = logging.getLogger("aligner.serve")

#: how often (seconds) the server log says how many connections it cut, during an onslaught
_REPORT_EVERY = 60.0


def _error_bytes(status: int, reason: str, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 error response with an OpenAI-style JSON body that closes the connection,
    for moments when no request is being answered (h11 would refuse to frame a response then)."""
    from .errors import APIError

    body = json.dumps(APIError(status, message, code=code).body()).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    return head + body


def bounded_protocol(header_timeout: float, max_connections: int | None) -> type:
    """uvicorn's h11 protocol class with the head deadline and the connection cap of this module,
    to pass as ``uvicorn.Config(http=...)``. ``max_connections`` None: no cap."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    #: connections waiting for a request head, longest-waiting first (dicts keep insertion order)
    waiting: dict[Any, None] = {}
    counts = {"cut": 0, "evicted": 0, "refused": 0}
    last_report = [time.monotonic()]

    def report(what: str) -> None:
        counts[what] += 1
        now = time.monotonic()
        if now - last_report[0] >= _REPORT_EVERY:
            last_report[0] = now
            log.warning("connections closed in the last %d s: %d without a complete request head within "
                        "--header-timeout %gs, %d evicted to make room (--max-connections %s), %d refused "
                        "with every connection busy", _REPORT_EVERY, counts["cut"], header_timeout,
                        counts["evicted"], max_connections, counts["refused"])
            counts.update(cut=0, evicted=0, refused=0)

    class BoundedH11Protocol(H11Protocol):
        """h11 with a deadline for each request head and a connection cap (see the module)."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._head_timer: Any = None
            #: the request/response cycle that was current when the deadline was armed: a new one
            #: means a request head has arrived
            self._awaiting: Any = None
            self._head_started = False

        # -- the head deadline ------------------------------------------------------------------
        def _arm(self) -> None:
            self._disarm()
            self._awaiting = self.cycle
            self._head_started = False
            waiting[self] = None  # (re)inserted last: the newest waiter
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            waiting.pop(self, None)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            waiting.pop(self, None)
            if self.transport.is_closing() or self.cycle is not self._awaiting:
                return
            report("cut")
            if self._head_started and self.conn.their_state is h11.IDLE:
                self.transport.write(_error_bytes(
                    408, "Request Timeout", f"the request head did not arrive within {header_timeout:g} "
                                            "seconds (--header-timeout).", "header_timeout"))
            self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()
            if max_connections is not None and len(self.connections) > max_connections:
                self._make_room()

        def data_received(self, data: bytes) -> None:
            if self._head_timer is not None:
                self._head_started = True
            super().data_received(data)
            if self._head_timer is not None and self.cycle is not self._awaiting:
                self._disarm()  # a request head arrived: the request's own limits take over

        def on_response_complete(self) -> None:
            finished = self.cycle
            super().on_response_complete()
            if self.cycle is finished and not self.transport.is_closing():
                self._arm()  # waiting for the next request head (unless a pipelined one is running)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        # -- the connection cap -----------------------------------------------------------------
        def _make_room(self) -> None:
            """Close the connection that has waited longest for a request head; with none waiting,
            refuse this one."""
            victim = next((c for c in waiting if c is not self), None)
            if victim is not None:
                victim._disarm()
                victim.transport.close()
                report("evicted")
                return
            report("refused")
            self._disarm()
            self.transport.write(_error_bytes(
                503, "Service Unavailable", f"the server has {max_connections} connections busy with requests "
                                            "(--max-connections); retry shortly.", "server_overloaded"))
            self.transport.close()

        # -- errors as OpenAI JSON ----------------------------------------------------------------
        def send_400_response(self, msg: str) -> None:
            from .errors import APIError

            body = json.dumps(APIError(400, "invalid HTTP request: its request line or headers could not be parsed "
                                            "(or the head is over 16 KB).", code="invalid_http_request").body())
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            try:
                self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers,
                                                                 reason=b"Bad Request")))
                self.transport.write(self.conn.send(h11.Data(data=body.encode())))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:  # no response can be framed now: just close
                pass
            self.transport.close()

    return BoundedH11Protocol


def raise_open_files_limit(needed: int) -> str | None:
    """Raise this process's soft limit on open files to ``needed`` (within the hard limit), so the
    connection cap, not ``accept()`` failing for want of descriptors, is what bounds connections.
    A warning to show when the hard limit is lower, else None."""
    try:
        import resource
    except ImportError:  # not a Unix: nothing to raise
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        return (f"this process may open only {target} files (ulimit -n), fewer than --max-connections "
                f"plus room for the server's own ({needed}): raise the limit or lower --max-connections.")
    return None
