"""Recon's layer branching: turn chosen shared layers into task-specific copies.

Recon (Shi et al., ICLR 2023, "Recon: Reducing Conflicting Gradients from the Root for
Multi-Task Learning", arXiv 2302.11289, §4.1, Alg. 1 step 3) selects the top-K shared layers by
S-conflict score (see :mod:`mtlkit_plugins.probes.layer_conflict`) and makes each of them
task-specific: T copies, one per task, each initialised from the shared weights
:math:`\\theta_{sh}^{cf}`; the modified network is then retrained with any method.

This transform takes a :class:`~mtlkit.models.MultiTaskModel` and a list of layer names (the
names Recon's scoring uses: a module path as in ``shared_named_parameters`` with ``.weight`` /
``.bias`` stripped, e.g. ``encoder.layer1.0.bn1``) and returns a :class:`ReconModel`:

* each named module (Linear, Conv*, BatchNorm*/InstanceNorm*, LayerNorm, GroupNorm, RMSNorm) is
  replaced by a :class:`BranchedLayer` holding one deep copy per task: the copies share nothing,
  BatchNorm running statistics included;
* task t's forward uses copy t of *every* branched layer; every later shared computation then
  runs once per task on that task's activations (as in the reference code's list inputs,
  ``archs/modules_recon.py``); shared BatchNorms after a branch normalise each task stream
  separately and update their running statistics once per stream, as the reference code does;
* ``shared_named_parameters()`` excludes the copies and ``task_named_parameters(t)`` adds task
  t's copies, so the Jacobian, masks and probes act on the remaining shared layers only and
  each copy gets its own task's gradient (like a head);
* parameter names stay those of the original model (``encoder.conv2.weight``), and a copy is
  ``<layer>.copies.<task>.<weight|bias>``.

At initialisation the transformed model computes exactly what the original computes. The
parameter count grows by (T - 1) x the chosen layers' sizes. An empty layer list returns the
model itself (the identity). Unlike the reference code, copies are *not* re-initialised: they
start from the shared weights, as the paper states.

Cost (how each task stream is computed):

``streams`` (plain ``encoder`` + ``heads`` models whose encoder ``torch.fx`` can trace)
    the encoder graph is rewritten once: every operation that does not depend on a branched
    layer (the prefix before the first branched layer, skip paths around it) runs *once*; every
    operation downstream of one runs once per task. Cost: prefix + T x suffix.
``per_task_encoder`` (plain models whose encoder cannot be traced or rewritten safely, e.g.
    data-dependent control flow, or an in-place update of a shared tensor downstream of a branch)
    the whole encoder runs T times, each time with every branched layer switched to task t's
    copy. Cost: T x encoder.
``per_task_model`` (models that override ``forward`` or ``represent``)
    the whole model runs T times, task t's output taken from run t. Cost: T x model.

A model that overrides only ``heads_forward`` (MTAN hands each head its block of ``z``) keeps
its encoder mode; its ``heads_forward`` is applied to each task's stream (T x heads).

``ReconModel.mode`` says which one applies and ``mode_reason`` why. In the two per-task modes a
shared BatchNorm *before* the first branched layer also runs T times per step on the same batch,
so its running statistics move as with momentum ``1 - (1 - m)^T`` (training outputs, which use
batch statistics, and all outputs at initialisation are unaffected).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import fx, nn

from mtlkit import hookimpl
from mtlkit.errors import ConfigError
from mtlkit.models import MultiTaskModel
from mtlkit.probing import layer_of

#: Module types Recon's scoring treats as layers and this transform can branch.
BRANCHABLE: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)

_INPLACE_FUNCTIONS = {operator.iadd, operator.isub, operator.imul, operator.itruediv,
                      operator.ifloordiv, operator.imod, operator.ipow, operator.iand,
                      operator.ior, operator.ixor, operator.ilshift, operator.irshift,
                      operator.imatmul}


class BranchedLayer(nn.Module):
    """One deep copy of a layer per task; :attr:`active` selects the copy a call uses.

    In ``streams`` mode the rewritten encoder calls ``copies[task]`` directly and
    :attr:`active` is unused; the other modes set it around each task's forward.
    """

    def __init__(self, module: nn.Module, tasks: Sequence[str]) -> None:
        super().__init__()
        self.copies = nn.ModuleDict({t: copy.deepcopy(module) for t in tasks})
        self.active: str | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.active is None:
            raise RuntimeError("a Recon branched layer was called outside a task stream; "
                               "call the ReconModel, not its encoder")
        return self.copies[self.active](*args, **kwargs)


# -- which layers exist and which can be branched -------------------------------------------


def shared_layers(model: MultiTaskModel) -> dict[str, int]:
    """``{layer: parameter count}`` of the model's shared layers, in model order."""
    sizes: dict[str, int] = {}
    for name, p in model.shared_named_parameters():
        layer = layer_of(name)
        sizes[layer] = sizes.get(layer, 0) + p.numel()
    return sizes


def _module(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def branchable_layers(model: MultiTaskModel) -> dict[str, int]:
    """The shared layers this transform can branch: ``{layer: parameter count}``.

    A layer qualifies when it is a module of a :data:`BRANCHABLE` type whose parameters are all
    shared (so no task-specific part would be copied twice).
    """
    shared = {id(p) for _, p in model.shared_named_parameters()}
    out = {}
    for layer, size in shared_layers(model).items():
        module = _module(model, layer)
        if module is None or not isinstance(module, BRANCHABLE):
            continue
        if all(id(p) in shared for p in module.parameters()):
            out[layer] = size
    return out


def check_layers(model: MultiTaskModel, layers: Sequence[str]) -> list[str]:
    """Validate layer names against the model; errors name the value and the valid names."""
    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
        raise ConfigError(f"invalid layers={layers!r}: must be a list of layer names")
    shared = shared_layers(model)
    ok = branchable_layers(model)
    seen: set[str] = set()
    for name in layers:
        if name in seen:
            raise ConfigError(f"invalid layers: {name!r} is listed twice")
        seen.add(name)
        if name not in shared:
            raise ConfigError(f"invalid layer {name!r}: not a shared layer of the model; "
                              f"shared layers: {', '.join(shared) or '(none)'}")
        if name not in ok:
            kind = type(_module(model, name)).__name__
            raise ConfigError(f"invalid layer {name!r}: a {kind} cannot be branched; Recon "
                              "branches Linear, Conv and normalisation modules whose "
                              f"parameters are all shared: {', '.join(ok) or '(none)'}")
    bad_tasks = [t for t in model.task_names if "." in t or not t]
    if bad_tasks:
        raise ConfigError(f"invalid task name {bad_tasks[0]!r}: Recon copies are keyed by task "
                          "name, which must not contain '.'")
    return list(layers)


# -- the transformed model ------------------------------------------------------------------


class _NotStreamable(Exception):
    pass


class _Tracer(fx.Tracer):
    """Keeps branched layers (and torch.nn modules, the default) as single graph nodes."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, BranchedLayer) or super().is_leaf_module(m, module_qualified_name)


def _is_inplace(node: fx.Node, root: nn.Module) -> bool:
    if node.op == "call_function":
        return node.target in _INPLACE_FUNCTIONS or node.kwargs.get("inplace") is True
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.startswith("__")
    if node.op == "call_module":
        return getattr(root.get_submodule(str(node.target)), "inplace", False) is True
    return False


def stream_graph(encoder: nn.Module, tasks: Sequence[str]) -> fx.Graph:
    """Rewrite the encoder's graph into one returning a tuple of per-task outputs.

    Nodes that do not depend on any branched layer are emitted once; nodes downstream of one
    are emitted once per task, with branched layers replaced by that task's copy. Raises
    :class:`_NotStreamable` (with the reason) when the rewrite would not be faithful.
    """
    try:
        graph = _Tracer().trace(encoder)
    except Exception as exc:  # any tracing failure means "run the encoder per task"
        raise _NotStreamable(f"torch.fx cannot trace the encoder ({type(exc).__name__}: "
                             f"{exc})") from None
    branched = {name for name, m in encoder.named_modules() if isinstance(m, BranchedLayer)}
    new = fx.Graph()
    shared_env: dict[fx.Node, fx.Node] = {}
    task_envs: list[dict[fx.Node, fx.Node]] = [{} for _ in tasks]
    called: set[str] = set()

    def lookup(k: int):
        return lambda n: task_envs[k][n] if n in task_envs[k] else shared_env[n]

    for node in graph.nodes:
        if node.op == "output":
            outs = tuple(fx.graph.map_arg(node.args[0], lookup(k)) for k in range(len(tasks)))
            new.output(outs)
            continue
        target = str(node.target)
        if node.op == "get_attr" and any(target == b or target.startswith(b + ".")
                                         for b in branched):
            raise _NotStreamable(f"the encoder reads {target} as an attribute instead of "
                                 "calling the layer")
        is_branch = node.op == "call_module" and target in branched
        tainted = is_branch or any(a in task_envs[0] for a in node.all_input_nodes)
        if not tainted:
            shared_env[node] = new.node_copy(node, lambda n: shared_env[n])
            continue
        first = node.args[0] if node.args else None
        if _is_inplace(node, encoder) and isinstance(first, fx.Node) \
                and first not in task_envs[0]:
            # T per-task copies would each modify the same shared tensor
            raise _NotStreamable(f"{node.name} updates a shared tensor in place downstream "
                                 "of a branched layer")
        for k, task in enumerate(tasks):
            if is_branch:
                called.add(target)
                args = fx.graph.map_arg(node.args, lookup(k))
                kwargs = fx.graph.map_arg(node.kwargs, lookup(k))
                task_envs[k][node] = new.call_module(f"{target}.copies.{task}", args, kwargs)
            else:
                task_envs[k][node] = new.node_copy(node, lookup(k))
    missing = sorted(branched - called)
    if missing:
        raise _NotStreamable(f"layer(s) {', '.join(missing)} are not called by the encoder's "
                             "forward")
    new.lint()
    return new


def _overrides(model: MultiTaskModel, *methods: str) -> bool:
    cls = type(model)
    return any(getattr(cls, m) is not getattr(MultiTaskModel, m) for m in methods)


class ReconModel(MultiTaskModel):
    """A multi-task model whose chosen shared layers are task-specific (see module docs).

    It shares the original (deep-copied) model's module tree, parameters and buffers, so every
    name stays the original's: masks, probes and scores files refer to the same layers before
    and after the transform.
    """

    def __init__(self, base: MultiTaskModel, layers: Sequence[str]) -> None:
        nn.Module.__init__(self)
        # Share the containers (not copies): same names, same objects; .to(), state_dict and
        # train()/eval() act on the one tree both views see.
        for key in ("_parameters", "_buffers", "_non_persistent_buffers_set", "_modules"):
            self.__dict__[key] = base.__dict__[key]
        self.__dict__["_base"] = base
        self.branched_layers: list[str] = list(layers)
        # a plain dict (not registered): the modules stay listed once, under their own names
        self.__dict__["_branches"] = {name: self.get_submodule(name) for name in layers}
        self.mode, self.mode_reason = self._choose_mode()

    # -- structure ----------------------------------------------------------------------------

    def branches(self) -> dict[str, BranchedLayer]:
        return dict(self._branches)

    def _choose_mode(self) -> tuple[str, str]:
        base = self._base
        # a model that only overrides heads_forward (MTAN splits z per task) still streams
        if _overrides(base, "forward", "represent") or \
                not isinstance(getattr(base, "encoder", None), nn.Module):
            return "per_task_model", f"{type(base).__name__} defines its own forward"
        if not all(name.startswith("encoder.") for name in self.branched_layers):
            return "per_task_model", "a branched layer lies outside the encoder"
        try:
            # kept for the first _streams() (a later rebuild, after .to(), traces again)
            self.__dict__["_stream_graph"] = stream_graph(base.encoder, self.task_names)
        except _NotStreamable as exc:
            return "per_task_encoder", str(exc)
        return "streams", "shared prefix once, layers after the first branch once per task"

    def _streams(self) -> fx.GraphModule:
        gm = self.__dict__.get("_streams_gm")
        if gm is None:
            # The GraphModule references the encoder's own submodules (no copies); it is not
            # registered as a child, so parameters are not listed twice.
            graph = self.__dict__.pop("_stream_graph", None)
            if graph is None:
                graph = stream_graph(self._base.encoder, self.task_names)
            gm = fx.GraphModule(self._base.encoder, graph)
            self.__dict__["_streams_gm"] = gm
        return gm

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # a tensor fetched by get_attr would be stale after .to(): rebuild the graph module
        self.__dict__.pop("_streams_gm", None)
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_streams_gm", None)
        state.pop("_stream_graph", None)
        return state

    def train(self, mode: bool = True) -> ReconModel:
        super().train(mode)
        self._base.training = mode
        return self

    @contextmanager
    def _task(self, task: str) -> Iterator[None]:
        layers = self.branches().values()
        for layer in layers:
            layer.active = task
        try:
            yield
        finally:
            for layer in layers:
                layer.active = None

    # -- forward ------------------------------------------------------------------------------

    def represent(self, x: torch.Tensor) -> Any:
        """Per-task representations, stacked ``[T, ...]`` when they are tensors (else a tuple).

        There is no single shared representation after a branched layer; "-UB" gradient modes
        therefore see T task streams, each reaching only its own head.
        """
        if self.mode == "streams":
            outs = self._streams()(x)
        else:
            outs = []
            for task in self.task_names:
                with self._task(task):
                    outs.append(self._base.represent(x))
        if all(isinstance(o, torch.Tensor) for o in outs):
            return torch.stack(list(outs))
        return tuple(outs)

    def heads_forward(self, z: Any) -> dict[str, torch.Tensor]:
        if self.mode == "per_task_model" or _overrides(self._base, "heads_forward"):
            # the model's own head routing, applied to each task's stream (T x heads)
            out = {}
            for k, task in enumerate(self.task_names):
                with self._task(task):
                    out[task] = self._base.heads_forward(z[k])[task]
            return out
        return {task: head(z[k]) for k, (task, head) in enumerate(self.heads.items())}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mode != "per_task_model":
            return self.heads_forward(self.represent(x))
        out = {}
        for task in self.task_names:
            with self._task(task):
                out[task] = self._base(x)[task]
        return out

    # -- parameter scopes ---------------------------------------------------------------------

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        copies = {id(p) for layer in self.branches().values() for p in layer.parameters()}
        return [(n, p) for n, p in self._base.shared_named_parameters() if id(p) not in copies]

    def task_named_parameters(self, task: str) -> list[tuple[str, nn.Parameter]]:
        own = list(self._base.task_named_parameters(task))
        for name, layer in self.branches().items():
            own += [(f"{name}.copies.{task}.{n}", p)
                    for n, p in layer.copies[task].named_parameters() if p.requires_grad]
        return own


def branch_layers(model: MultiTaskModel, layers: Sequence[str]) -> MultiTaskModel:
    """Recon's transform: a copy of ``model`` with ``layers`` made task-specific.

    ``layers == []`` returns ``model`` itself. The input model is never modified.
    """
    layers = check_layers(model, layers)
    if not layers:
        return model
    base = copy.deepcopy(model)
    tasks = base.task_names
    for name in layers:
        parent_name, _, attr = name.rpartition(".")
        parent = base.get_submodule(parent_name) if parent_name else base
        setattr(parent, attr, BranchedLayer(getattr(parent, attr), tasks))
    return ReconModel(base, layers)


class ReconTransform:
    """Recon's layer branching (arXiv 2302.11289): chosen shared layers become per-task copies.

    ``get_transform("recon", layers=["encoder.conv1"])(model)`` returns the transformed model;
    :meth:`candidates` lists the layers that can be branched, with their sizes.
    """

    def __init__(self, layers: Sequence[str] = ()) -> None:
        if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
            raise ConfigError(f"invalid layers={layers!r}: must be a list of layer names")
        self.layers = list(layers)

    def __call__(self, model: MultiTaskModel, **_: Any) -> MultiTaskModel:
        return branch_layers(model, self.layers)

    @staticmethod
    def candidates(model: MultiTaskModel) -> dict[str, int]:
        return branchable_layers(model)

    def __repr__(self) -> str:
        return f"ReconTransform(layers={self.layers!r})"


@hookimpl
def register_model_transforms(register):
    register("recon", ReconTransform)
