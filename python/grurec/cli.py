"""The ``grurec`` command line.

    grurec quickstart                      GRU4Rec against the baselines on a built-in set
    grurec compare TRAIN TEST [options]    the same table on your own files
    grurec train EVENTS -o MODEL [options] train GRU4Rec (--preset NAME, hyperparameters)
    grurec train EVENTS --test TEST --model vsknn --param k=50   any model, evaluated
    grurec evaluate MODEL TEST             full-ranking next-item metrics
    grurec recommend MODEL ITEM [ITEM...]  next items for one session
    grurec recommend MODEL --events FILE   next items for every session of a file
    grurec tune TRAIN [--valid VALID]      hyperparameter search (Optuna; grurec[tune])

EVENTS / TEST / FILE: CSV, TSV (optionally .gz) or parquet with columns
SessionId, ItemId, Time (names set with --session-col, --item-col, --time-col;
the separator with --sep, else "," for .csv, tab for .tsv, sniffed otherwise).
Ids in text files are read verbatim, as strings.

Exit status: 0 done; 1 recommend had sessions with no item the model knows;
2 bad input or a failure; 130 interrupted (Ctrl-C): train then leaves -o as
it was (see --save-partial).
"""
from __future__ import annotations

import argparse
import csv
import inspect
import json
import logging
import os
import sys
import time


log = logging.getLogger("grurec")

# GRU4Rec options the CLI exposes, with their types (from the signature).
_SKIP = {"self", "show_progress"}


def _model_options(p: argparse.ArgumentParser) -> None:
    from .model import GRU4Rec
    from .presets import PRESETS

    g = p.add_argument_group(
        "GRU4Rec hyperparameters (published names)",
        "Unset options take the --preset's value, else the default shown.")
    g.add_argument("--preset", choices=list(PRESETS),
                   help="start from a named setting (grurec.presets): " + ", ".join(
                       f"{n} ({'official parameter file' if pr.official else 'grurec search'})"
                       for n, pr in PRESETS.items()))
    # Defaults are suppressed so cmd_train can tell a typed option from an
    # unset one (which a preset fills).
    for name, par in inspect.signature(GRU4Rec.__init__).parameters.items():
        if name in _SKIP:
            continue
        d = par.default
        flag = "--" + name.replace("_", "-")
        kw = dict(default=argparse.SUPPRESS, help=f"default: {list(d) if name == 'layers' else d}")
        if name == "layers":
            g.add_argument(flag, type=int, nargs="+", metavar="H", **kw)
        elif isinstance(d, bool):
            g.add_argument(flag, type=_bool, metavar="BOOL", **kw)
        elif name == "random_state":
            g.add_argument(flag, type=int, **kw)
        else:
            g.add_argument(flag, type=type(d), **kw)


def _hyperparameters(args) -> dict:
    """GRU4Rec's keyword arguments: defaults, then the preset, then typed options."""
    from . import presets
    from .model import GRU4Rec

    sig = inspect.signature(GRU4Rec.__init__).parameters
    hp = {n: (list(p.default) if n == "layers" else p.default)
          for n, p in sig.items() if n not in _SKIP}
    if args.preset:
        hp.update(presets.get(args.preset))
    hp.update({n: getattr(args, n) for n in hp if hasattr(args, n)})
    return hp


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session-col", default="SessionId")
    p.add_argument("--item-col", default="ItemId")
    p.add_argument("--time-col", default="Time")
    p.add_argument("--sep", type=_separator, default=None,
                   help="field separator of text files, e.g. ';' or '\\t' (default: ',' for "
                        ".csv, tab for .tsv, else sniffed from the header)")


def _separator(text: str) -> str:
    sep = {"\\t": "\t", "tab": "\t", "space": " "}.get(text, text)
    if not sep:
        raise argparse.ArgumentTypeError("the separator is empty")
    return sep


def _cols(args) -> dict:
    return dict(session_col=args.session_col, item_col=args.item_col, time_col=args.time_col)


def _events(args, path):
    """The events of ``path`` as a SessionData, read with the CLI's column
    names and separator."""
    from .data import to_sessions

    return to_sessions(path, **_cols(args), sep=args.sep)


# ------------------------------------------------------------ other models
# Short names for --model (any registered class name works too).
_ALIASES = {"gru4rec": "GRU4Rec", "pop": "Popularity", "popularity": "Popularity",
            "spop": "SessionPopularity", "s-pop": "SessionPopularity",
            "itemknn": "ItemKNN", "item-knn": "ItemKNN", "vsknn": "VSKNN", "v-sknn": "VSKNN",
            "usergru": "UserGRU"}


def _model_class(name: str):
    from .base import model_classes

    classes = model_classes()
    key = _ALIASES.get(name.lower(), name)
    if key not in classes:
        raise ValueError(f"--model: unknown model {name!r}; known: "
                         f"{', '.join(sorted(set(_ALIASES) | set(classes)))}")
    return classes[key]


def _param_values(cls, pairs) -> dict:
    """--param NAME=VALUE pairs as keyword arguments of ``cls``, each VALUE
    read as the type of NAME's default (lists: comma separated)."""
    sig = inspect.signature(cls.__init__).parameters
    out = {}
    for pair in pairs or []:
        name, eq, text = pair.partition("=")
        if not eq or name not in sig or name == "self":
            raise ValueError(f"--param {pair!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(n for n in sig if n != 'self')}")
        d = sig[name].default
        try:
            if isinstance(d, bool):
                v = _bool(text)
            elif isinstance(d, (list, tuple)):
                v = [int(x) for x in text.split(",")]
            elif isinstance(d, int) or d is None:
                v = None if text.lower() == "none" else int(text)
            elif isinstance(d, float):
                v = float(text)
            else:
                v = text
        except (ValueError, argparse.ArgumentTypeError):
            raise ValueError(f"--param {name}: cannot read {text!r} as "
                             f"{type(d).__name__}") from None
        out[name] = v
    return out


# ----------------------------------------------------------------- commands
def _check_input(path: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what}: no such file: {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: {path!r} is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{what}: cannot read {path!r}")


def _check_output(path: str, what: str) -> None:
    """A model file can be written at ``path`` (checked before training, so
    a typo does not cost a training run)."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: {path!r} is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{what}: the directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{what}: cannot write in the directory {directory!r}")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise PermissionError(f"{what}: {path!r} is not writable")


def cmd_train(args) -> int:
    import grurec

    cls = _model_class(args.model)
    if cls.__name__ == "GRU4Rec":
        hp = dict(_hyperparameters(args), show_progress=not args.quiet)
        hp.update(_param_values(cls, args.param))
        model = cls(**hp)
    else:
        if args.preset or any(hasattr(args, n) for n in _gru_option_names()):
            raise ValueError(f"--model {args.model}: --preset and the GRU4Rec options apply "
                             f"to GRU4Rec only; set {cls.__name__}'s with --param NAME=VALUE")
        model = cls(**_param_values(cls, args.param))
    if args.output is None and not args.test:
        raise ValueError("nothing to do: give -o MODEL (save the model), --test TEST "
                         "(evaluate it), or both")
    if args.output is not None and not callable(getattr(model, "save", None)):
        raise ValueError(f"--model {args.model}: {cls.__name__} models have no model file (they "
                         f"refit in seconds); drop -o and pass --test TEST to evaluate, or use "
                         f"`grurec compare TRAIN TEST`")
    # Every path first: a failure after minutes of training is too late.
    _check_input(args.events, "events")
    if args.test:
        _check_input(args.test, "--test")
    if args.output is not None:
        _check_output(args.output, "-o")
    if args.save_partial:
        _check_output(args.save_partial, "--save-partial")
        if args.output is not None and \
                os.path.abspath(args.save_partial) == os.path.abspath(args.output):
            raise ValueError("--save-partial must differ from -o (an interrupted run never "
                             "writes -o)")
    fit_kw = {}
    if args.valid is not None or args.patience is not None:
        if cls.__name__ != "GRU4Rec":
            raise ValueError(f"--valid/--patience: {cls.__name__} trains in one pass; only "
                             "GRU4Rec validates per epoch")
        fit_kw = dict(valid=_valid_arg(args), patience=args.patience, metric=args.metric)
    if cls.__name__ == "GRU4Rec":
        # "stop and keep": Ctrl-C ends training with the partly trained model,
        # which goes to --save-partial only; -o is written after a complete fit.
        fit_kw["on_interrupt"] = "keep"
    t0 = time.perf_counter()
    model.fit(_events(args, args.events), **fit_kw)
    if getattr(model, "interrupted", False):
        where = "nothing was saved (use --save-partial PATH to keep it)"
        if args.save_partial:
            model.save(args.save_partial)
            where = f"the partly trained model was saved to {args.save_partial}"
        unwritten = f"{args.output} was not written; " if args.output is not None else ""
        print(f"grurec train: interrupted in epoch {len(model.history)} after "
              f"{time.perf_counter() - t0:.1f} s; {unwritten}{where}", file=sys.stderr)
        return 130
    what = (f"trained {model.epochs_trained} epochs" if hasattr(model, "epochs_trained")
            else f"fitted {type(model).__name__}")
    print(f"{what} on {args.events} in {time.perf_counter() - t0:.1f} s "
          f"({len(model.item_ids)} items)")
    if getattr(model, "best_epoch", None) is not None:
        print(f"kept epoch {model.best_epoch} of {len(model.history)}: validation "
              f"{args.metric} {model.history[model.best_epoch - 1][args.metric]:.4f}")
    if args.output is not None:
        model.save(args.output)
        print(f"saved {args.output}")
    if args.test:
        _print_metrics(grurec.evaluate(model, _events(args, args.test), cutoffs=args.cutoffs,
                                       show_progress=None if not args.quiet else False),
                       args.json)
    return 0


def _gru_option_names() -> list:
    from .model import GRU4Rec

    return [n for n in inspect.signature(GRU4Rec.__init__).parameters if n not in _SKIP]


def _valid_arg(args):
    """--valid: a fraction of the training events, or a file."""
    if args.valid is None:
        return None
    try:
        return float(args.valid)
    except ValueError:
        return _events(args, args.valid)


def cmd_evaluate(args) -> int:
    import grurec

    model = grurec.load(args.model)
    t0 = time.perf_counter()
    res = grurec.evaluate(model, _events(args, args.test), cutoffs=args.cutoffs, mode=args.mode,
                          show_progress=False if args.quiet else None)
    res["seconds"] = time.perf_counter() - t0
    _print_metrics(res, args.json)
    return 0


def cmd_recommend(args) -> int:
    import grurec

    _check_input(args.model, "model")
    if args.events:
        _check_input(args.events, "--events")
    model = grurec.load(args.model)
    model._check_fitted()  # an unfitted model file has no item ids to parse against
    if args.events:
        from .data import to_sessions

        sd = to_sessions(args.events, **_cols(args), item_ids=model.item_ids, unknown="keep",
                         sep=args.sep)
        sessions = [sd.item_ids[sd.items[a:b][sd.items[a:b] >= 0]]
                    for a, b in zip(sd.offsets[:-1], sd.offsets[1:])]
        names = sd.session_ids
        n_unknown = int((sd.items < 0).sum())
    else:
        # Ids typed on the command line are text: "12" is the integer 12 for
        # a model with integer ids; "012" or "abc" then raise, naming the id.
        sessions, names = [list(args.items)], ["session"]
        known = model._lookup(sessions[0], lambda j: f"item {args.items[j]!r} (position {j})",
                              coerce_ids=True)
        n_unknown = int((known < 0).sum())
        sessions = [list(model.item_ids[known[known >= 0]])]
    if n_unknown:
        print(f"grurec recommend: {n_unknown} item id(s) unknown to the model were ignored",
              file=sys.stderr)
    empty = [n for n, s in zip(names, sessions) if len(s) == 0]
    keep = [j for j, s in enumerate(sessions) if len(s)]
    if empty:
        shown = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
        print(f"grurec recommend: no item the model knows in {len(empty)} session(s) "
              f"({shown}); nothing recommended for {'it' if len(empty) == 1 else 'them'}",
              file=sys.stderr)
    w = csv.writer(sys.stdout, lineterminator="\n")  # quotes ids holding , " or newlines
    w.writerow(["session", "rank", "item", "score"])
    if keep:
        ids, scores = model.recommend([sessions[j] for j in keep], k=args.k,
                                      exclude_seen=args.exclude_seen)
        for j, row_ids, row_scores in zip(keep, ids, scores):
            for r, (i, s) in enumerate(zip(row_ids, row_scores), 1):
                w.writerow([names[j], r, i, f"{s:.6g}"])
    return 1 if empty else 0


def cmd_quickstart(args) -> int:
    import grurec
    from .synthetic import generate_sessions

    print(f"grurec {grurec.__version__}: SIMD {grurec.simd_level()}, "
          f"{grurec._core.default_num_threads()} threads")
    train = generate_sessions(n_events=args.events, n_items=args.items, mean_length=6,
                              signal=0.6, seed=1)
    test = generate_sessions(n_events=args.events // 10, n_items=args.items, mean_length=6,
                             signal=0.6, seed=2)
    print(f"synthetic sessions: {len(train):,} training / {len(test):,} test events, "
          f"{args.items:,} items (Zipf popularity; 60% of next items follow a hidden "
          f"item-to-item successor map, the rest are popularity draws)\n")
    models = [
        ("GRU4Rec", grurec.GRU4Rec.from_preset("rsc15_xe_shared_100", n_epochs=args.epochs, random_state=0,
                                               show_progress=not args.quiet)),
    ] + _baselines()
    _compare(models, train, test, args.quiet)
    return 0


def _baselines() -> list:
    from . import baselines

    return [("POP", baselines.Popularity()), ("S-POP", baselines.SessionPopularity()),
            ("Item-KNN", baselines.ItemKNN()), ("V-SKNN", baselines.VSKNN())]


def _compare(models, train, test, quiet: bool) -> None:
    """Fit each (name, model) on ``train``, evaluate on ``test``, print a table."""
    import grurec

    rows = []
    for name, m in models:
        t0 = time.perf_counter()
        m.fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = grurec.evaluate(m, test, cutoffs=(5, 20), show_progress=False if quiet else None)
        rows.append((name, r["recall@20"], r["mrr@20"], r["recall@5"], fit_s,
                     time.perf_counter() - t0))
    print(f"\n{'model':<10}{'Recall@20':>11}{'MRR@20':>9}{'Recall@5':>10}{'fit s':>8}"
          f"{'eval s':>8}")
    for name, r20, m20, r5, fs, es in rows:
        print(f"{name:<10}{r20:>11.4f}{m20:>9.4f}{r5:>10.4f}{fs:>8.1f}{es:>8.1f}")
    print(f"\n{r['n_events']:,} test predictions, full ranking over all items, standard ties"
          f"; {r['n_unknown_targets']:,} targets unknown to the models count as misses.")
    best = max(rows, key=lambda row: row[2])
    if models[0][0] == "GRU4Rec" and len(rows) > 1 and best[0] != "GRU4Rec":
        print(f"{best[0]} has the best MRR@20 here: on this data a baseline beats "
              "GRU4Rec as configured (try a --preset, more --n-epochs, or tuning).")


def cmd_compare(args) -> int:
    from .model import GRU4Rec

    train = _events(args, args.train)
    test = _events(args, args.test)
    print(f"{args.train}: {train.n_events:,} events, {train.n_sessions:,} sessions, "
          f"{len(train.item_ids):,} items; {args.test}: {test.n_events:,} events")
    models = [("GRU4Rec", GRU4Rec(**_hyperparameters(args), show_progress=not args.quiet))]
    models += _baselines()
    if args.models:
        want = {_model_class(name).__name__ for name in args.models}
        models = [(n, m) for n, m in models if type(m).__name__ in want]
    _compare(models, train, test, args.quiet)
    return 0


def _print_metrics(res: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(res, indent=2))
        return
    ks = sorted({int(k.split("@")[1]) for k in res if "@" in k})
    print(f"{'K':>4}{'recall':>9}{'mrr':>9}{'ndcg':>9}{'coverage':>10}{'popularity':>12}")
    for k in ks:
        pop = res.get(f"popularity@{k}")
        print(f"{k:>4}{res[f'recall@{k}']:>9.4f}{res[f'mrr@{k}']:>9.4f}{res[f'ndcg@{k}']:>9.4f}"
              f"{res[f'coverage@{k}']:>10.4f}{'' if pop is None else f'{pop:.4f}':>12}")
    print(f"{res['n_events']:,} predictions in {res['n_sessions']:,} sessions; "
          f"{res['n_unknown_targets']:,} targets unknown to the model (counted as misses)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="grurec", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    q = sub.add_parser("quickstart", help="GRU4Rec against the baselines on a built-in set")
    q.add_argument("--events", type=int, default=300_000)
    q.add_argument("--items", type=int, default=5_000)
    q.add_argument("--epochs", type=int, default=5)
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=cmd_quickstart)

    c = sub.add_parser("compare", help="GRU4Rec against the baselines on your own files")
    c.add_argument("train", help="training events (CSV/TSV/parquet)")
    c.add_argument("test", help="test events")
    c.add_argument("--models", nargs="+", metavar="NAME",
                   help="only these (default: all): gru4rec, pop, spop, itemknn, vsknn")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    _columns(c)
    _model_options(c)
    c.set_defaults(func=cmd_compare)

    t = sub.add_parser("train", help="train a model on an events file and save it")
    t.add_argument("events", help="training events (CSV/TSV/parquet)")
    t.add_argument("-o", "--output", help="model file to write (GRU4Rec; optional with --test)")
    t.add_argument("--model", default="GRU4Rec",
                   help="GRU4Rec (default), pop, spop, itemknn, vsknn, or a registered class")
    t.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a hyperparameter of --model (repeatable), e.g. --param k=50")
    t.add_argument("--test", help="also evaluate on this test file")
    t.add_argument("--valid", help="validate after every epoch on this file, or on this "
                                   "fraction (e.g. 0.1) of the training events carved from "
                                   "the end by time; the best epoch is kept")
    t.add_argument("--patience", type=int, help="stop after this many epochs without "
                                               "improvement (needs --valid)")
    t.add_argument("--metric", default="mrr@20", help="validation metric (default mrr@20)")
    t.add_argument("--cutoffs", type=int, nargs="+", default=[5, 10, 20])
    t.add_argument("--json", action="store_true", help="metrics as JSON")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--save-partial", metavar="PATH",
                   help="if training is interrupted (Ctrl-C), save the partly trained model "
                        "here (-o is only ever written after a complete fit)")
    _columns(t)
    _model_options(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="full-ranking next-item evaluation")
    e.add_argument("model")
    e.add_argument("test")
    e.add_argument("--cutoffs", type=int, nargs="+", default=[1, 5, 10, 20])
    e.add_argument("--mode", default="standard", choices=["standard", "conservative", "median"])
    e.add_argument("--json", action="store_true")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    _columns(e)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("recommend", help="next items for sessions")
    r.add_argument("model")
    r.add_argument("items", nargs="*", help="the session's item ids, oldest first")
    r.add_argument("--events", help="recommend for every session of this file instead")
    r.add_argument("-k", type=int, default=20)
    r.add_argument("--exclude-seen", action="store_true")
    _columns(r)
    r.set_defaults(func=cmd_recommend)

    from .tune import add_parser as _add_tune  # grurec tune (issue 20)

    _add_tune(sub, _columns)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "recommend" and not args.items and not args.events:
        parser.error("recommend: give item ids or --events FILE")
    if args.command == "recommend" and args.items and args.events:
        parser.error("recommend: give item ids or --events FILE, not both")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        # Model files are written atomically: an interrupted save leaves the
        # old file (and removes its temporary file).
        print(f"grurec {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as exc:
        # Bad input, a missing file, a corrupt or unfitted model, training that
        # diverged (ModelFitError) or ran out of memory: one clear line, exit 2.
        from .io import ModelFileError

        kind = "model file" if isinstance(exc, ModelFileError) else "error"
        if isinstance(exc, MemoryError):
            exc = f"out of memory ({exc or 'allocation failed'})"
        print(f"grurec {args.command}: {kind}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
