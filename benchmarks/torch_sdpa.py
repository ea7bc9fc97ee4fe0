#!/usr/bin/env python3
"""torch scaled_dot_product_attention baselines for `monarch-attn bench` (FA2 = FLASH_ATTENTION,
cuDNN = CUDNN_ATTENTION backends).

  torch_sdpa.py probe                 -> {"torch", "cuda", "device", "cudnn"}
  torch_sdpa.py bench SPEC            -> timings of each shape x backend
  torch_sdpa.py run SPEC              -> outputs on given inputs (for --check)

SPEC is a JSON string or @file.
bench: {"shapes": [{"B","H","Nq","Nk","D","dtype"[,"rotate"]}], "backends": ["flash","cudnn"],
        "warmup": 10, "repeats": 50, "rotate": 3, "seed": 0}
  Times one SDPA call per iteration with torch.cuda.Event pairs after `warmup` calls, rotating over
  `rotate` input sets (each larger than L2 at the preset shapes, so L2 is cold), and reports the
  median / p10 / p90 / min in ms. Inputs: standard normal, [B, H, N, D] contiguous, scale 1/sqrt(D).
run:   {"B","H","Nq","Nk","D","dtype","q","k","v","out_prefix","backends": [...]}
  q: raw little-endian float32 [B][Nq][H][D] (BSHD), k, v: [B][Nk][H][D]. Inputs are cast to dtype on
  the GPU; writes out_prefix + ".<backend>.f32" (BSHD float32) for each backend and for "math", the
  float32 math backend on the dtype-rounded inputs (the reference).
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def load_spec(arg):
    if arg.startswith("@"):
        with open(arg[1:]) as f:
            return json.load(f)
    return json.loads(arg)


def percentile(values, p):
    s = sorted(values)
    x = p / 100 * (len(s) - 1)
    lo = int(x)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (x - lo)


def probe():
    out = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "device": None, "cudnn": None}
    if out["cuda"]:
        out["device"] = torch.cuda.get_device_name(0)
        out["cudnn"] = torch.backends.cudnn.version()
    return out


def sdpa(backend, q, k, v):
    with sdpa_kernel(BACKENDS[backend]):
        return F.scaled_dot_product_attention(q, k, v)


def time_one(shape, backend, warmup, repeats, rotate, seed):
    B, H, Nq, Nk, D = (shape[x] for x in ("B", "H", "Nq", "Nk", "D"))
    dtype = DTYPES[shape["dtype"]]
    gen = torch.Generator(device="cuda").manual_seed(seed)
    sets = [
        tuple(torch.randn(B, H, n, D, device="cuda", dtype=dtype, generator=gen) for n in (Nq, Nk, Nk))
        for _ in range(max(1, rotate))
    ]
    try:
        for i in range(warmup):
            sdpa(backend, *sets[i % len(sets)])
        torch.cuda.synchronize()
        events = []
        for i in range(repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            sdpa(backend, *sets[i % len(sets)])
            e.record()
            events.append((s, e))
        torch.cuda.synchronize()
    except RuntimeError as err:  # backend not available for this shape / dtype / GPU
        return {"ok": False, "error": str(err).split("\n")[0][:300]}
    finally:
        del sets
    times = [s.elapsed_time(e) for s, e in events]
    summary = {"median": percentile(times, 50), "p10": percentile(times, 10), "p90": percentile(times, 90),
               "min": min(times), "n": len(times)}
    return {"ok": True, "ms": summary, "times": times}


def bench(spec):
    results = []
    for shape in spec["shapes"]:
        for backend in spec.get("backends", ["flash", "cudnn"]):
            rotate = shape.get("rotate", spec.get("rotate", 3))  # a shape may carry its own
            r = time_one(shape, backend, spec.get("warmup", 10), spec.get("repeats", 50), rotate, spec.get("seed", 0))
            r.update({"shape": shape, "backend": backend})
            results.append(r)
            torch.cuda.empty_cache()
    return {**probe(), "results": results}


def write_f32(t, path):
    """Raw little-endian float32 bytes (numpy when present; the check shapes are small either way)."""
    try:
        t.numpy().tofile(path)
    except (ImportError, RuntimeError):
        with open(path, "wb") as f:
            f.write(bytes(t.view(torch.uint8).tolist()))


def run(spec):
    B, H, Nq, Nk, D = (spec[x] for x in ("B", "H", "Nq", "Nk", "D"))
    dtype = DTYPES[spec["dtype"]]

    def load(path, n):
        t = torch.from_file(path, size=B * n * H * D, dtype=torch.float32).view(B, n, H, D)
        return t.to("cuda").transpose(1, 2).to(dtype)  # [B, H, N, D]

    q, k, v = load(spec["q"], Nq), load(spec["k"], Nk), load(spec["v"], Nk)
    outputs = {}
    errors = {}
    for backend in spec.get("backends", ["flash", "cudnn"]) + ["math"]:
        try:
            if backend == "math":
                o = sdpa("math", q.float(), k.float(), v.float())
            else:
                o = sdpa(backend, q, k, v)
        except RuntimeError as err:
            errors[backend] = str(err).split("\n")[0][:300]
            continue
        path = f'{spec["out_prefix"]}.{backend}.f32'
        write_f32(o.float().transpose(1, 2).contiguous().cpu(), path)
        outputs[backend] = path
    return {**probe(), "outputs": outputs, "errors": errors}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ("probe", "bench", "run"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mode = sys.argv[1]
    if mode == "probe":
        result = probe()
    elif not torch.cuda.is_available():
        result = {**probe(), "error": "torch sees no CUDA device"}
    else:
        spec = load_spec(sys.argv[2])
        result = bench(spec) if mode == "bench" else run(spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
