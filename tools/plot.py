#!/usr/bin/python3
"""Learning curves of one or several `hafvt train` runs, as one PNG with two panels.

    /usr/bin/python3 tools/plot.py runs/a runs/b --out curves.png [--protocol full|c2dsr]
                                   [--metric mrr] [--names A,B] [--title TEXT]

Reads RUN/metrics.jsonl (one JSON object per evaluation: epoch, step, split, protocol, X/Y metric
dicts, loss = the epoch's mean training loss terms total/x/y/xy) and draws
    left:  training loss per epoch, one colour per term (total, x, y, xy)
    right: validation metric (default MRR, in %) per epoch, one colour per domain (X, Y)
with one line style per run. When an epoch was logged twice (a resumed run), the last record wins.
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import os
import sys

LOSS_TERMS = [("total", "tab:gray"), ("x", "tab:blue"), ("y", "tab:orange"), ("xy", "tab:green")]
DOMAINS = [("X", "tab:blue"), ("Y", "tab:red")]
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P"]


class InputError(Exception):
    """Bad input: printed as one line, exit status 2."""


def read_run(run_dir, protocol, metric):
    """{'loss': {term: [(epoch, value)]}, 'valid': {domain: [(epoch, value)]}} of one run."""
    path = os.path.join(run_dir, "metrics.jsonl") if os.path.isdir(run_dir) else run_dir
    if not os.path.isfile(path):
        raise InputError(f"{path}: cannot open (expected the metrics.jsonl of a hafvt train run)")
    loss, valid = {}, {}  # epoch -> record (the last one of the epoch wins)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: line {n}: expected a JSON object, found a syntax error ({e.msg})")
            if not isinstance(rec, dict) or "epoch" not in rec:
                raise InputError(f"{path}: line {n}: expected a JSON object with an 'epoch', found {line[:60]}")
            if rec.get("split") != "valid":
                continue
            if isinstance(rec.get("loss"), dict):
                loss[rec["epoch"]] = rec["loss"]
            if rec.get("protocol") == protocol:
                valid[rec["epoch"]] = rec
    out = {"loss": {}, "valid": {}}
    for term, _ in LOSS_TERMS:
        pts = [(e, r[term]) for e, r in sorted(loss.items()) if term in r]
        if any(v != 0 for _, v in pts):  # a view the run does not train (--views xy) logs 0
            out["loss"][term] = pts
    for dom, _ in DOMAINS:
        pts = [(e, r[dom][metric] * 1.0) for e, r in sorted(valid.items())
               if isinstance(r.get(dom), dict) and metric in r[dom]]
        if pts:
            out["valid"][dom] = pts
    if not out["loss"] and not out["valid"]:
        raise InputError(f"{path}: no validation record with protocol '{protocol}' and no training loss")
    return out


def style_of(i):
    return STYLES[i % len(STYLES)], MARKERS[i % len(MARKERS)]


def plot(runs, names, protocol, metric, title, out_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(12, 5.2 + 0.25 * len(runs)), constrained_layout=True)
    for i, run in enumerate(runs):
        ls, mk = style_of(i)
        for term, color in LOSS_TERMS:
            if term in run["loss"]:
                e, v = zip(*run["loss"][term])
                ax_loss.plot(e, v, ls=ls, marker=mk, ms=4, color=color, lw=1.6)
        for dom, color in DOMAINS:
            if dom in run["valid"]:
                e, v = zip(*run["valid"][dom])
                ax_val.plot(e, v, ls=ls, marker=mk, ms=4, color=color, lw=1.6)

    # two legends per panel: colour = term / domain, line style = run
    run_handles = [Line2D([], [], color="black", ls=style_of(i)[0], marker=style_of(i)[1], ms=4, label=n)
                   for i, n in enumerate(names)]
    loss_handles = [Line2D([], [], color=c, lw=2, label=t) for t, c in LOSS_TERMS
                    if any(t in r["loss"] for r in runs)]
    dom_handles = [Line2D([], [], color=c, lw=2, label=f"domain {d}") for d, c in DOMAINS
                   if any(d in r["valid"] for r in runs)]
    # below each panel: colours on the left, runs (line styles) on the right
    for ax, handles in ((ax_loss, loss_handles), (ax_val, dom_handles)):
        first = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=len(handles),
                          fontsize=9, frameon=False)
        ax.add_artist(first)
        ax.legend(handles=run_handles, loc="upper right", bbox_to_anchor=(1.0, -0.12), ncol=1, fontsize=9,
                  frameon=False)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_loss.set_title("training loss per epoch (mean over steps)")
    ax_loss.set_ylabel("cross-entropy")
    label = metric.upper() if metric in ("mrr",) else metric
    ax_val.set_title(f"validation {label} ({protocol} protocol)")
    ax_val.set_ylabel(f"{label} (%)")
    if title:
        fig.suptitle(title)
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, out_path)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (or metrics.jsonl files)")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--protocol", default="full", choices=["full", "c2dsr"], help="validation protocol (default full)")
    p.add_argument("--metric", default="mrr", help="mrr (default), ndcg5, ndcg10, hr1, hr5 or hr10")
    p.add_argument("--names", default=None, help="comma-separated run names (default: the folder names)")
    p.add_argument("--title", default=None, help="figure title")
    args = p.parse_args(argv)
    try:
        names = args.names.split(",") if args.names else [
            os.path.basename(os.path.normpath(r if os.path.isdir(r) else os.path.dirname(r) or ".")) for r in args.runs]
        if len(names) != len(args.runs):
            raise InputError(f"--names: expected {len(args.runs)} names, found {len(names)}")
        runs = [read_run(r, args.protocol, args.metric) for r in args.runs]
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("matplotlib is not importable: apt-get install python3-matplotlib")
        plot(runs, names, args.protocol, args.metric, args.title, args.out)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(runs)} run{'s' if len(runs) > 1 else ''}, protocol {args.protocol}, {args.metric})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
