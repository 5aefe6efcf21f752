"""Mixed precision with MTLBackward: bfloat16 autocast on the CPU; on a CUDA GPU float16 with a
GradScaler (the engine unscales the per-task gradients before aggregation, and a step whose
gradients overflow is left to the scaler, which skips it and lowers the scale).

    python examples/amp.py
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

import mtlkit

device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.float16 if device == "cuda" else torch.bfloat16
torch.manual_seed(0)
trunk = nn.Sequential(nn.Linear(32, 256), nn.GELU(), nn.Linear(256, 128), nn.GELU()).to(device)
heads = nn.ModuleList([nn.Linear(128, 1) for _ in range(3)]).to(device)
optimizer = torch.optim.AdamW([*trunk.parameters(), *heads.parameters()], lr=1e-3)
scaler = torch.amp.GradScaler(device) if dtype == torch.float16 else None
mtl = mtlkit.MTLBackward(trunk, aggregator="mgda", optimizer=optimizer, scaler=scaler)

w_true = torch.randn(3, 32, device=device)
for step in range(200):
    x = torch.randn(64, 32, device=device)
    with torch.autocast(device, dtype=dtype):
        z = trunk(x)
        losses = [F.mse_loss(h(z).squeeze(1).float(), x @ w_true[k]) for k, h in enumerate(heads)]
    optimizer.zero_grad()
    report = mtl.backward(losses)
    if scaler is not None:
        scaler.step(optimizer)   # the engine wrote scaled gradients for the scaler to unscale
        scaler.update()
    elif not report.skipped:
        optimizer.step()
    if step % 50 == 0:
        print(f"step {step} ({dtype}): losses {[round(v, 4) for v in report.losses.values()]}")
print("final losses", {k: round(v, 4) for k, v in report.losses.items()})
