"""Plugin state as plain data, so a checkpoint never holds pickled code.

A checkpoint is loaded with ``torch.load(weights_only=True)``, which accepts only tensors,
numbers, strings, booleans, ``None`` and lists/dicts of those: anything else (a class, a
function, a ``__reduce__`` payload) is refused before it runs. Stateful aggregators and probes
therefore export their state through :func:`export_state` and take it back with
:func:`import_state` instead of being pickled whole.

Which attributes are state: on an attrs class the fields declared ``init=False`` (the
convention of stateful plugins, e.g. FAMO's ``_logits`` and ``_adam``; constructor arguments
come from the config, which resume checks separately); on any other class every instance
attribute (what ``reset()`` creates). Names in the class's ``transient_state`` are caches
rebuilt on demand (e.g. Nash-MTL's compiled convex problems) and are skipped.

Values that are not plain data are tagged with a one-key dict so they come back as the same
type: ``{"__tuple__": [...]}``, ``{"__ndarray__": tensor}``, ``{"__generator__": state,
"device": str}``, ``{"__param__": tensor}`` (a leaf tensor that requires grad) and
``{"__items__": [[key, value], ...]}`` (a dict with keys that are not plain strings).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import torch

from mtlkit.errors import PluginError

_TAGS = ("__tuple__", "__ndarray__", "__generator__", "__param__", "__items__")


def state_names(obj: object, transient: Iterable[str] = ()) -> list[str]:
    """The attribute names that hold ``obj``'s state (see the module docstring)."""
    skip = set(transient)
    if attrs.has(type(obj)):
        names = [f.name for f in attrs.fields(type(obj)) if not f.init]
    else:
        names = list(vars(obj))
    return [n for n in names if n not in skip]


def export_state(obj: object, transient: Iterable[str] = ()) -> dict[str, Any]:
    """``{attribute: plain value}`` for :func:`state_names`; a value that cannot be written as
    plain data is a :class:`~mtlkit.errors.PluginError` naming the class and attribute."""
    out: dict[str, Any] = {}
    for name in state_names(obj, transient):
        where = f"{type(obj).__name__}.{name}"
        out[name] = encode(getattr(obj, name, None), where)
    return out


def import_state(obj: object, state: dict[str, Any], transient: Iterable[str] = ()) -> None:
    """Restore what :func:`export_state` returned. Tensors of the same shape and dtype are
    copied *in place*, so objects that hold them (an optimizer holding UW's log-variances)
    keep pointing at the live values; generators are reseeded in place for the same reason."""
    if not isinstance(state, dict):
        raise PluginError(f"cannot restore {type(obj).__name__}: its saved state is "
                          f"{type(state).__name__}, expected a dict")
    names = set(state_names(obj, transient))
    unknown = sorted(set(state) - names)
    if unknown:
        raise PluginError(f"cannot restore {type(obj).__name__}: the checkpoint has state "
                          f"{unknown[0]!r} this version does not know")
    for name, raw in state.items():
        value = decode(raw)
        current = getattr(obj, name, None)
        if (isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor)
                and current.shape == value.shape and current.dtype == value.dtype):
            with torch.no_grad():
                current.copy_(value)
            continue
        if isinstance(current, torch.Generator) and isinstance(value, torch.Generator) \
                and current.device == value.device:
            current.set_state(value.get_state())
            continue
        object.__setattr__(obj, name, value)


def encode(value: Any, where: str = "state") -> Any:
    """``value`` as tensors, numbers, str, bool, None and lists/dicts of those."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        t = value.detach().clone()
        if isinstance(t, torch.nn.Parameter):
            t = t.data
        if value.requires_grad and value.is_leaf:
            return {"__param__": t}
        return t
    if isinstance(value, torch.Generator):
        return {"__generator__": value.get_state(), "device": str(value.device)}
    if isinstance(value, (list, tuple)):
        items = [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if isinstance(value, list) else {"__tuple__": items}
    if isinstance(value, dict):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in value)
        if plain:
            return {k: encode(v, f"{where}[{k!r}]") for k, v in value.items()}
        return {"__items__": [[encode(k, where), encode(v, f"{where}[{k!r}]")]
                              for k, v in value.items()]}
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray) and value.dtype != object:
            return {"__ndarray__": torch.from_numpy(np.array(value, copy=True))}
        if isinstance(value, np.generic):
            return encode(value.item(), where)
    raise PluginError(
        f"cannot checkpoint {where}: a {type(value).__name__} is not plain data (tensors, "
        "numbers, str, bool, None, lists/dicts of those); override state_dict()/"
        "load_state_dict() or list the attribute in transient_state if it is a cache")


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = next((t for t in _TAGS if t in value), None)
    if tag == "__tuple__":
        return tuple(decode(v) for v in value[tag])
    if tag == "__ndarray__":
        return value[tag].numpy().copy()
    if tag == "__param__":
        return value[tag].clone().requires_grad_(True)
    if tag == "__generator__":
        gen = torch.Generator(device=value.get("device", "cpu"))
        gen.set_state(value[tag])
        return gen
    if tag == "__items__":
        return {decode(k): decode(v) for k, v in value[tag]}
    return {k: decode(v) for k, v in value.items()}
