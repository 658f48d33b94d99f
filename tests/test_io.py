"""Model files: round trips, corruption and truncation anywhere, hostile files,
atomic writes, pickling through the same bytes."""
import copy
import hashlib
import io
import json
import math
import multiprocessing
import os
import pickle
import pickletools
import struct
import tracemalloc
import zlib

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec import ModelFileError
from grurec.synthetic import generate_sessions

MAGIC = b"\x89GRU\r\n\x1a\n"


def small_model(**kw):
    base = dict(layers=[3], batch_size=4, n_sample=4, n_epochs=1, random_state=0,
                show_progress=False, num_threads=1)
    base.update(kw)
    return grurec.GRU4Rec(**base)


@pytest.fixture(scope="module")
def events():
    return generate_sessions(n_events=400, n_items=12, mean_length=4, seed=5)


@pytest.fixture(scope="module")
def tiny(events):
    """A small fitted model: its file is ~2 KB, small enough to damage every byte."""
    return small_model().fit(events)


def session_scores(model, items):
    """Scores of every item after each step of one session (hidden state from zero)."""
    states = [np.zeros((1, H), np.float32) for H in model.layers]
    out = []
    for i in items:
        h = model._step(states, np.array([i], np.int32))
        out.append(model.score_items(h))
    return np.concatenate(out)


def assert_same_model(a, b):
    assert type(a) is type(b)
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype == np.float32
        np.testing.assert_array_equal(a.params[k], b.params[k], err_msg=k)
    assert list(a.item_ids) == list(b.item_ids)
    assert a.epochs_trained == b.epochs_trained
    assert a.history == b.history
    for name in ("layers", "loss", "elu_param", "bpreg", "logq", "batch_size", "n_sample",
                 "sample_alpha", "embedding", "constrained_embedding", "dropout_p_embed",
                 "dropout_p_hidden", "learning_rate", "momentum", "n_epochs", "num_threads",
                 "random_state", "show_progress"):
        assert getattr(a, name) == getattr(b, name), name


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("kw", [
    dict(constrained_embedding=True),
    dict(constrained_embedding=False, embedding=0),
    dict(constrained_embedding=False, embedding=5),
    dict(layers=[6, 4], momentum=0.3, loss="bpr-max", elu_param=0.5, bpreg=1.0),
], ids=["shared", "onehot", "embedding", "two-layers-momentum"])
def test_round_trip_gives_identical_weights_and_scores(events, tmp_path, kw):
    m = small_model(**kw).fit(events)
    path = tmp_path / "m.grurec"
    m.save(path)
    for loaded in (grurec.load(path), grurec.load(str(path)), grurec.load(m.to_bytes()),
                   grurec.GRU4Rec.from_bytes(m.to_bytes()), grurec.load(io.BytesIO(m.to_bytes())),
                   grurec.load(bytearray(m.to_bytes())), grurec.load(memoryview(m.to_bytes()))):
        assert_same_model(m, loaded)
        session = [3, 7, 7, 1, 0]
        np.testing.assert_array_equal(session_scores(m, session), session_scores(loaded, session))
    assert grurec.evaluate(m, events.head(200)) == grurec.evaluate(grurec.load(path), events.head(200))


def test_string_item_ids_round_trip_including_unicode(events, tmp_path):
    df = events.assign(ItemId=events.ItemId.map(lambda i: ["äpfel", "naïve", "日本", "", "x y",
                                                           "a\tb"][i % 6] + str(i)))
    m = small_model().fit(df)
    m.save(tmp_path / "s.grurec")
    back = grurec.load(tmp_path / "s.grurec")
    assert back.item_ids.dtype == object and list(back.item_ids) == list(m.item_ids)
    assert all(isinstance(x, str) for x in back.item_ids)
    r1 = grurec.evaluate(m, df.head(100))
    assert r1 == grurec.evaluate(back, df.head(100))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint64])
def test_integer_item_id_dtypes_survive(events, dtype):
    df = events.assign(ItemId=events.ItemId.astype(dtype) + dtype(10))
    m = small_model().fit(df)
    back = grurec.load(m.to_bytes())
    np.testing.assert_array_equal(back.item_ids, m.item_ids)
    assert back.item_ids.dtype.kind == np.dtype(dtype).kind


def test_loaded_model_is_writable_and_can_be_refit(tiny, events):
    back = grurec.load(tiny.to_bytes())
    back.params["W_y"][0] += 1  # the arrays are not read-only views of immutable bytes
    back.fit(events)
    assert back.epochs_trained == 1
    back2 = grurec.load(back.to_bytes())
    assert_same_model(back, back2)


def test_optimizer_state_only_when_asked(events):
    m = small_model(momentum=0.5).fit(events)
    plain = grurec.load(m.to_bytes())
    assert plain._opt == {} and plain._vel == {}
    full = grurec.load(m.to_bytes(optimizer=True))
    assert full._opt.keys() == m._opt.keys() and full._vel.keys() == m._vel.keys()
    for k in m._opt:
        np.testing.assert_array_equal(full._opt[k], m._opt[k])
        np.testing.assert_array_equal(full._vel[k], m._vel[k])
    assert len(m.to_bytes(optimizer=True)) > 2.5 * len(m.to_bytes()) - 4096


def test_unfitted_model_round_trips():
    m = grurec.GRU4Rec(layers=[8, 4], loss="top1-max", n_epochs=3, random_state=7)
    back = grurec.load(m.to_bytes())
    assert back.params == {} and back.item_ids is None
    assert back.layers == [8, 4] and back.loss == "top1-max" and back.random_state == 7


def test_metadata_names_versions(tiny):
    meta = grurec.io.read_metadata(tiny.to_bytes())
    assert meta["format_version"] == 2 and meta["library"] == "grurec"
    assert meta["model"] == "GRU4Rec"
    assert meta["library_version"] == grurec.__version__
    assert meta["hyperparameters"]["layers"] == [3]
    assert meta["state"]["epochs_trained"] == 1


def test_same_model_gives_the_same_bytes(tiny):
    assert tiny.to_bytes() == tiny.to_bytes()
    assert grurec.load(tiny.to_bytes()).to_bytes() == tiny.to_bytes()


def test_file_is_readable_with_numpy_alone(tiny, tmp_path):
    """The documented layout, read without grurec."""
    tiny.save(tmp_path / "m.grurec")
    b = (tmp_path / "m.grurec").read_bytes()
    magic, version, jlen, total, reserved, crc = struct.unpack("<8sIIQII", b[:32])
    assert magic == MAGIC and version == 2 and total == len(b) and reserved == 0
    assert crc == zlib.crc32(b[:28])
    assert hashlib.sha256(b[:-32]).digest() == b[-32:]
    meta = json.loads(b[32:32 + jlen])
    start = -(-(32 + jlen) // 64) * 64
    arrays = {e["name"]: np.frombuffer(b, e["dtype"], math.prod(e["shape"]),
                                       start + e["offset"]).reshape(e["shape"])
              for e in meta["arrays"]}
    for k, v in tiny.params.items():
        np.testing.assert_array_equal(arrays[f"params/{k}"], v)
    np.testing.assert_array_equal(arrays["item_ids"], tiny.item_ids)


# ------------------------------------------------------------------ saving
def test_save_refuses_other_item_id_types(tiny):
    for ids in (np.linspace(0.5, 11.5, 12), np.array([(i,) for i in range(12)] + [None],
                                                      dtype=object)[:12],
                np.array([1, "a"] * 6, dtype=object), np.array([b"x%d" % i for i in range(12)]),
                np.zeros(12, bool)):
        m = copy.copy(tiny)
        m.item_ids = ids
        with pytest.raises(TypeError, match="cannot save the model: item ids must be all "
                                            "integers or all strings"):
            m.to_bytes()


def test_save_is_atomic_and_leaves_no_temporary_files(tiny, events, tmp_path, monkeypatch):
    path = tmp_path / "model.grurec"
    tiny.save(path)
    before = path.read_bytes()
    other = small_model(layers=[5]).fit(events)
    other.save(path)  # overwrite
    assert grurec.load(path).layers == [5]
    assert sorted(os.listdir(tmp_path)) == ["model.grurec"]
    # A write that fails half way leaves the old file untouched and no debris.
    tiny.save(path)

    def broken(model, f, optimizer):
        f.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(grurec.io, "_write", broken)
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.grurec"]


def test_saved_file_permissions_follow_the_umask(tiny, tmp_path):
    um = os.umask(0o022)
    os.umask(um)
    tiny.save(tmp_path / "m.grurec")
    assert (tmp_path / "m.grurec").stat().st_mode & 0o777 == 0o666 & ~um


# ------------------------------------------------------------------ pickling
def _pickled_globals(blob):
    """Every (module, name) a pickle would import when loaded."""
    out, strings = set(), []
    for op, arg, _ in pickletools.genops(blob):
        if op.name in ("GLOBAL", "INST"):
            out.add(tuple(arg.split(" ")))
        elif op.name == "STACK_GLOBAL":
            out.add((strings[-2], strings[-1]))
        elif isinstance(arg, str):
            strings.append(arg)
    return out


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_goes_through_the_file_format(tiny, protocol):
    blob = pickle.dumps(tiny, protocol=protocol)
    allowed = {("grurec.io", "_rebuild"), ("grurec.model", "GRU4Rec")}
    if protocol < 3:  # bytes are pickled as codecs.encode(str, 'latin1') before protocol 3
        allowed.add(("_codecs", "encode"))
    assert _pickled_globals(blob) <= allowed
    if protocol >= 3:
        assert tiny.to_bytes() in blob
    back = pickle.loads(blob)
    assert_same_model(tiny, back)


def test_copy_and_deepcopy(tiny):
    for c in (copy.copy(tiny), copy.deepcopy(tiny)):
        assert_same_model(tiny, c)
        assert c.params["W_y"] is not tiny.params["W_y"]


def test_subclass_survives_pickling(events):
    m = Sub(layers=[3], n_epochs=1, n_sample=4, batch_size=4, show_progress=False,
            random_state=0).fit(events)
    back = pickle.loads(pickle.dumps(m))
    assert type(back) is Sub
    assert_same_model(m, back)


class Sub(grurec.GRU4Rec):
    pass


def _scores_in_worker(model):
    return session_scores(model, [1, 2, 3])


def test_model_ships_to_another_process(tiny):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        got = pool.apply(_scores_in_worker, (tiny,))
    np.testing.assert_array_equal(got, session_scores(tiny, [1, 2, 3]))


# ------------------------------------------------------------------ damage, exhaustively
def test_every_single_byte_flip_is_detected(tiny):
    good = tiny.to_bytes()
    assert len(good) < 4096  # small enough to try every position
    n = 0
    for pos in range(len(good)):
        for mask in (0xFF, 0x01, 0x80):
            bad = bytearray(good)
            bad[pos] ^= mask
            with pytest.raises(ModelFileError):
                grurec.load(bytes(bad))
            n += 1
    assert n == 3 * len(good)


def test_every_truncation_is_detected(tiny, tmp_path):
    good = tiny.to_bytes()
    for length in range(len(good)):
        with pytest.raises(ModelFileError):
            grurec.load(good[:length])
        with pytest.raises(ModelFileError):
            grurec.load(io.BytesIO(good[:length]))
    path = tmp_path / "t.grurec"
    for length in list(range(0, 64)) + list(range(64, len(good), 37)):
        path.write_bytes(good[:length])
        with pytest.raises(ModelFileError, match="truncated|not a grurec model file"):
            grurec.load(path)


def test_appended_bytes_are_detected(tiny):
    with pytest.raises(ModelFileError, match="unexpected bytes after the end"):
        grurec.load(tiny.to_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="unexpected bytes after the end"):
        grurec.load(io.BytesIO(tiny.to_bytes() + b"junk"))


def test_messages_say_what_is_wrong(tiny):
    good = bytearray(tiny.to_bytes())
    with pytest.raises(ModelFileError, match="truncated model file: 100 bytes, the header says"):
        grurec.load(bytes(good[:100]))
    bad = bytearray(good)
    bad[-100] ^= 1
    with pytest.raises(ModelFileError, match="SHA-256 checksum does not match"):
        grurec.load(bytes(bad))
    bad = bytearray(good)
    bad[8] ^= 2  # the version field: caught by the header CRC, not read as 'newer'
    with pytest.raises(ModelFileError, match="header checksum"):
        grurec.load(bytes(bad))


# ------------------------------------------------------------------ hostile files
def split_file(b):
    """(metadata dict, data region bytes) of a model file."""
    jlen = struct.unpack("<I", b[12:16])[0]
    start = -(-(32 + jlen) // 64) * 64
    return json.loads(b[32:32 + jlen]), b[start:-32]


def craft(meta, data=b"", *, version=2, total=None, magic=MAGIC, reserved=0, json_len=None):
    """A file with valid CRC and SHA-256 around whatever metadata and data:
    what a hostile writer who knows the format can produce."""
    js = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    start = -(-(32 + len(js)) // 64) * 64
    real_total = start + len(data) + 32
    head = struct.pack("<8sIIQI", magic, version, len(js) if json_len is None else json_len,
                       total or real_total, reserved)
    head += struct.pack("<I", zlib.crc32(head))
    body = head + js + bytes(start - 32 - len(js)) + data
    return body + hashlib.sha256(body).digest()


def load_without_allocating(blob, match):
    """Load must fail with ModelFileError, allocating little beyond the input."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=match):
            grurec.load(blob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = len(blob) if isinstance(blob, bytes) else 0
    assert peak < 4 * size + (2 << 20), peak


def test_crafted_baseline_loads(tiny):
    meta, data = split_file(tiny.to_bytes())
    assert_same_model(tiny, grurec.load(craft(meta, data)))  # the helper itself is right


@pytest.mark.parametrize("change,match", [
    (lambda m: m["arrays"][-1].update(nbytes=2**40, shape=[2**38]), "runs past the end"),
    (lambda m: m["arrays"][-1].update(shape=[2**20, 2**20], nbytes=2**42), "runs past the end"),
    (lambda m: m["arrays"][-1].update(shape=[2**62, 2**62]), "declares shape"),
    (lambda m: m["arrays"][-1].update(offset=-64), "non-negative integer"),
    (lambda m: m["arrays"][-1].update(offset=2**63), "runs past the end"),
    (lambda m: m["arrays"][-1].update(dtype="|O"), "dtype"),
    (lambda m: m["arrays"][-1].update(dtype=">f4"), "dtype"),
    (lambda m: m["arrays"][-1].update(shape="12"), "shape"),
    (lambda m: m["arrays"][-1].update(shape=[1.5]), "non-negative integer"),
    (lambda m: m["arrays"][1].update(offset=m["arrays"][2]["offset"]), "overlap|do not match"),
    (lambda m: m["arrays"].append(dict(m["arrays"][1])), "appears twice"),
    (lambda m: m["arrays"].append({"name": "evil", "dtype": "|u1", "shape": [0], "offset": 0,
                                   "nbytes": 0}), "unexpected arrays"),
    (lambda m: m["hyperparameters"].update(layers=[10**12]), "layers: must be <="),
    (lambda m: m["hyperparameters"].update(layers=[10**9]), "need"),
    (lambda m: m["hyperparameters"].update(layers=[7]), "need"),
    (lambda m: m["hyperparameters"].update(exec="import os"), "does not know"),
    (lambda m: m["hyperparameters"].update(loss="__import__('os')"), "invalid hyperparameters"),
    (lambda m: m["hyperparameters"].update(layers={"a": 1}), "hyperparameter 'layers'"),
    (lambda m: m.update(model="os.system"), "unknown model class"),
    (lambda m: m.update(format="pickle"), "not a grurec model"),
    (lambda m: m.update(format_version=1), "versions disagree"),
    (lambda m: m.update(model="Popularity"), "unknown model class"),
    (lambda m: m["item_ids"].update(count=10**15), "malformed"),
    (lambda m: m["item_ids"].update(kind="pickle"), "kind"),
    (lambda m: m["state"].update(epochs_trained=-1), "epochs_trained"),
    (lambda m: m["state"].update(history="x"), "history"),
    (lambda m: m["state"].update(fitted=False), "unfitted model with arrays"),
    (lambda m: m.pop("arrays"), "'arrays' must be a list"),
])
def test_hostile_metadata_is_rejected_without_allocating(tiny, change, match):
    meta, data = split_file(tiny.to_bytes())
    change(meta)
    load_without_allocating(craft(meta, data), match)


def test_duplicate_item_ids_are_rejected(tiny):
    meta, data = split_file(tiny.to_bytes())
    e = next(a for a in meta["arrays"] if a["name"] == "item_ids")
    data = bytearray(data)
    data[e["offset"]:e["offset"] + 16] = np.array([5, 5], "<i8").tobytes()
    with pytest.raises(ModelFileError, match="not unique"):
        grurec.load(craft(meta, bytes(data)))


def test_header_declaring_a_terabyte_is_rejected_before_reading(tiny, tmp_path):
    meta, data = split_file(tiny.to_bytes())
    blob = craft(meta, data, total=2**40)
    path = tmp_path / "huge.grurec"
    path.write_bytes(blob)
    for src in (blob, io.BytesIO(blob), path):
        tracemalloc.start()
        try:
            with pytest.raises(ModelFileError, match="truncated model file: .* the header says "
                                                     "1099511627776"):
                grurec.load(src)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20
    for jl in (2**31, 2**32 - 1, len(blob)):
        load_without_allocating(craft(meta, data, json_len=jl), "metadata length")


def test_newer_format_version_says_so(tiny):
    meta, data = split_file(tiny.to_bytes())
    with pytest.raises(ModelFileError, match="format version 3, newer than this grurec .* "
                                             "upgrade grurec"):
        grurec.load(craft(meta, data, version=3))
    with pytest.raises(ModelFileError, match="invalid header"):
        grurec.load(craft(meta, data, version=0))
    with pytest.raises(ModelFileError, match="invalid header"):
        grurec.load(craft(meta, data, reserved=1))


class _Boom:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickle_payloads_are_never_run(tiny, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Boom(str(marker)))
    with pytest.raises(ModelFileError, match="looks like a Python pickle"):
        grurec.load(payload)
    (tmp_path / "model.pkl").write_bytes(payload)
    with pytest.raises(ModelFileError, match="pickle"):
        grurec.load(tmp_path / "model.pkl")
    with pytest.raises(ModelFileError, match="pickle"):
        grurec.load(pickle.dumps(_Boom(str(marker)), protocol=0))
    # A pickle inside an otherwise valid container: as metadata, as an array.
    with pytest.raises(ModelFileError, match="invalid model metadata"):
        grurec.load(craft(payload))
    meta, data = split_file(tiny.to_bytes())
    meta["arrays"].append({"name": "params/evil", "dtype": "|u1", "shape": [len(payload)],
                           "offset": len(data), "nbytes": len(payload)})
    with pytest.raises(ModelFileError):
        grurec.load(craft(meta, data + payload))
    assert not marker.exists()


@pytest.mark.parametrize("blob,match", [
    (b"", "not a grurec model file"),
    (MAGIC[:5], "truncated"),
    (b"PK\x03\x04" + bytes(60), "zip archive"),
    (b"\x93NUMPY" + bytes(60), "NumPy"),
    (b"\x1f\x8b" + bytes(60), "gzip"),
    (b'{"format": "grurec-model"}' + bytes(40), "not a grurec model file"),
    (craft(b"[1, 2", b""), "invalid model metadata"),
    (craft(b'{"a": NaN}', b""), "invalid model metadata"),
    (craft(b'{"a": 1, "a": 2}', b""), "duplicate key"),
    (craft(b"[" * 100000 + b"]" * 100000, b""), "invalid model metadata"),
    (craft("\ud800".encode("utf-8", "surrogatepass"), b""), "invalid model metadata"),
], ids=["empty", "magic-prefix", "zip", "npy", "gzip", "json", "bad-json", "nan", "dup-key",
        "deep-json", "bad-utf8"])
def test_foreign_and_malformed_files(blob, match):
    load_without_allocating(blob, match)


def test_bad_string_ids_are_rejected(events):
    df = events.assign(ItemId="i" + events.ItemId.astype(str))
    m = small_model().fit(df)
    meta, data = split_file(m.to_bytes())
    e = next(a for a in meta["arrays"] if a["name"] == "item_ids/utf8")
    bad = bytearray(data)
    bad[e["offset"]] = 0xFF  # not UTF-8
    with pytest.raises(ModelFileError, match="not UTF-8"):
        grurec.load(craft(meta, bytes(bad)))
    o = next(a for a in meta["arrays"] if a["name"] == "item_ids/offsets")
    bad = bytearray(data)
    bad[o["offset"] + 8:o["offset"] + 16] = np.array(10**9, "<i8").tobytes()
    with pytest.raises(ModelFileError, match="offsets are inconsistent"):
        grurec.load(craft(meta, bytes(bad)))


def test_load_rejects_other_argument_types():
    with pytest.raises(TypeError, match="path, bytes or a binary file object"):
        grurec.load(12)
    with pytest.raises(TypeError, match="binary mode"):
        grurec.load(io.StringIO("text"))
    with pytest.raises(FileNotFoundError):
        grurec.load("/nonexistent/model.grurec")


def test_param_shapes_match_init_params():
    for kw in (dict(constrained_embedding=True), dict(constrained_embedding=False),
               dict(constrained_embedding=False, embedding=7), dict(layers=[5, 6, 2])):
        m = grurec.GRU4Rec(**kw)
        m._init_params(13, np.random.default_rng(0))
        assert {k: v.shape for k, v in m.params.items()} == m._param_shapes(13)


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError)
    assert grurec.ModelFileError is grurec.io.ModelFileError


def test_pandas_frame_of_evaluation_unchanged_by_load(tiny, events):
    # evaluate() on a loaded model equals the original's, with unknown items present
    test = pd.concat([events.head(50), pd.DataFrame({"SessionId": [10**6] * 3,
                                                     "ItemId": [1, 999, 2],
                                                     "Time": [1e9, 1e9 + 1, 1e9 + 2]})])
    assert grurec.evaluate(tiny, test) == grurec.evaluate(grurec.load(tiny.to_bytes()), test)


def test_version_1_files_load_with_the_cell_and_momentum_they_were_trained_with(events):
    """Format 1 (grurec 0.1) recorded no gru_cell / momentum_type: its models
    are reset-before cells trained with Nesterov momentum."""
    old = small_model(gru_cell="reset-before", momentum_type="nesterov").fit(events)
    meta, data = split_file(old.to_bytes())
    hp = {k: v for k, v in meta["hyperparameters"].items() if k not in ("gru_cell", "momentum_type")}
    m = grurec.load(craft(dict(meta, format_version=1, hyperparameters=hp), data, version=1))
    assert (m.gru_cell, m.momentum_type) == ("reset-before", "nesterov")
    assert_same_model(old, m)


def test_the_file_records_the_real_class(tmp_path, tiny):
    @grurec.base.register
    class MyGRU(grurec.GRU4Rec):
        pass

    m = MyGRU(**{k: getattr(tiny, k) for k in ("layers", "n_epochs", "num_threads")},
              show_progress=False, random_state=0)
    m.params, m.item_ids, m.popularity = tiny.params, tiny.item_ids, tiny.popularity
    assert grurec.io.read_metadata(m.to_bytes())["model"] == "MyGRU"
    assert type(grurec.load(m.to_bytes())) is MyGRU

    class Unregistered(MyGRU):  # recorded as its nearest registered class
        pass

    u = Unregistered(**{k: getattr(tiny, k) for k in ("layers", "n_epochs", "num_threads")},
                     show_progress=False, random_state=0)
    u.params, u.item_ids, u.popularity = tiny.params, tiny.item_ids, tiny.popularity
    assert grurec.io.read_metadata(u.to_bytes())["model"] == "MyGRU"
    with pytest.raises(TypeError, match="cannot save a Popularity"):
        grurec.io.to_bytes(grurec.baselines.Popularity())
