"""Model files: one self-checking file, readable with NumPy alone, never pickle.

Layout (all integers little-endian)::

    offset  size        field
    0       8           magic  b"\\x89GRU\\r\\n\\x1a\\n"  (PNG-style: a non-ASCII byte,
                        the name, CR LF, ^Z, LF -- text-mode or 7-bit transfers break it)
    8       4  uint32   format version (2; version 1 files are read too)
    12      4  uint32   length J of the JSON metadata
    16      8  uint64   total length of the file, trailer included
    24      4  uint32   reserved, 0
    28      4  uint32   CRC-32 of bytes 0..27
    32      J           JSON metadata, UTF-8
            ...         zero padding to a multiple of 64: the data region starts here
            ...         arrays, raw little-endian, each at a 64-byte aligned offset
                        (relative to the data region) given in the metadata
    end-32  32          SHA-256 of every byte before it

The metadata names the library and format version, the model class (its
registered name, ``grurec.base.register``; the reader looks the class up there), its
hyperparameters, epochs trained and training history, the item-id map
(integers: one int array; strings: UTF-8 bytes + int64 offsets) and every
array's name, dtype, shape, offset and size.

Why a custom container and not a zip of .npy files: a zip has bytes no
checksum covers (timestamps, attributes, the central directory), so a flipped
byte there loads silently, and zip readers parse structures a hostile file
controls. Here one SHA-256 covers every byte, the first 32 bytes carry their
own CRC (so a damaged version field reads as damage, not as "newer format"),
and the reader checks, in this order, before it trusts anything: the size, the
magic, the header CRC, the format version, the declared length against the
real file size, the SHA-256, then every array's extent against the data
region. Nothing is allocated from a declared size: arrays are views into the
one buffer holding the file, whose size is the file's real size. Loading never
imports or calls anything named in the file.

Optimizer state (Adagrad accumulators, momentum) is only needed to continue
training, and ``fit`` starts from scratch, so it is left out unless
``optimizer=True``; a file without it loads for inference and can be refit.
"""
from __future__ import annotations

import hashlib
import inspect
import io as _io
import json
import logging
import math
import os
import secrets
import struct
import sys
import zlib
from typing import Union

import numpy as np

from .base import _all_finite as all_finite

log = logging.getLogger("grurec")

MAGIC = b"\x89GRU\r\n\x1a\n"
FORMAT_VERSION = 2
_FIXED = struct.Struct("<8sIIQII")  # magic, version, json_len, total_len, reserved, crc32
_TRAILER = 32  # SHA-256
_ALIGN = 64
_MAX_JSON = 64 << 20
_DTYPES = {"<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8"}


class ModelFileError(ValueError):
    """A model file (or bytes) is corrupted, truncated, foreign or from a
    newer format version; the message says which."""


# --------------------------------------------------------------------- writing
def _hyperparameters(model) -> dict:
    out = {}
    for name, p in inspect.signature(type(model).__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        v = getattr(model, name)
        if name == "random_state" and v is not None and not isinstance(v, (int, np.integer)):
            log.warning("random_state %r is not an int; saved as None", type(v).__name__)
            v = None
        out[name] = _jsonable(v, name)
    return out


def _jsonable(v, name):
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_jsonable(x, name) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x, name) for k, x in v.items()}
    raise TypeError(f"{name}: cannot store a value of type {type(v).__name__} in a model file")


def _item_id_arrays(item_ids, name: str = "item_ids") -> tuple[dict, list]:
    from .data import as_id_array

    try:
        ids = as_id_array(item_ids)
    except TypeError as e:
        raise TypeError(f"cannot save the model: {e}; map them to integers or strings first") \
            from None
    if ids.ndim != 1:
        raise TypeError(f"cannot save the model: item ids must be 1-d, got shape {ids.shape}")
    if ids.dtype.kind in "iu":
        return ({"kind": "int", "count": len(ids)}, [(name, ids)])
    try:
        enc = [s.encode("utf-8") for s in ids]
    except UnicodeEncodeError as e:
        raise TypeError(f"cannot save the model: an item id is not valid Unicode ({e})") from None
    offsets = np.zeros(len(enc) + 1, np.int64)
    np.cumsum([len(b) for b in enc], out=offsets[1:])
    utf8 = np.frombuffer(b"".join(enc), np.uint8)
    return ({"kind": "str", "count": len(ids)},
            [(f"{name}/offsets", offsets), (f"{name}/utf8", utf8)])


def _layout(model, optimizer: bool) -> tuple[bytes, list, int, int]:
    """(fixed header + JSON + padding, [(array, offset in data)], data length, total)."""
    from . import __version__

    class_name = _class_name(model)
    fitted = bool(model.params)
    arrays: list[tuple[str, np.ndarray]] = []
    ids_meta = None
    if fitted:
        ids_meta, id_arrays = _item_id_arrays(model.item_ids)
        arrays += id_arrays
        if getattr(model, "popularity", None) is not None:
            arrays.append(("popularity", np.ascontiguousarray(model.popularity, np.int64)))
        arrays += [(f"params/{k}", v) for k, v in model.params.items()]
        feat = model.__dict__.get("_feat") or {}
        arrays += [(f"features/{k}", v) for k, v in feat.items()]
        if optimizer:
            arrays += [(f"opt/{k}", v) for k, v in getattr(model, "_opt", {}).items()]
            arrays += [(f"vel/{k}", v) for k, v in getattr(model, "_vel", {}).items()]
        users = _user_arrays(model)
        if users is not None:
            users_meta, user_arrays = users
            arrays += user_arrays
    entries, out, off = [], [], 0
    for name, a in arrays:
        a = np.asarray(a)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"cannot save array {name!r} of dtype {a.dtype}")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        dt = a.dtype.str
        if dt not in _DTYPES:
            raise TypeError(f"cannot save array {name!r} of dtype {a.dtype}")
        off = -(-off // _ALIGN) * _ALIGN
        entries.append({"name": name, "dtype": dt, "shape": list(a.shape), "offset": off,
                        "nbytes": a.nbytes})
        out.append((a, off))
        off += a.nbytes
    meta = {
        "format": "grurec-model",
        "format_version": FORMAT_VERSION,
        "library": "grurec",
        "library_version": __version__,
        "model": class_name,
        "hyperparameters": _hyperparameters(model),
        "state": {"fitted": fitted, "epochs_trained": int(model.epochs_trained),
                  "history": _jsonable(list(model.history), "history"),
                  "optimizer": bool(optimizer and fitted)},
        "item_ids": ids_meta,
        "arrays": entries,
    }
    if optimizer and fitted:  # whose state the opt/ and vel/ arrays are; Adam's steps
        meta["state"]["optimizer_of"] = model.__dict__.get("_opt_of", "adagrad")
        meta["state"]["optimizer_step"] = int(model.__dict__.get("_opt_step", 0))
    if fitted and users is not None:
        meta["user_ids"] = users_meta
    if fitted and model.__dict__.get("_feat"):
        # Item features (docs/features.md): the encoding rules; the encoded
        # rows are the features/ arrays. Files without this key have none.
        meta["features"] = _jsonable(model.item_features.spec(), "features")
    js = json.dumps(meta, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode()
    if len(js) > _MAX_JSON:
        raise ValueError(f"model metadata too large ({len(js)} bytes)")
    data_start = -(-(_FIXED.size + len(js)) // _ALIGN) * _ALIGN
    data_len = off
    total = data_start + data_len + _TRAILER
    head = _FIXED.pack(MAGIC, FORMAT_VERSION, len(js), total, 0, 0)[:-4]
    head += struct.pack("<I", zlib.crc32(head))
    prefix = head + js + bytes(data_start - len(head) - len(js))
    return prefix, out, data_len, total


def _write(model, f, optimizer: bool) -> int:
    prefix, arrays, data_len, total = _layout(model, optimizer)
    h = hashlib.sha256()

    def put(b):
        h.update(b)
        f.write(b)

    put(prefix)
    pos = 0
    for a, off in arrays:
        if off > pos:
            put(bytes(off - pos))
        put(memoryview(a).cast("B") if a.size else b"")
        pos = off + a.nbytes
    if data_len > pos:
        put(bytes(data_len - pos))
    f.write(h.digest())
    return total


def to_bytes(model, *, optimizer: bool = False) -> bytes:
    """The model in the file format, as bytes."""
    buf = _io.BytesIO()
    _write(model, buf, optimizer)
    return buf.getvalue()


def _tmp_name(path: str) -> str:
    """The temporary file ``save`` writes before renaming it to ``path``:
    ``.NAME.PID.RANDOM.tmp`` beside it (the pid lets a later save tell an
    orphan from another process's save in progress)."""
    directory, base = os.path.split(os.path.abspath(path))
    return os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def _remove_orphans(path: str) -> int:
    """Delete temporary files left by saves to ``path`` that were killed
    (kill -9, power loss): those whose writing process no longer exists.
    Returns how many were removed."""
    import re

    directory, base = os.path.split(os.path.abspath(path))
    pattern = re.compile(r"\." + re.escape(base) + r"\.(\d+)\.[0-9a-f]{12}\.tmp\Z")
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        m = pattern.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed += 1
        except OSError:
            pass
    if removed:
        log.info("removed %d temporary file(s) of interrupted saves to %s", removed, path)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own save in progress (another thread)
    if pid <= 0:
        return False
    if os.name != "posix":
        return True  # no harmless probe (os.kill on Windows terminates): keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or we cannot tell: keep it
    return True


def save(model, path: Union[str, os.PathLike], *, optimizer: bool = False) -> None:
    """Write ``model`` to ``path`` atomically: a temporary file in the same
    directory, flushed and fsync'ed, then renamed over ``path``; a crash
    leaves either the old file or the new one, never a mix. An exception
    (Ctrl-C included) removes the temporary file; one left by a killed
    process (``.NAME.PID.RANDOM.tmp``) is removed by the next save to the
    same path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_orphans(path)
    tmp = _tmp_name(path)
    # os.open with 0o666 lets the umask decide the permissions, as open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(model, f, optimizer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories can't be opened."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# --------------------------------------------------------------------- reading
_LOOKS_LIKE = (
    (b"\x80", "a Python pickle (grurec never unpickles)"),
    (b"PK\x03\x04", "a zip archive (e.g. torch.save or .npz)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x89HDF", "an HDF5 file"),
    (b"PAR1", "a parquet file"),
)


def _foreign(head: bytes) -> ModelFileError:
    what = next((d for p, d in _LOOKS_LIKE if head.startswith(p)), None)
    if what is None and head[:1] in (b"(", b"c", b"]", b"}") and b"\n" in head[:64]:
        what = "possibly a protocol-0 Python pickle (grurec never unpickles)"
    return ModelFileError(
        f"not a grurec model file: it starts with {head[:8]!r}, not {MAGIC!r}"
        + (f"; it looks like {what}" if what else ""))


def _check_fixed(head: bytes, size: int) -> tuple[int, int]:
    """Validate the first 32 bytes against the real size; (json_len, total)."""
    if len(head) < _FIXED.size:
        if not head:
            raise ModelFileError("not a grurec model file: it is empty")
        if head == MAGIC[: len(head)] or head.startswith(MAGIC):
            raise ModelFileError(f"truncated model file: {size} bytes, shorter than the "
                                 f"{_FIXED.size}-byte header")
        raise _foreign(head)
    magic, version, json_len, total, reserved, crc = _FIXED.unpack(head[: _FIXED.size])
    if magic != MAGIC:
        raise _foreign(head)
    if zlib.crc32(head[:28]) != crc:
        raise ModelFileError("corrupted model file: the header checksum does not match")
    if version > FORMAT_VERSION:
        from . import __version__

        raise ModelFileError(
            f"the model file has format version {version}, newer than this grurec "
            f"{__version__} reads (up to {FORMAT_VERSION}): upgrade grurec to load it")
    if version == 0 or reserved != 0:
        raise ModelFileError(f"corrupted model file: invalid header (version {version}, "
                             f"reserved {reserved})")
    if size < total:
        raise ModelFileError(f"truncated model file: {size} bytes, the header says {total}")
    if size > total:
        raise ModelFileError(f"corrupted model file: {size - total} unexpected bytes after "
                             f"the end ({total} bytes)")
    if json_len > _MAX_JSON or _FIXED.size + json_len + _TRAILER > total:
        raise ModelFileError(f"corrupted model file: metadata length {json_len} does not fit "
                             f"in {total} bytes")
    return json_len, total


def _read_source(source) -> bytearray:
    """The whole file in one writable buffer, its size checked against the
    header before the buffer is allocated."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        mv = memoryview(source).cast("B")
        _check_fixed(bytes(mv[: _FIXED.size]), len(mv))
        return bytearray(mv)  # a private, writable copy
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_FIXED.size)
            _check_fixed(head, size)
            buf = bytearray(size)
            buf[: len(head)] = head
            view, pos = memoryview(buf), len(head)
            while pos < size:
                n = f.readinto(view[pos:])
                if not n:
                    raise ModelFileError(f"truncated model file: it ended at {pos} of {size} "
                                         "bytes while being read")
                pos += n
            return buf
    if hasattr(source, "read"):  # a binary stream of unknown size: read in chunks
        head = source.read(_FIXED.size)
        if not isinstance(head, (bytes, bytearray)):
            raise TypeError("the file object must be opened in binary mode ('rb')")
        head = bytes(head)
        if len(head) < _FIXED.size:
            _check_fixed(head, len(head))
        total = _FIXED.unpack(head)[3]
        _check_fixed(head, total)  # all but the size, which the stream can't tell in advance
        buf = bytearray(head)
        while len(buf) < total:  # grows with the data actually there, not the declared size
            chunk = source.read(min(1 << 20, total - len(buf)))
            if not chunk:
                break
            buf += chunk
        extra = len(source.read(1)) if len(buf) == total else 0
        _check_fixed(head, len(buf) + extra)
        return buf
    raise TypeError(f"load() takes a path, bytes or a binary file object, got "
                    f"{type(source).__name__}")


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed in model metadata")


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _parse(buf: bytearray) -> tuple[dict, dict]:
    json_len, total = _check_fixed(bytes(buf[: _FIXED.size]), len(buf))
    body = memoryview(buf)[: total - _TRAILER]
    if hashlib.sha256(body).digest() != bytes(buf[total - _TRAILER:]):
        raise ModelFileError("corrupted model file: the SHA-256 checksum does not match "
                             "(the file was damaged or changed after it was written)")
    try:
        meta = json.loads(bytes(buf[_FIXED.size: _FIXED.size + json_len]).decode("utf-8"),
                          parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"invalid model metadata: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != "grurec-model":
        raise ModelFileError("invalid model metadata: not a grurec model")
    if meta.get("format_version") != _FIXED.unpack(bytes(buf[: _FIXED.size]))[1]:
        raise ModelFileError("invalid model metadata: format versions disagree")
    data_start = -(-(_FIXED.size + json_len) // _ALIGN) * _ALIGN
    data_len = total - _TRAILER - data_start
    if data_len < 0:
        raise ModelFileError("invalid model file: no room for the data region")
    entries = meta.get("arrays")
    if not isinstance(entries, list):
        raise ModelFileError("invalid model metadata: 'arrays' must be a list")
    arrays, spans = {}, []
    for e in entries:
        name, a = _array(buf, e, data_start, data_len)
        if name in arrays:
            raise ModelFileError(f"invalid model metadata: array {name!r} appears twice")
        arrays[name] = a
        spans.append((e["offset"], e["offset"] + e["nbytes"], name))
    spans.sort()
    for (s0, e0, n0), (s1, e1, n1) in zip(spans, spans[1:]):
        if s1 < e0 and e0 > s0 and e1 > s1:
            raise ModelFileError(f"invalid model metadata: arrays {n0!r} and {n1!r} overlap")
    return meta, arrays


def _int(v, what) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ModelFileError(f"invalid model metadata: {what} must be a non-negative integer, "
                             f"got {v!r}")
    return v


def _array(buf, e, data_start, data_len):
    if not isinstance(e, dict) or not isinstance(e.get("name"), str):
        raise ModelFileError("invalid model metadata: an array entry has no name")
    name = e["name"]
    dt = e.get("dtype")
    if not isinstance(dt, str) or dt not in _DTYPES:
        raise ModelFileError(f"invalid model metadata: array {name!r} has dtype {dt!r}")
    shape = e.get("shape")
    if not isinstance(shape, list) or len(shape) > 4:
        raise ModelFileError(f"invalid model metadata: array {name!r} has shape {shape!r}")
    shape = tuple(_int(s, f"a dimension of {name!r}") for s in shape)
    off = _int(e.get("offset"), f"the offset of {name!r}")
    nbytes = _int(e.get("nbytes"), f"the size of {name!r}")
    dtype = np.dtype(dt)
    count = math.prod(shape)
    if count * dtype.itemsize != nbytes:
        raise ModelFileError(f"invalid model metadata: array {name!r} declares shape {shape} "
                             f"({count * dtype.itemsize} bytes) but {nbytes} bytes")
    if off % _ALIGN:
        raise ModelFileError(f"invalid model file: array {name!r} starts at offset {off}, not "
                             f"a multiple of {_ALIGN} (arrays are aligned)")
    if off + nbytes > data_len:
        raise ModelFileError(f"invalid model file: array {name!r} ({nbytes} bytes at offset "
                             f"{off}) runs past the end of the data ({data_len} bytes)")
    # Every dimension, zero-sized arrays included ([0, 2**64] has 0 bytes),
    # must describe an array that could fit in the data: numpy is never
    # asked to build a shape it rejects.
    span = math.prod(d for d in shape if d) * dtype.itemsize
    if span > max(data_len, dtype.itemsize):
        raise ModelFileError(f"invalid model metadata: array {name!r} declares shape {shape}, "
                             f"larger than the file's data ({data_len} bytes)")
    a = np.frombuffer(buf, dtype=dtype, count=count, offset=data_start + off).reshape(shape)
    if not a.flags.aligned:  # the buffer itself is misaligned (never from _read_source)
        a = a.copy()
    if sys.byteorder == "big" and dtype.itemsize > 1:
        a = a.astype(dtype.newbyteorder("="))
    return name, a


def _item_ids(meta, arrays, name: str = "item_ids", what: str = "item") -> np.ndarray:
    spec = meta.get(name)
    if not isinstance(spec, dict):
        raise ModelFileError(f"invalid model metadata: no {what} id map")
    n = _int(spec.get("count"), f"the {what} count")
    if spec.get("kind") == "int":
        ids = arrays.get(name)
        if ids is None or ids.shape != (n,) or ids.dtype.kind not in "iu":
            raise ModelFileError(f"invalid model file: the integer {what} ids are missing or "
                                 "malformed")
    elif spec.get("kind") == "str":
        off, utf8 = arrays.get(f"{name}/offsets"), arrays.get(f"{name}/utf8")
        if (off is None or utf8 is None or off.shape != (n + 1,) or off.dtype != np.int64
                or utf8.ndim != 1 or utf8.dtype != np.uint8):
            raise ModelFileError(f"invalid model file: the string {what} ids are missing or "
                                 "malformed")
        if off[0] != 0 or off[-1] != len(utf8) or (np.diff(off) < 0).any():
            raise ModelFileError(f"invalid model file: string {what} id offsets are inconsistent")
        raw = utf8.tobytes()
        try:
            if n and utf8.max(initial=0) < 128:  # ASCII: decode once, slice by offset
                text = raw.decode("ascii")
                ids = np.array([text[a:b] for a, b in zip(off[:-1].tolist(), off[1:].tolist())],
                               dtype=object)
            else:
                ids = np.array([raw[a:b].decode("utf-8")
                                for a, b in zip(off[:-1].tolist(), off[1:].tolist())],
                               dtype=object)
        except UnicodeDecodeError as e:
            raise ModelFileError(f"invalid model file: an {what} id is not UTF-8 ({e})") from None
        if ids.shape != (n,):  # np.array of an empty list
            ids = np.empty(n, dtype=object)
    else:
        raise ModelFileError(f"invalid model metadata: {what} id kind {spec.get('kind')!r}")
    import pandas as pd

    if not pd.Index(ids).is_unique:
        raise ModelFileError(f"invalid model file: the {what} ids are not unique")
    return ids


def _check_value(name, v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return
    if isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                   for x in v) and len(v) <= 1024:
        return
    raise ModelFileError(f"invalid model metadata: hyperparameter {name!r} = {v!r}")


def _class_name(model) -> str:
    """The registered name of ``model``'s class, or of its nearest registered
    base class for an unregistered subclass (what the file records; a pickle
    also carries the subclass itself)."""
    from .base import model_classes

    reg = model_classes()
    for c in type(model).__mro__:
        if reg.get(c.__name__) is c and hasattr(c, "_param_shapes"):
            return c.__name__
    raise TypeError(f"cannot save a {type(model).__name__}: model files hold registered neural "
                    "models with weights (grurec.base.register)")


def _model_from(meta, arrays, cls=None):
    from .base import model_classes

    name = meta.get("model")
    registered = model_classes().get(name) if isinstance(name, str) else None
    if registered is None or not hasattr(registered, "_param_shapes"):
        raise ModelFileError(f"invalid model metadata: unknown model class {name!r}")
    # cls: the class a pickle recorded; only a subclass of the file's class is honoured.
    if cls is None or not (isinstance(cls, type) and issubclass(cls, registered)):
        cls = registered
    hp = meta.get("hyperparameters")
    if not isinstance(hp, dict):
        raise ModelFileError("invalid model metadata: no hyperparameters")
    if meta.get("format_version") == 1 and "gru_cell" not in hp:
        # Version 1 files predate these options; their models were trained
        # (and must run) with the reset-before cell and Nesterov momentum.
        hp = dict(hp, gru_cell="reset-before", momentum_type="nesterov")
    known = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(hp) - known)
    if unknown:
        raise ModelFileError(f"the model file has hyperparameters {unknown} that this grurec "
                             "version does not know (it was written by a newer version?)")
    for k, v in hp.items():
        _check_value(k, v)
    try:
        model = cls(**hp)
    except (TypeError, ValueError, OverflowError) as e:
        raise ModelFileError(f"invalid hyperparameters in the model file: {e}") from None
    state = meta.get("state")
    if not isinstance(state, dict):
        raise ModelFileError("invalid model metadata: no state")
    model.epochs_trained = _int(state.get("epochs_trained"), "epochs_trained")
    history = state.get("history")
    if not (isinstance(history, list) and all(
            isinstance(h, dict) and all(v is None or isinstance(v, (bool, int, float, str))
                                        for v in h.values()) for h in history)):
        raise ModelFileError("invalid model metadata: malformed training history")
    model.history = history
    names = set(arrays)
    if not state.get("fitted"):
        if names:
            raise ModelFileError("invalid model file: an unfitted model with arrays")
        return model
    model.item_ids = _item_ids(meta, arrays)
    n_items = len(model.item_ids)
    if n_items < 1:
        raise ModelFileError("invalid model file: a fitted model with no items")
    feat_names = _load_features(model, meta, arrays, n_items)
    want = model._param_shapes(n_items)
    params = {k[len("params/"):]: a for k, a in arrays.items() if k.startswith("params/")}
    if set(params) != set(want):
        raise ModelFileError(f"invalid model file: weights {sorted(params)} do not match the "
                             f"model's {sorted(want)}")
    for k, shape in want.items():
        a = params[k]
        if a.shape != tuple(shape) or a.dtype != np.float32:
            raise ModelFileError(f"invalid model file: weight {k!r} has shape {a.shape} "
                                 f"{a.dtype}, the hyperparameters need {tuple(shape)} float32")
        if not all_finite(a):
            raise ModelFileError(f"invalid model file: weight {k!r} holds NaN or infinite "
                                 "values (training never writes them)")
    model.params = {k: params[k] for k in want}
    opt = {k[len("opt/"):]: a for k, a in arrays.items() if k.startswith("opt/")}
    vel = {k[len("vel/"):]: a for k, a in arrays.items() if k.startswith("vel/")}
    for label, d in (("optimizer", opt), ("momentum", vel)):
        for k, a in d.items():
            if k not in want or a.shape != tuple(want[k]) or a.dtype != np.float32:
                raise ModelFileError(f"invalid model file: {label} state {k!r} does not match "
                                     "the weights")
    pop = arrays.get("popularity")
    if pop is not None:
        if pop.shape != (n_items,) or pop.dtype != np.int64 or (pop < 0).any():
            raise ModelFileError("invalid model file: 'popularity' must hold one non-negative "
                                 "int64 training count per item")
        model.popularity = pop
    used = _load_users(model, meta, arrays, n_items)
    other = names - {f"params/{k}" for k in params} - {f"opt/{k}" for k in opt} \
        - {f"vel/{k}" for k in vel} - {"item_ids", "item_ids/offsets", "item_ids/utf8",
                                       "popularity"} - used - feat_names
    if other:
        raise ModelFileError(f"invalid model file: unexpected arrays {sorted(other)}")
    model._opt = opt
    model._vel = vel
    model._opt_step = _int(state.get("optimizer_step", 0), "optimizer_step")
    model._opt_of = state.get("optimizer_of", "adagrad")
    if model._opt_of not in ("adagrad", "adam"):
        raise ModelFileError(f"invalid model metadata: optimizer_of must be 'adagrad' or "
                             f"'adam', got {model._opt_of!r}")
    return model


_USER_ARRAYS = ("users/states", "users/seen_offsets", "users/seen_items")


def _user_arrays(model):
    """A UserGRU's stored users: (id map metadata, arrays), or None. The
    items users saw after training (``update``) are merged into the CSR."""
    st = getattr(model, "_users", None)
    if st is None:
        return None
    with st.lock:
        n = st.n
        ids = st.ids[:n]
        states = np.array(st.states[:n], np.float32)
        span = None if st.span is None else np.array(st.span[:n], np.float32)
        n_pos = None if st.n_pos is None else np.array(st.n_pos[:n], np.int64)
        seen = [np.unique(st.seen(r)) for r in range(n)]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum([len(x) for x in seen], out=offsets[1:])
    items = np.concatenate(seen).astype(np.int64) if n else np.empty(0, np.int64)
    try:
        ids_meta, id_arrays = _item_id_arrays(np.asarray(ids) if n else np.empty(0, np.int64),
                                              "user_ids")
    except TypeError as e:
        raise TypeError(str(e).replace("item", "user")) from None
    out = [("users/states", states), ("users/seen_offsets", offsets), ("users/seen_items", items)]
    if span is not None:  # UserNARM: the kept top-layer states
        out += [("users/span", span), ("users/n_pos", n_pos)]
    return ids_meta, id_arrays + out


def _load_users(model, meta, arrays, n_items) -> set:
    """Checks and installs a file's stored users (a model class with a user
    store); returns the array names it used."""
    present = [k for k in _USER_ARRAYS if k in arrays]
    if not present and "user_ids" not in meta:
        return set()
    if not hasattr(model, "_users") or len(present) != len(_USER_ARRAYS):
        raise ModelFileError("invalid model file: stored users are incomplete or belong to "
                             "another model class")
    from .user_model import _UserStore

    ids = _item_ids(meta, arrays, "user_ids", "user")
    n = len(ids)
    states, off, items = (arrays[k] for k in _USER_ARRAYS)
    width = sum(model.layers)
    if states.shape != (n, width) or states.dtype != np.float32 or not all_finite(states):
        raise ModelFileError(f"invalid model file: 'users/states' must be finite float32 "
                             f"({n}, {width}), got {states.shape} {states.dtype}")
    if (off.shape != (n + 1,) or off.dtype != np.int64 or off[0] != 0
            or off[-1] != len(items) or (np.diff(off) < 0).any()):
        raise ModelFileError("invalid model file: 'users/seen_offsets' do not index "
                             "'users/seen_items'")
    if items.dtype != np.int64 or items.ndim != 1 or (
            len(items) and (items.min() < 0 or items.max() >= n_items)):
        raise ModelFileError("invalid model file: 'users/seen_items' must hold item indices")
    names = set(_USER_ARRAYS)
    K = model._span_len()
    span = n_pos = None
    if K:  # UserNARM: each user's last K top-layer states and position count
        span, n_pos = arrays.get("users/span"), arrays.get("users/n_pos")
        HL = model.layers[-1]
        if span is None or n_pos is None:
            raise ModelFileError("invalid model file: stored users lack 'users/span' / "
                                 "'users/n_pos' (the attention's kept states)")
        if span.shape != (n, K, HL) or span.dtype != np.float32 or not all_finite(span):
            raise ModelFileError(f"invalid model file: 'users/span' must be finite float32 "
                                 f"({n}, {K}, {HL}), got {span.shape} {span.dtype}")
        if n_pos.shape != (n,) or n_pos.dtype != np.int64 or (len(n_pos) and n_pos.min() < 0):
            raise ModelFileError("invalid model file: 'users/n_pos' must be int64 (n_users,) "
                                 ">= 0")
        span, n_pos = np.array(span), np.array(n_pos)
        names |= {"users/span", "users/n_pos"}
    # Copies: the store grows and is written by update().
    model._users = _UserStore(ids.tolist(), np.array(states), np.array(off), np.array(items),
                              span, n_pos)
    names |= {"user_ids"} if "user_ids" in arrays else {"user_ids/offsets", "user_ids/utf8"}
    return names


def _load_features(model, meta, arrays, n_items) -> set:
    """The item features of a file that has them (its ``features`` key and
    ``features/`` arrays), checked as the native tower will index them;
    returns the array names used."""
    spec = meta.get("features")
    names = {k for k in arrays if k.startswith("features/")}
    if spec is None:
        if names:
            raise ModelFileError("invalid model file: feature arrays without feature metadata")
        return set()
    from .features import EncodedFeatures, FeatureSpec

    try:
        fs = FeatureSpec(spec)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelFileError(f"invalid model metadata: malformed item features ({e!r})") from None
    F = len(fs.categorical)
    want = {"features/z"} | {f"features/off{f}" for f in range(F)} | \
        {f"features/ids{f}" for f in range(F)}
    if names != want:
        raise ModelFileError(f"invalid model file: feature arrays {sorted(names)}, expected "
                             f"{sorted(want)}")
    z = arrays["features/z"]
    Z = len(fs.numeric) + sum(fs.dense_dims.values())
    if z.dtype != np.float32 or z.shape != (n_items, Z) or not all_finite(z):
        raise ModelFileError(f"invalid model file: features/z must be finite float32 "
                             f"({n_items}, {Z})")
    offs, idss = [], []
    for f, c in enumerate(fs.categorical):
        o, i = arrays[f"features/off{f}"], arrays[f"features/ids{f}"]
        V = len(fs.vocab[c])
        if (o.dtype != np.int64 or o.shape != (n_items + 1,) or i.dtype != np.int32
                or i.ndim != 1 or o[0] != 0 or o[-1] != len(i) or (np.diff(o) < 0).any()
                or (len(i) and (i.min() < 0 or i.max() > V))):
            raise ModelFileError(f"invalid model file: the encoded feature field {c!r} is "
                                 "malformed")
        offs.append(o)
        idss.append(i)
    model._set_features(EncodedFeatures(offs, idss, z, fs.vocab_sizes()), fs)
    return names


def from_bytes(data, cls=None):
    """A model from bytes written by ``to_bytes`` (or a whole model file)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"from_bytes() takes bytes, got {type(data).__name__}")
    return _model_from(*_parse(_read_source(data)), cls=cls)


def load(source):
    """Load a model from a path, bytes, or a binary file object.

    Raises ``ModelFileError`` for anything that is not an intact grurec model
    file of a format version this grurec reads, before using any of it. A
    ``grurec.RepeatAware`` file (its own magic, ``grurec.repeat.MAGIC``) loads
    as one.
    """
    from .repeat import MAGIC as REPEAT_MAGIC, RepeatAware

    if isinstance(source, (bytes, bytearray, memoryview)):
        if bytes(memoryview(source).cast("B")[:len(REPEAT_MAGIC)]) == REPEAT_MAGIC:
            return RepeatAware.from_bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            if f.read(len(REPEAT_MAGIC)) == REPEAT_MAGIC:
                return RepeatAware.load(source)
    return _model_from(*_parse(_read_source(source)))


def _rebuild(cls, data):
    """Unpickling hook: the pickle carries the class and the model file bytes."""
    return from_bytes(data, cls=cls)


def read_metadata(source) -> dict:
    """The JSON metadata of a model file (checked like ``load``), without
    building the model: format and library version, hyperparameters, history."""
    meta, _ = _parse(_read_source(source))
    return meta
