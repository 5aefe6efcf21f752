"""The Gramian of the task Jacobian without the Jacobian: layer-wise Gram forms.

Gramian-based methods (MGDA, UPGrad, IMTL-G, CAGrad, ...) need only ``G = J J^T`` (``[K, K]``)
and then ``d = w^T J``. Forming ``J`` costs K full backward passes plus a ``K x n`` copy; this
module never forms it, nor any task's full weight gradient on the layers it understands.

**Formula.** For a Linear layer ``y = a W^T + b`` (``a``: the layer input, ``[N, in]``, rows =
batch positions), task ``k``'s weight gradient is ``dW_k = delta_k^T a`` with ``delta_k =
dL_k / dy`` (``[N, out]``), so

    <dW_k, dW_l> = sum((a a^T) * (delta_k delta_l^T)) = <delta_k, (a a^T) delta_l>

and the bias adds ``<delta_k.sum(0), delta_l.sum(0)>``. With ``A = a a^T`` (``[N, N]``, once per
step) the layer's Gramian costs ``N^2 in + K N^2 out + K^2 N out`` multiply-adds ("Gram
route") against ``K N out in + K^2 out in`` for the explicit ``dW_k`` ("explicit route", done
over column pieces of ``a`` so no ``[K, out, in]`` tensor exists); each layer takes the cheaper
one (the Gram route wins when ``N`` is below about ``in``). Conv2d is the same with ``a`` the
unfolded input and one row per (sample, output position); there ``N = B * positions`` is large,
so it takes the explicit route. This is Algorithm 3 of Quinton & Rey, *Jacobian Descent for
Multi-Objective Optimization* (arXiv:2406.16232; TorchJD's ``autogram``), specialised: TorchJD
back-propagates a (squashed) Jacobian through each module, we use the closed form of the
layer's per-sample gradient, which is also the "ghost norm" trick of Goodfellow (2015) and
Li et al. (2022) applied to pairs of tasks instead of pairs of samples.

**The step.** Forward hooks keep each handled layer's input and output. ``gramian(losses)``
runs one ``autograd.grad`` per task w.r.t. the layer *outputs* (plus that task's head and any
parameter not handled here), so the backward skips every handled layer's weight-gradient
product (and the first layer's input gradient): each pass costs about a third of a full one on
an MLP. The update ``d = sum_k w_k g_k`` then needs no further backward: per layer
``dW = (sum_k w_k delta_k)^T a`` (one product), written straight to ``.grad``.

**Fallbacks, exact.** Parameters of other modules (BatchNorm affine, embeddings, custom
layers), layers whose output is modified in place afterwards, and convolutions with groups or
non-zero padding modes get their explicit per-task gradients from autograd, parameter by
parameter. Masked (sparse-training) weights take the explicit route restricted to the
trainable coordinates. Heads receive their own task's unweighted gradient, as in every mtlkit
gradient path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from mtlkit.aggregation import gramian_matrix
from mtlkit.errors import ConfigError

Route = Literal["gram", "explicit"]
#: elements of one explicit-route piece ``[K, out, piece]``: bounds memory, not FLOPs
PIECE_ELEMENTS = 1 << 22


def route_costs(N: int, fan_in: int, out: int, K: int) -> dict[Route, int]:
    """Multiply-adds of the two ways to get a layer's ``[K, K]`` weight Gramian (see module doc)."""
    return {"gram": N * N * fan_in + K * N * N * out + K * K * N * out,
            "explicit": K * N * out * fan_in + K * K * out * fan_in}


@attrs.define(eq=False)
class _Layer:
    """One handled module: its parameters, the rows it saw this step and its task gradients."""

    module: nn.Module
    weight: str  # parameter names as the caller named them
    bias: str | None
    inputs: list[torch.Tensor] = attrs.field(factory=list)
    outputs: list[torch.Tensor] = attrs.field(factory=list)
    versions: list[int] = attrs.field(factory=list)
    rows: torch.Tensor | None = None  # a: [N, fan_in]
    deltas: torch.Tensor | None = None  # [K, N, out]
    route: Route | None = None


class AutogramEngine:
    """Computes ``G = J J^T`` over the shared parameters layer by layer, then writes ``w^T J``.

    :param model: module whose ``nn.Linear`` / ``nn.Conv2d`` submodules are searched for
        shared layers (a module is handled when all its parameters are shared ones).
    :param shared: ``(name, parameter)`` pairs: the columns of ``J``.
    :param masks: optional ``{name: bool tensor}`` (``True`` = trainable), e.g.
        ``ParameterMask.masks``; ``G`` and ``d`` cover trainable coordinates only, frozen ones
        get exactly 0 and fully frozen parameters ``grad = None``.
    :param route: force ``"gram"`` or ``"explicit"`` for every unmasked layer (tests,
        benchmarks); default: the cheaper by :func:`route_costs`.

    Use: build once, then per step run the forward, ``G = engine.gramian(losses, task_params)``
    (``losses``: K scalars, best as separate tensors, see :meth:`gramian`), choose ``w`` and call
    ``engine.write_combination(w)``. ``close()`` removes the hooks.
    """

    def __init__(self, model: nn.Module, shared: Sequence[tuple[str, nn.Parameter]],
                 masks: Mapping[str, torch.Tensor] | None = None,
                 route: Route | None = None) -> None:
        if route not in (None, "gram", "explicit"):
            raise ConfigError(f"invalid route={route!r}: must be 'gram', 'explicit' or None")
        self.route = route
        self.params = dict(shared)
        self.masks: dict[str, torch.Tensor] = {}
        for name, m in (masks or {}).items():
            if name in self.params and not bool(m.all()):
                self.masks[name] = m.to(torch.bool)
        # fully frozen parameters are not differentiated at all
        self.frozen = {n for n, m in self.masks.items() if not bool(m.any())}
        by_id = {id(p): n for n, p in self.params.items()}
        self.layers: list[_Layer] = []
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._live: list[_Layer] = []
        handled: set[str] = set()
        for module in model.modules():
            if not self._supported(module):
                continue
            names = [by_id.get(id(p)) for p in module.parameters(recurse=False)]
            if not names or None in names or any(n in self.frozen for n in names):
                continue  # a head's layer, or partly frozen out: fallback handles it
            bias = by_id[id(module.bias)] if module.bias is not None else None
            layer = _Layer(module, by_id[id(module.weight)], bias)
            self._handles.append(module.register_forward_hook(self._hook(layer)))
            self.layers.append(layer)
            handled.update(n for n in names if n is not None)
        # a new forward of the model starts a new step: forget activations of an unfinished one
        # (an eval pass under grad mode, an abandoned step) instead of accumulating them
        self._handles.append(model.register_forward_pre_hook(lambda *_: self.reset()))
        self.fallback = [n for n in self.params if n not in handled and n not in self.frozen]
        self._fallback_grads: dict[str, torch.Tensor] = {}
        self._buffers: dict[int, torch.Tensor] = {}

    @staticmethod
    def _supported(module: nn.Module) -> bool:
        if type(module) is nn.Linear:
            return True
        return (type(module) is nn.Conv2d and module.groups == 1
                and module.padding_mode == "zeros" and not isinstance(module.padding, str))

    def _hook(self, layer: _Layer):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if torch.is_grad_enabled() and isinstance(output, torch.Tensor) \
                    and output.requires_grad:
                layer.inputs.append(args[0].detach())
                layer.outputs.append(output)
                layer.versions.append(output._version)
        return hook

    def reset(self) -> None:
        """Forget the activations recorded since the last :meth:`gramian` (e.g. after eval)."""
        for layer in self.layers:
            layer.inputs.clear()
            layer.outputs.clear()
            layer.versions.clear()

    def close(self) -> None:
        """Remove the forward hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.reset()

    # -- the Gramian --------------------------------------------------------------------------

    def gramian(self, losses: torch.Tensor | Sequence[torch.Tensor],
                task_params: Sequence[Sequence[nn.Parameter]] | None = None,
                retain_graph: bool = False) -> torch.Tensor:
        """``[K, K]`` Gramian of the shared-parameter Jacobian of ``losses``.

        Pass the losses as K separate scalars: indexing a stacked ``[K]`` tensor makes each
        task's backward traverse every head with zero gradients (autograd does not prune
        zeros), which costs K times the heads' backward. ``task_params[k]`` (task k's head)
        receives ``grad L_k`` in ``.grad``.
        """
        K = len(losses)
        live = [lay for lay in self.layers if lay.outputs]
        for lay in live:  # an output changed in place (ReLU(inplace=True)) is not dL/dy
            if any(o._version != v for o, v in zip(lay.outputs, lay.versions)):
                raise ConfigError(
                    f"autogram: the output of {lay.module!r} was modified in place after the "
                    "layer (e.g. ReLU(inplace=True)); use out-of-place activations")
        fallback = [self.params[n] for n in self.fallback]
        outputs = [o for lay in live for o in lay.outputs]
        # task gradients go straight into buffers reused across steps: a fresh [K, B, out]
        # stack per step costs page faults comparable to the Gram products themselves
        targets = [*outputs, *fallback]
        bufs = [self._buffer(i, K, t) for i, t in enumerate(targets)]
        for k in range(K):
            own = list(task_params[k]) if task_params is not None else []
            grads = torch.autograd.grad(losses[k], [*targets, *own],
                                        retain_graph=retain_graph or k < K - 1,
                                        allow_unused=True, materialize_grads=True)
            for buf, g in zip(bufs, grads):
                buf[k].copy_(g)
            for p, g in zip(own, grads[len(targets):]):
                p.grad = g
            del grads
        deltas, fb = bufs[:len(outputs)], bufs[len(outputs):]
        dtype, device = losses[0].dtype, losses[0].device
        G = torch.zeros(K, K, dtype=dtype, device=device)
        i = 0
        for lay in live:
            n_calls = len(lay.outputs)
            rows, delta = self._rows(lay, deltas[i:i + n_calls])
            i += n_calls
            lay.rows, lay.deltas = rows, delta
            self._layer_gramian(lay, G)
            lay.inputs.clear()
            lay.outputs.clear()
            lay.versions.clear()
        self._live = live
        self._fallback_grads = {}
        for name, stacked in zip(self.fallback, fb):
            self._fallback_grads[name] = stacked
            flat = stacked.reshape(K, -1)
            if name in self.masks:
                flat = flat[:, self.masks[name].reshape(-1)]
            G += gramian_matrix(flat)
        return G

    def _buffer(self, i: int, K: int, like: torch.Tensor) -> torch.Tensor:
        shape = (K, *like.shape)
        buf = self._buffers.get(i)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype \
                or buf.device != like.device:
            buf = self._buffers[i] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf

    def _rows(self, lay: _Layer, per_call: list[torch.Tensor]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``a`` as ``[N, fan_in]`` and the task output gradients as ``[K, N, out]``; several
        calls of one module (weight sharing) are concatenated rows: ``dW = sum_c delta_c^T a_c``.
        """
        m = lay.module
        a_parts, d_parts = [], []
        for x, d in zip(lay.inputs, per_call):  # d: [K, *out_shape]
            if isinstance(m, nn.Conv2d):
                # string paddings ("same") never get here: _supported admits int/tuple pads only
                u = F.unfold(x, m.kernel_size, m.dilation, m.padding,  # type: ignore[arg-type]
                             m.stride)  # [B, in', P]
                a_parts.append(u.transpose(1, 2).reshape(-1, u.shape[1]))
                d_parts.append(d.flatten(3).transpose(2, 3).reshape(d.shape[0], -1, d.shape[2]))
            else:
                a_parts.append(x.reshape(-1, x.shape[-1]))
                d_parts.append(d.reshape(d.shape[0], -1, d.shape[-1]))
        if len(a_parts) == 1:
            return a_parts[0], d_parts[0]
        return torch.cat(a_parts), torch.cat(d_parts, dim=1)

    def _layer_gramian(self, lay: _Layer, G: torch.Tensor) -> None:
        a, delta = lay.rows, lay.deltas
        assert a is not None and delta is not None  # set by gramian() just before
        K, N, out = delta.shape
        mask = self.masks.get(lay.weight)
        costs = route_costs(N, a.shape[1], out, K)
        cheapest: Route = min(costs, key=costs.__getitem__)
        lay.route = "explicit" if mask is not None else (self.route or cheapest)
        if lay.route == "gram":
            A = a @ a.T  # [N, N]
            G.addmm_(delta.reshape(K, -1), torch.matmul(A, delta).reshape(K, -1).T)
        else:
            flat_mask = None if mask is None else mask.reshape(out, -1)
            dt = delta.transpose(1, 2)  # [K, out, N]
            piece = max(1, PIECE_ELEMENTS // max(1, K * out))
            for j in range(0, a.shape[1], piece):
                dw = torch.matmul(dt, a[:, j:j + piece])  # [K, out, piece]
                if flat_mask is not None:
                    dw = dw[:, flat_mask[:, j:j + piece]]
                flat = dw.reshape(K, -1)
                G.addmm_(flat, flat.T)
        if lay.bias is not None:
            db = delta.sum(1)  # [K, out]
            if lay.bias in self.masks:
                db = db[:, self.masks[lay.bias]]
            G.addmm_(db, db.T)

    # -- the update ---------------------------------------------------------------------------

    def write_combination(self, w: torch.Tensor) -> None:
        """``.grad = sum_k w_k g_k`` on every shared parameter (frozen coordinates 0, fully
        frozen parameters ``None``), from what the last :meth:`gramian` kept; then frees it."""
        for name in self.frozen:
            self.params[name].grad = None
        for lay in self._live:
            assert lay.rows is not None and lay.deltas is not None  # kept by gramian()
            dw = torch.tensordot(w.to(lay.deltas.dtype), lay.deltas, dims=1)  # [N, out]
            weight = self.params[lay.weight]
            weight.grad = self._masked(lay.weight, (dw.T @ lay.rows).reshape(weight.shape))
            if lay.bias is not None:
                self.params[lay.bias].grad = self._masked(lay.bias, dw.sum(0))
            lay.rows = lay.deltas = None
        for name, stacked in self._fallback_grads.items():
            g = torch.tensordot(w.to(stacked.dtype), stacked, dims=1)
            self.params[name].grad = self._masked(name, g)
        self._live, self._fallback_grads = [], {}

    def _masked(self, name: str, g: torch.Tensor) -> torch.Tensor:
        mask = self.masks.get(name)
        return g if mask is None else g.masked_fill_(~mask, 0.0)

    def describe(self) -> dict[str, str]:
        """Which route each parameter took at the last step (``fallback`` = autograd)."""
        out = {n: "fallback" for n in self.fallback}
        for lay in self.layers:
            out[lay.weight] = lay.route or "unused"
            if lay.bias is not None:
                out[lay.bias] = lay.route or "unused"
        return out
