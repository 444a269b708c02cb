"""Torch eager vs every compiled variant of a fine-tuned MiniLM classifier, on
the same inputs in one run, batch 1 and 32, as ratios.

    .venv/bin/python bench/variants.py [--rows 1000] [--seq 64] [--runs 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()

    import numpy as np
    import torch

    from runners import compile as C
    from runners.families import text_classifier as tc
    from runners.splits import stratified_split
    from runners.synthetic_text import support_tickets
    from runners.testing import minilm_dir

    work = Path(tempfile.mkdtemp(prefix="bench-variants-"))
    rows = support_tickets(args.rows, seed=7)
    texts, labels = [t for t, _ in rows], [label for _, label in rows]
    fitted = tc.fit(minilm_dir(), texts, labels, work / "model", tc.FitParams(epochs=60))
    names = fitted.labels
    targets = [names.index(label) for label in labels]
    _, held = stratified_split(targets, 0.2, 0)
    results = C.compile_version(
        family="text-classifier",
        model_dir=work / "model",
        work=work / "variants",
        eval_inputs=C.EvalInputs(texts=[texts[i] for i in held], targets=[targets[i] for i in held]),
        manifest_base={},
        specs=C.SPECS,
    )
    print(
        f"fine-tuned MiniLM on {args.rows} tickets: held-out macro precision {fitted.report.macro_precision:.4f}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {C.hardware_fingerprint()}\n"
    )

    module, _ = C._torch_module("text-classifier", work / "model")

    def feed(batch: int) -> dict[str, np.ndarray]:
        ids = np.full((batch, args.seq), 1037, dtype=np.int64)
        ids[:, 0], ids[:, -1] = 101, 102
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    def time_it(fn, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
        for _ in range(5):
            fn()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return float(np.percentile(times, 50)), float(np.percentile(times, 95))

    eager = {}
    for batch in (1, 32):
        inputs = [torch.from_numpy(v) for v in feed(batch).values()]
        with torch.inference_mode():
            eager[batch] = time_it(lambda inputs=inputs: module(*inputs), args.runs if batch == 1 else args.runs // 3)
    print(
        f"{'variant':22s} {'status':9s} {'size MB':>8s} {'top-1':>7s} {'max|Δ|':>9s}"
        f" {'b1 p50 ms':>10s} {'speed-up':>9s} {'b32 p50 ms':>11s} {'speed-up':>9s}"
    )
    print(
        f"{'torch eager':22s} {'':9s} {'':>8s} {'':>7s} {'':>9s} {eager[1][0]:10.2f} {1.0:8.2f}x {eager[32][0]:11.2f} {1.0:8.2f}x"
    )
    for r in results:
        if r.status in ("skipped", "failed"):
            print(f"{r.spec.name:22s} {r.status:9s} {r.reason}")
            continue
        session = C._session(work / "variants" / f"{r.spec.name}.onnx")
        lat = {}
        for batch in (1, 32):
            f = feed(batch)
            lat[batch] = time_it(lambda f=f, s=session: s.run(None, f), args.runs if batch == 1 else args.runs // 3)
        p = r.parity
        print(
            f"{r.spec.name:22s} {r.status:9s} {r.model_size / 1e6:8.1f} {p.top1_agreement:7.2%} {p.max_abs_diff:9.2e}"  # type: ignore[union-attr]
            f" {lat[1][0]:10.2f} {eager[1][0] / lat[1][0]:8.2f}x {lat[32][0]:11.2f} {eager[32][0] / lat[32][0]:8.2f}x"
        )
    print("\ntarget: best int8 >= 3x torch eager at batch 1, >= 2x at batch 32, top-1 agreement >= 99%")


if __name__ == "__main__":
    main()
