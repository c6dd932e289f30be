"""Test helpers for netdsl.data: small generated IDX data sets and a local HTTP mirror.

``write_idx(directory, n_train, n_test)`` writes the four IDX files (gzipped or plain) and
returns the arrays it wrote; ``serve(files)`` runs a mirror on 127.0.0.1 (ephemeral port, in a
thread) for ``{"train-images-idx3-ubyte.gz": bytes, ...}`` and stops it on exit.  Nothing
leaves the machine.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
REFUSED = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused at once


def idx_images(images: np.ndarray) -> bytes:
    """IDX bytes for uint8 images (N, H, W)."""
    return struct.pack(">IIII", 0x803, *images.shape) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    """IDX bytes for uint8 labels (N,)."""
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def make_set(n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 images (N, 28, 28) with values 0..255 and labels 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_train + n_test, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range, always
    labels = np.arange(n_train + n_test, dtype=np.uint8) % 10
    return {
        "x_train": images[:n_train],
        "y_train": labels[:n_train],
        "x_test": images[n_train:],
        "y_test": labels[n_train:],
    }


def idx_bytes(arrays: dict[str, np.ndarray], gz: bool = True) -> dict[str, bytes]:
    """``{file name: bytes}`` of the four IDX files for ``arrays``."""
    raw = [
        idx_images(arrays["x_train"]),
        idx_labels(arrays["y_train"]),
        idx_images(arrays["x_test"]),
        idx_labels(arrays["y_test"]),
    ]
    if gz:
        return {f"{n}.gz": gzip.compress(r, mtime=0) for n, r in zip(NAMES, raw, strict=True)}
    return dict(zip(NAMES, raw, strict=True))


def write_idx(directory: Path, n_train: int = 30, n_test: int = 10, *, gz: bool = True, seed: int = 0) -> dict:
    """Write a generated set's four IDX files into ``directory``; return its arrays."""
    arrays = make_set(n_train, n_test, seed)
    directory.mkdir(parents=True, exist_ok=True)
    for fname, body in idx_bytes(arrays, gz).items():
        (directory / fname).write_bytes(body)
    return arrays


def sha256s(files: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


@dataclass
class Mirror:
    url: str
    files: dict[str, bytes]
    hits: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[Mirror]:
    """An HTTP mirror of ``files`` on 127.0.0.1; 404 for anything else."""
    mirror = Mirror("", dict(files))

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5  # a stuck client cannot hold the server

        def do_GET(self) -> None:
            mirror.hits.append(self.path)
            body = mirror.files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    mirror.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield mirror
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
