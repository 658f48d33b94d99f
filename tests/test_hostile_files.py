"""Hostile model files through every way in (issue 6).

tests/test_io.py checks every single-byte flip and truncation and ~30 crafted
files through grurec.load(bytes). Here one corpus of hostile files -- wrong
magic, lying lengths, huge declared sizes, pickle payloads, valid checksums
around bad content -- goes through every entry point that reads a model:
grurec.load on a path, bytes, bytearray, memoryview and a file object,
GRU4Rec.from_bytes, grurec.io.read_metadata, pickle.loads of a pickled model
whose embedded file was replaced, and the CLI. Each must raise
grurec.ModelFileError (the CLI: exit 2), allocate little beyond the input
(tracemalloc), and never run code: every pickle payload would create a
marker file.
"""
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest

import grurec
from grurec.io import MAGIC, ModelFileError, read_metadata
from grurec.synthetic import generate_sessions


class Boom:
    """Unpickling this creates a marker file (stands for any code)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class Shipped:
    """Pickles exactly as GRU4Rec.__reduce__ does, around any bytes."""

    def __init__(self, blob):
        self.blob = blob

    def __reduce__(self):
        from grurec.io import _rebuild

        return (_rebuild, (grurec.GRU4Rec, self.blob))


def craft(meta, data=b"", *, version=2, total=None, json_len=None, magic=MAGIC):
    js = meta if isinstance(meta, bytes) else json.dumps(meta, separators=(",", ":")).encode()
    start = -(-(32 + len(js)) // 64) * 64
    real_total = start + len(data) + 32
    head = struct.pack("<8sIIQI", magic, version, len(js) if json_len is None else json_len,
                       real_total if total is None else total, 0)
    head += struct.pack("<I", zlib.crc32(head))
    body = head + js + bytes(start - 32 - len(js)) + data
    return body + hashlib.sha256(body).digest()


def split_file(b):
    jlen = struct.unpack("<I", b[12:16])[0]
    start = -(-(32 + jlen) // 64) * 64
    return json.loads(b[32:32 + jlen]), b[start:-32]


@pytest.fixture(scope="module")
def good():
    df = generate_sessions(n_events=300, n_items=20, mean_length=5, seed=1)
    m = grurec.GRU4Rec(layers=[4], batch_size=4, n_sample=4, n_epochs=1, num_threads=1,
                       random_state=0, show_progress=False).fit(df)
    return m.to_bytes()


def corpus(good, marker):
    """name -> hostile bytes."""
    meta, data = split_file(good)
    pk = {f"pickle-protocol-{p}": pickle.dumps(Boom(marker), protocol=p) for p in (0, 2, 4, 5)}
    out = dict(pk)

    def edited(fn):
        m = json.loads(json.dumps(meta))
        fn(m)
        return craft(m, data)

    npy = io.BytesIO()
    np.save(npy, np.array([Boom(marker)], dtype=object), allow_pickle=True)
    out.update({
        "wrong-magic": b"\x89GRX\r\n\x1a\n" + good[8:],
        "magic-only": MAGIC,
        "npy-with-pickled-object": npy.getvalue(),
        "pickle-in-magic-shell": MAGIC + pk["pickle-protocol-4"],
        "pickle-as-metadata": craft(pk["pickle-protocol-4"]),
        "pickle-as-json-string": edited(lambda m: m.update(
            model=pk["pickle-protocol-0"].decode("latin1"))),
        "declares-1TB": craft(meta, data, total=2**40),
        "declares-2^64-1": craft(meta, data, total=2**64 - 1),
        "declares-less-than-it-is": craft(meta, data, total=len(good) - 64),
        "json-length-4GB": craft(meta, data, json_len=2**32 - 1),
        "json-length-past-end": craft(meta, data, json_len=len(good)),
        "array-offset-past-end": edited(lambda m: m["arrays"][2].update(offset=2**62)),
        "array-nbytes-lies": edited(lambda m: m["arrays"][2].update(nbytes=2**40)),
        "array-shape-1e18": edited(lambda m: m["arrays"][2].update(shape=[10**9, 10**9],
                                                                    nbytes=4 * 10**18)),
        "array-negative-offset": edited(lambda m: m["arrays"][2].update(offset=-64)),
        "arrays-overlap": edited(lambda m: m["arrays"][3].update(
            offset=m["arrays"][2]["offset"])),
        "item-count-1e15": edited(lambda m: m["item_ids"].update(count=10**15)),
        "layers-1e9": edited(lambda m: m["hyperparameters"].update(layers=[10**9])),
        "layers-huge": edited(lambda m: m["hyperparameters"].update(layers=[2**62])),
        "class-os-system": edited(lambda m: m.update(model="os.system")),
        "hyperparameter-code": edited(lambda m: m["hyperparameters"].update(
            loss="__import__('os').system('touch x')")),
        "unknown-hyperparameter": edited(lambda m: m["hyperparameters"].update(
            __reduce__="exec")),
        "nan-weights": craft(meta, data[:-4] + struct.pack("<f", float("nan"))),
    })
    return out


ENTRY_POINTS = ["path", "bytes", "bytearray", "memoryview", "file", "from_bytes",
                "read_metadata", "unpickle"]


def load_via(how, blob, tmp_path):
    if how == "path":
        p = tmp_path / "hostile.grurec"
        p.write_bytes(blob)
        return grurec.load(p)
    if how == "bytes":
        return grurec.load(blob)
    if how == "bytearray":
        return grurec.load(bytearray(blob))
    if how == "memoryview":
        return grurec.load(memoryview(blob))
    if how == "file":
        return grurec.load(io.BufferedReader(io.BytesIO(blob), buffer_size=13))
    if how == "from_bytes":
        return grurec.GRU4Rec.from_bytes(blob)
    if how == "read_metadata":
        meta = read_metadata(blob)
        # metadata alone may be readable; building the model must not be
        return grurec.load(blob) if meta else None
    # What a pickled model (multiprocessing, Dask) holds, with the hostile
    # file in place of its own: unpickling goes through the same checks.
    return pickle.loads(pickle.dumps(Shipped(blob)))


@pytest.mark.parametrize("how", ENTRY_POINTS)
def test_every_hostile_file_is_refused_everywhere(good, tmp_path, how):
    marker = str(tmp_path / "pwned")
    refused = {}
    for name, blob in corpus(good, marker).items():
        tracemalloc.start()
        try:
            with pytest.raises(ModelFileError) as e:
                load_via(how, blob, tmp_path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        refused[name] = str(e.value)
        # never the declared sizes: the input (a few KB) plus bookkeeping
        assert peak < 6 * len(blob) + (2 << 20), (name, peak)
        assert str(e.value), name
    assert not os.path.exists(marker), "a pickle payload was run"
    assert "pickle" in refused["pickle-protocol-4"]
    assert "NaN or infinite" in refused["nan-weights"]


def test_pickled_model_with_swapped_file_is_refused(good, tmp_path):
    """pickle.loads of a real pickled model whose model-file bytes were
    replaced by a hostile file: the same ModelFileError (grurec's own
    __reduce__ ships only the checked file format)."""
    m = grurec.GRU4Rec.from_bytes(good)
    blob = pickle.dumps(m, protocol=4)
    assert good in blob
    meta, data = split_file(good)
    meta["hyperparameters"]["layers"] = [10**9]
    hostile = craft(meta, data)
    assert len(hostile) == len(good)  # same length: the pickle stays well-formed
    with pytest.raises(ModelFileError, match="need"):
        pickle.loads(blob.replace(good, hostile))


def test_hostile_stream_declaring_a_terabyte_reads_only_what_is_there(good):
    """A file object of unknown size that declares 1 TB: read in 1 MB
    chunks as the data arrives, never allocated from the declared size."""
    meta, data = split_file(good)
    blob = craft(meta, data, total=2**40) + bytes(3 << 20)  # 3 MB more than the model

    class Slow(io.RawIOBase):
        def __init__(self):
            self.pos = 0

        def readable(self):
            return True

        def readinto(self, b):
            n = min(len(b), 4096, len(blob) - self.pos)
            b[:n] = blob[self.pos:self.pos + n]
            self.pos += n
            return n

    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="truncated"):
            grurec.load(io.BufferedReader(Slow()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom", "/", "/nonexistent/m.grurec"])
def test_special_paths(path):
    if not os.path.exists(path) and path != "/nonexistent/m.grurec":
        pytest.skip(f"{path} not on this system")
    with pytest.raises((ModelFileError, OSError)):
        grurec.load(path)


def test_cli_refuses_hostile_files(good, tmp_path):
    marker = str(tmp_path / "pwned")
    for name in ("pickle-protocol-2", "declares-1TB", "layers-huge", "npy-with-pickled-object"):
        p = tmp_path / f"{name}.grurec"
        p.write_bytes(corpus(good, marker)[name])
        out = subprocess.run([sys.executable, "-m", "grurec", "recommend", str(p), "1", "2"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, (name, out.stderr)
        assert "model file" in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert not os.path.exists(marker)
