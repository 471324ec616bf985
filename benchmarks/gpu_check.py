"""kdbench on one CUDA GPU, in minutes, with no network: the check to run wherever a GPU is lent.

Two steps. Here (a machine with the dev venv, the data mirror and the HF cache):

    python benchmarks/gpu_check.py prepare            # writes .gpu_check/ (ignored by git, < 60 MiB)

builds the bundle the GPU machine lacks: wheels of the pure-Python and small binary packages kdbench
imports that such a machine may not have (datasets, pydantic, jsonschema, seqeval and their own
missing needs; CPython 3.12 manylinux x86-64, the versions tested here), an SST-2 slice of the data
mirror, and the configs and tokenizers of MiniLM-L6 and SmolLM2 (no weights: every model is built
from a config with random weights). There, with the bundle carried beside the tree:

    python3 benchmarks/gpu_check.py run               # installs missing wheels with --no-index, then:

1. the ``gpu``-marked tests (tests/integration/backends/test_gpu.py);
2. a small ``kdbench train-and-eval --device cuda`` (teacher fine-tune → KD student → baseline →
   evaluation → record) on the SST-2 slice, through the real CLI;
3. agreement of GPU and CPU predictions of that run's models (same weights; fp32, which is TF32 on
   Ampere and later, and bf16), and of a causal LM's token log-likelihoods;
4. throughput and MFU of inference and training at real sizes (BERT-base and a 1.2B-parameter
   Llama, random weights) through kdbench against a plain ``transformers`` loop on the same GPU,
   and the efficiency figures kdbench records for the 1.2B model (latency, MFU, TTFT, decode);
5. peak GPU memory of each.

It prints one summary table and writes it as JSON (to ``$OUT`` when set, else the bundle).
``run --cpu`` runs the same code on the CPU at tiny sizes (a dry run for the script itself).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / ".gpu_check"
LIMIT_MB = 60
# distributions kdbench needs that a bare GPU image (torch, transformers, accelerate, numpy,
# pandas, pyarrow, scipy, scikit-learn, jinja2, matplotlib...) may lack; lm-eval and vLLM are not
# needed by the check (classification path) and stay out
WHEELS = ["datasets", "dill", "multiprocess", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
          "jsonschema", "jsonschema-specifications", "referencing", "rpds-py", "xxhash"]
SDIST_ONLY = ["seqeval"]  # built into a wheel here (pure Python)
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
MODELS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
SST2 = ("nyu-mll/glue", "sst2")
TRAIN_ROWS = 4096


# ------------------------------------------------------------------------------------------------
# prepare (here)
# ------------------------------------------------------------------------------------------------
def prepare(bundle: Path, python_version: str) -> None:
    if bundle.exists():
        shutil.rmtree(bundle)
    wheels = bundle / "wheels"
    wheels.mkdir(parents=True)
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", python_version, "--implementation", "cp", *platforms, "-d", str(wheels), *pins],
                   check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                    *[f"{name}=={version(name)}" for name in SDIST_ONLY]], check=True)

    mirror = Path(os.environ["KDBENCH_DATA_DIR"])
    data = bundle / "data" / SST2[0] / SST2[1]
    data.mkdir(parents=True)
    source = mirror / SST2[0] / SST2[1]
    with open(source / "train.jsonl") as f:
        (data / "train.jsonl").write_text("".join(line for _, line in zip(range(TRAIN_ROWS), f)))
    shutil.copy(source / "validation.jsonl", data / "validation.jsonl")

    from transformers import AutoConfig, AutoTokenizer

    for name, hub_id in MODELS.items():  # configs and tokenizers only: weights are drawn at random there
        AutoConfig.from_pretrained(hub_id).save_pretrained(bundle / "models" / name)
        AutoTokenizer.from_pretrained(hub_id).save_pretrained(bundle / "models" / name)
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file()) / 2**20
    print(f"bundle {bundle}: {size:.1f} MiB ({len(list(wheels.glob('*.whl')))} wheels, SST-2 slice, 2 model configs)")
    if size > LIMIT_MB:
        raise SystemExit(f"bundle is {size:.1f} MiB, over {LIMIT_MB} MiB")


# ------------------------------------------------------------------------------------------------
# run (there)
# ------------------------------------------------------------------------------------------------
def _missing_wheels(bundle: Path) -> list[Path]:
    """Bundle wheels whose distribution is not installed in this Python."""
    out = []
    for wheel in sorted((bundle / "wheels").glob("*.whl")):
        dist = wheel.name.split("-")[0].replace("_", "-")
        try:
            version(dist)
        except PackageNotFoundError:
            out.append(wheel)
    return out


def bootstrap(bundle: Path, argv: list[str]) -> None:
    """Install the bundle's wheels this machine lacks into a private folder (``--no-index``: no
    network) and restart with it, the tree and the bundle's data and models in the environment."""
    if os.environ.get("KDBENCH_GPU_CHECK_READY"):
        return
    site = Path(tempfile.gettempdir()) / "kdbench-gpu-check-site"
    missing = _missing_wheels(bundle)
    if missing:
        print(f"installing {len(missing)} wheels from {bundle / 'wheels'}: {', '.join(w.name for w in missing)}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, missing)], check=True)
    cache = Path(tempfile.mkdtemp(prefix="kdbench-gpu-check-cache-"))
    env = {**os.environ, "KDBENCH_GPU_CHECK_READY": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "KDBENCH_DATA_DIR": str(bundle / "data"), "KDBENCH_GPU_MODELS": str(bundle / "models"),
           "KDBENCH_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    os.execve(sys.executable, [sys.executable, __file__, *argv], env)


class Summary:
    """Rows of (part, item, value); a failed part is a row too, and the exit status."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.failed: list[str] = []

    def add(self, part: str, item: str, value) -> None:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        self.rows.append((part, item, text))
        print(f"  {part:<22} {item:<58} {text}", flush=True)

    def part(self, name: str, fn, *args) -> None:
        print(f"\n== {name}", flush=True)
        start = time.perf_counter()
        try:
            fn(self, *args)
        except Exception as e:  # noqa: BLE001 — one part failing must not hide the others' results
            self.failed.append(name)
            self.add(name, "FAILED", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
        self.add(name, "wall time (s)", round(time.perf_counter() - start, 1))

    def table(self) -> str:
        width = max(len(r[1]) for r in self.rows)
        lines = [f"{'part':<22} {'item':<{width}} value", "-" * (34 + width)]
        lines += [f"{p:<22} {i:<{width}} {v}" for p, i, v in self.rows]
        return "\n".join(lines)


class Check:
    def __init__(self, bundle: Path, cpu: bool) -> None:
        import torch

        from kdbench import devices

        self.bundle, self.cpu = bundle, cpu
        self.device = devices.resolve("cpu" if cpu else "cuda")
        devices.configure(self.device)
        self.gpu = devices.is_cuda(self.device)
        self.work = Path(tempfile.mkdtemp(prefix="kdbench-gpu-check-"))
        self.torch = torch
        # real sizes on a GPU, tiny ones for the CPU dry run
        self.bert = ({"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
                     if not cpu else {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                                      "intermediate_size": 128})
        self.llama = ({"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
                       "head_dim": 64, "intermediate_size": 8192, "max_position_embeddings": 2048}
                      if not cpu else {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                       "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128})
        self.rows = {"train": 1000 if not cpu else 64, "eval": 500 if not cpu else 32,
                     "infer": TRAIN_ROWS if not cpu else 64}
        self.peak = None
        if self.gpu:
            from kdbench.backends.flops import device_peak

            self.peak = device_peak(self.device)

    # helpers ------------------------------------------------------------------------------------
    def sst2(self, split: str, rows: int):
        from kdbench.data import DatasetSpec, load_split

        data = load_split(DatasetSpec(*SST2, split), rows=rows)
        return list(data.rows["sentence"]), list(data.rows["label"])

    def random_model(self, name: str, head: str, folder: str | None = None, **config):
        from transformers import AutoConfig

        from kdbench.models.loading import AUTO_CLASSES, load_tokenizer, save_model

        self.torch.manual_seed(0)
        source = self.bundle / "models" / name
        model = AUTO_CLASSES[head].from_config(AutoConfig.from_pretrained(source, **config))
        tokenizer = load_tokenizer(str(source))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if folder is not None:
            save_model(model, tokenizer, self.work / folder)
        return model, tokenizer

    def sync(self) -> None:
        if self.gpu:
            self.torch.cuda.synchronize(self.device)

    def timed(self, fn) -> tuple[object, float, float | None]:
        """(result, seconds, peak GPU MiB) of one call."""
        if self.gpu:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats(self.device)
        self.sync()
        start = time.perf_counter()
        out = fn()
        self.sync()
        seconds = time.perf_counter() - start
        peak = self.torch.cuda.max_memory_allocated(self.device) / 2**20 if self.gpu else None
        return out, seconds, peak

    def mfu(self, flops: float, seconds: float) -> float | str:
        from kdbench.backends.flops import mfu

        return mfu(flops, seconds, self.peak[0]) if self.peak else "n/a (CPU)"

    def versus(self, s: Summary, part: str, what: str, unit: str, ours, plain, work: tuple[float, float]):
        """Time kdbench's call ``ours`` against the plain loop ``plain`` (``work`` units each, e.g.
        examples): rows for the rate and its ratio, MFU (FLOPs counted on a second call of each) and
        peak GPU memory. Returns both calls' results."""
        from kdbench.backends.flops import count_flops

        mine, t_ours, m_ours = self.timed(ours)
        theirs, t_theirs, m_theirs = self.timed(plain)
        rate_ours, rate_theirs = work[0] / t_ours, work[1] / t_theirs
        s.add(part, f"{what}: {unit}, kdbench / plain", f"{rate_ours:.4g} / {rate_theirs:.4g} (×{rate_ours / rate_theirs:.2f})")
        s.add(part, f"{what}: MFU kdbench / plain",
              f"{self.mfu(count_flops(ours), t_ours)} / {self.mfu(count_flops(plain), t_theirs)}")
        s.add("5 peak GPU memory", f"{what}: kdbench / plain (MiB)", f"{m_ours} / {m_theirs}")
        return mine, theirs

    # 1 ------------------------------------------------------------------------------------------
    def tests(self, s: Summary) -> None:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "tests/integration/backends/test_gpu.py", "-q", "-rs",
                               "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        tail = [line for line in proc.stdout.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        s.add("1 gpu tests", "pytest -m gpu tests/integration/backends/test_gpu.py", tail[0])
        if proc.returncode != 0 and not (self.cpu and "skipped" in tail[0]):
            print(proc.stdout[-4000:], proc.stderr[-2000:])
            raise RuntimeError(f"pytest exit {proc.returncode}")

    # 2 ------------------------------------------------------------------------------------------
    def train_and_eval(self, s: Summary) -> None:
        self.random_model("minilm", "classification", "teacher", num_labels=2)
        suite = self.work / "gpu_check.yaml"
        suite.write_text(json.dumps({
            "name": "gpu_check", "description": "kdbench gpu_check: random-init MiniLM-L6 teacher on an SST-2 slice",
            "tasks": ["sst2"], "device": str(self.device), "dtype": "bf16", "max_length": 64,
            "data": {"train_rows": self.rows["train"], "eval_rows": self.rows["eval"]},
            "teacher": {"model": str(self.work / "teacher"), "finetune": {"epochs": 2, "batch_size": 32, "lr": 1e-4}},
            "student": {"builder": "layer_selection", "layers": [0, 5]},
            "distill": {"epochs": 2, "batch_size": 32, "lr": 1e-4, "temperature": 2.0, "alpha": 0.5},
            "eval": {"batch_size": 64, "bootstrap_samples": 200},
        }))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "kdbench", "train-and-eval", "--suite", str(suite),
                               "--reports-dir", str(self.work / "reports"), "--leaderboard-dir", str(self.work / "lb")],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
        (record_path,) = (self.work / "reports").glob("*/report.json")
        record = json.loads(record_path.read_text())
        self.run_dir = record_path.parent
        env = record["environment"]
        s.add("2 train-and-eval", "CLI wall time (s)", round(time.perf_counter() - start, 1))
        s.add("2 train-and-eval", "environment: device / gpu / capability",
              f"{env['device']} / {env['gpu_name']} / {env['gpu_compute_capability']}")
        s.add("2 train-and-eval", "environment: CUDA driver API / driver / torch CUDA build",
              f"{env['cuda_driver_api']} / {env['gpu_driver_version']} / {env['torch_cuda_build']}")
        for role in ("teacher", "student", "baseline"):
            acc = record["results"]["sst2"][role]["accuracy"]["value"]
            e = record["efficiency"][role]
            s.add("2 train-and-eval", f"{role}: accuracy (random-init teacher) / ms per ex b1, b32",
                  f"{acc:.3f} / {e['latency_ms_b1']:.3f}, {e['latency_ms_b32']:.4f}")
            if self.gpu:
                s.add("2 train-and-eval", f"{role}: MFU b32 / peak GPU MiB", f"{e['mfu_b32']:.4f} / {e['peak_gpu_mem_mb']:.0f}")
        s.add("2 train-and-eval", "durations (s)", json.dumps({k: v for k, v in record["durations"]["sst2"].items()}))

    # 3 ------------------------------------------------------------------------------------------
    def agreement(self, s: Summary) -> None:
        import numpy as np

        from kdbench import devices
        from kdbench.backends.causal_lm import HFCausalLM
        from kdbench.backends.hf import HFClassifier
        from kdbench.models.cache import finetuned_dir
        from kdbench.models.loading import load_for_head, load_tokenizer

        texts, _ = self.sst2("validation", self.rows["eval"])
        cpu = devices.resolve("cpu")
        tolerance = {"fp32": 2e-3, "bf16": 3e-2}
        models = json.loads((self.run_dir / "report.json").read_text())["models"]
        # the run's fine-tuned teacher (in the kdbench cache) and its KD student
        folders = {"teacher": str(finetuned_dir(models["teacher"]["cache_key"])),
                   "student": str(self.run_dir / models["student"]["id"])}
        for role, folder in folders.items():
            tok = load_tokenizer(folder)
            for dtype in ("fp32", "bf16"):
                probs = [HFClassifier(load_for_head(folder, "classification", device=d), tok, dtype, 64, 64)
                         .predict_proba(texts) for d in (cpu, self.device)]
                diff = float(np.abs(probs[0] - probs[1]).max())
                same = float((probs[0].argmax(1) == probs[1].argmax(1)).mean())
                ok = "ok" if diff <= tolerance[dtype] else f"ABOVE {tolerance[dtype]}"
                s.add("3 GPU vs CPU", f"{role} {dtype}: max |Δp| (tolerance {tolerance[dtype]}) / same label",
                      f"{diff:.2e} {ok} / {same:.4f}")
                if diff > tolerance[dtype]:
                    raise RuntimeError(f"{role} {dtype}: GPU and CPU probabilities differ by {diff:.2e}")
        model, tok = self.random_model("smollm2", "causal_lm", num_hidden_layers=4 if not self.cpu else 2)
        lm_texts = [" ".join(texts[i:i + 8]) for i in range(0, 64, 8)]
        scores = [np.asarray(HFCausalLM(model.to(d), tok, "fp32", 8, 256).loglikelihood_rolling(lm_texts))
                  for d in (cpu, self.device)]
        rel = float(np.abs(scores[0] - scores[1]).max() / np.abs(scores[0]).max())
        s.add("3 GPU vs CPU", "causal LM fp32: max relative Δ log-likelihood (tolerance 2e-3)", f"{rel:.2e}")
        if rel > 2e-3:
            raise RuntimeError(f"causal LM log-likelihoods differ by {rel:.2e} (relative)")

    # 4 + 5 ----------------------------------------------------------------------------------------
    def throughput(self, s: Summary) -> None:
        self._bert(s)
        self._llama(s)

    def _bert(self, s: Summary) -> None:
        import numpy as np
        import torch
        import torch.nn.functional as F

        from kdbench.backends.batching import encode
        from kdbench.backends.hf import HFClassifier
        from kdbench.config import TrainConfig
        from kdbench.distill.trainer import label_objective, sequence_loss, train

        texts, labels = self.sst2("train", self.rows["infer"])
        model, tok = self.random_model("minilm", "classification", num_labels=2, **self.bert)
        model = model.to(self.device).eval()
        params = sum(p.numel() for p in model.parameters())
        tag = f"BERT-base-shaped ({params / 1e6:.0f}M)"
        batch = 128

        def kdbench_infer():
            return HFClassifier(model, tok, "bf16", 128, batch).logits(texts)

        def plain_infer():
            out = []
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16):
                for i in range(0, len(texts), batch):
                    enc = tok(texts[i:i + batch], padding=True, truncation=True, max_length=128,
                              return_tensors="pt").to(self.device)
                    out.append(model(**enc).logits.float().cpu())
            return torch.cat(out).numpy()

        kdbench_infer(), plain_infer()  # warm-up
        ours, theirs = self.versus(s, "4 inference", f"{tag} inference", "examples per s", kdbench_infer, plain_infer,
                                   (len(texts), len(texts)))
        s.add("4 inference", f"{tag}: max |Δ logit| kdbench vs plain (bf16, other padding)",
              float(np.abs(ours - theirs).max()))

        features = encode(tok, texts, None, 128)
        cfg = TrainConfig(epochs=1, batch_size=32, lr=5e-5, checkpoint_every=10**9)
        init = {k: v.clone() for k, v in model.state_dict().items()}

        def kdbench_train():
            model.load_state_dict(init)
            return train(model, tok, features, cfg, sequence_loss(label_objective(), np.asarray(labels)), seed=0,
                         dtype="bf16", device=self.device)

        def plain_train():
            model.load_state_dict(init)
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=5e-5, fused=self.gpu)
            order = np.random.default_rng(0).permutation(len(texts))
            y = torch.as_tensor(labels)
            for i in range(0, len(order), 32):
                idx = order[i:i + 32]
                enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=128,
                          return_tensors="pt").to(self.device)
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    logits = model(**enc).logits
                F.cross_entropy(logits.float(), y[idx].to(self.device)).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            model.eval()

        steps = -(-len(texts) // 32)
        self.versus(s, "4 training", f"{tag} training (batch 32, {steps} steps)", "steps per s", kdbench_train,
                    plain_train, (steps, steps))

    def _llama(self, s: Summary) -> None:
        import torch
        import torch.nn.functional as F

        from kdbench.backends import efficiency
        from kdbench.backends.causal_lm import HFCausalLM
        from kdbench.config import TrainConfig
        from kdbench.distill.recipes.causal_lm import encode_pairs, right_pad, token_loss
        from kdbench.distill.trainer import train

        sentences, _ = self.sst2("train", self.rows["infer"])
        texts = [" ".join(sentences[i:i + 16]) for i in range(0, len(sentences) - 15, 16)]  # ~350 tokens each
        model, tok = self.random_model("smollm2", "causal_lm", "llama", **self.llama)
        model = model.to(self.device).eval()
        params = sum(p.numel() for p in model.parameters())
        tag = f"Llama-shaped ({params / 1e9:.2f}B)"
        length, batch = 512, 16

        def kdbench_score():
            return HFCausalLM(model, tok, "bf16", batch, length).loglikelihood_rolling(texts)

        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

        def plain_score():
            out = []
            tok.padding_side = "right"
            rows = [[prefix] + tok(t, add_special_tokens=False)["input_ids"][:length] for t in texts]
            with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.bfloat16):
                for i in range(0, len(rows), batch):
                    enc = tok.pad({"input_ids": rows[i:i + batch]}, padding=True, return_tensors="pt").to(self.device)
                    ids, mask = enc["input_ids"], enc["attention_mask"]
                    logp = F.log_softmax(model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1]).logits.float(), -1)
                    picked = logp.gather(-1, ids[:, 1:, None])[..., 0] * mask[:, 1:]
                    out.extend(picked.sum(-1).tolist())
            return out

        kdbench_score(), plain_score()
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        ours_tokens, plain_tokens = sum(lengths), sum(min(n, length) for n in lengths)  # plain: cut at the window
        self.versus(s, "4 inference", f"{tag} scoring (windows of {length})", "tokens per s", kdbench_score,
                    plain_score, (ours_tokens, plain_tokens))

        features, masks = encode_pairs(tok, [("", t) for t in texts[:64]], 256)
        cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-5, checkpoint_every=10**9)
        pad = tok.pad_token_id

        def kdbench_train():
            return train(model, tok, features, cfg, token_loss(masks), seed=0, dtype="bf16",
                         collate_fn=right_pad(pad), device=self.device)

        def plain_train():
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=self.gpu)
            collate = right_pad(pad)
            for i in range(0, len(features), 8):
                b = {k: v.to(self.device) for k, v in collate(features[i:i + 8]).items()}
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    logits = model(**b).logits[:, :-1]
                keep = b["attention_mask"][:, 1:].bool()
                F.cross_entropy(logits[keep].float(), b["input_ids"][:, 1:][keep]).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            model.eval()

        steps = -(-len(features) // 8)
        self.versus(s, "4 training", f"{tag} training (batch 8 × ≤256 tokens, {steps} steps)", "steps per s",
                    kdbench_train, plain_train, (steps, steps))

        model = None  # the closures above share this variable: drop the model so its memory can go
        if self.gpu:
            torch.cuda.empty_cache()
        eff = efficiency.measure(str(self.work / "llama"), texts[:64], None, dtype="bf16", max_length=256,
                                 head="causal_lm", device=self.device)
        keys = ["latency_ms_b1", "latency_ms_b32", "throughput_eps", "mfu_b1", "mfu_b32", "ttft_ms",
                "decode_tokens_per_s_b1", "decode_tokens_per_s_b32", "peak_gpu_mem_mb", "peak_source"]
        s.add("4 efficiency record", f"{tag}: kdbench's efficiency figures ({eff['timing']})",
              ", ".join(f"{k}={eff[k]:.4g}" if isinstance(eff.get(k), float) else f"{k}={eff.get(k)}" for k in keys))


def run(bundle: Path, cpu: bool, skip: set[str]) -> int:
    check = Check(bundle, cpu)
    s = Summary()
    import torch

    s.add("0 machine", "device / torch / CUDA build",
          f"{check.device} {torch.cuda.get_device_name(check.device) if check.gpu else ''} / {torch.__version__} / "
          f"{torch.version.cuda}")
    if check.peak:
        s.add("0 machine", "dense bf16 peak (TFLOP/s) / source", f"{check.peak[0]:.0f} / {check.peak[1]}")
    parts = [("1 gpu tests", check.tests), ("2 train-and-eval", check.train_and_eval), ("3 GPU vs CPU", check.agreement),
             ("4 throughput, MFU", check.throughput)]
    for name, fn in parts:
        if name.split()[0] not in skip:
            s.part(name, fn)
    table = s.table()
    print("\n" + table)
    out = Path(os.environ.get("OUT") or bundle)
    (out / "gpu_check_summary.txt").write_text(table + "\n")
    (out / "gpu_check_summary.json").write_text(json.dumps({"rows": s.rows, "failed": s.failed}, indent=1))
    shutil.rmtree(check.work, ignore_errors=True)
    return 1 if s.failed else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="build the bundle here (wheels, SST-2 slice, model configs)")
    p.add_argument("--bundle", type=Path, default=BUNDLE)
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (wheels are for it)")
    r = sub.add_parser("run", help="run the check (on the GPU machine)")
    r.add_argument("--bundle", type=Path, default=BUNDLE)
    r.add_argument("--cpu", action="store_true", help="dry run on the CPU at tiny sizes")
    r.add_argument("--skip", default="", help="parts to leave out, e.g. 1,4")
    args = ap.parse_args()
    if args.command == "prepare":
        prepare(args.bundle.resolve(), args.python_version)
        return
    bundle = args.bundle.resolve()
    if not (bundle / "models").is_dir():
        raise SystemExit(f"no bundle at {bundle}: run `python benchmarks/gpu_check.py prepare` where the data mirror "
                         "and the HF cache are, and carry the folder")
    bootstrap(bundle, sys.argv[1:])
    sys.exit(run(bundle, args.cpu, {x.strip() for x in args.skip.split(",") if x.strip()}))


if __name__ == "__main__":
    main()
