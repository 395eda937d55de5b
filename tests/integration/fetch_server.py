#!/usr/bin/env python3
"""tests/integration/fetch_server.py - a tiny HTTP server for `encore models fetch` tests.

Serves files under --root on 127.0.0.1 (never another address) with HEAD, GET and single
byte-range requests, and misbehaves on purpose where asked:
  --cut PATH:BYTES      the first GET of PATH sends only BYTES bytes, then drops the connection
  --always-cut PATH:BYTES  every GET of PATH stops after BYTES bytes of the file
  --status PATH:CODE    PATH answers CODE (e.g. 404, 500) to every request
  --lie PATH:SIZE       HEAD announces SIZE bytes for PATH (GET sends the real file)
Every request line and Range header is appended to --log. The port it listens on is written
to --port-file once it is ready. Only the Python standard library is used.
"""
import argparse
import http.server
import os
import re
import socketserver
import sys
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--root", required=True)
ap.add_argument("--port-file", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--cut", action="append", default=[])
ap.add_argument("--always-cut", action="append", default=[])
ap.add_argument("--status", action="append", default=[])
ap.add_argument("--lie", action="append", default=[])
args = ap.parse_args()


def table(items):
    out = {}
    for it in items:
        path, _, value = it.rpartition(":")
        out["/" + path.lstrip("/")] = int(value)
    return out


CUT, ALWAYS_CUT, STATUS, LIE = (table(args.cut), table(args.always_cut), table(args.status),
                                table(args.lie))
lock = threading.Lock()
cut_done = set()
root = os.path.realpath(args.root)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def note(self):
        with lock, open(args.log, "a") as f:
            f.write("%s %s range=%s\n" % (self.command, self.path, self.headers.get("Range", "-")))

    def target(self):
        p = os.path.realpath(os.path.join(root, self.path.split("?")[0].lstrip("/")))
        if not p.startswith(root + os.sep) or not os.path.isfile(p):
            return None
        return p

    def fail(self, code):
        body = b"error\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def head_or_get(self, body):
        self.note()
        path = self.path.split("?")[0]
        if path in STATUS:
            return self.fail(STATUS[path])
        p = self.target()
        if p is None:
            return self.fail(404)
        size = os.path.getsize(p)
        start = 0
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range", ""))
        if m:
            start = int(m.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
        else:
            self.send_response(200)
        announced = LIE.get(path, size) if not body else size
        self.send_header("Content-Length", str(announced - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        stop = size
        with lock:
            if path in CUT and path not in cut_done:
                cut_done.add(path)
                stop = min(size, CUT[path])
        if path in ALWAYS_CUT:
            stop = min(size, ALWAYS_CUT[path])
        with open(p, "rb") as f:
            f.seek(start)
            left = max(0, stop - start)
            while left > 0:
                chunk = f.read(min(65536, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)
        if stop < size:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)

    def do_HEAD(self):
        self.head_or_get(False)

    def do_GET(self):
        self.head_or_get(True)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", 0), Handler)
tmp = args.port_file + ".tmp"
with open(tmp, "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(tmp, args.port_file)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
