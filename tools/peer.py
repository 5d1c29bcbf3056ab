#!/usr/bin/python3
"""The PyTorch peer of `hafvt train` for tools/bench.sh and tools/bench_gpu.sh: the model of
tools/reference.py written the way one would for speed in PyTorch, in float32: fused library ops
(F.layer_norm, F.gelu, F.cross_entropy, addmm), an additive attention mask shared by the encoders
of a view, autograd, dropout on, torch.optim.Adam.

    /usr/bin/python3 tools/peer.py train --data DIR [--img F --txt F] [--q 64] [--batch 256]
        [--steps N] [--warmup W] [--threads T] [--modalities id,img,txt] [--views x,y,xy] [--eval]
    /usr/bin/python3 tools/peer.py check FIXTURE.safetensors
    /usr/bin/python3 tools/peer.py flops --data DIR --q 256 --e 512 --gemm BENCH_GEMM_OUTPUT

`train` reads the C2DSR files, prints sequences/s over the steps after the warm-up and, with
--eval, the valid split's evaluation lines/s (all items of the target's domain scored, ranks under
both protocols). `check` runs the peer on the fixture of tools/reference.py (dropout 0) against its
float64 losses, gradients and scores. `flops` counts the matmul FLOPs of a training step and the
time they take at OpenBLAS's measured rates.
"""
import argparse
import ctypes
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from reference import MODS, VIEWS, read_safetensors

def read_catalog(data):
    """Alist.txt, Blist.txt -> (ASINs in merged-id order, NX, NY)."""
    asins, counts = [], []
    for name in ("Alist.txt", "Blist.txt"):
        with open(os.path.join(data, name)) as f:
            rows = [ln.rstrip("\r\n\t ").split("\t") for ln in f if ln.strip()]
        asins += [r[1] for r in rows]
        counts.append(len(rows))
    return asins, counts[0], counts[1]


def read_sequences(path, T, train):
    """README items 2-4: tokens `id|ts|...` stably sorted by timestamp, the last T+1 kept; train
    lines with fewer than two items are skipped."""
    seqs = []
    with open(path) as f:
        for ln in f:
            fields = ln.rstrip("\r\n\t ").split("\t")
            if len(fields) < 2 or not ln.strip():
                continue
            toks = [t.split("|") for t in fields[2:]]
            items = [int(t[0]) for t in sorted(toks, key=lambda t: int(t[1]))]  # sorted() is stable
            if len(items) < 2:
                assert train, "%s: an evaluation line with fewer than 2 items" % path
                continue
            seqs.append(items[-(T + 1):])
    return seqs


def train_batch(seqs, NX, T, pad):
    """README items 5 and 17: the three left-padded views with positions and targets, in the
    fixture's layout (batch.<view>.ids / pos / target, (B, T) int64, target -1 = unsupervised)."""
    B = len(seqs)
    out = {}
    for v in VIEWS:
        out["batch.%s.ids" % v] = np.full((B, T), pad, np.int64)
        out["batch.%s.pos" % v] = np.zeros((B, T), np.int64)
        out["batch.%s.target" % v] = np.full((B, T), -1, np.int64)
    for b, s in enumerate(seqs):
        L = len(s) - 1
        rows = {"xy": (s[:L], s[1:])}
        nxt, tg = {True: -1, False: -1}, [0] * L
        nxt[s[L] < NX] = s[L]
        for i in range(L - 1, -1, -1):  # the next item of the same domain, s_n included
            tg[i] = nxt[s[i] < NX]
            nxt[s[i] < NX] = s[i]
        for v, inx in (("x", True), ("y", False)):
            keep = [i for i in range(L) if (s[i] < NX) == inx]
            rows[v] = ([s[i] for i in keep], [tg[i] for i in keep])
        for v, (items, tgts) in rows.items():
            n = len(items)
            if n:
                out["batch.%s.ids" % v][b, T - n:] = items
                out["batch.%s.pos" % v][b, T - n:] = np.arange(1, n + 1)
                out["batch.%s.target" % v][b, T - n:] = tgts
    return out


def eval_batch(seqs, NX, T, pad):
    """The inputs of evaluation lines (all but the last item) as views: eval.<view>.ids / pos /
    nonempty and eval.target, the layout of the fixture."""
    B = len(seqs)
    out = {"eval.target": np.array([s[-1] for s in seqs], np.int64)}
    for v in VIEWS:
        out["eval.%s.ids" % v] = np.full((B, T), pad, np.int64)
        out["eval.%s.pos" % v] = np.zeros((B, T), np.int64)
        out["eval.%s.nonempty" % v] = np.zeros(B, np.uint8)
    for b, s in enumerate(seqs):
        inp = s[:-1][-T:]
        for v, items in (("xy", inp), ("x", [i for i in inp if i < NX]), ("y", [i for i in inp if i >= NX])):
            n = len(items)
            if n:
                out["eval.%s.ids" % v][b, T - n:] = items
                out["eval.%s.pos" % v][b, T - n:] = np.arange(1, n + 1)
                out["eval.%s.nonempty" % v][b] = 1
    return out


def read_features(path, ids_path, asins):
    """README item 7: rows L2-normalized, zero rows stay zero, NaN/Inf refused, a zero PAD row
    appended; the alignment file must list the catalog's ASINs in order."""
    a = np.load(path).astype(np.float32)
    assert a.shape[0] == len(asins), "%s: %d rows, expected %d" % (path, a.shape[0], len(asins))
    assert np.isfinite(a).all(), "%s: NaN or Inf" % path
    if ids_path:
        with open(ids_path) as f:
            assert [ln.strip() for ln in f if ln.strip()] == asins, "%s: not the catalog's ASINs" % ids_path
    t = F.normalize(torch.as_tensor(a), dim=1, eps=1e-12)  # on the default device (--device)
    return torch.cat([t, torch.zeros(1, t.shape[1])])


def attention_bias(valid):
    """(B, T) bool -> (B, 1, T, T) additive mask: 0 where query t may see key j (j <= t, not
    PAD), -inf elsewhere. A PAD query sees every key so that its softmax is finite; its output
    is zeroed by the pad mask after the block, which also stops its gradient."""
    T = valid.shape[1]
    allowed = torch.ones(T, T, dtype=torch.bool).tril() & valid[:, None, :]
    allowed = allowed | ~valid[:, :, None]
    return torch.zeros(allowed.shape).masked_fill(~allowed, -math.inf)[:, None]


def encoder_fast(p, pre, table, ids, pos, vmask, bias, cfg, drop):
    """Eq. 1 in float32 with dropout `drop` (SPEC §2.1, README items 8-11)."""
    B, T = ids.shape
    d, NH, eps = table.shape[1], cfg["n_heads"], cfg["layernorm_eps"]
    hs = d // NH
    x = F.embedding(ids, table) * math.sqrt(d) + F.embedding(pos, p[pre + "pos"])
    x = F.dropout(x, drop, drop > 0) * vmask
    for blk in range(cfg["n_blocks"]):
        k = "%sblk%d." % (pre, blk)
        h = F.layer_norm(x, (d,), p[k + "ln1.w"], p[k + "ln1.b"], eps).view(B * T, d)
        qkv = torch.addmm(p[k + "attn.bqkv"], h, p[k + "attn.wqkv"]).view(B, T, 3, NH, hs).permute(2, 0, 3, 1, 4)
        att = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) * (1.0 / math.sqrt(hs)) + bias, -1)
        a = (F.dropout(att, drop, drop > 0) @ qkv[2]).transpose(1, 2).reshape(B * T, d) * vmask.view(B * T, 1)
        x = x + F.dropout(torch.addmm(p[k + "attn.bo"], a, p[k + "attn.wo"]), drop, drop > 0).view(B, T, d)
        h = F.layer_norm(x, (d,), p[k + "ln2.w"], p[k + "ln2.b"], eps).view(B * T, d)
        f = F.gelu(torch.addmm(p[k + "ffn.b1"], h, p[k + "ffn.w1"]), approximate="tanh")
        x = (x + F.dropout(torch.addmm(p[k + "ffn.b2"], f, p[k + "ffn.w2"]), drop, drop > 0).view(B, T, d)) * vmask
    return F.layer_norm(x, (d,), p[pre + "lnf.w"], p[pre + "lnf.b"], eps)


class Peer:
    """The float32 model: parameters under their C++ names (dict of leaf tensors), frozen tables
    (NI+1, e) normalized, cfg in the fixture's format."""

    def __init__(self, cfg, frozen, params=None, seed=2040):
        self.cfg, self.frozen = cfg, frozen
        self.NX, self.NY, self.T = cfg["NX"], cfg["NY"], cfg["T"]
        self.NI = self.NX + self.NY
        self.pad = self.NI
        self.mods = [m for m in range(3) if cfg["mods"][m]]
        self.views = [v for v in range(3) if cfg["views"][v]]
        self.logw = {m: math.log(cfg["weight"][m]) for m in self.mods}
        self.p = params if params is not None else self.init_params(seed)
        for t in self.p.values():
            t.requires_grad_(True)

    def init_params(self, seed):
        """README item 22: N(0, 0.02) weights, E_id and positions (row 0 and PAD zero), zero
        biases, LayerNorm 1/0, log scales log 10."""
        g = torch.Generator().manual_seed(seed)
        cfg, p = self.cfg, {}
        normal = lambda *shape: torch.randn(*shape, generator=g) * 0.02
        if 0 in self.mods:
            p["E_id"] = normal(self.NI + 1, cfg["q"])
            p["E_id"][self.pad] = 0
        for v in self.views:
            for m in self.mods:
                d = cfg["q"] if m == 0 else cfg["e"]
                pre = "enc.%s.%s." % (VIEWS[v], MODS[m])
                p[pre + "pos"] = normal(self.T + 1, d)
                p[pre + "pos"][0] = 0
                for blk in range(cfg["n_blocks"]):
                    k = "%sblk%d." % (pre, blk)
                    for ln in ("ln1", "ln2"):
                        p[k + ln + ".w"], p[k + ln + ".b"] = torch.ones(d), torch.zeros(d)
                    p[k + "attn.wqkv"], p[k + "attn.bqkv"] = normal(d, 3 * d), torch.zeros(3 * d)
                    for w, b in (("attn.wo", "attn.bo"), ("ffn.w1", "ffn.b1"), ("ffn.w2", "ffn.b2")):
                        p[k + w], p[k + b] = normal(d, d), torch.zeros(d)
                p[pre + "lnf.w"], p[pre + "lnf.b"] = torch.ones(d), torch.zeros(d)
                p["head.%s.%s.log_scale" % (VIEWS[v], MODS[m])] = torch.full((1,), math.log(10.0))
        return p

    def encode(self, batch, kind, drop):
        """H[(v, m)] (B, T, d) of every enabled encoder; the mask is built once per view."""
        H = {}
        for v in self.views:
            ids = torch.as_tensor(batch["%s.%s.ids" % (kind, VIEWS[v])], dtype=torch.long)
            pos = torch.as_tensor(batch["%s.%s.pos" % (kind, VIEWS[v])], dtype=torch.long)
            valid = ids != self.pad
            vmask, bias = valid.unsqueeze(-1).float(), attention_bias(valid)
            for m in self.mods:
                table = self.p["E_id"] if m == 0 else self.frozen[m]
                H[(v, m)] = encoder_fast(self.p, "enc.%s.%s." % (VIEWS[v], MODS[m]), table, ids, pos, vmask, bias, self.cfg, drop)
        return H

    def candidates(self):
        # the heads' item rows: normalized E_id (with gradient) and the frozen tables
        c = {m: self.frozen[m][:self.NI] for m in self.mods if m != 0}
        if 0 in self.mods:
            c[0] = F.normalize(self.p["E_id"][:self.NI], dim=1, eps=self.cfg["norm_eps"])
        return c

    def scale(self, v, m):
        return torch.clamp(torch.exp(self.p["head.%s.%s.log_scale" % (VIEWS[v], MODS[m])]), self.cfg["scale_min"], self.cfg["scale_max"])

    def loss(self, batch, drop):
        """SPEC §3.1: the supervised rows of each view are gathered per target domain, scored
        against that domain's items and mixed; L = mean_X + lambda1 mean_Y + lambda2 mean_XY."""
        cfg = self.cfg
        H, cand = self.encode(batch, "batch", drop), self.candidates()
        lam = [1.0, cfg["lambda1"], cfg["lambda2"]]
        total, per_view = 0.0, {}
        for v in self.views:
            tgt = torch.as_tensor(batch["batch.%s.target" % VIEWS[v]], dtype=torch.long).reshape(-1)
            view_sum, count = 0.0, 0
            for D, (V, off) in enumerate(((self.NX, 0), (self.NY, self.NX))):
                rows = torch.nonzero((tgt >= 0) & ((tgt < self.NX) == (D == 0))).squeeze(1)
                if len(rows) == 0:
                    continue
                y = tgt[rows] - off
                terms = []
                for m in self.mods:
                    h = F.normalize(H[(v, m)].reshape(-1, H[(v, m)].shape[-1])[rows], dim=1, eps=cfg["norm_eps"])
                    z = (h * self.scale(v, m)) @ cand[m][off:off + V].T  # the scale on the (R, d) side
                    terms.append(self.logw[m] - F.cross_entropy(z, y, reduction="none"))  # log w_m p_m(y)
                view_sum = view_sum - torch.logsumexp(torch.stack(terms), 0).sum()
                count += len(rows)
            if count:
                per_view[v] = view_sum / count
                total = total + lam[v] * per_view[v]
        return total, per_view

    @torch.no_grad()
    def score(self, batch):
        """SPEC §4 for a batch of evaluation lines: (lines, max(NX, NY)), zero beyond the
        target domain's items; the view's last position, P_D + lambda1 P_D' + lambda2 P_XY."""
        cfg = self.cfg
        H, cand = self.encode(batch, "eval", 0.0), self.candidates()
        target = torch.as_tensor(batch["eval.target"], dtype=torch.long)
        out = torch.zeros(len(target), max(self.NX, self.NY))
        for D, (V, off) in enumerate(((self.NX, 0), (self.NY, self.NX))):
            in_d = (target < self.NX) == (D == 0)
            for v in self.views:
                rows = torch.nonzero(in_d & torch.as_tensor(batch["eval.%s.nonempty" % VIEWS[v]], dtype=torch.bool)).squeeze(1)
                if len(rows) == 0:
                    continue
                coef = cfg["lambda2"] if v == 2 else (1.0 if v == D else cfg["lambda1"])
                P = 0.0
                for m in self.mods:
                    h = F.normalize(H[(v, m)][rows, self.T - 1], dim=1, eps=cfg["norm_eps"])
                    P = P + math.exp(self.logw[m]) * torch.softmax((h * self.scale(v, m)) @ cand[m][off:off + V].T, 1)
                out[rows, :V] += coef * P
        return out


def check_fixture(path):
    """The peer with the fixture's parameters (dropout 0) against its float64 losses, gradients
    and scores: the peer computes the same model."""
    inp, meta = read_safetensors(path)
    cfg = json.loads(meta["config"])
    names = [n for n in inp if not n.startswith(("frozen.", "batch.", "eval.", "grad.", "adam.", "logits.", "loss", "score"))]
    peer = Peer(cfg, {1: torch.tensor(inp["frozen.img"]), 2: torch.tensor(inp["frozen.txt"])},
                {n: torch.tensor(inp[n]) for n in names})
    total, _ = peer.loss(inp, 0.0)
    total.backward()
    worst = abs(total.item() - float(inp["loss.total"][0]))
    for n in names:
        g = peer.p[n].grad if peer.p[n].grad is not None else torch.zeros_like(peer.p[n])
        if n == "E_id":
            g[peer.pad] = 0
        worst = max(worst, (g - torch.tensor(inp["grad." + n])).abs().max().item())
    sc = (peer.score(inp) - torch.tensor(inp["score"])).abs().max().item()
    # the batch builders against make_train_batch / make_eval_batch on the sequences of
    # tests/fixture/reference_input.cpp (kTrainSeqs, kEvalSeqs; keep the two in step)
    train_seqs = [[0, 7, 1, 8, 9, 2, 10, 3], [8, 11, 12], [4, 6, 5], [9, 2], [3, 12, 3, 7, 0]]
    eval_seqs = [[0, 8, 1, 9], [4, 5, 2], [10, 11, 3], [1, 7, 2, 8, 3, 9, 4, 10], [12, 6]]
    built = train_batch([q[-(peer.T + 1):] for q in train_seqs], peer.NX, peer.T, peer.pad)
    built.update(eval_batch(eval_seqs, peer.NX, peer.T, peer.pad))
    same = all(np.array_equal(a, inp[n]) for n, a in built.items())
    print("peer vs %s: loss %.6f (fixture %.6f), worst |grad - fixture| and |loss - fixture| %.2e, worst |score - fixture| %.2e, "
          "batches %s" % (path, total.item(), float(inp["loss.total"][0]), worst, sc, "equal" if same else "DIFFERENT"))
    return 0 if worst < 1e-4 and sc < 1e-4 and same else 1


def set_threads(n):
    """torch's intra-op threads, and OpenBLAS's own pool (torch's matmuls go through it here)."""
    torch.set_num_threads(n)
    for ln in open("/proc/self/maps"):
        lib = ln.split()[-1]
        if "openblas" in os.path.basename(lib):
            so = ctypes.CDLL(lib)
            # Debian's libopenblas, or the suffixed build inside a pip numpy (scipy_openblas64_)
            for name in ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_"):
                if hasattr(so, name):
                    getattr(so, name)(n)
            break


def peer_config(args, NX, NY, e):
    mods = [True, e > 0 and "img" in args.modalities, e > 0 and "txt" in args.modalities]
    mods[0] = "id" in args.modalities
    raw = [1.0 / 3, 1.0 / 3, 1.0 / 3]
    wsum = sum(w for w, on in zip(raw, mods) if on)
    return {"NX": NX, "NY": NY, "T": args.T, "q": args.q, "e": e, "n_blocks": args.blocks, "n_heads": args.heads,
            "dropout": args.dropout, "views": [v in args.views for v in VIEWS], "mods": mods,
            "weight": [w / wsum if on else 0.0 for w, on in zip(raw, mods)], "lambda1": 1.0, "lambda2": 1.0,
            "layernorm_eps": 1e-5, "norm_eps": 1e-12, "scale_min": 1.0, "scale_max": 100.0}


def evaluate(peer, seqs, negatives, batch_size):
    """What `hafvt eval` times: scores of all items of the target's domain, ranks under both
    protocols (README items 24-25), metrics. Returns {protocol: {domain: MRR %}}."""
    ranks = {"c2dsr": [], "full": []}
    for b0 in range(0, len(seqs), batch_size):
        part = seqs[b0:b0 + batch_size]
        sc = peer.score(eval_batch(part, peer.NX, peer.T, peer.pad))
        tgt = torch.tensor([s[-1] for s in part])
        in_x = tgt < peer.NX
        local = torch.where(in_x, tgt, tgt - peer.NX)
        st = sc.gather(1, local[:, None])
        V = torch.where(in_x, peer.NX, peer.NY)
        cols = torch.arange(sc.shape[1])[None, :]
        ranks["full"].append(((sc >= st) & (cols < V[:, None])).sum(1))  # the target counts itself: rank = 1 + better
        neg = torch.as_tensor(negatives[b0:b0 + batch_size]) - torch.where(in_x, 0, peer.NX)[:, None]
        ranks["c2dsr"].append(1 + (sc.gather(1, neg) >= st).sum(1))
    in_x = np.array([s[-1] < peer.NX for s in seqs])
    out = {}
    for proto, r in ranks.items():
        r = torch.cat(r).cpu().numpy().astype(np.float64)
        out[proto] = {D: 100 * np.mean(1 / r[in_x == (D == "X")]) for D in ("X", "Y")}
    return out


def train_main(argv):
    ap = argparse.ArgumentParser(prog="reference.py train", description="the PyTorch peer of hafvt train (benchmarks)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--img")
    ap.add_argument("--txt")
    ap.add_argument("--img-ids")
    ap.add_argument("--txt-ids")
    ap.add_argument("--q", type=int, default=64)
    ap.add_argument("--T", type=int, default=15)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--l2", type=float, default=1e-5)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps after the warm-up")
    ap.add_argument("--warmup", type=int, default=1, help="steps not timed")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--modalities", default="id,img,txt")
    ap.add_argument("--views", default="x,y,xy")
    ap.add_argument("--seed", type=int, default=2040)
    ap.add_argument("--eval", action="store_true", help="then evaluate the valid split and time it")
    ap.add_argument("--eval-batch", type=int, default=256)
    ap.add_argument("--eval-repeats", type=int, default=3, help="time the evaluation this often, keep the best")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda needs torch >= 2.0: set_default_device)")
    ap.add_argument("--train-file", default="traindata_new.txt", help="the training split's file name in --data")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the loss and the scoring (torch >= 2.0; dynamic shapes; the warm-up compiles)")
    a = ap.parse_args(argv)
    a.modalities, a.views = a.modalities.split(","), a.views.split(",")
    if a.device != "cpu":
        if not hasattr(torch, "set_default_device") or not torch.cuda.is_available():
            print("reference.py train: --device %s needs torch >= 2.0 with CUDA (found torch %s, CUDA %s)"
                  % (a.device, torch.__version__, torch.cuda.is_available()), file=sys.stderr)
            return 2
        torch.set_default_device(a.device)  # every tensor the peer makes lives there
    set_threads(a.threads)
    torch.manual_seed(a.seed)
    asins, NX, NY = read_catalog(a.data)
    train = read_sequences(os.path.join(a.data, a.train_file), a.T, True)
    frozen = {}
    for m, path, ids in ((1, a.img, a.img_ids), (2, a.txt, a.txt_ids)):
        if path and MODS[m] in a.modalities:
            frozen[m] = read_features(path, ids, asins)
        elif MODS[m] in a.modalities:
            a.modalities.remove(MODS[m])  # like hafvt: a modality without its file is off
    e = frozen[1].shape[1] if 1 in frozen else (frozen[2].shape[1] if 2 in frozen else 0)
    cfg = peer_config(a, NX, NY, e)
    peer = Peer(cfg, frozen, seed=a.seed)
    if a.compile:
        if not hasattr(torch, "compile"):
            print("peer.py train: --compile needs torch >= 2.0 (found torch %s)" % torch.__version__, file=sys.stderr)
            return 2
        # the rows of each domain are data-dependent (nonzero): captured as dynamic shapes
        torch._dynamo.config.capture_dynamic_output_shape_ops = True
        # one compiled variant per encoder (view, modality) and head: more than the default limit
        for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(256, getattr(torch._dynamo.config, name)))
        peer.loss = torch.compile(peer.loss, dynamic=True)
        peer.score = torch.compile(peer.score, dynamic=True)
    opt = torch.optim.Adam(list(peer.p.values()), lr=a.lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=a.l2)
    nparam = sum(t.numel() for t in peer.p.values())
    print("peer: torch %s%s, %s, %d threads; items X %d Y %d, %d train sequences; q %d, e %d, modalities %s, views %s, %d parameters"
          % (torch.__version__, " compiled" if a.compile else " eager", a.device, torch.get_num_threads(), NX, NY, len(train), a.q, e, ",".join(a.modalities),
             ",".join(a.views), nparam), flush=True)

    # epochs of shuffled batches, the last one shorter (as hafvt's loop)
    rng = np.random.default_rng(a.seed)
    order, k, timed, seqs_timed = rng.permutation(len(train)), 0, 0.0, 0
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        if k >= len(train):
            order, k = rng.permutation(len(train)), 0
        idx = order[k:k + a.batch]
        k += a.batch
        batch = train_batch([train[i] for i in idx], NX, a.T, peer.pad)
        total, per_view = peer.loss(batch, a.dropout)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        loss = total.item()
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            timed += dt
            seqs_timed += len(idx)
        print("step %d: loss %.4f (%s) %.3f s" % (step + 1, loss, " ".join(
            "%s %.4f" % (VIEWS[v], l.item()) for v, l in per_view.items()), dt), flush=True)
    if a.steps:
        print("throughput: %d steps after %d warm-up: %.1f seq/s (%.4f s/step)"
              % (a.steps, a.warmup, seqs_timed / timed, timed / a.steps), flush=True)

    if a.eval:
        valid = read_sequences(os.path.join(a.data, "validdata_new.txt"), a.T, False)
        # the c2dsr negatives: 999 per line, uniform with replacement over the domain minus the target
        negatives = np.empty((len(valid), 999), np.int64)
        for i, s in enumerate(valid):
            lo, n = (0, NX) if s[-1] < NX else (NX, NY)
            r = rng.integers(0, n - 1, 999)
            negatives[i] = lo + r + (r >= s[-1] - lo)
        # the first pass is what a fresh `hafvt eval` process does; later passes run warm
        secs = []
        for _ in range(max(1, a.eval_repeats)):
            t0 = time.perf_counter()
            res = evaluate(peer, valid, negatives, a.eval_batch)
            secs.append(time.perf_counter() - t0)
        print("eval valid: %d lines in %.3f s (%.0f lines/s) on the first pass, best of %d %.0f lines/s; "
              "MRR full X %.2f Y %.2f, c2dsr X %.2f Y %.2f" % (len(valid), secs[0], len(valid) / secs[0], len(secs),
              len(valid) / min(secs), res["full"]["X"], res["full"]["Y"], res["c2dsr"]["X"], res["c2dsr"]["Y"]))
    return 0


def flops_main(argv):
    """The matmul FLOPs of one training step (encoders and heads, forward and backward), from the
    shapes and the mean supervised rows per sequence of the data, and the time they take at
    OpenBLAS's rates on the matching shapes (the output of tools/bench_gemm.py): a lower bound.
    Two bounds: the encoders over every position (B T rows, the work of a peer that computes PAD
    positions) and over the valid positions only (the rows that hold an item, what hafvt's
    encoders compute; the attention's own products stay on the padded layout)."""
    ap = argparse.ArgumentParser(prog="reference.py flops")
    ap.add_argument("--data", required=True)
    ap.add_argument("--q", type=int, default=256)
    ap.add_argument("--e", type=int, help="feature width (default: that of DIR/img.npy)")
    ap.add_argument("--T", type=int, default=15)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--gemm", required=True, help="a file with the output of tools/bench_gemm.py")
    ap.add_argument("--step", action="append", default=[], help="NAME=SECONDS: a measured step to compare with the bound")
    a = ap.parse_args(argv)
    _, NX, NY = read_catalog(a.data)
    a.e = a.e or np.load(os.path.join(a.data, "img.npy"), mmap_mode="r").shape[1]
    train = read_sequences(os.path.join(a.data, "traindata_new.txt"), a.T, True)
    # supervised rows per sequence, per view and target domain (README item 17)
    rows, valid = np.zeros((3, 2)), np.zeros(3)
    for b0 in range(0, len(train), 1024):
        bt = train_batch(train[b0:b0 + 1024], NX, a.T, NX + NY)
        for v in range(3):
            t = bt["batch.%s.target" % VIEWS[v]]
            rows[v] += [((t >= 0) & (t < NX)).sum(), (t >= NX).sum()]
            valid[v] += (bt["batch.%s.ids" % VIEWS[v]] != NX + NY).sum()
    rows *= a.batch / len(train)
    valid *= a.batch / len(train)
    rate = {}
    for ln in open(a.gemm):
        f = ln.split()
        if f[:1] == ["gemm"]:
            rate[(int(f[1]), int(f[3]), int(f[5]), f[6])] = float(f[-2]) * 1e9
    r = lambda M, N, K, op: rate[(M, N, K, op)]
    N, B, T = a.batch * a.T, a.batch, a.T

    def bound(enc_rows):
        """class -> [GFLOP, seconds at OpenBLAS's rate], the encoders' row-wise matmuls on enc_rows[v]
        rows of view v (the rates are those of the all-position shapes)"""
        cls = {}

        def add(name, flops, gflops):
            c = cls.setdefault(name, [0.0, 0.0])
            c[0] += flops
            c[1] += flops / gflops
        for m, d in ((0, a.q), (1, a.e), (2, a.e)):
            for v in range(3):
                lin = a.blocks * 2 * enc_rows[v] * (3 * d * d + 3 * d * d)   # qkv (d x 3d) and wo, w1, w2 (d x d)
                att = a.blocks * 4 * B * T * T * d                            # q k^T and att v
                add("encoders forward (linear)", lin, r(3840, 768, 256, "NN"))
                add("encoders forward (attention)", att, r(3840, 256, 256, "NN"))
                add("encoders backward dX", lin + att, r(3840, 256, 256, "NN"))
                add("encoders backward dW (and attention)", lin + att, r(256, 768, 3840, "TN"))
                for D, V in ((0, NX), (1, NY)):
                    f = 2 * rows[v][D] * V * d
                    add("heads forward", f, r(3840, 29207, 256, "NT") if m == 0 else r(2560, 64093, 512, "NT"))
                    add("heads backward dH", f, r(3840, 256, 29207, "NN"))
                    if m == 0:
                        add("heads backward dE_id", f, r(29207, 256, 3840, "TN"))
        return cls
    print("matmul FLOPs of one step: batch %d, T %d, q %d, e %d, %d blocks, items X %d Y %d; supervised rows "
          "per step X view %.0f, Y view %.0f, XY view %.0f; valid positions X %.0f, Y %.0f, XY %.0f of %d"
          % (a.batch, T, a.q, a.e, a.blocks, NX, NY, *rows.sum(1), *valid, N))
    totals = {}
    for label, enc_rows in (("all positions", [N] * 3), ("valid positions", valid)):
        print("encoders over %s:" % label)
        print("  %-38s %10s %12s %10s" % ("class", "GFLOP", "at GFLOPS", "ms"))
        tf, ts = 0.0, 0.0
        for name, (fl, sec) in bound(enc_rows).items():
            print("  %-38s %10.1f %12.1f %10.1f" % (name, fl * 1e-9, fl / sec * 1e-9, sec * 1e3))
            tf, ts = tf + fl, ts + sec
        print("  %-38s %10.1f %12.1f %10.1f" % ("total (lower bound of a step)", tf * 1e-9, tf / ts * 1e-9, ts * 1e3))
        totals[label] = ts
    for name, sec in (x.split("=") for x in a.step):
        if float(sec) > 0:
            print("%s: measured step %.3f s = %.2f x the all-position bound, %.2f x the valid-position bound"
                  % (name, float(sec), float(sec) / totals["all positions"], float(sec) / totals["valid positions"]))
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "train":
        return train_main(argv[2:])
    if len(argv) >= 2 and argv[1] == "flops":
        return flops_main(argv[2:])
    if len(argv) == 3 and argv[1] == "check":
        return check_fixture(argv[2])
    print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
