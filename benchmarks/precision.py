"""bf16 autocast vs fp32 for the prior's network: training step and forward pass, same run.

For each network preset it times, interleaved so that both precisions see the same machine
load, ``--repeats`` rounds of (a) one training step (forward, loss, backward, AdamW) and (b) one
forward pass of a scoring batch, and reports the median time per precision and the ratio
fp32 / bf16 (above 1: bf16 is faster). It also reports the relative difference of the bf16
forward output to fp32 and whether the CPU has AMX (``auto`` picks bf16 only then).

Example (the reported run, one torch thread)::

    .venv/bin/python benchmarks/precision.py --networks tiny small --image-size 28 --threads 1 \\
        --out benchmarks/results/precision_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["tiny", "small"])
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--score-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from napari_klip.core.precision import autocast, cpu_has_amx_bf16
    from napari_klip.core.prior import create_prior

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    rows = []
    for network in args.networks:
        unet = create_prior(args.image_size, 1, network, (0.0, 1.0), seed=0).unet.to(device)
        optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
        train_x = torch.randn((args.train_batch, 1, args.image_size, args.image_size), generator=generator).to(device)
        score_x = torch.randn((args.score_batch, 1, args.image_size, args.image_size), generator=generator).to(device)
        steps = torch.randint(0, 1000, (args.train_batch,), generator=generator).to(device)
        times: dict[str, dict[str, list[float]]] = {p: {"train": [], "forward": []} for p in ("fp32", "bf16")}

        def train_step(precision: str) -> None:
            unet.train()
            with autocast(precision, device):
                prediction = unet(train_x, steps).sample
            loss = torch.nn.functional.mse_loss(prediction.float(), train_x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def forward(precision: str) -> torch.Tensor:
            unet.eval()
            with torch.no_grad(), autocast(precision, device):
                return unet(score_x, 500).sample.float()

        for precision in ("fp32", "bf16"):  # warm-up (oneDNN primitive creation)
            train_step(precision)
            forward(precision)
        for _ in range(args.repeats):
            for precision in ("fp32", "bf16"):
                start = time.perf_counter()
                train_step(precision)
                times[precision]["train"].append(time.perf_counter() - start)
                start = time.perf_counter()
                forward(precision)
                times[precision]["forward"].append(time.perf_counter() - start)
        reference, low = forward("fp32"), forward("bf16")
        row = {
            "network": network,
            "parameters": sum(p.numel() for p in unet.parameters()),
            **{f"{kind}_s_{p}": float(np.median(times[p][kind])) for p in ("fp32", "bf16") for kind in ("train", "forward")},
            "bf16_forward_relative_difference": float((low - reference).norm() / reference.norm()),
        }
        row["train_speedup_bf16"] = row["train_s_fp32"] / row["train_s_bf16"]
        row["forward_speedup_bf16"] = row["forward_s_fp32"] / row["forward_s_bf16"]
        rows.append(row)
        print(f"{network}: train {row['train_s_fp32']:.3f} s fp32 / {row['train_s_bf16']:.3f} s bf16 = {row['train_speedup_bf16']:.2f}x; "
              f"forward {row['forward_s_fp32']:.3f} / {row['forward_s_bf16']:.3f} = {row['forward_speedup_bf16']:.2f}x; "
              f"bf16 output differs by {row['bf16_forward_relative_difference']:.2%}", flush=True)
    result = {
        "hardware": f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} thread(s)" if device.type == "cpu" else str(device),
        "cpu_amx_bf16": cpu_has_amx_bf16(),
        "image_size": args.image_size, "train_batch": args.train_batch, "score_batch": args.score_batch, "repeats": args.repeats,
        "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
