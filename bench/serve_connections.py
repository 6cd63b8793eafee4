"""Probe ``aligner serve`` the way an attacker holding sockets would: how long idle and slow-header
connections survive, and whether a real request is answered while hundreds of idle ones are open.

Starts a real ``aligner serve`` subprocess (the embedded demo corrector, no upstream: the answer to
correct is the request's last assistant message) on 127.0.0.1 and measures, in one run:

* ``idle_fresh``: a connection that sends nothing — seconds until the server closes it;
* ``idle_after_request``: one that made a request and then sent nothing (uvicorn's keep-alive);
* ``slow_header``: one that sends a request line, then one header line every ``--every`` seconds;
* ``crowd``: ``--idle N`` idle connections opened at once, then a real chat request: its status and
  content type, and how many of the N the server has closed ``--cap`` seconds later.

Survival times are capped at ``--cap`` seconds (reported as ``>= cap``). Extra ``aligner serve``
flags go after ``--``::

    python bench/serve_connections.py --idle 520 --cap 60
    python bench/serve_connections.py --idle 520 -- --header-timeout 5
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # processes.aligner_serve, as the tests start it
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHAT = {"model": "aligner", "messages": [{"role": "user", "content": "How do I boil an egg?"},
                                         {"role": "assistant", "content": "Boil it for 8 minutes."}]}


def closed_after(socks: list[socket.socket], cap: float, drip: socket.socket | None = None,
                 every: float = 2.0, since: float | None = None) -> list[float]:
    """Seconds from ``since`` (default: now) until the server closed each socket (``cap`` for those
    still open at ``cap``). ``drip`` sends one header line every ``every`` seconds meanwhile, as a
    slow client does."""
    sel = selectors.DefaultSelector()
    t0 = time.monotonic() if since is None else since
    out = [cap] * len(socks)
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    open_ = set(range(len(socks)))
    next_send = t0 + every
    while open_ and time.monotonic() - t0 < cap:
        for key, _ in sel.select(timeout=0.2):
            i = key.data
            try:
                data = socks[i].recv(65536)
            except ConnectionResetError:
                data = b""
            if data == b"":
                out[i] = time.monotonic() - t0
                open_.discard(i)
                sel.unregister(socks[i])
        if drip is not None and time.monotonic() >= next_send:
            next_send += every
            try:
                drip.send(b"X-Slow: 1\r\n")
            except OSError:
                pass
    for s in socks:
        s.close()
    return out


def show(seconds: float, cap: float) -> str:
    return f">= {cap:g} s (still open)" if seconds >= cap else f"{seconds:.1f} s"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=int, default=520, help="idle connections opened before the real request")
    ap.add_argument("--cap", type=float, default=60.0, help="longest a survival time is measured, seconds")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between a slow client's header lines")
    args = ap.parse_args(own)
    import httpx
    from processes import aligner_serve

    results: dict[str, object] = {"server_flags": extra, "cap_s": args.cap}
    with aligner_serve(*extra) as [(url, _)]:
        addr = ("127.0.0.1", urlsplit(url).port)
        fresh = socket.create_connection(addr)
        used = socket.create_connection(addr)
        used.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while b'"ok"' not in reply:
            reply += used.recv(65536)
        slow = socket.create_connection(addr)
        slow.sendall(b"GET /health HTTP/1.1\r\n")
        idle, used_t, slow_t = closed_after([fresh, used, slow], args.cap, drip=slow, every=args.every)
        results.update(idle_fresh_s=round(idle, 1), idle_after_request_s=round(used_t, 1),
                       slow_header_s=round(slow_t, 1))
        print(f"fresh idle connection closed after {show(idle, args.cap)}")
        print(f"idle after one request closed after {show(used_t, args.cap)}")
        print(f"slow-header connection (a line every {args.every:g} s) closed after {show(slow_t, args.cap)}")

        crowd = [socket.create_connection(addr) for _ in range(args.idle)]
        opened = time.monotonic()
        time.sleep(0.5)
        t0 = time.monotonic()
        r = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=120)
        took = time.monotonic() - t0
        try:
            body = r.json()
            shape = "OpenAI JSON error" if "error" in body else "chat completion"
        except json.JSONDecodeError:
            shape = f"not JSON: {r.text[:40]!r}"
        print(f"with {args.idle} idle connections open: a chat request got {r.status_code} "
              f"({r.headers.get('content-type')}, {shape}) in {took:.2f} s")
        times = closed_after(crowd, args.cap, since=opened)
        cut = [t for t in times if t < args.cap]
        print(f"{len(cut)} of {args.idle} idle connections closed by the server within {args.cap:g} s of opening"
              + (f" (last after {max(cut):.1f} s)" if cut else ""))
        results.update(crowd=args.idle, crowd_request_status=r.status_code, crowd_request_shape=shape,
                       crowd_request_s=round(took, 2), crowd_closed=len(cut),
                       crowd_last_closed_s=round(max(cut), 1) if cut else None)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
