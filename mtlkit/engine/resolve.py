"""Turning what a caller hands :class:`~mtlkit.engine.MTLBackward` into the engine's objects.

Everything here runs once, at construction or on the first call: names and ``{"name": ...}``
mappings become plugin instances, parameters of any accepted form become named pairs, and the
parameters each loss reaches are found by walking its autograd graph (so an own model needs no
declaration of which parameters belong to which head).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mtlkit.errors import ConfigError
from mtlkit.plugins import PluginManager, get_plugin_manager

#: what ``losses`` may be: a ``[K]`` tensor, a sequence of scalars, or ``{task: scalar}``
Losses = "torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]"
NamedParams = list[tuple[str, nn.Parameter]]


def named_shared(shared: nn.Module | Iterable[Any]) -> NamedParams:
    """``(name, parameter)`` pairs from a module, named pairs, or bare parameters.

    A module contributes its parameters that require grad, named as ``named_parameters`` names
    them (masks and probes key on these names); bare parameters are named ``shared.{i}``.
    """
    if isinstance(shared, nn.Module):
        pairs = [(n, p) for n, p in shared.named_parameters() if p.requires_grad]
    elif isinstance(shared, torch.Tensor):
        raise ConfigError("invalid shared_params: a single tensor; pass an nn.Module, an "
                          "iterable of parameters, or (name, parameter) pairs")
    else:
        pairs = []
        for i, item in enumerate(shared):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                name, p = item
            else:
                name, p = f"shared.{i}", item
            if not isinstance(p, torch.Tensor) or not p.requires_grad or not p.is_leaf:
                raise ConfigError(
                    f"invalid shared parameter {name!r}: {type(p).__name__} is not a leaf tensor "
                    "that requires grad (pass the model's parameters, not computed tensors)")
            # a leaf tensor that requires grad is all the engine needs of an nn.Parameter
            pairs.append((name, p))  # type: ignore[arg-type]
    if not pairs:
        raise ConfigError("invalid shared_params: no parameter that requires grad")
    seen: dict[int, str] = {}
    for name, p in pairs:
        if id(p) in seen:
            raise ConfigError(f"shared parameter {name!r} is listed twice (also as "
                              f"{seen[id(p)]!r})")
        seen[id(p)] = name
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"shared parameter names must be unique; repeated: {', '.join(dup)}")
    return pairs


def owning_modules(shared: nn.Module | Iterable[Any]) -> dict[str, nn.Module] | None:
    """``{parameter name: module owning it}`` when a module was given (mask strategies tell a
    normalisation scale from a bias with it); ``None`` otherwise."""
    if not isinstance(shared, nn.Module):
        return None
    return {f"{mod}.{name}" if mod else name: module
            for mod, module in shared.named_modules()
            for name, _ in module.named_parameters(recurse=False)}


def plugin(kind: str, spec: Any, base: type, pm: PluginManager | None = None) -> Any:
    """An instance of ``base`` from an instance, a registered name or ``{"name": ..., **params}``.
    """
    if isinstance(spec, base):
        return spec
    pm = pm or get_plugin_manager()
    if isinstance(spec, str):
        return pm.create(kind, spec)
    if isinstance(spec, Mapping):
        params = dict(spec)
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"invalid {kind} {spec!r}: a mapping needs a 'name' key naming a "
                              f"registered {kind}, e.g. {{'name': 'cagrad', 'c': 0.4}}")
        return pm.create(kind, name, **params)
    raise ConfigError(f"invalid {kind} {spec!r}: pass a registered name, a mapping "
                      f"{{'name': ..., **params}} or a {base.__name__} instance")


def registered_name(kind: str, spec: Any, instance: Any, pm: PluginManager | None) -> str:
    """The name a component goes by in messages: the given name, else the name its class is
    registered under, else its class name."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"]
    pm = pm if isinstance(pm, PluginManager) else get_plugin_manager()
    for name in pm.names(kind):
        try:
            if pm.registration(kind, name).factory is type(instance):
                return name
        except Exception:  # a name registered twice is reported where it is asked for
            continue
    return type(instance).__name__


def stack_losses(losses: Any, expected: Sequence[str] | None, *, need_grad: bool = True
                 ) -> tuple[torch.Tensor, list[str], list[torch.Tensor] | None]:
    """``[K]`` losses, task names and the K scalar losses themselves (``None`` when a ``[K]``
    tensor was given) from any accepted form; one clear error otherwise."""
    if isinstance(losses, Mapping):
        names = [str(k) for k in losses]
        values = list(losses.values())
    elif isinstance(losses, torch.Tensor):
        if losses.ndim != 1:
            raise ConfigError(f"invalid losses: a tensor of shape {tuple(losses.shape)}; pass a "
                              "[K] tensor, a sequence of scalar losses or {task: loss}")
        names, values = None, None
    else:
        try:
            values = list(losses)
        except TypeError:
            raise ConfigError(f"invalid losses {type(losses).__name__}: pass a [K] tensor, a "
                              "sequence of scalar losses or {task: loss}") from None
        names = None
    if values is not None:
        for i, v in enumerate(values):
            label = names[i] if names else f"#{i}"
            if not isinstance(v, torch.Tensor) or v.numel() != 1:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ConfigError(f"invalid loss for task {label}: {shape}; each loss must be a "
                                  "scalar tensor (reduce it with .mean() or .sum())")
        if not values:
            raise ConfigError("invalid losses: empty; pass one scalar loss per task")
        values = [v.reshape(()) for v in values]
        losses = torch.stack(values)
    if names is None:
        names = list(expected) if expected is not None and len(expected) == losses.shape[0] \
            else [f"task{i}" for i in range(losses.shape[0])]
    if expected is not None and list(expected) != names:
        raise ConfigError(f"invalid losses: tasks {names}, but this engine was set up for "
                          f"{list(expected)} (keep the same tasks in the same order)")
    if need_grad and not losses.requires_grad:
        raise ConfigError("invalid losses: they do not require grad (computed under no_grad, "
                          "or from parameters with requires_grad=False)")
    if not losses.dtype.is_floating_point:
        raise ConfigError(f"invalid losses: dtype {losses.dtype}; losses must be floating point")
    return losses, names, values


def per_task_roots(losses: torch.Tensor, parts: list[torch.Tensor] | None) -> list[Any]:
    """Each task's own graph root: its scalar loss, or an input of the stack that made ``[K]``.
    """
    if parts is not None:
        return [part.grad_fn for part in parts]
    fn = losses.grad_fn
    if fn is not None and type(fn).__name__.startswith("StackBackward") and \
            len(fn.next_functions) == losses.shape[0]:
        return [node for node, _ in fn.next_functions]
    raise ConfigError("cannot tell which parameters each task's loss reaches from a [K] loss "
                      "tensor computed in one piece: pass the losses as a sequence or "
                      "{task: loss}, or give task_params=")


def reachable_leaves(root: Any, stop: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Leaf tensors that require grad and that the graph node ``root`` reaches (not through
    ``stop``).

    A plain walk over ``next_functions``; ``AccumulateGrad`` nodes hold the leaves.
    """
    stop_fn = stop.grad_fn if stop is not None else None
    seen: set[Any] = set()
    found: dict[int, torch.Tensor] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen or node is stop_fn:
            continue
        seen.add(node)
        leaf = getattr(node, "variable", None)  # only AccumulateGrad nodes carry one
        if isinstance(leaf, torch.Tensor):
            found[id(leaf)] = leaf
            continue
        stack.extend(fn for fn, _ in node.next_functions)
    return list(found.values())


def discover_task_params(roots: Sequence[Any], shared: NamedParams, names: Sequence[str],
                         features: torch.Tensor | None = None) -> list[list[torch.Tensor]]:
    """Per task, the non-shared parameters its loss reaches; checks every shared one is reached.

    A parameter reached by several losses and not listed as shared gets each task's own
    gradient added up (the gradient of the summed losses), as for any task-specific parameter.
    """
    shared_ids = {id(p): n for n, p in shared}
    reached: set[int] = set()
    per_task: list[list[torch.Tensor]] = []
    for root in roots:
        leaves = reachable_leaves(root, stop=features)
        per_task.append([p for p in leaves if id(p) not in shared_ids])
        reached.update(id(p) for p in leaves if id(p) in shared_ids)
    if features is not None:
        reached.update(id(p) for p in reachable_leaves(features.grad_fn)
                       if id(p) in shared_ids)
    missing = [n for n, p in shared if id(p) not in reached]
    if missing:
        listed = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ConfigError(
            f"shared parameter(s) {listed} not reached by any loss ({', '.join(names)}): list "
            "as shared only parameters the losses depend on (frozen or unused ones stay out)")
    return per_task
