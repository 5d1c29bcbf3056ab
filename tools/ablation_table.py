#!/usr/bin/env python3
"""The ablation table from runs/ablation/<config>_s<seed>/metrics.jsonl (or, with a second
argument `fk`, the real-data tables of tools/fk_results.sh): test metrics of the best
checkpoint, mean and spread (sample standard deviation) over the seeds, per domain, both
protocols, plus head/tail MRR. A run trained with --tune adds a row with the tuned weights: its
tuned.json's test record (the protocol tune chose by, full) and tuned_test_<protocol>.json for the
other (`hafvt eval --json`, tools/fk_results.sh writes it). Prints Markdown. Standard library only."""
import json
import os
import statistics
import sys

NAMES = [
    ("full", "full model: views x,y,xy, modalities id,img,txt"),
    ("id", "--modalities id"),
    ("id_img", "--modalities id,img"),
    ("id_txt", "--modalities id,txt"),
    ("xy", "--views xy"),
    ("xy_id", "--views xy --modalities id"),
]
# tools/fk_results.sh's configurations (Food-Kitchen and Movie-Book, docs/results.md)
FK_NAMES = [
    ("orig", "--views xy --modalities id (original framework)"),
    ("otext", "--views xy --modalities id,txt (original framework + title n-gram features)"),
    ("hier", "--views x,y,xy --modalities id"),
    ("text", "--views x,y,xy --modalities id,txt (title n-gram features)"),
    ("mtext", "--views x,y,xy --modalities id,txt (MiniLM title features)"),
]
TUNED = " @tuned"  # the key suffix of a configuration's rows with the tuned weights


def test_rows(path):
    rows = {}
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if j["split"] == "test":
                rows[j["protocol"]] = j
    return rows


def tuned_rows(run):
    """The test records with the tuned weights, by protocol ({} without tuned.json)."""
    p = os.path.join(run, "tuned.json")
    if not os.path.exists(p):
        return {}
    t = json.load(open(p))
    rows = {t["test"]["protocol"]: t["test"]} if "test" in t else {}
    for proto in ("full", "c2dsr"):
        q = os.path.join(run, f"tuned_test_{proto}.json")
        if proto not in rows and os.path.exists(q):
            rows[proto] = json.load(open(q))
    return rows


def fmt(xs):
    if not xs:
        return "-"
    m = statistics.mean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.2f} ± {s:.2f}"


def main(root, names=NAMES):
    runs = {}
    for d in sorted(os.listdir(root)):
        p = os.path.join(root, d, "metrics.jsonl")
        if "_s" not in d or not os.path.exists(p):
            continue
        name, seed = d.rsplit("_s", 1)
        r = test_rows(p)
        if "full" in r:
            runs.setdefault(name, []).append(r)
            t = tuned_rows(os.path.join(root, d))
            if t:
                runs.setdefault(name + TUNED, []).append(t)
    for proto in ("full", "c2dsr"):
        print(f"\nTest split, protocol `{proto}`, percent, mean ± std over {max(len(v) for v in runs.values())} seeds\n")
        print("| configuration | X MRR | X NDCG@5 | X NDCG@10 | Y MRR | Y NDCG@5 | Y NDCG@10 | X tail MRR | X head MRR | Y tail MRR | Y head MRR |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for key, label in [(k + t, l + (", tuned weights" if t else "")) for k, l in names for t in ("", TUNED)]:
            rs = [r[proto] for r in runs.get(key, []) if proto in r]
            if not rs:
                continue
            cells = []
            for dom in ("X", "Y"):
                for m in ("mrr", "ndcg5", "ndcg10"):
                    cells.append(fmt([r[dom][m] for r in rs]))
            for dom in ("X", "Y"):
                for part in ("tail", "head"):
                    cells.append(fmt([r["head_tail"][f"{dom}_{part}"]["mrr"] for r in rs]))
            print(f"| {label} ({len(rs)}) | " + " | ".join(cells) + " |")
    any_run = next(iter(runs.values()))[0]["full"]
    n_tail = any_run["head_tail"]["X_tail"]["n"] + any_run["head_tail"]["Y_tail"]["n"]
    n_all = any_run["X"]["n"] + any_run["Y"]["n"]
    print(f"\nTail targets (seen at most --tail-max = 5 times in training): {n_tail} of {n_all} test lines ({100.0 * n_tail / n_all:.1f}%).")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/ablation",
         FK_NAMES if len(sys.argv) > 2 and sys.argv[2] == "fk" else NAMES)
