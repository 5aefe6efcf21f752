"""LibMTL's architectures as model transforms: the shared / task-specific split is what
autograd says, and each trains on Multi-MNIST with a sparse mask and a Jacobian aggregator."""

from __future__ import annotations

import math

import attrs
import pytest
import torch
from mtlkit_plugins.architectures._base import stages
from mtlkit_plugins.architectures.dselect_k import DSelectKBody, smooth_step
from mtlkit_plugins.backbones.lenet import LeNetEncoder
from mtlkit_plugins.backbones.small_cnn import SmallCNN
from torch import nn

from mtlkit.config import TrainConfig
from mtlkit.errors import ConfigError
from mtlkit.models import MultiTaskModel
from mtlkit.plugins import get_plugin_manager
from mtlkit.trainer import Trainer

TASKS = ("a", "b", "c")
SHAPE = [1, 28, 28]
# LTB's warm-up mixes every parent softly, so every shared parameter is in every task's graph
# with a non-zero gradient (after it, a hard choice zeroes the unchosen columns' gradients).
CASES = {
    "mmoe": {"input_shape": SHAPE, "num_experts": 3},
    "cgc": {"input_shape": SHAPE, "num_shared": 2, "num_specific": 1},
    "ple": {"input_shape": SHAPE},
    "dselect_k": {"input_shape": SHAPE, "num_experts": 3, "num_nonzeros": 2},
    "cross_stitch": {},
    "ltb": {"warmup": 10**6},
}


def build(name, tasks=TASKS, **overrides):
    torch.manual_seed(0)
    base = MultiTaskModel(LeNetEncoder(), {t: nn.Linear(50, 10) for t in tasks})
    return get_plugin_manager().create("transform", name, **{**CASES[name], **overrides})(base)


def nonzero_grads(model, output):
    params = list(model.parameters())
    grads = torch.autograd.grad(output.sum(), params, allow_unused=True)
    return {id(p) for p, g in zip(params, grads) if g is not None and bool(g.abs().sum() > 0)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_split_is_what_autograd_reaches(name):
    model = build(name)
    shared = {id(p) for _, p in model.shared_named_parameters()}
    owned = {t: {id(p) for _, p in model.task_named_parameters(t)} for t in TASKS}
    everything = {id(p) for p in model.parameters()}
    # a partition: every parameter is shared or owned by exactly one task
    assert shared | set().union(*owned.values()) == everything
    assert sum(map(len, owned.values())) + len(shared) == len(everything)
    x = torch.randn(4, *SHAPE)
    for t in TASKS:
        reached = nonzero_grads(model, model(x)[t])
        # a task's loss never reaches another task's parameters ...
        for u in TASKS:
            if u != t:
                assert not reached & owned[u], (t, u)
        # ... and reaches all of its own and every shared one (so "shared" is not too wide)
        assert owned[t] <= reached
        assert shared <= reached, [n for n, p in model.shared_named_parameters()
                                   if id(p) not in reached]
    # each task owns more than its head: the architecture has task-specific parts
    head = {id(p) for p in model.heads["a"].parameters()}
    assert owned["a"] > head


@pytest.mark.parametrize("name", sorted(CASES))
def test_representation_is_one_slice_per_task(name):
    model = build(name).eval()
    x = torch.randn(2, *SHAPE)
    z = model.represent(x)
    assert z.shape == (2, len(TASKS), 50)
    direct = model(x)
    for t, out in model.heads_forward(z).items():
        assert torch.equal(out, direct[t])


def test_ltb_after_warm_up_chooses_one_parent_and_keeps_the_split():
    model = build("ltb", warmup=0)
    x = torch.randn(4, *SHAPE)
    owned = {t: {id(p) for _, p in model.task_named_parameters(t)} for t in TASKS}
    for t in TASKS:
        reached = nonzero_grads(model, model(x)[t])
        assert owned[t] <= reached
        assert all(not reached & owned[u] for u in TASKS if u != t)
    assert int(model.encoder.passes) == len(TASKS)
    model.eval()  # evaluation: the most likely parent, deterministically
    assert torch.equal(model(x)["a"], model(x)["a"])


def test_dselect_k_weights_are_a_distribution_over_existing_experts():
    torch.manual_seed(1)
    # 3 experts: 2 bits, code 3 does not exist and is folded onto expert 0
    body = DSelectKBody(LeNetEncoder(), ["a"], SHAPE, 3, 2, 1.0)
    with torch.no_grad():
        for p in body.z_logits.parameters():
            p.normal_(0, 0.5)
    w = body.expert_weights("a", torch.randn(5, 784))
    assert w.shape == (5, 3) and bool((w >= 0).all())
    # rows sum to 1 up to float32 rounding of a few products and sums
    assert torch.allclose(w.sum(dim=1), torch.ones(5), rtol=0, atol=8 * torch.finfo().eps)
    u = torch.tensor([-1.0, -0.5, 0.0, 0.25, 0.5, 2.0])
    expected = torch.tensor([0.0, 0.0, 0.5, -2 * 0.25**3 + 1.5 * 0.25 + 0.5, 1.0, 1.0])
    assert torch.allclose(smooth_step(u, 1.0), expected, rtol=0, atol=1e-7)


def test_stage_split_composes_to_the_encoder():
    torch.manual_seed(0)
    cases = ((LeNetEncoder(), (2, 1, 28, 28), 3),
             (SmallCNN(width=4, out_features=8).eval(), (2, 3, 16, 16), 4),
             (nn.Sequential(LeNetEncoder(), nn.Linear(50, 7), nn.ReLU()), (2, 1, 28, 28), 5))
    for encoder, shape, depth in cases:
        assert len(stages(encoder)) == depth
        x = torch.randn(*shape)
        y = x
        for s in stages(encoder):
            y = s(y)
        assert torch.equal(y, encoder(x))


def test_bad_configurations_are_one_clear_error():
    with pytest.raises(ConfigError, match="input_shape"):
        build("mmoe", input_shape=None)
    with pytest.raises(ConfigError, match="num_experts"):
        build("mmoe", num_experts=0)
    with pytest.raises(ConfigError, match="stage split"):
        base = MultiTaskModel(_Opaque(), {"a": nn.Linear(50, 10), "b": nn.Linear(50, 10)})
        get_plugin_manager().create("transform", "cross_stitch")(base)
    with pytest.raises(ConfigError, match="hard-parameter-sharing"):
        get_plugin_manager().create("transform", "cross_stitch")(build("mmoe"))


class _Opaque(nn.Module):
    def forward(self, x):
        return x


@pytest.mark.parametrize("name", sorted(CASES))
def test_trains_on_multi_mnist_with_psn_and_upgrad(name):
    # the benchmark parameters a CLI run gives (--benchmark-param architecture=...); the
    # benchmark supplies input_shape itself
    params = {k: v for k, v in CASES[name].items() if k != "input_shape"}
    if name == "ltb":
        params["warmup"] = 1  # one soft step, then hard choices
    cfg = TrainConfig(benchmark="multi_mnist",
                      benchmark_params={"n_train": 64, "n_val": 16, "n_test": 16,
                                        "architecture": name, "architecture_params": params},
                      aggregator="upgrad", mask="psn", density=0.3, batch_size=16,
                      max_steps=3, epochs=1, threads=1, checkpoint=False, probes=["cosine"])
    trainer = Trainer(cfg, None, progress=False)
    assert type(trainer.model).__name__ == "ArchitectureModel"
    shared_before = {n: p.detach().clone() for n, p in trainer.shared}
    results = trainer.fit()
    assert trainer.step == 3
    # the mask froze ~70% of the shared coordinates, and they did not move
    assert abs(trainer.mask.trainable_fraction - 0.3) <= 0.05
    moved = 0
    for n, p in trainer.shared:
        frozen = ~trainer.mask.masks[n]
        assert torch.equal(p.detach()[frozen], shared_before[n][frozen])
        moved += int((p.detach() != shared_before[n]).sum())
    assert moved > 0
    assert all(math.isfinite(results["tasks"][t]["accuracy"]) for t in ("left", "right"))


def test_model_transform_path_and_architecture_params_without_architecture():
    cfg = TrainConfig(benchmark="multi_mnist",
                      benchmark_params={"n_train": 32, "n_val": 16, "n_test": 16},
                      aggregator="upgrad", batch_size=16, max_steps=1, epochs=1, threads=1,
                      checkpoint=False, probes=[])
    transform = get_plugin_manager().create("transform", "mmoe", input_shape=SHAPE)
    trainer = Trainer(cfg, None, progress=False, model_transform=transform)
    trainer.fit()
    assert trainer.step == 1
    with pytest.raises(ConfigError, match="architecture_params"):
        Trainer(attrs.evolve(cfg, benchmark_params={
            "n_train": 32, "n_val": 16, "n_test": 16, "architecture_params": {"x": 1}}),
            None, progress=False)


class _MiniResNet(nn.Module):
    """The attribute names and forward order of torchvision's ResNet, in miniature."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        for i in range(1, 5):
            setattr(self, f"layer{i}", nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_resnet_stage_split_follows_torchvision_forward_order():
    from mtlkit_plugins.backbones._torchvision import TorchvisionEncoder

    torch.manual_seed(0)
    encoder = TorchvisionEncoder(_MiniResNet(), 4, "resnet18").eval()
    for channels in (3, 1):  # grey inputs are repeated to RGB in both
        x = torch.randn(2, channels, 8, 8)
        y = x
        for s in stages(encoder):
            y = s(y)
        assert torch.equal(y, encoder(x))


def test_input_shape_can_be_given_when_the_transform_is_applied():
    base = MultiTaskModel(LeNetEncoder(), {t: nn.Linear(50, 10) for t in TASKS})
    transform = get_plugin_manager().create("transform", "dselect_k")
    model = transform(base, input_shape=SHAPE)
    assert model.encoder.z_logits["a"].in_features == 784
    assert transform.input_shape is None  # the transform object is not changed
