"""A deadline for one HTTP attempt as a whole (connect, headers and body): a watchdog timer shuts
the attempt's sockets down when its time is over, which wakes a blocked read at once, so a server
that trickles its answer a byte at a time is cut off too (`medtune.llm.http.post_json`).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.request
from typing import Any


class Deadline:
    """Cuts an attempt's connection when its time is over, whatever phase it is in: a watchdog timer
    shuts the socket down, which wakes a blocked connect, header or body read at once."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed, or detached by TLS (the wrapped socket is watched too)
            pass


def opener(deadline: Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies from the environment, TLS) whose connections `deadline` watches."""

    def watched(base: type) -> type:
        class Watched(base):
            def connect(self):
                create = self._create_connection

                def create_and_watch(*args, **kwargs):
                    sock = create(*args, **kwargs)
                    deadline.watch(sock)
                    return sock

                self._create_connection = create_and_watch
                super().connect()
                deadline.watch(self.sock)  # the TLS socket over it, for HTTPS

        return Watched

    class HTTP(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(watched(http.client.HTTPConnection), req)

    handlers: list[Any] = [HTTP()]
    if hasattr(http.client, "HTTPSConnection"):

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(watched(http.client.HTTPSConnection), req, context=self._context)

        handlers.append(HTTPS())
    return urllib.request.build_opener(*handlers)
