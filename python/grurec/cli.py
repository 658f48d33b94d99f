"""The ``grurec`` command line.

    grurec quickstart                      GRU4Rec against the baselines on a built-in set
    grurec train EVENTS -o MODEL [options] train GRU4Rec (--preset NAME, hyperparameters)
    grurec evaluate MODEL TEST             full-ranking next-item metrics
    grurec recommend MODEL ITEM [ITEM...]  next items for one session
    grurec recommend MODEL --events FILE   next items for every session of a file
    grurec tune TRAIN [--valid VALID]      hyperparameter search (Optuna; grurec[tune])

EVENTS / TEST / FILE: CSV, TSV (optionally .gz) or parquet with columns
SessionId, ItemId, Time (names set with --session-col, --item-col, --time-col).
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


def _cols(args) -> dict:
    return dict(session_col=args.session_col, item_col=args.item_col, time_col=args.time_col)


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
    from .model import GRU4Rec

    # Every path first: a failure after minutes of training is too late.
    _check_input(args.events, "events")
    if args.test:
        _check_input(args.test, "--test")
    _check_output(args.output, "-o")
    if args.save_partial:
        _check_output(args.save_partial, "--save-partial")
        if os.path.abspath(args.save_partial) == os.path.abspath(args.output):
            raise ValueError("--save-partial must differ from -o (an interrupted run never "
                             "writes -o)")
    model = GRU4Rec(**_hyperparameters(args), show_progress=not args.quiet)
    t0 = time.perf_counter()
    # "stop and keep": Ctrl-C ends training with the partly trained model,
    # which goes to --save-partial only; -o is written after a complete fit.
    model.fit(args.events, **_cols(args), on_interrupt="keep")
    if model.interrupted:
        where = "nothing was saved (use --save-partial PATH to keep it)"
        if args.save_partial:
            model.save(args.save_partial)
            where = f"the partly trained model was saved to {args.save_partial}"
        print(f"grurec train: interrupted in epoch {len(model.history)} after "
              f"{time.perf_counter() - t0:.1f} s; {args.output} was not written; {where}",
              file=sys.stderr)
        return 130
    print(f"trained {model.epochs_trained} epochs on {args.events} in "
          f"{time.perf_counter() - t0:.1f} s ({len(model.item_ids)} items)")
    model.save(args.output)
    print(f"saved {args.output}")
    if args.test:
        _print_metrics(grurec.evaluate(model, args.test, cutoffs=args.cutoffs, **_cols(args)),
                       args.json)
    return 0


def cmd_evaluate(args) -> int:
    import grurec

    model = grurec.load(args.model)
    t0 = time.perf_counter()
    res = grurec.evaluate(model, args.test, cutoffs=args.cutoffs, mode=args.mode,
                          **_cols(args))
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

        sd = to_sessions(args.events, **_cols(args), item_ids=model.item_ids, unknown="keep")
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
    from . import baselines
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
        ("POP", baselines.Popularity()),
        ("S-POP", baselines.SessionPopularity()),
        ("Item-KNN", baselines.ItemKNN()),
        ("V-SKNN", baselines.VSKNN()),
    ]
    rows = []
    for name, m in models:
        t0 = time.perf_counter()
        m.fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = grurec.evaluate(m, test, cutoffs=(5, 20))
        rows.append((name, r["recall@20"], r["mrr@20"], r["recall@5"], fit_s,
                     time.perf_counter() - t0))
    print(f"\n{'model':<10}{'Recall@20':>11}{'MRR@20':>9}{'Recall@5':>10}{'fit s':>8}"
          f"{'eval s':>8}")
    for name, r20, m20, r5, fs, es in rows:
        print(f"{name:<10}{r20:>11.4f}{m20:>9.4f}{r5:>10.4f}{fs:>8.1f}{es:>8.1f}")
    print(f"\n{r['n_events']:,} test predictions, full ranking over all items, standard ties.")
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

    t = sub.add_parser("train", help="train GRU4Rec on an events file and save it")
    t.add_argument("events", help="training events (CSV/TSV/parquet)")
    t.add_argument("-o", "--output", required=True, help="model file to write")
    t.add_argument("--test", help="also evaluate on this test file")
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
