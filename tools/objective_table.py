#!/usr/bin/env python3
"""The objective-variant table from run folders <root>/<config>_s<seed> trained with --tune
(tools/objectives.sh): per configuration, mean ± sample standard deviation over the seeds of
  - the best validation mean MRR (X and Y, the early-stopping criterion, full protocol) with the
    trained weights, and with the weights hafvt tune chose (tuned.json);
  - the test MRR (full protocol) per domain with the trained and with the tuned weights, and the
    tail and head MRR with the tuned weights.
Usage: objective_table.py ROOT NAME=LABEL ...  Prints Markdown. Standard library only."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ablation_table import fmt  # noqa: E402  (mean ± sample standard deviation)


def read_run(d):
    best_valid, test = None, None
    with open(os.path.join(d, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if j["protocol"] != "full":
                continue
            if j["split"] == "valid":
                v = (j["X"]["mrr"] + j["Y"]["mrr"]) / 2
                best_valid = v if best_valid is None else max(best_valid, v)
            elif j["split"] == "test":
                test = j
    tuned_path = os.path.join(d, "tuned.json")
    tuned = json.load(open(tuned_path)) if os.path.exists(tuned_path) else None
    return best_valid, test, tuned


def main(root, names):
    runs = {}
    for d in sorted(os.listdir(root)):
        p = os.path.join(root, d)
        if "_s" not in d or not os.path.exists(os.path.join(p, "metrics.jsonl")):
            continue
        name, _seed = d.rsplit("_s", 1)
        bv, test, tuned = read_run(p)
        if test is not None:
            runs.setdefault(name, []).append((bv, test, tuned))
    print("| configuration | seeds | valid mean MRR, trained | valid mean MRR, tuned | test X MRR, trained | test Y MRR, trained "
          "| test X MRR, tuned | test Y MRR, tuned | X tail / head, tuned | Y tail / head, tuned | tuned weights (alpha, beta, lambda1, lambda2) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, label in names:
        rs = runs.get(key, [])
        if not rs:
            continue
        tv = [t for _, _, t in rs if t and "test" in t]
        col = lambda f, xs: fmt([f(x) for x in xs])
        weights = "; ".join(f"{t['alpha']:.2f}, {t['beta']:.2f}, {t['lambda1']:.2f}, {t['lambda2']:.2f}" for t in tv)
        print(f"| {label} | {len(rs)} | {fmt([bv for bv, _, _ in rs])} "
              f"| {col(lambda t: (t['valid_mrr_tuned']['X'] + t['valid_mrr_tuned']['Y']) / 2, tv)} "
              f"| {col(lambda r: r[1]['X']['mrr'], rs)} | {col(lambda r: r[1]['Y']['mrr'], rs)} "
              f"| {col(lambda t: t['test']['X']['mrr'], tv)} | {col(lambda t: t['test']['Y']['mrr'], tv)} "
              f"| {col(lambda t: t['test']['head_tail']['X_tail']['mrr'], tv)} / {col(lambda t: t['test']['head_tail']['X_head']['mrr'], tv)} "
              f"| {col(lambda t: t['test']['head_tail']['Y_tail']['mrr'], tv)} / {col(lambda t: t['test']['head_tail']['Y_head']['mrr'], tv)} "
              f"| {weights} |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(sys.argv[1], [tuple(a.split("=", 1)) for a in sys.argv[2:]])
