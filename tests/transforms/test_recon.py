"""Recon's layer branching: identity at initialisation, exact parameter growth, scopes, modes."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from mtlkit_plugins.backbones.lenet import LeNetEncoder
from mtlkit_plugins.transforms.recon import (
    BranchedLayer,
    ReconModel,
    branch_layers,
    branchable_layers,
    shared_layers,
)
from torch import nn
from torch.nn import functional as F

import mtlkit
from mtlkit.errors import ConfigError
from mtlkit.models import MultiTaskModel
from mtlkit.trainer import count_parameters

TASKS = ("left", "right", "third")


def heads(in_features: int, tasks=TASKS) -> dict[str, nn.Module]:
    return {t: nn.Sequential(nn.Linear(in_features, 8), nn.ReLU(), nn.Linear(8, 3))
            for t in tasks}


def lenet_model(tasks=TASKS) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(LeNetEncoder(), heads(50, tasks))


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus identity: the ResNet basic block shape."""

    def __init__(self, c: int, inplace_shortcut: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.inplace_shortcut = inplace_shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.inplace_shortcut:
            identity = x.clone()
            identity.add_(out)  # in place on a tensor computed before the branch
            return F.relu(identity)
        return F.relu(out + x)


class ResEncoder(nn.Module):
    """A small conv + BN residual encoder with nested module paths (``layers.0.bn1``)."""

    def __init__(self, inplace_shortcut: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.layers = nn.Sequential(Block(4, inplace_shortcut), Block(4, inplace_shortcut))
        self.fc = nn.Linear(4, 6)
        self.norm = nn.LayerNorm(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.layers(x)
        return self.norm(self.fc(x.mean(dim=(2, 3))))


def res_model(**kw) -> MultiTaskModel:
    torch.manual_seed(1)
    return MultiTaskModel(ResEncoder(**kw), heads(6))


class Untraceable(ResEncoder):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            x = x * 1.0
        return super().forward(x)


class CustomForward(MultiTaskModel):
    """A model with its own forward (like MTAN's task attention): per-task full runs."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        return {t: head(z * (i + 1)) for i, (t, head) in enumerate(self.heads.items())}


class SplitHeads(MultiTaskModel):
    """Overrides only heads_forward, as MTAN does: z holds one block per task."""

    def heads_forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        blocks = z.chunk(len(self.heads), dim=1)
        return {t: head(b) for (t, head), b in zip(self.heads.items(), blocks)}


def outputs_equal(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    ya, yb = a(x), b(x)
    return ya.keys() == yb.keys() and all(torch.allclose(ya[t], yb[t], atol=1e-6, rtol=1e-5)
                                          for t in ya)


X = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
XS = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))

LENET_SUBSETS = [list(c) for r in (1, 2, 3)
                 for c in itertools.combinations(["encoder.conv1", "encoder.conv2",
                                                  "encoder.fc"], r)]
RES_SUBSETS = [["encoder.stem"], ["encoder.layers.0.bn1"], ["encoder.layers.1.conv2"],
               ["encoder.norm"], ["encoder.bn", "encoder.layers.1.bn2", "encoder.fc"]]


@pytest.mark.parametrize("layers", LENET_SUBSETS, ids=",".join)
def test_lenet_same_outputs_and_exact_parameter_growth(layers):
    model = lenet_model()
    before = copy.deepcopy(model.state_dict())
    recon = branch_layers(model, layers)
    assert isinstance(recon, ReconModel) and recon.mode == "streams"
    assert outputs_equal(model, recon, X)
    sizes = shared_layers(model)
    growth = (len(TASKS) - 1) * sum(sizes[n] for n in layers)
    assert count_parameters(recon) - count_parameters(model) == growth
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("layers", RES_SUBSETS, ids=",".join)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_residual_bn_encoder_same_outputs(layers, train):
    model = res_model()
    recon = branch_layers(model, layers)
    assert recon.mode == "streams"
    model.train(train)
    recon.train(train)
    assert outputs_equal(model, recon, XS)
    growth = (len(TASKS) - 1) * sum(shared_layers(model)[n] for n in layers)
    assert count_parameters(recon) - count_parameters(model) == growth


def test_prefix_before_first_branch_is_computed_once():
    recon = branch_layers(res_model(), ["encoder.layers.1.conv2"])
    calls = {"stem": 0, "conv2": 0}
    recon.encoder.stem.register_forward_hook(lambda *a: calls.__setitem__("stem",
                                                                          calls["stem"] + 1))
    recon.encoder.layers[1].conv2.copies["left"].register_forward_hook(
        lambda *a: calls.__setitem__("conv2", calls["conv2"] + 1))
    recon(XS)
    assert calls == {"stem": 1, "conv2": 1}


@pytest.mark.parametrize(("make", "mode"), [
    (lambda: res_model(inplace_shortcut=True), "per_task_encoder"),
    (lambda: (torch.manual_seed(1), MultiTaskModel(Untraceable(), heads(6)))[1],
     "per_task_encoder"),
    (lambda: (torch.manual_seed(1), CustomForward(ResEncoder(), heads(6)))[1], "per_task_model"),
])
def test_fallback_modes_same_outputs(make, mode):
    for train in (True, False):
        # fresh models per mode: in these modes a shared BatchNorm before the first branch
        # updates its running statistics once per task run (documented), so eval outputs are
        # compared at initialisation
        model = make()
        recon = branch_layers(model, ["encoder.layers.0.conv1", "encoder.layers.0.bn2"])
        assert recon.mode == mode, recon.mode_reason
        model.train(train)
        recon.train(train)
        assert outputs_equal(model, recon, XS)


def test_model_overriding_only_heads_forward_keeps_streams():
    torch.manual_seed(1)
    model = SplitHeads(nn.Sequential(ResEncoder(), nn.Linear(6, 6 * len(TASKS))), heads(6))
    recon = branch_layers(model, ["encoder.0.layers.1.bn1", "encoder.1"])
    assert recon.mode == "streams"
    assert outputs_equal(model, recon, XS)


def test_zero_layers_is_identity():
    model = lenet_model()
    assert branch_layers(model, []) is model
    assert mtlkit.get_transform("recon")(model) is model


def test_parameter_scopes_partition_the_model():
    model = res_model()
    layers = ["encoder.stem", "encoder.layers.0.bn1"]
    recon = branch_layers(model, layers)
    shared = recon.shared_named_parameters()
    names = [n for n, _ in shared]
    assert not any(".copies." in n for n in names)
    assert {n for n, _ in model.shared_named_parameters()} - set(names) == {
        "encoder.stem.weight", "encoder.stem.bias", "encoder.layers.0.bn1.weight",
        "encoder.layers.0.bn1.bias"}
    seen = {id(p) for _, p in shared}
    for task in TASKS:
        own = recon.task_named_parameters(task)
        copies = [n for n, _ in own if ".copies." in n]
        assert copies == [f"{layer}.copies.{task}.{w}" for layer in layers
                          for w in ("weight", "bias")]
        assert not seen & {id(p) for _, p in own}
        seen |= {id(p) for _, p in own}
    assert seen == {id(p) for p in recon.parameters()}


def test_copies_share_nothing_and_each_gets_its_own_task_gradient():
    model = res_model()
    recon = branch_layers(model, ["encoder.layers.0.bn1", "encoder.fc"])
    bn = recon.get_submodule("encoder.layers.0.bn1")
    assert isinstance(bn, BranchedLayer)
    tensors = [t for c in bn.copies.values() for t in (*c.parameters(), *c.buffers())]
    assert len({t.data_ptr() for t in tensors}) == len(tensors)
    # at initialisation, copy t's gradient of task t's loss equals the original layer's
    out_m, out_r = model(XS), recon(XS)
    for task in TASKS:
        g_orig = torch.autograd.grad(out_m[task].sum(), model.encoder.fc.weight,
                                     retain_graph=True)[0]
        copies = [recon.encoder.fc.copies[t].weight for t in TASKS]
        grads = torch.autograd.grad(out_r[task].sum(), copies, retain_graph=True,
                                    allow_unused=True)
        for t, g in zip(TASKS, grads):
            if t == task:
                assert torch.allclose(g, g_orig, atol=1e-6)
            else:
                assert g is None or not g.any()


def test_batchnorm_running_statistics_are_per_copy():
    model = res_model()
    # bn2 of block 0 sits after a branched conv: each copy sees its own task stream
    recon = branch_layers(model, ["encoder.layers.0.conv1", "encoder.layers.0.bn2"])
    with torch.no_grad():
        w = recon.encoder.layers[0].conv1.copies["left"].weight
        w.add_(torch.randn(w.shape, generator=torch.Generator().manual_seed(4)))
    recon.train()
    recon(XS)
    copies = recon.encoder.layers[0].bn2.copies
    assert not torch.allclose(copies["left"].running_var, copies["right"].running_var)
    assert torch.allclose(copies["right"].running_var, copies["third"].running_var)


def test_state_dict_round_trip_and_deepcopy():
    recon = branch_layers(lenet_model(), ["encoder.conv2"])
    with torch.no_grad():
        for p in recon.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    fresh = branch_layers(lenet_model(), ["encoder.conv2"])
    fresh.load_state_dict(recon.state_dict())
    assert outputs_equal(recon, fresh, X)
    assert outputs_equal(recon, copy.deepcopy(recon), X)
    assert "encoder.conv2.copies.right.weight" in recon.state_dict()


def test_branchable_layers_and_plugin_registration():
    model = res_model()
    ok = branchable_layers(model)
    assert "encoder.layers.1.bn2" in ok and ok["encoder.norm"] == 12
    transform = mtlkit.get_transform("recon", layers=["encoder.norm"])
    assert isinstance(transform(model), ReconModel)


@pytest.mark.parametrize(("layers", "message"), [
    (["encoder.nope"], "invalid layer 'encoder.nope': not a shared layer"),
    (["heads.left.0"], "not a shared layer"),
    (["encoder.fc", "encoder.fc"], "listed twice"),
    ("encoder.fc", "must be a list"),
])
def test_bad_layers_are_clear_errors(layers, message):
    with pytest.raises(ConfigError, match=message):
        branch_layers(lenet_model(), layers)


def test_module_that_is_not_a_layer_type_is_rejected():
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.weight

    torch.manual_seed(0)
    model = MultiTaskModel(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), Scale()), heads(3))
    assert list(branchable_layers(model)) == ["encoder.1"]
    with pytest.raises(ConfigError, match="a Scale cannot be branched"):
        branch_layers(model, ["encoder.2"])
