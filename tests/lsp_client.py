"""A minimal LSP client over real stdio: `netdsl lsp` as a subprocess, JSON-RPC with
Content-Length framing, a reader thread, requests answered by id and notifications queued."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

from conftest import ROOT


class Client:
    def __init__(self, *argv: str):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = argv or (sys.executable, "-m", "netdsl", "lsp", "--stdio")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
        )
        self.next_id = 0
        self.responses: dict[int, dict] = {}
        self.notes: queue.Queue = queue.Queue()
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    with self.cond:
                        self.cond.notify_all()
                    return
                line = line.decode("ascii").strip()
                if not line:
                    break
                k, v = line.split(":", 1)
                headers[k.lower()] = v.strip()
            msg = json.loads(out.read(int(headers["content-length"])))
            if "id" in msg and ("result" in msg or "error" in msg):
                with self.cond:
                    self.responses[msg["id"]] = msg
                    self.cond.notify_all()
            elif "id" in msg:  # a request from the server (e.g. workspace/configuration): answer null
                self._send({"jsonrpc": "2.0", "id": msg["id"], "result": None})
            else:
                self.notes.put(msg)

    def _send(self, msg: dict) -> None:
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def send_request(self, method: str, params) -> int:
        self.next_id += 1
        self._send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return self.next_id

    def wait(self, rid: int, timeout: float = 30) -> dict:
        end = time.monotonic() + timeout
        with self.cond:
            while rid not in self.responses:
                left = end - time.monotonic()
                assert left > 0 and self.proc.poll() is None, f"no answer to request {rid}"
                self.cond.wait(left)
            return self.responses.pop(rid)

    def request(self, method: str, params, timeout: float = 30):
        msg = self.wait(self.send_request(method, params), timeout)
        assert "error" not in msg, msg["error"]
        return msg["result"]

    def notify(self, method: str, params) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def diagnostics(self, uri: str, version: int | None = None, timeout: float = 30) -> list:
        """The next diagnostics published for ``uri`` (for ``version`` when given)."""
        end = time.monotonic() + timeout
        while True:
            msg = self.notes.get(timeout=max(end - time.monotonic(), 0.01))
            p = msg.get("params", {})
            if msg.get("method") == "textDocument/publishDiagnostics" and p["uri"] == uri:
                if version is None or p.get("version") == version:
                    return p["diagnostics"]

    def initialize(self) -> dict:
        caps = {"textDocument": {"hover": {"contentFormat": ["markdown"]}, "inlayHint": {}}}
        result = self.request("initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": caps})
        self.notify("initialized", {})
        return result

    def open(self, uri: str, text: str, version: int = 1) -> None:
        doc = {"uri": uri, "languageId": "netdsl", "version": version, "text": text}
        self.notify("textDocument/didOpen", {"textDocument": doc})

    def change(self, uri: str, text: str, version: int) -> None:
        self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]},
        )

    def close(self) -> int:
        if self.proc.stdin.closed:  # closed before
            return self.proc.returncode
        try:
            if self.proc.poll() is None:  # a test may have ended it already
                self.request("shutdown", None, timeout=10)
                self.notify("exit", None)
            code = self.proc.wait(timeout=10)
            self.stderr = self.proc.stderr.read().decode("utf-8", "replace")
            return code
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
