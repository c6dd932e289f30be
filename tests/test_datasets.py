"""Data a user brings: image folders (real PNG/JPEG files), .npz, arrays, CIFAR binaries,
netdsl evaluate / predict, and every bad-data case of issue 10 (a located error, nothing lost)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from data_server import serve

import netdsl
from netdsl import NetdslError
from netdsl.datasets import cifar, folder
from netdsl.datasets.arrays import from_arrays, load_npz

PIL = pytest.importorskip("PIL.Image")
FASHION = Path("/usr/share/datasets/fashion-mnist")
TINY = "input 8x8x3\nconv 4x3 relu\nflatten\ndense 2 softmax\n"
NETDSL = [sys.executable, "-m", "netdsl"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NETDSL_DATA", raising=False)


def write_folder(root: Path, n: int = 6, size=(8, 8), fmt="png", classes=("cat", "dog"), split="train") -> list:
    """Real image files (PNG or JPEG, RGB), written by Pillow: class k is bright in channel k."""
    written = []
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        d = root / split / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
            a[..., k % 3] = 250
            PIL.fromarray(a).save(d / f"{i}.{fmt}")
            written.append((d / f"{i}.{fmt}", k, a))
    return written


def code_of(fn, *args, **kw) -> NetdslError:
    with pytest.raises(NetdslError) as info:
        fn(*args, **kw)
    return info.value


def snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---- image folders ------------------------------------------------------------------------


def test_png_folder_pixels_order_split_and_cache(tmp_path, monkeypatch):
    written = write_folder(tmp_path / "d", n=10)
    ds = folder.load_folder(tmp_path / "d", (8, 8, 3), scale=False)
    assert ds.class_names == ("cat", "dog") and "1 image in 5" in ds.source  # no test/: the split is stated
    assert len(ds.x_train) + len(ds.x_test) == 20 and set(ds.y_test) == {0, 1}  # stratified
    by_pixels = {a.tobytes(): k for _, k, a in written}
    for x, y in zip(ds.x_train, ds.y_train, strict=True):  # PNG is lossless: the very pixels, the right label
        assert by_pixels[x.astype(np.uint8).tobytes()] == y
    assert list(ds.y_train[:2]) in ([0, 1], [1, 0])  # rounds of one image per class
    caches = list((tmp_path / "cache" / "netdsl" / "folders").glob("*.npz"))
    assert len(caches) == 1
    monkeypatch.setattr(folder, "decode", lambda *a: pytest.fail("decoded again despite the cache"))
    again = folder.load_folder(tmp_path / "d", (8, 8, 3), scale=False)
    assert np.array_equal(again.x_train, ds.x_train)
    (written[0][0]).write_bytes((written[1][0]).read_bytes())  # a changed file changes the key
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder.load_folder(tmp_path / "d", (8, 8, 3), scale=False)
    assert len(list((tmp_path / "cache" / "netdsl" / "folders").glob("*.npz"))) == 1  # replaced, not piled up
    assert list((tmp_path / "cache" / "netdsl" / "folders").glob("*.npz")) != caches


def test_16_bit_pngs_are_scaled_not_clipped(tmp_path):
    """Pillow opens a 16-bit grayscale PNG as I;16 and convert("L") clips it to white: folder
    reading and predict scale it to 8 bits (v / 257, rounded)."""
    from netdsl.evaluate import read_image

    rng = np.random.default_rng(0)
    pixels = {}
    for split, n in (("train", 3), ("test", 1)):
        for k in range(2):
            d = tmp_path / "d" / split / f"c{k}"
            d.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 65536, (8, 8), dtype=np.uint16)
                PIL.fromarray(a).save(d / f"{i}.png")
                with PIL.open(d / f"{i}.png") as im:
                    assert im.mode.startswith("I")  # really a 16-bit file
                pixels[a.tobytes()] = np.rint(a / 257).astype(np.uint8)
                last = d / f"{i}.png", pixels[a.tobytes()]
    ds = folder.load_folder(tmp_path / "d", (8, 8, 1), scale=False)
    want = {v.tobytes() for v in pixels.values()}
    got = {x[..., 0].astype(np.uint8).tobytes() for x in (*ds.x_train, *ds.x_test)}
    assert got == want and ds.x_train.max() < 255
    assert np.array_equal(read_image(str(last[0]), (8, 8, 1), False)[..., 0], last[1])
    assert read_image(str(last[0]), (8, 8, 3), False).shape == (8, 8, 3)


def test_jpeg_folder_grayscale_and_resize(tmp_path):
    write_folder(tmp_path / "d", n=3, size=(10, 12), fmt="jpg")
    write_folder(tmp_path / "d", n=2, size=(10, 12), fmt="jpg", split="test")
    err = code_of(folder.load_folder, tmp_path / "d", (8, 8, 1))
    assert err.code == "E613" and ".jpg`: a 10x12 image" in err.message and "--resize" in err.hint
    ds = folder.load_folder(tmp_path / "d", (8, 8, 1), resize=True)
    assert ds.x_train.shape == (6, 8, 8, 1) and ds.x_test.shape == (4, 8, 8, 1) and ds.x_train.max() <= 1


def test_train_on_a_folder_then_evaluate_and_predict(tmp_path):
    write_folder(tmp_path / "d", n=8)
    write_folder(tmp_path / "d", n=3, split="test")
    spec = tmp_path / "tiny.net"
    spec.write_text(TINY)
    m = netdsl.train(str(spec), data=tmp_path / "d", epochs=2, out=tmp_path / "run", lr=0.01)
    assert m["data"]["class_names"] == ["cat", "dog"] and m["data"]["input"] == [8, 8, 3]
    assert len(m["confusion"]) == 2 and sum(map(sum, m["confusion"])) == 6 and len(m["per_class_accuracy"]) == 2
    ev = subprocess.run([*NETDSL, "evaluate", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr
    assert f"test accuracy: {m['test_accuracy']:.4f}" in ev.stdout and "confusion matrix" in ev.stdout
    assert (tmp_path / "run" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    img = tmp_path / "d" / "test" / "dog" / "0.png"
    pr = subprocess.run(
        [*NETDSL, "predict", str(tmp_path / "run"), "-", "--json", "-k", "2"],
        input=img.read_bytes(), capture_output=True, timeout=120,
    )  # fmt: skip
    assert pr.returncode == 0, pr.stderr
    top = json.loads(pr.stdout)["top"]
    assert {t["class"] for t in top} == {"cat", "dog"} and abs(sum(t["probability"] for t in top) - 1) < 1e-4
    small = tmp_path / "small.png"
    PIL.fromarray(np.zeros((5, 5, 3), np.uint8)).save(small)
    bad = subprocess.run([*NETDSL, "predict", str(tmp_path / "run"), str(small)], capture_output=True, text=True)
    assert bad.returncode == 1 and "E615" in bad.stderr and "small.png`: a 5x5 image" in bad.stderr


# ---- bad data: a located error, exit 1, nothing lost ---------------------------------------


def _empty_class(d: Path) -> str:
    (d / "train" / "bird").mkdir()
    return "bird`: an empty class folder"


def _one_class(d: Path) -> str:
    for p in (d / "train" / "dog").iterdir():
        p.unlink()
    (d / "train" / "dog").rmdir()
    return "one class folder (`cat`)"


def _corrupt(d: Path) -> str:
    (d / "train" / "cat" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    return "2.png`: not a readable image"


def _truncated(d: Path) -> str:
    p = d / "train" / "dog" / "1.png"
    p.write_bytes(p.read_bytes()[:60])
    return "1.png`: not a readable image"


def _mixed(d: Path) -> str:
    PIL.fromarray(np.zeros((9, 8, 3), np.uint8)).save(d / "train" / "cat" / "3.png")
    return "3.png`: a 8x9 image"


@pytest.mark.parametrize(
    "make, code",
    [(_empty_class, "E611"), (_one_class, "E611"), (_corrupt, "E612"), (_truncated, "E612"), (_mixed, "E613")],
)
def test_bad_folders_name_the_culprit_and_change_nothing(tmp_path, make, code):
    write_folder(tmp_path / "d", n=5)
    phrase = make(tmp_path / "d")
    before = snapshot(tmp_path / "d")
    spec = tmp_path / "tiny.net"
    spec.write_text(TINY)
    proc = subprocess.run(
        [*NETDSL, "train", str(spec), "--data", str(tmp_path / "d"), "-o", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and f"error[{code}]" in proc.stderr and phrase in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and snapshot(tmp_path / "d") == before and not (tmp_path / "run").exists()


def _arrays(n=12):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
        "y_train": np.arange(n) % 2,
        "x_test": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
        "y_test": np.arange(4) % 2,
    }


@pytest.mark.parametrize(
    "edit, phrase",
    [
        (lambda a: a.update(x_train=a["x_train"].reshape(12, -1)), "x_train has rank 2"),
        (lambda a: a.update(y_test=np.array([0, 1, 0, 7])), "y_test[3] = 7 is not a class of the 2 class names"),
        (lambda a: a.update(y_train=np.zeros(12, int)), "one class"),
        (
            lambda a: a.update(x_test=np.where(np.arange(4)[:, None, None, None] == 2, np.nan, 0.5)),
            "x_test[2] holds NaN",
        ),
        (  # finite in float64, infinite once cast to float32
            lambda a: a.update(x_train=np.where(np.arange(12)[:, None, None, None] == 5, 1e300, 0.5)),
            "x_train[5] holds NaN, infinite values or values beyond float32's range",
        ),
        (lambda a: a.update(y_train=a["y_train"][:5]), "expected integer labels (12,)"),
        (lambda a: a.update(x_test=a["x_test"][:, :7]), "x_train samples are 8x8x3 but x_test samples are 7x8x3"),
    ],
)
def test_bad_arrays_and_npz(tmp_path, edit, phrase):
    arrays = _arrays()
    edit(arrays)
    err = code_of(from_arrays, arrays, class_names=["a", "b"])
    assert err.code == "E614" and phrase in err.message, err.message
    np.savez(tmp_path / "bad.npz", class_names=np.array(["a", "b"]), **arrays)
    err = code_of(load_npz, tmp_path / "bad.npz")
    assert err.code == "E614" and phrase in err.message and "bad.npz" in err.message


def test_arrays_given_to_train_and_npz_agree(tmp_path):
    arrays = _arrays(40)
    np.savez(tmp_path / "d.npz", **arrays)
    a = netdsl.train(
        netdsl.parse(TINY), data=(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
    )
    b = netdsl.train(netdsl.parse(TINY), data=str(tmp_path / "d.npz"))
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]
    err = code_of(netdsl.train, netdsl.parse("input 28x28x1\nflatten\ndense 2 softmax"), data=tuple(arrays.values()))
    assert err.code == "E602" and "8x8x3" in err.message


# ---- real pictures: Fashion-MNIST as PNG files ------------------------------------------------


def _separable(n: int, shape: tuple, seed: int = 0):
    """Three classes told apart by the mean of every value (labels, float samples)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, *shape)).astype(np.float32) + (y.reshape(-1, *[1] * len(shape)) - 1).astype(np.float32)
    return x, y


@pytest.mark.parametrize(
    "spec, shape, backend",
    [
        ("input 20\ndense 16 relu\ndense 3 softmax", (20,), "keras"),
        ("input 20x2\nconv1d 4x3 relu same\nmaxpool1d 2\nflatten\ndense 3 softmax", (20, 2), "torch"),
        ("input 6x6x5\nconv 4x3 relu\nflatten\ndense 3 softmax", (6, 6, 5), "torch"),
    ],
)
def test_arrays_of_the_nets_input_shape_train_as_they_are(tmp_path, spec, shape, backend):
    """Vectors for a dense net, sequences for a 1-D net, 5 channels: samples of exactly the net's
    input shape are not images and are taken as they are, from arrays and from an .npz."""
    if backend == "keras":
        pytest.importorskip("keras")
    (xtr, ytr), (xte, yte) = _separable(300, shape), _separable(90, shape, seed=1)
    np.savez(tmp_path / "d.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    net = netdsl.parse(spec + "\ntrain adam lr=0.01 epochs=6 batch=30")
    a = netdsl.train(net, data=(xtr, ytr, xte, yte), backend=backend, out=str(tmp_path / "a"), quiet=True)
    b = netdsl.train(net, data=str(tmp_path / "d.npz"), backend=backend, out=str(tmp_path / "b"), quiet=True)
    assert a["data"]["input"] == list(shape) and a["test_accuracy"] > 0.9, a["test_accuracy"]
    assert a["test_accuracy"] == b["test_accuracy"]
    # samples of another shape are still images (or refused), named with the net's shape
    wrong = _separable(30, (7,))
    err = code_of(from_arrays, ([[1, 2], [3]], [0, 1], [[1, 2]], [0]), shape=shape)  # ragged: not arrays
    assert err.code == "E614" and "not arrays of one shape" in err.message
    err = code_of(from_arrays, (*wrong, *wrong), shape=shape)
    assert err.code == "E614" and f"or samples of the net's input shape {'x'.join(map(str, shape))}" in err.message


@pytest.mark.slow
@pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason="Debian's Fashion-MNIST is absent")
def test_fashion_mnist_pngs_train_like_the_npz_and_predict(tmp_path):
    from netdsl import data

    ds = data.load("fashion-mnist", FASHION, scale=False)
    root = tmp_path / "fm"
    for split, x, y, n in (("train", ds.x_train, ds.y_train, 3000), ("test", ds.x_test, ds.y_test, 1000)):
        for i in range(n):
            d = root / split / f"class{y[i]}"
            d.mkdir(parents=True, exist_ok=True)
            PIL.fromarray(x[i, :, :, 0].astype(np.uint8)).save(d / f"{i:05d}.png")
    spec = Path(__file__).parent.parent / "examples" / "lenet5.net"
    from_folder = netdsl.train(str(spec), data=root, out=tmp_path / "run")
    loaded = folder.load_folder(root, (28, 28, 1), scale=False)
    np.savez(tmp_path / "fm.npz", class_names=np.array(loaded.class_names),
             **{k: getattr(loaded, k).astype(np.uint8) if k[0] == "x" else getattr(loaded, k)
                for k in ("x_train", "y_train", "x_test", "y_test")})  # fmt: skip
    from_npz = netdsl.train(str(spec), data=str(tmp_path / "fm.npz"))
    assert from_folder["test_accuracy"] == from_npz["test_accuracy"]  # the same data, seed and order
    assert from_folder["test_accuracy"] > 0.65, from_folder["test_accuracy"]
    pngs = sorted((root / "test").rglob("*.png"))[::50][:20]
    proc = subprocess.run([*NETDSL, "predict", str(tmp_path / "run"), *map(str, pngs), "--json", "-k", "1"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    hits = sum(r["top"][0]["class"] == Path(r["image"]).parent.name for r in json.loads(proc.stdout))
    assert hits >= 12, hits


# ---- CIFAR binaries ---------------------------------------------------------------------------


def write_cifar(root: Path, name: str, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Files in the official binary format: label byte(s), then the R, G, B planes."""
    folder_name, train, test, label_bytes, label_at, names_file, classes = cifar.SPEC[name]
    d = root / folder_name
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n * (len(train) + 1), 32, 32, 3), dtype=np.uint8)
    y = np.arange(len(x)) % classes
    for k, f in enumerate([*train, *test]):
        part = slice(k * n, (k + 1) * n)
        labels = np.zeros((n, label_bytes), np.uint8)
        labels[:, label_at] = y[part]
        if label_bytes == 2:
            labels[:, 0] = y[part] // 5  # the coarse label
        planes = x[part].transpose(0, 3, 1, 2).reshape(n, -1)
        (d / f).write_bytes(np.concatenate([labels, planes], 1).tobytes())
    (d / names_file).write_text("\n".join(f"c{i}" for i in range(classes)) + "\n")
    return x, y


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_readers(tmp_path, name):
    x, y = write_cifar(tmp_path, name)
    ds = cifar.load(name, tmp_path, scale=False)
    n_train = len(x) - 20
    assert np.array_equal(ds.x_train, x[:n_train]) and np.array_equal(ds.y_train, y[:n_train])
    assert np.array_equal(ds.x_test, x[n_train:]) and len(ds.class_names) == cifar.SPEC[name][6]
    f = tmp_path / cifar.SPEC[name][0] / cifar.SPEC[name][2][0]
    f.write_bytes(f.read_bytes()[:-7])
    err = code_of(cifar.load, name, tmp_path)
    assert err.code == "E617" and str(f) in err.message and "whole number" in err.message
    title = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    assert f"not a {title} binary batch" in err.message, err.message


def test_predict_top_k_must_be_positive(tmp_path):
    for k in ("0", "-1", "x"):
        cmd = [*NETDSL, "predict", str(tmp_path / "a.net"), "a.png", "--weights", "w", "-k", k]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "whole number >= 1" in p.stderr, p.stderr


def test_cifar_download_is_verified_and_extracts_only_its_files(tmp_path, monkeypatch):
    write_cifar(tmp_path / "src", "cifar10", n=4)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
        evil = tarfile.TarInfo("../../evil.txt")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    archive = buf.getvalue()
    import hashlib

    with serve({"cifar-10-binary.tar.gz": archive}) as mirror:
        monkeypatch.setattr(cifar, "DIGESTS", {"cifar10": ("sha256", "0" * 64)})
        err = code_of(cifar.load, "cifar10", mirror=mirror.url, quiet=True)
        assert err.code == "E503" and "does not match" in err.message
        monkeypatch.setattr(cifar, "DIGESTS", {"cifar10": ("sha256", hashlib.sha256(archive).hexdigest())})
        monkeypatch.chdir(tmp_path)
        ds = cifar.load("cifar10", mirror=mirror.url, quiet=True)
    assert len(ds.x_train) == 20 and not list(tmp_path.rglob("evil.txt"))
    assert not list((tmp_path / "cache" / "netdsl" / "cifar10").glob("*.tar.gz"))  # the archive is not kept


def test_threaded_decode_names_the_first_bad_file_in_order(tmp_path):
    written = write_folder(tmp_path / "d", n=300, size=(4, 4))  # 600 files: decoded by threads
    _, train, _, _ = folder.scan(tmp_path / "d")
    order = [Path(p) for p, _ in train]  # the decoding order (rounds of one image per class)
    assert len(order) > 400 and {p for p, _, _ in written} >= set(order)
    for bad in (order[450], order[100]):
        bad.write_bytes(b"garbage")
    for _ in range(3):
        err = code_of(folder.load_folder, tmp_path / "d", (4, 4, 3), cache=False)
        assert err.code == "E612" and f"`{order[100]}`" in err.message


def test_without_pillow_an_install_hint(tmp_path):
    write_folder(tmp_path / "d", n=2)
    code = (
        "import sys; sys.modules['PIL'] = None\n"
        "from netdsl.datasets import folder\n"
        "from netdsl import NetdslError\n"
        "try:\n    folder.load_folder(sys.argv[1], (8, 8, 3))\n"
        "except NetdslError as e:\n    print(e.code, e.hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "E618 pip install 'netdsl[images]'", out.stdout + out.stderr


def test_data_cifar10_in_a_spec_trains_from_the_binaries(tmp_path):
    write_cifar(tmp_path, "cifar10")
    net = netdsl.parse("input 32x32x3\ngap\ndense 10 softmax\ndata cifar10\n")
    m = netdsl.train(net, data=str(tmp_path), epochs=1)
    assert m["data"]["name"] == "cifar10" and m["data"]["test"] == 20 and m["data"]["class_names"][:2] == ["c0", "c1"]
    lenet = netdsl.load(Path(__file__).parent.parent / "examples" / "lenet5.net")
    err = code_of(netdsl.train, lenet, dataset="cifar10")  # refused before any search or download
    assert err.code == "E602" and "the images of CIFAR-10 are 32x32x3" in err.message and err.line == 2


def test_an_idx_directory_is_not_an_image_folder(tmp_path):
    from data_server import write_idx

    write_idx(tmp_path / "mnist")  # `--data DIR` with the IDX files in DIR/mnist/
    (tmp_path / "notes").mkdir()
    assert not folder.is_folder(tmp_path)
    write_folder(tmp_path / "imgs", n=1)
    assert folder.is_folder(tmp_path / "imgs") and folder.is_folder(tmp_path / "imgs" / "train")


def test_evaluate_keeps_user_files_and_finds_its_data_from_anywhere(tmp_path, monkeypatch):
    """A default confusion.png replaces only a file netdsl wrote; the run records its data folder
    absolute, so evaluate from another directory scores the same data, never MNIST instead."""
    work = tmp_path / "work"
    write_folder(work / "good", n=4)
    write_folder(work / "good", n=2, split="test")
    (work / "tiny.net").write_text(TINY)
    monkeypatch.chdir(work)
    m = netdsl.train("tiny.net", data="good", epochs=1, out="run", lr=0.01)
    assert m["settings"]["data"] == str(work / "good")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mine = b"my own picture"
    (elsewhere / "confusion.png").write_bytes(mine)
    (work / "run" / "confusion.png").write_bytes(mine)
    ev = subprocess.run([*NETDSL, "evaluate", str(work / "run")], capture_output=True, text=True, cwd=elsewhere)
    assert ev.returncode == 1 and "E616" in ev.stderr and "refusing to overwrite" in ev.stderr, ev.stderr
    assert (work / "run" / "confusion.png").read_bytes() == mine
    (work / "run" / "confusion.png").unlink()
    ev = subprocess.run([*NETDSL, "evaluate", str(work / "run")], capture_output=True, text=True, cwd=elsewhere)
    assert ev.returncode == 0, ev.stderr
    assert f"on {work / 'good'}" in ev.stdout and ": 4 test images" in ev.stdout  # its own data, not MNIST
    ev = subprocess.run([*NETDSL, "evaluate", str(work / "run")], capture_output=True, text=True, cwd=elsewhere)
    assert ev.returncode == 0, ev.stderr  # netdsl's own drawing is replaced
    cmd = [*NETDSL, "evaluate", "work/run", "--data", "work/good"]
    ev = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)  # default output: ./confusion.png
    assert ev.returncode == 0, ev.stderr
    ev = subprocess.run([*cmd, "-o", "elsewhere/confusion.png"], capture_output=True, text=True, cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert (elsewhere / "confusion.png").read_bytes()[:4] == b"\x89PNG"  # -o names it: replaced
    # an older run recorded the folder as typed: refused from elsewhere, never MNIST
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    metrics["settings"]["data"] = "good"
    (work / "run" / "metrics.json").write_text(json.dumps(metrics))
    ev = subprocess.run([*NETDSL, "evaluate", str(work / "run")], capture_output=True, text=True, cwd=elsewhere)
    assert ev.returncode == 1 and "E616" in ev.stderr and "`good`" in ev.stderr and "MNIST" not in ev.stdout
    ev = subprocess.run([*NETDSL, "evaluate", "run"], capture_output=True, text=True, cwd=work)
    assert ev.returncode == 0 and "4 test images" in ev.stdout, ev.stderr
    shutil.rmtree(work / "good")
    metrics["settings"]["data"] = str(work / "good")
    (work / "run" / "metrics.json").write_text(json.dumps(metrics))
    ev = subprocess.run([*NETDSL, "evaluate", "run"], capture_output=True, text=True, cwd=work)
    assert ev.returncode == 1 and "no longer there" in ev.stderr and "MNIST" not in ev.stdout, ev.stderr


def test_evaluate_names_what_its_target_is(tmp_path):
    (tmp_path / "mk.py").write_text("print(1)\n")
    (tmp_path / "a.net").write_text(TINY)
    for target, phrase in [
        ("runs/nonexistent", "`runs/nonexistent`: no such file or directory"),
        ("mk.py", "`mk.py` is neither a run directory of netdsl train nor a .net spec"),
        ("a.net", "`a.net` is a spec: name its trained weights with --weights"),
    ]:
        p = subprocess.run([*NETDSL, "evaluate", target], capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert p.returncode == 1 and "E616" in p.stderr and phrase in p.stderr, p.stderr


def test_a_big_image_reads_without_pillows_warning(tmp_path):
    """Between MAX_IMAGE_PIXELS and twice it Pillow warns (DecompressionBombWarning): not printed."""
    PIL.fromarray(np.zeros((12, 10), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "a.net").write_text("input 4x4x1\nflatten\ndense 2 softmax\n")
    code = (
        "import sys, PIL.Image; PIL.Image.MAX_IMAGE_PIXELS = 100; from netdsl.cli import main; "
        "from netdsl.evaluate import read_image; print(read_image('big.png', (4, 4, 1), True).shape)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 0 and "(4, 4, 1)" in p.stdout, p.stderr
    assert "DecompressionBomb" not in p.stderr, p.stderr


def test_evaluate_checks_only_the_test_split(tmp_path):
    """evaluate reads only x_test/y_test: a NaN (or a float64 overflow) in x_train is not its business."""
    pytest.importorskip("torch")
    arrays = _arrays()
    x_train = arrays["x_train"].astype(np.float64) / 255
    x_train[0, 0, 0, 0], x_train[1, 0, 0, 0] = np.nan, 1e300
    arrays["x_train"] = x_train
    np.savez(tmp_path / "nan.npz", **arrays)
    (tmp_path / "a.net").write_text(TINY)
    net = netdsl.parse(TINY)
    net.save_weights(net.to_torch(device="cpu"), tmp_path / "w.safetensors")
    cmd = [*NETDSL, "evaluate", "a.net", "--weights", "w.safetensors", "--data", "nan.npz", "-o", "c.png"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0 and "4 test images" in p.stdout, p.stderr
    assert "Warning" not in p.stderr, p.stderr
    err = code_of(load_npz, tmp_path / "nan.npz")  # training still refuses it
    assert err.code == "E614" and "x_train[0]" in err.message


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_evaluate_loss_is_trainings_from_the_logits(tmp_path, capsys, backend):
    """Confidently wrong predictions: the loss from the logits, as training reports it (evaluate
    clipped the probabilities at 1e-7, which capped each image's loss at 16.1)."""
    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    from safetensors.numpy import save_file

    from netdsl.cli import main

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    y = rng.integers(0, 3, 40)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    (tmp_path / "p.net").write_text("input 8x8x1\nflatten\ndense 3 softmax\n")
    kernel = rng.normal(0, 8, (64, 3)).astype(np.float32)
    save_file({"dense_1.kernel": kernel, "dense_1.bias": np.zeros(3, np.float32)}, str(tmp_path / "w.safetensors"))
    logits = (x.reshape(40, 64) / np.float32(255)).astype(np.float64) @ kernel
    top = logits.max(1)
    want = float(np.mean(top + np.log(np.exp(logits - top[:, None]).sum(1)) - logits[np.arange(40), y]))
    assert want > 17  # beyond what the clipped loss could give
    argv = ["evaluate", str(tmp_path / "p.net"), "--weights", str(tmp_path / "w.safetensors")]
    code = main([*argv, "--data", str(tmp_path / "d.npz"), "-o", str(tmp_path / "c.png"), "-b", backend])
    out = capsys.readouterr().out
    assert code == 0
    got = float(out.split("test loss: ")[1].split()[0])
    assert got == pytest.approx(want, rel=1e-3), out


def test_a_text_file_named_npz_is_said_to_be_no_zip(tmp_path):
    from netdsl import data

    (tmp_path / "small.npz").write_text("hello\n")
    (tmp_path / "empty.npz").write_bytes(b"")
    for path, said in ((tmp_path / "small.npz", "not a zip/npz file"), (tmp_path / "empty.npz", "it is empty")):
        for read in (load_npz, data.load_npz):  # an .npz of the user's, and MNIST's
            err = code_of(read, path)
            assert err.code in ("E614", "E502") and said in err.message and "pickle" not in err.message, err


def test_bad_standard_input_to_predict_names_standard_input(monkeypatch):
    from netdsl.evaluate import read_image

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"garbage\n")))
    err = code_of(read_image, "-", (8, 8, 1), False)
    assert err.code == "E615" and err.message.startswith("standard input: not a readable image (")
    assert "BytesIO" not in err.message and "0x" not in err.message, err.message


def test_evaluate_dataset_scores_that_data_set_not_the_runs(tmp_path, capsys):
    """--dataset mnist on a run trained on an .npz scored the .npz's test set, silently."""
    pytest.importorskip("torch")
    from netdsl.cli import main

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), np.arange(30) % 10
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:7], y_test=y[:7])
    netdsl.train(netdsl.parse("flatten\ndense 10 softmax\n"), data=str(tmp_path / "d.npz"), out=tmp_path / "run")
    assert main(["evaluate", str(tmp_path / "run"), "-o", str(tmp_path / "c.png")]) == 0
    assert "d.npz: 7 test images" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "run"), "--dataset", "mnist", "-o", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert "d.npz" not in out and "7 test images" not in out, out
