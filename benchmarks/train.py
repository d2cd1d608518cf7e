"""Training benchmark: seconds per epoch, per full evaluation, graph setup, and peak RSS.

Each (shape, variant) runs in a fresh process so peak RSS is its own. Shapes: synthetic Amazon
Baby and Clothing (4096-d image, 384-d text features) and the real ml-1m in ../shared/data.

    python benchmarks/train.py                     # all shapes, vanilla and DAMPS, 2 epochs
    python benchmarks/train.py --shapes baby --epochs 3

The official implementation measured on this machine kind (2 cores, torch 2.13 CPU, synthetic
Baby shape, D 64, batch 2048, n_ui_layers 2, n_layers 1, knn_k 10, cl_loss 0.01) is the
reference below; the targets are half its time and 0.8x its peak memory at Baby shape.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OFFICIAL_BABY = {"vanilla": {"epoch": 22.95, "eval": 3.0}, "damps": {"epoch": 25.4, "eval": 3.3}}
OFFICIAL_BABY_SETUP_S = 16.5
OFFICIAL_BABY_RSS_GIB = 1.6
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def measure(shape: str, variant: str, epochs: int, device_name: str) -> dict[str, float]:
    import torch

    from spectune.datasets.cache import build_graphs
    from spectune.datasets.mmrec import load_dataset
    from spectune.datasets.synthetic import BABY, CLOTHING, make_synthetic
    from spectune.study.build import build_model
    from spectune.study.config import build_config
    from spectune.study.trainer import Trainer

    torch.set_num_threads(2)
    started = time.perf_counter()
    if shape == "ml-1m":
        dataset = load_dataset("ml-1m", SHARED_DATA)
    else:
        dataset = make_synthetic({"baby": BABY, "clothing": CLOTHING}[shape], seed=0)
    loaded = time.perf_counter()
    graphs = build_graphs(dataset, 10, None)
    setup_done = time.perf_counter()

    config = build_config(
        {"dataset": dataset.name}, {"use_damps": variant == "damps", "epochs": epochs}
    )
    torch.manual_seed(0)
    device = torch.device(device_name)
    trainer = Trainer(config, dataset, build_model(config, dataset, graphs), device)
    epoch_seconds, eval_seconds = [], []
    for epoch in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch(epoch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        middle = time.perf_counter()
        metrics = trainer.evaluate(trainer.valid_evaluator)
        epoch_seconds.append(middle - start)
        eval_seconds.append(time.perf_counter() - middle)
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "read_s": loaded - started,
        "graphs_s": setup_done - loaded,
        # the first epoch pays one-off allocations; report the rest when there are several
        "epoch_s": min(epoch_seconds[1:] or epoch_seconds),
        "eval_s": min(eval_seconds),
        "peak_rss_gib": rss_kib / 2**20,
        "valid_recall@20": metrics["recall@20"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", default="baby,clothing,ml-1m")
    parser.add_argument("--variants", default="vanilla,damps")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:0)")
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.epochs, args.device)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    print(
        f"{'shape':9s} {'variant':8s} {'read s':>7s} {'graphs s':>8s} {'epoch s':>8s} "
        f"{'eval s':>7s} {'peak GiB':>8s} {'R@20':>7s}  vs official (Baby)"
    )
    for shape in args.shapes.split(","):
        for variant in args.variants.split(","):
            command = [
                sys.executable,
                __file__,
                "--one",
                shape,
                variant,
                "--epochs",
                str(args.epochs),
                "--device",
                args.device,
            ]
            output = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            row = json.loads(output.stdout.strip().splitlines()[-1])
            versus = ""
            if shape == "baby":
                official = OFFICIAL_BABY[variant]
                versus = (
                    f"epoch {row['epoch_s'] / official['epoch']:.2f}x, "
                    f"eval {row['eval_s'] / official['eval']:.2f}x, "
                    f"setup {(row['read_s'] + row['graphs_s']) / OFFICIAL_BABY_SETUP_S:.2f}x, "
                    f"rss {row['peak_rss_gib'] / OFFICIAL_BABY_RSS_GIB:.2f}x"
                )
            print(
                f"{shape:9s} {variant:8s} {row['read_s']:7.2f} {row['graphs_s']:8.2f} "
                f"{row['epoch_s']:8.2f} {row['eval_s']:7.2f} {row['peak_rss_gib']:8.2f} "
                f"{row['valid_recall@20']:7.4f}  {versus}",
                flush=True,
            )


if __name__ == "__main__":
    main()
