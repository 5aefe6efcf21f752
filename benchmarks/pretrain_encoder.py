#!/usr/bin/env python3
"""Pre-train a shared encoder on a source task and save its ``state_dict`` for fine-tuning.

The sparse-training paper (arXiv 2411.18615) studies *fine-tuning a pre-trained encoder*
multi-task. Offline, the source task here is 10-class Fashion-MNIST classification on the full
official training set (60000 images; Debian's ``dataset-fashion-mnist`` puts the IDX files in
/usr/share/datasets/fashion-mnist), a different domain from the Multi-MNIST digits the encoder
is then fine-tuned on (``mtlkit train --backbone-weights FILE``). The encoder is any registered
backbone; a linear classifier on its features is trained with it and thrown away.

Plain single-task training (Adam, cross-entropy, one thread); it prints and saves the t10k
accuracy next to the weights (``FILE.json``) so the report can quote the source task's quality.
Re-running with an existing FILE does nothing (the sparse-vs-dense protocol reuses it).

    python benchmarks/pretrain_encoder.py --backbone small_resnet \\
        --backbone-param stem_stride=2 --epochs 2 --out runs/pretrained/small_resnet_fmnist.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


def load_fashion(root: str) -> tuple[torch.Tensor, ...]:
    """Official train and t10k splits, images in [0, 1] as [N, 1, 28, 28] (the overlay
    benchmarks' input scale, so the pre-trained filters see the same value range)."""
    from mtlkit_plugins.benchmarks._idx import read_pair
    from mtlkit_plugins.benchmarks.multi_fashion import FASHION_SOURCE

    out = []
    for images, labels in (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                           ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")):
        x, y = read_pair(Path(root), images, labels, FASHION_SOURCE)
        out += [torch.tensor(x).float().div_(255.0).unsqueeze(1), torch.tensor(y)]  # copies
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    from mtlkit.commands._params import parse_params
    from mtlkit.plugins import get_plugin_manager

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", default="small_resnet")
    p.add_argument("--backbone-param", action="append", metavar="KEY=VALUE")
    p.add_argument("--data-root", default=DEBIAN_FASHION, help="Fashion-MNIST IDX folder")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n-train", type=int, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="where to save the encoder state_dict (.pt)")
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.is_file():
        print(f"{out} exists; delete it to pre-train again")
        return 0
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    params = parse_params(a.backbone_param, "--backbone-param")
    encoder = get_plugin_manager().create("backbone", a.backbone, **params)
    head = nn.Linear(encoder.out_features, 10)
    x_tr, y_tr, x_te, y_te = load_fashion(a.data_root)
    if a.n_train:
        x_tr, y_tr = x_tr[:a.n_train], y_tr[:a.n_train]
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=a.lr)
    gen = torch.Generator().manual_seed(a.seed)
    start = time.perf_counter()
    for epoch in range(a.epochs):
        encoder.train()
        order = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(order), a.batch_size):
            idx = order[i:i + a.batch_size]
            loss = F.cross_entropy(head(encoder(x_tr[idx])), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        print(f"epoch {epoch + 1}/{a.epochs}: last batch loss {loss.item():.3f}", flush=True)
    encoder.eval()
    with torch.no_grad():
        correct = sum(int((head(encoder(x_te[i:i + 1000])).argmax(1) == y_te[i:i + 1000]).sum())
                      for i in range(0, len(x_te), 1000))
    acc = correct / len(x_te)
    wall = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(encoder.state_dict(), out)
    info = {"backbone": a.backbone, "backbone_params": params, "source": "Fashion-MNIST",
            "n_train": len(x_tr), "epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr,
            "seed": a.seed, "test_accuracy": acc, "wall_s": wall,
            "parameters": sum(q.numel() for q in encoder.parameters())}
    Path(str(out) + ".json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"Fashion-MNIST t10k accuracy {acc:.4f} after {wall:.0f} s; saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
