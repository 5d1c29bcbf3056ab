#!/usr/bin/python3
"""HAF-VT in plain PyTorch tensor ops: a second, readable statement of SPEC §2-4, and the
generator of the C++ model's reference fixture.

    /usr/bin/python3 tools/reference.py fixture IN.safetensors OUT.safetensors [--float32]

IN is written by build/hafvt_fixture (tests/fixture; parameters under their C++ names, frozen tables, one
train batch, one eval batch, the config in __metadata__). OUT holds all of IN plus what PyTorch
computes from it: the head logits and row losses (logits.<view>.<modality>.<X|Y>, loss_rows.<view>.<X|Y>,
rows in b*T + t order; tests/test_reference.cpp records the C++ ones at the model's head), the
per-view and total losses, every parameter gradient (grad.<name>), the same total loss and gradients
under the per-head cross-entropy of SPEC §3.5 with the config's lambda_h_variant (lambda_h.loss.total,
lambda_h.grad.<name>), the parameters after three
Adam steps on the same batch (adam.<name>) with the total loss of each step, and the evaluation
scores of the eval lines (score, [lines, max(NX, NY)]).

Precision: everything runs in float64 from the float32 inputs and is stored as float32. The
reference is then exact to float32 rounding, so what tests/test_reference.cpp measures is the
C++ float32 round-off alone, not the sum of two float32 implementations' errors.

Every op is written out with explicit tensor operations (no nn.Module, no nn.MultiheadAttention,
no F.layer_norm), with the names of src/math/ops_cpu.h and src/math/heads.h. The benchmark peer,
written for speed, is tools/peer.py.
"""
import json
import math
import struct
import sys

import numpy as np
import torch

DTYPES = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "F16": np.float16}
VIEWS = ["x", "y", "xy"]
MODS = ["id", "img", "txt"]


# ---- safetensors, by hand: 8-byte little-endian header length, JSON header, raw data ----------

def read_safetensors(path):
    """Returns ({name: numpy array} in header order, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(DTYPES[e["dtype"]]).newbyteorder("<"))
        tensors[name] = arr.reshape(e["shape"]).copy()
    return tensors, meta


def write_safetensors(path, tensors, meta):
    """tensors: list of (name, numpy array) written in order; floats as F32, ints as I32."""
    header, chunks, offset = {"__metadata__": meta}, [], 0
    for name, arr in tensors:
        if np.issubdtype(arr.dtype, np.floating):
            arr, dtype = np.ascontiguousarray(arr, dtype="<f4"), "F32"
        else:
            arr, dtype = np.ascontiguousarray(arr, dtype="<i4"), "I32"
        b = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# ---- encoder layers (SPEC §2.1); x is (B, T, d), valid is (B, T) bool ------------------------

def embedding(table, ids, scale):
    # x_t = E_m[s_t] * sqrt(d)  (the PAD row is zero and is masked below anyway)
    return table[ids] * scale


def posadd(x, P, pos):
    # + P_{v,m}[pos_t]; pos = 0 at PAD and row 0 of P is zero
    return x + P[pos]


def padmask(x, valid):
    # x_t = 0 at PAD positions
    return x * valid.unsqueeze(-1).to(x.dtype)


def layernorm(x, w, b, eps):
    # (x - mean) / sqrt(var + eps) * w + b, biased variance over the channels
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def linear(x, W, b):
    # weights stored [in, out]: y = x W + b
    return x @ W + b


def gelu(x):
    # the tanh approximation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def attention(qkv, valid, n_heads):
    """qkv (B, T, 3d) from one fused matmul -> (B, T, d). Query t attends to keys j <= t that
    are not PAD, scores scaled by 1/sqrt(d/heads); a PAD query outputs zero."""
    B, T, d3 = qkv.shape
    d = d3 // 3
    hs = d // n_heads
    q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, n_heads, hs).transpose(1, 2) for i in range(3))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hs)                      # (B, NH, T, T)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    allowed = causal[None, None] & valid[:, None, None, :]                # key j <= t, not PAD
    # softmax over the allowed keys, written out so that a row with none gives zeros, not NaN
    mx = torch.where(allowed, scores, torch.full_like(scores, -math.inf)).amax(-1, keepdim=True)
    mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx)).detach()
    ex = torch.exp(torch.where(allowed, scores, torch.zeros_like(scores)) - mx) * allowed
    den = ex.sum(-1, keepdim=True)
    att = ex / torch.where(den > 0, den, torch.ones_like(den))
    out = (att @ v).transpose(1, 2).reshape(B, T, d)
    return padmask(out, valid)


def encoder(p, prefix, table, ids, pos, pad, cfg):
    """Eq. 1 for one (view, modality): H = LN_final(blocks(x)), (B, T, d). No dropout (the
    fixture has dropout 0)."""
    d = table.shape[1]
    eps = cfg["layernorm_eps"]
    valid = ids != pad
    x = padmask(posadd(embedding(table, ids, math.sqrt(d)), p[prefix + "pos"], pos), valid)
    for b in range(cfg["n_blocks"]):
        k = "%sblk%d." % (prefix, b)
        h = layernorm(x, p[k + "ln1.w"], p[k + "ln1.b"], eps)
        a = attention(linear(h, p[k + "attn.wqkv"], p[k + "attn.bqkv"]), valid, cfg["n_heads"])
        x = x + linear(a, p[k + "attn.wo"], p[k + "attn.bo"])
        h = layernorm(x, p[k + "ln2.w"], p[k + "ln2.b"], eps)
        x = x + linear(gelu(linear(h, p[k + "ffn.w1"], p[k + "ffn.b1"])), p[k + "ffn.w2"], p[k + "ffn.b2"])
        x = padmask(x, valid)
    return layernorm(x, p[prefix + "lnf.w"], p[prefix + "lnf.b"], eps)


# ---- heads and mixture (SPEC §2.3-2.4, §3.1) --------------------------------------------------

def l2norm(x, eps):
    # x / max(|x|, eps) row-wise: a zero row stays zero (cosine 0)
    return x / torch.clamp(torch.sqrt((x * x).sum(-1, keepdim=True)), min=eps)


def logit_scale(log_s, cfg):
    # s = exp(log_s) clamped to [1, 100]; clamp passes no gradient outside the range
    return torch.clamp(torch.exp(log_s), min=cfg["scale_min"], max=cfg["scale_max"])


def cosine_logits(h, cand_n, s, eps):
    # z_j = s * cos(h, E_j); candidate rows already normalized
    return s * (l2norm(h, eps) @ cand_n.T)


def mixture_nll(logits, y, logw, lambda_h=0.0):
    # l = -logsumexp_m(log w_m + z_m[y] - logsumexp_C(z_m)),  logits: list of (R, V)
    # + lambda_h sum_m w_m (-log p_m[y])  (SPEC §3.5, the per-head cross-entropy; 0: §3.1)
    log_p = [z.gather(1, y[:, None])[:, 0] - torch.logsumexp(z, 1) for z in logits]
    l = -torch.logsumexp(torch.stack([lw + lp for lp, lw in zip(log_p, logw)], 0), 0)
    if lambda_h:
        l = l + lambda_h * sum(math.exp(lw) * -lp for lp, lw in zip(log_p, logw))
    return l


def mixture_prob(logits, logw):
    # P(j) = sum_m w_m softmax(z_m)(j)
    return sum(math.exp(lw) * torch.softmax(z, 1) for z, lw in zip(logits, logw))


# ---- the model ----------------------------------------------------------------------------------

class World:
    """Config, parameters (float64 leaves by default), frozen tables and the id tables of one fixture."""

    def __init__(self, inp, cfg):
        self.cfg = cfg
        self.NX, self.NY, self.T = cfg["NX"], cfg["NY"], cfg["T"]
        self.pad = self.NX + self.NY
        self.mods = [m for m in range(3) if cfg["mods"][m]]
        self.views = [v for v in range(3) if cfg["views"][v]]
        self.logw = {m: math.log(cfg["weight"][m]) for m in self.mods}
        self.lambda_h = 0.0  # the objective: 0 = the paper's (SPEC §3.1), > 0 = §3.5's per-head term
        self.param_names = [n for n in inp if not n.startswith(("frozen.", "batch.", "eval."))]
        self.p = {n: torch.tensor(inp[n], dtype=torch.get_default_dtype(), requires_grad=True) for n in self.param_names}
        self.frozen = {1: torch.tensor(inp["frozen.img"], dtype=torch.get_default_dtype()),
                       2: torch.tensor(inp["frozen.txt"], dtype=torch.get_default_dtype())}

    def table(self, m):
        # the encoder input table of modality m: E_id (learnable) or a frozen table
        return self.p["E_id"] if m == 0 else self.frozen[m]

    def candidates(self, m):
        # the head's item rows, normalized: E_id inside the cosine, frozen tables at load
        NI = self.NX + self.NY
        return l2norm(self.p["E_id"][:NI], self.cfg["norm_eps"]) if m == 0 else self.frozen[m][:NI]

    def encode(self, view_ids, view_pos):
        """H for every enabled (view, modality): {(v, m): (B, T, d)}."""
        H = {}
        for v in self.views:
            ids = torch.tensor(view_ids[v], dtype=torch.long)
            pos = torch.tensor(view_pos[v], dtype=torch.long)
            for m in self.mods:
                H[(v, m)] = encoder(self.p, "enc.%s.%s." % (VIEWS[v], MODS[m]), self.table(m), ids, pos, self.pad, self.cfg)
        return H

    def domain(self, D):
        return (self.NX, 0) if D == 0 else (self.NY, self.NX)  # (V, offset)

    def loss(self, inp, trace):
        """SPEC §3.1: L = mean_X + lambda1 mean_Y + lambda2 mean_XY over the supervised positions;
        fills trace with the logits and row losses in the C++ trace's names and row order."""
        cfg = self.cfg
        B, T = inp["batch.xy.ids"].shape
        H = self.encode({v: inp["batch.%s.ids" % VIEWS[v]] for v in self.views},
                        {v: inp["batch.%s.pos" % VIEWS[v]] for v in self.views})
        lam = [1.0, cfg["lambda1"], cfg["lambda2"]]
        total = torch.zeros((), dtype=torch.get_default_dtype())
        for v in self.views:
            tgt = inp["batch.%s.target" % VIEWS[v]].reshape(-1)
            view_sum, count = torch.zeros((), dtype=torch.get_default_dtype()), 0
            for D in range(2):
                V, off = self.domain(D)
                # supervised rows b*T + t whose target is in domain D, in increasing order
                rows = [n for n in range(B * T) if tgt[n] >= 0 and (tgt[n] < self.NX) == (D == 0)]
                if not rows:
                    continue
                r = torch.tensor(rows, dtype=torch.long)
                y = torch.tensor(tgt[rows] - off, dtype=torch.long)
                logits = []
                for m in self.mods:
                    h = H[(v, m)].reshape(B * T, -1)[r]
                    s = logit_scale(self.p["head.%s.%s.log_scale" % (VIEWS[v], MODS[m])], cfg)
                    z = cosine_logits(h, self.candidates(m)[off:off + V], s, cfg["norm_eps"])
                    logits.append(z)
                    trace["logits.%s.%s.%s" % (VIEWS[v], MODS[m], "XY"[D])] = z
                l = mixture_nll(logits, y, [self.logw[m] for m in self.mods], self.lambda_h)
                trace["loss_rows.%s.%s" % (VIEWS[v], "XY"[D])] = l
                view_sum = view_sum + l.sum()
                count += len(rows)
            if count == 0:
                continue  # a term with no positions contributes 0
            mean = view_sum / count
            trace["loss." + VIEWS[v]] = mean.reshape(1)
            total = total + lam[v] * mean
        trace["loss.total"] = total.reshape(1)
        return total

    @torch.no_grad()
    def score(self, inp):
        """SPEC §4: score = P_D + lambda1 P_D' + lambda2 P_XY over the items of the target's
        domain D, each P from the view's last position; an empty view's term is dropped.
        Layout of Model::score: (lines, max(NX, NY)), zeros beyond the domain's items."""
        cfg = self.cfg
        H = self.encode({v: inp["eval.%s.ids" % VIEWS[v]] for v in self.views},
                        {v: inp["eval.%s.pos" % VIEWS[v]] for v in self.views})
        target = inp["eval.target"]
        L, Vmax = len(target), max(self.NX, self.NY)
        out = torch.zeros(L, Vmax, dtype=torch.get_default_dtype())
        for b in range(L):
            D = 0 if target[b] < self.NX else 1
            V, off = self.domain(D)
            for v in self.views:
                if not inp["eval.%s.nonempty" % VIEWS[v]][b]:
                    continue
                coef = cfg["lambda2"] if v == 2 else (1.0 if v == D else cfg["lambda1"])
                logits = []
                for m in self.mods:
                    h = H[(v, m)][b, self.T - 1][None]  # the view's last position (left padding)
                    s = logit_scale(self.p["head.%s.%s.log_scale" % (VIEWS[v], MODS[m])], cfg)
                    logits.append(cosine_logits(h, self.candidates(m)[off:off + V], s, cfg["norm_eps"]))
                out[b, :V] += coef * mixture_prob(logits, [self.logw[m] for m in self.mods])[0]
        return out

    def backward(self, inp, trace):
        """Loss and gradients; the PAD row of E_id gets none (SPEC §2)."""
        for t in self.p.values():
            t.grad = None
        total = self.loss(inp, trace)
        total.backward()
        g = {n: self.p[n].grad.clone() if self.p[n].grad is not None else torch.zeros_like(self.p[n]) for n in self.param_names}
        if "E_id" in g:
            g["E_id"][self.pad] = 0.0
        return total, g


def adam_steps(world, inp, adam, steps):
    """torch.optim.Adam with weight_decay (coupled L2), written out:
    g += l2 w; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Same batch every step."""
    m = {n: torch.zeros_like(world.p[n]) for n in world.param_names}
    v = {n: torch.zeros_like(world.p[n]) for n in world.param_names}
    b1, b2 = adam["beta1"], adam["beta2"]
    losses = []
    for t in range(1, steps + 1):
        total, g = world.backward(inp, {})
        losses.append(total.item())
        with torch.no_grad():
            for n in world.param_names:
                w = world.p[n]
                gn = g[n] + adam["l2"] * w
                m[n] = b1 * m[n] + (1 - b1) * gn
                v[n] = b2 * v[n] + (1 - b2) * gn * gn
                denom = torch.sqrt(v[n]) / math.sqrt(1 - b2 ** t) + adam["eps"]
                w -= adam["lr"] / (1 - b1 ** t) * m[n] / denom
    return losses


def fixture(in_path, out_path, dtype=torch.get_default_dtype()):
    torch.set_default_dtype(dtype)
    inp, meta = read_safetensors(in_path)
    cfg = json.loads(meta["config"])
    assert cfg["dropout"] == 0, "the reference has no dropout (masks are the C++ RNG's)"
    world = World(inp, cfg)

    trace = {}
    total, grads = world.backward(inp, trace)
    score = world.score(inp)
    # the per-head cross-entropy variant (SPEC §3.5) on the same parameters and batch
    world.lambda_h = cfg["lambda_h_variant"]
    total_h, grads_h = world.backward(inp, {})
    world.lambda_h = 0.0
    losses = adam_steps(world, inp, cfg["adam"], cfg["adam"]["steps"])

    out = [(n, a) for n, a in inp.items()]
    out += [(n, t.detach().numpy()) for n, t in sorted(trace.items())]
    out += [("grad." + n, grads[n].numpy()) for n in world.param_names]
    out += [("adam." + n, world.p[n].detach().numpy()) for n in world.param_names]
    out += [("adam.loss_total", np.array(losses)), ("score", score.numpy())]
    out += [("lambda_h.loss.total", total_h.detach().reshape(1).numpy())]
    out += [("lambda_h.grad." + n, grads_h[n].numpy()) for n in world.param_names]
    meta = dict(meta)
    meta["reference"] = "tools/reference.py, torch %s, %s, stored as float32" % (torch.__version__, str(dtype)[6:])
    write_safetensors(out_path, out, meta)
    print("wrote %s: %d tensors, loss %.6f, losses over %d Adam steps %s" % (
        out_path, len(out), total.item(), len(losses), " ".join("%.6f" % l for l in losses)))


def main(argv):
    if len(argv) in (4, 5) and argv[1] == "fixture" and argv[4:] in ([], ["--float32"]):
        # --float32: the same in float32, only to measure PyTorch's own round-off against float64
        fixture(argv[2], argv[3], torch.float32 if argv[4:] else torch.float64)
        return 0
    print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
