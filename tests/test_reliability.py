"""Reliability, second round (issue 22; items 3 and 4 of issue 23).

Each test is one defect a probe of main found (as a hostile user and a busy
service would) and fails without its fix: refits publish a complete model or
nothing; native code only reads arrays it owns; live sessions read one
model; model files are checked field by field; text ids are read verbatim;
Ctrl-C stops every long native call within a second; the CLI checks its
paths first and never overwrites a model with a partial one. Tests that send
SIGINT run in a subprocess, so a stray signal can never hit pytest itself.
See docs/reliability.md.
"""
import csv
import hashlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pandas as pd
import pytest

import grurec
from grurec import _core
from grurec.io import ModelFileError
from grurec.synthetic import generate_sessions
from test_io import craft, split_file

N_THREADS = 8  # serving threads in the race test


def small(**kw) -> grurec.GRU4Rec:
    """A small model that trains in well under a second; one thread and a
    seed, so two fits on the same data give the same weights bit for bit."""
    kw = dict(dict(layers=[16], batch_size=16, n_sample=32, n_epochs=1, num_threads=1,
                   random_state=0, show_progress=False), **kw)
    return grurec.GRU4Rec(**kw)


def fingerprint(m) -> str:
    """SHA-256 of a model's item ids, weights and training state."""
    h = hashlib.sha256()
    h.update(repr(list(m.item_ids)).encode())
    for k in sorted(m.params):
        h.update(k.encode() + m.params[k].tobytes())
    h.update(repr((m.epochs_trained, len(m.history))).encode())
    return h.hexdigest()


def run_python(code: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, **kw)


def cli(capsys, *args) -> subprocess.CompletedProcess:
    """``grurec ARGS`` run in this process (grurec.cli.main): exit status and output."""
    from grurec.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


@pytest.fixture(scope="module")
def events():
    return generate_sessions(n_events=3000, n_items=100, seed=1)


@pytest.fixture(scope="module")
def fitted(events):
    return small().fit(events)


# ------------------------------------------------- 1, 8: publish all or nothing
REFIT_SCRIPT = """
import hashlib, os, signal, sys, threading, time
import numpy as np, grurec
from grurec.synthetic import generate_sessions

def fp(m):
    h = hashlib.sha256(repr(list(m.item_ids)).encode())
    for k in sorted(m.params):
        h.update(k.encode() + m.params[k].tobytes())
    return h.hexdigest()

m = grurec.GRU4Rec(layers=[16], n_sample=32, n_epochs=1, num_threads=1, random_state=0,
                   show_progress=False).fit(generate_sessions(n_events=3000, n_items=100, seed=1))
before = fp(m)
big = generate_sessions(n_events=50_000, n_items=2000, seed=2)
big["ItemId"] += 10**6  # a new vocabulary
sig = []
def fire():
    sig.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
def callback(epoch, loss):  # the first epoch ran; Ctrl-C lands in a later one
    if epoch == 1:
        threading.Timer(0.3, fire).start()
m.n_epochs = 10**6
try:
    m.fit(big, callback=callback, on_interrupt=sys.argv[1])
    outcome = "returned"
except KeyboardInterrupt:
    outcome = "raised"
latency = time.perf_counter() - sig[0]
consistent = len(m.item_ids) == m.params["W_y"].shape[0] == len(m.popularity)
m.save("refit.grurec")
back = grurec.load("refit.grurec")
print(outcome, f"{latency:.3f}", fp(m) == before, consistent, fp(back) == fp(m),
      getattr(m, "interrupted", None), int(m.item_ids.min()) >= 10**6)
"""


@pytest.mark.parametrize("mode", ["raise", "keep"])
def test_interrupted_refit_never_leaves_a_mixed_model(tmp_path, mode):
    """Issue 22 item 1 / issue 23 item 3: Ctrl-C during a refit on new ids.
    Default: KeyboardInterrupt, and the previous model, untouched, still
    serves (it used to hold new ids with old weights, and its file did not
    load). on_interrupt="keep": the partly trained new model, complete and
    flagged. Either way within a second of the signal."""
    out = subprocess.run([sys.executable, "-c", REFIT_SCRIPT, mode], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    outcome, latency, unchanged, consistent, loads, interrupted, new_ids = \
        out.stdout.split()
    assert float(latency) < 1.0
    assert consistent == "True" and loads == "True"
    if mode == "raise":
        assert outcome == "raised" and unchanged == "True" and interrupted == "False"
    else:
        assert outcome == "returned" and unchanged == "False"
        assert interrupted == "True" and new_ids == "True"


@pytest.mark.parametrize("lr", [1e40, 1e38])
def test_a_failed_refit_keeps_the_previous_model(events, lr):
    """Issue 22 item 8: a diverging refit used to reset the model to unfitted
    (1e40) or leave it fitted with overflowing weights (1e38)."""
    m = small().fit(events)
    before, want = fingerprint(m), m.recommend([[events.ItemId[0]]], k=5)
    m.learning_rate = lr
    with pytest.raises(grurec.ModelFitError, match="left as it was before fit"):
        m.fit(events)
    assert fingerprint(m) == before
    got = m.recommend([[events.ItemId[0]]], k=5)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_an_exception_in_the_callback_keeps_the_previous_model(events, fitted):
    m = small().fit(events)
    before = fingerprint(m)

    def boom(epoch, loss):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        m.fit(events.assign(ItemId=events.ItemId + 5), callback=boom)
    assert fingerprint(m) == before


def test_a_memory_error_in_training_keeps_the_previous_model(events, monkeypatch):
    """Issue 22 item 1 names MemoryError too: it used to publish the half-built copy."""
    m = small().fit(events)
    before = fingerprint(m)

    def out_of_memory(*args):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(_core, "train_epoch", out_of_memory)
    with pytest.raises(MemoryError):
        m.fit(events.assign(ItemId=events.ItemId + 5))
    assert fingerprint(m) == before


# ------------------------------------------------- 2: native code owns its arrays
def test_changing_the_callers_session_data_during_fit_is_harmless():
    """Issue 22 item 2: fit(SessionData) handed the caller's own item array to
    the native trainer; overwriting it from a callback crashed (SIGSEGV)."""
    df = generate_sessions(n_events=20_000, n_items=500, seed=1)
    ref = small(n_epochs=2).fit(grurec.to_sessions(df))
    sd = grurec.to_sessions(df)
    m = small(n_epochs=2).fit(
        sd, callback=lambda e, loss: sd.items.__setitem__(slice(None), 2**31 - 1))
    assert (sd.items == 2**31 - 1).all()  # the caller's array did change
    assert fingerprint(m) == fingerprint(ref)  # training never saw it


def test_a_thread_writing_the_session_data_during_fit_is_harmless():
    sd = grurec.to_sessions(generate_sessions(n_events=20_000, n_items=500, seed=1))
    stop = threading.Event()

    def scribble():
        rng = np.random.default_rng(0)
        while not stop.is_set():
            sd.items[rng.integers(0, len(sd.items), 256)] = rng.integers(-2**31, 2**31 - 1, 256)
            sd.offsets[rng.integers(1, len(sd.offsets) - 1)] = rng.integers(-2**40, 2**40)

    t = threading.Thread(target=scribble)
    t.start()
    try:
        for _ in range(3):
            try:
                small().fit(sd)
            except ValueError as e:  # a copy taken after a write may be invalid: named
                assert "SessionData" in str(e)
    finally:
        stop.set()
        t.join()


@pytest.mark.parametrize("items,offsets,match", [
    ([0, 100, 1, 2], [0, 2, 4], r"items: index 100 at position 1 is outside"),
    ([0, -1, 1, 2], [0, 2, 4], r"items: index -1 at position 1 is outside"),
    ([0, 1, 1, 2], [0, 3, 1, 4], r"offsets: must not decrease \(session 1\)"),
])
def test_the_native_trainer_checks_item_indices(events, monkeypatch, items, offsets, match):
    """Defence in depth: train_epoch itself refuses indices outside the
    vocabulary (it indexes weight rows with them, the GIL released). The
    arrays are swapped in at the call, past every Python-side check."""
    real = _core.train_epoch

    def swapped(*args):
        *head, _offsets, _items, pop, progress = args
        return real(*head, np.array(offsets, np.int64), np.array(items, np.int32), pop,
                    progress)

    monkeypatch.setattr(_core, "train_epoch", swapped)
    m = small()
    with pytest.raises(ValueError, match=match):
        m.fit(events)
    assert m.item_ids is None  # nothing published


# ------------------------------------------------- 3, 13: one model per reader
def test_refits_racing_serving_threads_show_only_old_or_new_answers():
    """Issue 22 item 3: 8 threads (half of them live sessions) serve while
    the model is refit again and again on two data sets; every answer must be
    exactly model A's or model B's. Live sessions used to read item_ids and
    the weights at different moments (answers of neither model, IndexError)."""
    A = generate_sessions(n_events=3000, n_items=120, seed=11)
    B = generate_sessions(n_events=3000, n_items=120, seed=12)
    B["ItemId"] += 60  # overlapping vocabularies of different sizes
    ma, mb = small().fit(A), small().fit(B)
    shared = np.intersect1d(ma.item_ids, mb.item_ids)[:24].tolist()
    queries = [shared[i:i + 3] for i in range(0, len(shared), 3)]

    def answer(m, q):
        ids, scores = m.recommend([q], k=10)
        return ids[0].tolist(), scores[0].tolist()

    want = [(answer(ma, q), answer(mb, q)) for q in queries]
    assert all(a != b for a, b in want)  # the two models are told apart
    m = small().fit(A)
    stop = threading.Event()
    seen, errors = [], []

    def serve(i):
        n = 0
        try:
            while not stop.is_set() or n < 3:
                q = (i + n) % len(queries)
                if i % 2:
                    s = m.new_session()
                    for x in queries[q]:
                        s.click(x)
                    ids, scores = s.recommend(10)
                    got = (ids.tolist(), scores.tolist())
                else:
                    got = answer(m, queries[q])
                seen.append(got == want[q][0] or got == want[q][1])
                n += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(N_THREADS)]
    for t in threads:
        t.start()
    try:
        for r in range(16):
            m.fit(B if r % 2 == 0 else A)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=300)
    assert not errors, errors[0]
    assert len(seen) >= 3 * N_THREADS and all(seen), seen.count(False)


def test_a_live_session_keeps_the_model_it_started_with(events):
    m = small().fit(events)
    old = answer_live = m.new_session().click(events.ItemId[0])
    want = old.recommend(5)
    m.fit(events.assign(ItemId=events.ItemId + 1000))
    got = answer_live.recommend(5)
    np.testing.assert_array_equal(got[0], want[0])
    assert int(m.new_session().click(events.ItemId[0] + 1000).recommend(5)[0][0]) >= 1000


def test_the_id_index_is_built_once_per_vocabulary_and_never_stale(events):
    """Issue 22 item 13: recommend rebuilt the id -> index map on every call;
    issue 22 item 3: a map of an old vocabulary once stuck to the model."""
    m = small().fit(events)
    m.recommend([[events.ItemId[0]]], k=3)
    index = m._ids.entry[1]
    m.recommend([[events.ItemId[1]]], k=3)
    m.new_session().click(events.ItemId[2])
    assert m._ids.entry[1] is index  # cached across calls and snapshots
    old = m._snapshot()
    m.fit(events.assign(ItemId=events.ItemId + 1000))
    old._lookup([int(events.ItemId[0])])  # an old snapshot refills the shared cache ...
    new_id = int(events.ItemId[0]) + 1000
    assert m._lookup([new_id])[0] == int(np.flatnonzero(m.item_ids == new_id)[0])  # ... harmlessly


# ------------------------------------------------- 4, 5: every file field checked
def test_a_checksum_valid_file_with_a_misaligned_array_is_refused(fitted):
    """Issue 22 item 4: the kernels then read misaligned floats (UBSan)."""
    meta, data = split_file(fitted.to_bytes())
    e = next(e for e in meta["arrays"] if e["name"] == "params/W_y")
    off = e["offset"]
    data = data[:off] + bytes(4) + data[off:]
    for f in meta["arrays"]:
        if f["offset"] >= off:
            f["offset"] += 4
    with pytest.raises(ModelFileError, match=r"'params/W_y' starts at offset \d+, not a multiple"):
        grurec.load(craft(meta, data))


@pytest.mark.parametrize("shape", [[0, 2**64], [0, 2**62], [2**40, 0, 2**40]])
def test_an_empty_array_of_absurd_shape_is_a_model_file_error(fitted, shape):
    """Issue 22 item 5: numpy's ValueError ("Maximum allowed dimension
    exceeded", "array is too big") escaped instead of ModelFileError."""
    meta, data = split_file(fitted.to_bytes())
    meta["arrays"].append({"name": "extra", "dtype": "<f4", "shape": shape, "offset": 0,
                           "nbytes": 0})
    with pytest.raises(ModelFileError, match="declares shape"):
        grurec.load(craft(meta, data))


def test_the_kernels_refuse_misaligned_arrays():
    buf = np.zeros(4 * 4 * 8 + 1, np.uint8)
    x = np.frombuffer(buf.data, np.float32, count=32, offset=1).reshape(4, 8)
    assert not x.flags.aligned
    with pytest.raises(ValueError, match="aligned"):
        _core.stream_max(x)


# ------------------------------------------------- 14: temporary files
def test_temp_files_of_killed_saves_are_removed_by_the_next_save(fitted, tmp_path):
    """Issue 22 item 14: kill -9 during save left .NAME.*.tmp files forever."""
    target = tmp_path / "m.grurec"
    fitted.save(target)
    before = target.read_bytes()
    out = run_python(f"""
        import os, signal, grurec, grurec.io as gio
        m = grurec.load({str(target)!r})
        def write_half_then_die(model, f, optimizer):
            f.write(b"partial model")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        gio._write = write_half_then_die
        m.save({str(target)!r})
    """)
    assert out.returncode == -signal.SIGKILL
    orphans = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert len(orphans) == 1 and target.read_bytes() == before  # the target is intact
    mine = tmp_path / f".m.grurec.{os.getpid()}.0123456789ab.tmp"  # a save in progress here
    mine.write_bytes(b"")
    fitted.save(target)
    assert sorted(p for p in os.listdir(tmp_path) if p.endswith(".tmp")) == [mine.name]
    assert grurec.load(target).params.keys() == fitted.params.keys()


# ------------------------------------------------- 6: ids from text files
def test_text_file_ids_are_read_verbatim(tmp_path):
    """Issue 22 item 6: '007' and '7' (and 1e3 / 1000) were merged, and ids
    spelled NA or null were rejected as missing."""
    p = tmp_path / "ids.csv"
    p.write_text("SessionId,ItemId,Time\n1,007,1\n1,7,2\n1,0123,3\n2,123,4\n2,1e3,5\n"
                 "2,1000,6\n3,NA,7\n3,null,8\n3,007,9\n")
    sd = grurec.to_sessions(p)
    assert sorted(sd.item_ids) == sorted(["007", "7", "0123", "123", "1e3", "1000", "NA",
                                          "null"])
    m = small(n_sample=4, batch_size=2).fit(p)
    m.recommend([["007", "NA"]], k=3, unknown="error")  # both known
    q = tmp_path / "guess.csv"
    q.write_text("SessionId,ItemId,Time\n1,007,1\n1,7,2\n2,1e3,3\n2,1000,4\n")
    assert list(grurec.to_sessions(q, text_ids="infer").item_ids) == [7, 1000]  # opted in
    with pytest.raises(ValueError, match="text_ids"):
        grurec.to_sessions(q, text_ids="int")


def test_text_ids_match_a_model_with_integer_ids_only_when_canonical(tmp_path, fitted):
    ids = fitted.item_ids[:2]
    p = tmp_path / "t.csv"
    p.write_text(f"SessionId,ItemId,Time\n1,{ids[0]},1\n1,0{ids[1]},2\n1,{ids[1]},3\n")
    sd = grurec.to_sessions(p, item_ids=fitted.item_ids, unknown="keep")
    assert list(sd.items) == [0, -1, 1]


# ------------------------------------------------- 7, 11, issue 23: the CLI
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    events = generate_sessions(n_events=3000, n_items=80, mean_length=6, seed=3)
    events.to_csv(d / "train.csv", index=False)
    small().fit(events).save(d / "int.grurec")
    odd = events.assign(ItemId=events.ItemId.map(lambda i: f'a,b{i}' if i % 2 else f'd"e{i}'))
    small().fit(odd).save(d / "odd.grurec")
    return d, events, odd


def test_cli_recommend_quotes_its_csv(cli_files, capsys):
    """Issue 22 item 7: ids holding , or " broke the CSV's rows."""
    d, _, odd = cli_files
    items = list(odd.ItemId[:2])
    out = cli(capsys, "recommend", d / "odd.grurec", *items, "-k", "4")
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["session", "rank", "item", "score"] and len(rows) == 5
    assert all(len(r) == 4 for r in rows)
    want, _ = grurec.load(d / "odd.grurec").recommend([items], k=4)
    assert [r[2] for r in rows[1:]] == list(want[0])


@pytest.mark.parametrize("args,match", [
    (["-o", "/nonexistent/dir/m.grurec"], "does not exist"),
    (["-o", "{d}"], "is a directory"),
    (["-o", "{d}/m.grurec", "--test", "{d}/nofile.tsv"], "no such file"),
    (["-o", "{d}/m.grurec", "--save-partial", "/nonexistent/p.grurec"], "--save-partial"),
])
def test_cli_train_checks_every_path_before_training(cli_files, args, match, capsys,
                                                     monkeypatch):
    """Issue 22 item 11: these failed only after the whole training."""
    def no_training(*a, **kw):
        raise AssertionError("trained before checking the paths")

    monkeypatch.setattr(grurec.GRU4Rec, "fit", no_training)
    d = cli_files[0]
    out = cli(capsys, "train", d / "train.csv", *[a.format(d=d) for a in args], "--quiet")
    assert out.returncode == 2 and match in out.stderr, out.stderr


def test_cli_train_interrupted_leaves_the_model_file_byte_identical(cli_files, tmp_path):
    """Issue 23 item 3: Ctrl-C used to save 28% of an epoch over a good model
    and exit 0. Now: exit 130, -o untouched, the partial model only where
    --save-partial says."""
    d = cli_files[0]
    good = tmp_path / "m.grurec"
    good.write_bytes((d / "int.grurec").read_bytes())
    before = good.read_bytes()
    partial = tmp_path / "partial.grurec"
    cmd = [sys.executable, "-m", "grurec", "-v", "train", d / "train.csv", "-o", good,
           "--save-partial", partial, "--n-epochs", "100000", "--quiet", "--layers", "16",
           "--num-threads", "1"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        # -v logs each epoch: once epoch 2 is logged, training surely runs.
        next(line for line in p.stderr if "epoch 2:" in line)
        p.send_signal(signal.SIGINT)
        try:
            err = p.communicate(timeout=60)[1]
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    assert p.returncode == 130, err
    assert good.read_bytes() == before
    assert "was not written" in err and str(partial) in err
    m = grurec.load(partial)
    assert m.history[-1].get("interrupted") is True and m.epochs_trained >= 2
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_cli_recommend_from_nothing_known_exits_non_zero(cli_files, capsys):
    """Issue 23 item 4: unknown ids gave the popularity fallback and exit 0."""
    d, events, _ = cli_files
    out = cli(capsys, "recommend", d / "int.grurec", "99999999")
    assert out.returncode == 1 and "no item the model knows" in out.stderr
    assert out.stdout.strip() == "session,rank,item,score"
    out = cli(capsys, "recommend", d / "int.grurec", "abc")  # not an integer id at all
    assert out.returncode == 2 and "'abc'" in out.stderr
    out = cli(capsys, "recommend", d / "int.grurec", str(events.ItemId[0]), "99999999", "-k", "2")
    assert out.returncode == 0 and "1 item id(s) unknown" in out.stderr
    with pytest.raises(SystemExit) as e:  # argparse's error: exit status 2
        cli(capsys, "recommend", d / "int.grurec", "1", "--events", d / "train.csv")
    assert e.value.code == 2 and "not both" in capsys.readouterr().err


# ------------------------------------------------- issue 23 item 4: wrong-kind ids
def test_ids_of_the_wrong_kind_raise_naming_the_id(fitted):
    known = int(fitted.item_ids[0])
    with pytest.raises(TypeError, match=r"session 0, position 1: item id '1' is a string"):
        fitted.recommend([[known, "1"]])
    with pytest.raises(TypeError, match=r"filter_items, position 0: item id 'x'"):
        fitted.recommend([[known]], filter_items=["x"])
    with pytest.raises(TypeError, match=r"click: item id '1'"):
        fitted.new_session().click("1")
    a = fitted.recommend([[known, int(fitted.item_ids[1])]], k=5)
    b = fitted.recommend([[str(known), str(fitted.item_ids[1])]], k=5, coerce_ids=True)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(TypeError, match="no unambiguous conversion"):
        fitted.recommend([["0" + str(known)]], coerce_ids=True)
    s = small().fit(pd.DataFrame({"SessionId": [1, 1, 2, 2], "ItemId": ["7", "8", "7", "9"],
                                  "Time": [1, 2, 3, 4]}))
    with pytest.raises(TypeError, match=r"item id 7 is a number, but the model's item ids are "
                                        r"strings"):
        s.recommend([[7]])
    assert s.recommend([[7]], k=1, coerce_ids=True)[0].tolist() == \
        s.recommend([["7"]], k=1)[0].tolist()


# ------------------------------------------------- 9, 10: odd inputs
def test_a_float_id_of_2_63_is_refused_not_wrapped():
    with pytest.raises(ValueError, match="not a whole number in the int64 range"):
        grurec.to_sessions({"SessionId": [1, 1], "ItemId": [2.0**63, 1.0], "Time": [1, 2]})


def test_exact_times_keep_their_order():
    """Issue 22 item 9: int64 times near 2**62 and datetimes 1-3 ns apart
    lost their order in float64."""
    t = np.array([2**62 + 1, 2**62 + 3, 2**62 + 2])
    sd = grurec.to_sessions({"SessionId": [1, 1, 1], "ItemId": [0, 1, 2], "Time": t})
    assert sd.item_ids[sd.items].tolist() == [0, 2, 1]
    ns = pd.to_datetime(["2020-01-01T00:00:00.000000001", "2020-01-01T00:00:00.000000003",
                         "2020-01-01T00:00:00.000000002"])
    sd = grurec.to_sessions(pd.DataFrame({"SessionId": [1, 1, 1], "ItemId": [0, 1, 2],
                                          "Time": ns}))
    assert sd.item_ids[sd.items].tolist() == [0, 2, 1]


@pytest.mark.parametrize("case,exc,match", [
    ("huge-object-ids", ValueError, r"ids -1 at row 0 and 9223372036854775808 at row 1 fit no"),
    ("surrogate", ValueError, r"id '\\ud800' at row 1 is not valid Unicode"),
    ("multiindex", ValueError, "multi-level"),
    ("year-datetimes", None, None),
    ("empty-file", ValueError, r"no events: the file '.*empty.csv' is empty"),
])
def test_odd_inputs_get_clear_errors(tmp_path, case, exc, match):
    """Issue 22 item 10: IndexError, UnicodeEncodeError (in every later
    recommend), "appears more than once", numpy's TypeError for
    datetime64[Y], "No columns to parse from file" without the file."""
    src = {
        "huge-object-ids": lambda: {"SessionId": [1, 1], "Time": [1, 2],
                                    "ItemId": np.array([-1, 2**63], dtype=object)},
        "surrogate": lambda: {"SessionId": [1, 1], "ItemId": ["a", "\ud800"], "Time": [1, 2]},
        "multiindex": lambda: pd.DataFrame({("SessionId", ""): [1, 1], ("ItemId", ""): [1, 2],
                                            ("Time", ""): [1, 2]}),
        "year-datetimes": lambda: {"SessionId": [1, 1], "ItemId": [1, 2],
                                   "Time": np.array(["2021", "2020"], "datetime64[Y]")},
        "empty-file": lambda: (tmp_path / "empty.csv").write_text("") and None
        or tmp_path / "empty.csv",
    }[case]()
    if exc is None:
        sd = grurec.to_sessions(src)
        assert sd.item_ids[sd.items].tolist() == [2, 1]
        return
    with pytest.raises(exc, match=match):
        grurec.to_sessions(src)


def test_polars_odd_dtypes_get_clear_errors():
    pl = pytest.importorskip("polars")
    if hasattr(pl, "Int128"):
        df = pl.DataFrame({"SessionId": [1, 1], "Time": [1, 2],
                           "ItemId": pl.Series([2**70, 2], dtype=pl.Int128)})
        with pytest.raises(ValueError, match="'ItemId': polars Int128 values that do not fit"):
            grurec.to_sessions(df)
    df = pl.DataFrame({"SessionId": [1, 1], "ItemId": [{"a": 1}, {"a": 2}], "Time": [1, 2]})
    with pytest.raises(TypeError, match="'ItemId': a polars Struct"):
        grurec.to_sessions(df)


def test_hyperparameters_changed_after_fit_are_caught(events, tmp_path):
    """Issue 22 item 10: save wrote a file load rejects; live sessions raised
    IndexError."""
    m = small().fit(events)
    m.layers = [32]
    with pytest.raises(ValueError, match="changed after fit"):
        m.save(tmp_path / "m.grurec")
    with pytest.raises(ValueError, match="changed after fit"):
        m.new_session()
    assert not (tmp_path / "m.grurec").exists()
    m.layers = [16]
    m.save(tmp_path / "m.grurec")


# ------------------------------------------------- 12: Ctrl-C in native calls
INTERRUPT_SCRIPT = """
import os, signal, sys, threading, time
import numpy as np, pandas as pd, grurec
what, N, S = sys.argv[1], 100_000, 20_000  # about 5 s of work at 2 threads uninterrupted
m = grurec.GRU4Rec(layers=[64], show_progress=False, num_threads=2)
rng = np.random.default_rng(0)
m.item_ids = np.arange(N)
m.params = {k: (0.1 * rng.standard_normal(s)).astype(np.float32)
            for k, s in m._param_shapes(N).items()}
m.popularity = np.ones(N, np.int64)
items = rng.integers(0, N, (S, 5))
sessions = items.tolist()
df = pd.DataFrame({"SessionId": np.repeat(np.arange(S), 5), "ItemId": items.ravel(),
                   "Time": np.arange(5 * S)})
sig = []
def fire():
    sig.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)
threading.Timer(0.5, fire).start()
try:
    if what == "recommend":
        m.recommend(sessions, k=20)
    else:
        grurec.evaluate(m, df)
    print("finished")
except KeyboardInterrupt:
    print("interrupted", f"{time.perf_counter() - sig[0]:.3f}")
"""


@pytest.mark.parametrize("what", ["recommend", "evaluate"])
def test_ctrl_c_stops_recommend_and_evaluate_within_a_second(what):
    """Issue 22 item 12: KeyboardInterrupt came 50+ s after the signal, when
    the native call had finished."""
    out = subprocess.run([sys.executable, "-c", INTERRUPT_SCRIPT, what], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    word, *rest = out.stdout.split()
    assert word == "interrupted", out.stdout
    assert float(rest[0]) < 1.0


def test_ctrl_c_does_not_stop_native_calls_of_other_threads():
    """KeyboardInterrupt belongs to the main thread: a recommend running in
    a serving thread completes, with the right answer."""
    out = run_python("""
        import os, signal, threading, time
        import numpy as np, grurec
        N, S = 50_000, 3000
        m = grurec.GRU4Rec(layers=[32], show_progress=False, num_threads=1)
        rng = np.random.default_rng(0)
        m.item_ids = np.arange(N)
        m.params = {k: (0.1 * rng.standard_normal(s)).astype(np.float32)
                    for k, s in m._param_shapes(N).items()}
        sessions = rng.integers(0, N, (S, 4)).tolist()
        want = m.recommend(sessions[:50], k=10)
        got = {}
        def serve():
            got["all"] = m.recommend(sessions, k=10)
        t = threading.Thread(target=serve)
        t.start()
        time.sleep(0.2)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            pass
        t.join()
        ok = (np.array_equal(got["all"][0][:50], want[0])
              and np.array_equal(got["all"][1][:50], want[1]))
        print("ok" if ok else "wrong")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
