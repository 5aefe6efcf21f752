"""torchvision backbones (the ``vision`` extra). Tests needing torchvision skip, saying why,
when it cannot import (not installed, or the CUDA wheel without the fix_torchvision_cpu.py step)."""

from __future__ import annotations

import sys

import pytest
import torch

from mtlkit.errors import ConfigError, DataError
from mtlkit.plugins import get_plugin_manager


def _torchvision_or_reason() -> str | None:
    try:
        import torchvision.models  # noqa: F401
    except Exception as exc:
        return (f"torchvision cannot import ({type(exc).__name__}: {exc}); install the vision "
                "extra and run ../shared/tools/fix_torchvision_cpu.py")
    return None


_REASON = _torchvision_or_reason()
needs_tv = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def create(name: str, **params):
    return get_plugin_manager().create("backbone", name, **params)


def test_missing_torchvision_is_a_clear_error(monkeypatch):
    # Simulate an environment without torchvision (runs whether it is installed or not).
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ConfigError, match=r"mtlkit\[vision\].*fix_torchvision_cpu"):
        create("resnet18")


@needs_tv
def test_resnet18_is_a_feature_extractor():
    enc = create("resnet18")
    assert enc.out_features == 512
    assert enc(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    assert enc(torch.zeros(2, 1, 32, 32)).shape == (2, 512)  # grey repeated to RGB
    assert not any(n.startswith("body.fc.") for n, _ in enc.named_parameters())


@needs_tv
def test_weights_from_a_local_state_dict(tmp_path):
    import torchvision.models as models

    source = models.resnet18(num_classes=7)  # a fine-tuned checkpoint: its classifier is ignored
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    enc = create("resnet18", weights=str(path))
    assert torch.equal(enc.body.conv1.weight, source.conv1.weight)
    assert torch.equal(enc.body.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


@needs_tv
def test_missing_or_mismatched_weights_name_the_file(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(DataError, match=str(missing)):
        create("resnet18", weights=str(missing))
    import torchvision.models as models

    path = tmp_path / "r18.pth"
    torch.save(models.resnet18().state_dict(), path)
    with pytest.raises(DataError, match=r"r18\.pth does not match torchvision resnet50"):
        create("resnet50", weights=str(path))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read weights file"):
        create("resnet18", weights=str(garbage))


@needs_tv
def test_unknown_weight_enum_lists_the_choices():
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        create("resnet18", weights="NO_SUCH_WEIGHTS")


@needs_tv
def test_vit_b_16_at_a_small_image_size():
    enc = create("vit_b_16", image_size=32)
    assert enc.out_features == 768
    assert enc(torch.zeros(1, 3, 32, 32)).shape == (1, 768)
    with pytest.raises(ConfigError, match="multiple of 16"):
        create("vit_b_16", image_size=30)


@needs_tv
def test_swin_t():
    enc = create("swin_t")
    assert enc.out_features == 768
    assert enc(torch.zeros(1, 3, 32, 32)).shape == (1, 768)


@needs_tv
def test_a_benchmark_runs_with_a_torchvision_backbone_and_local_weights(tmp_path):
    import torchvision.models as models

    from tests.fixtures.vision import train_few_steps, write_celeba

    weights = tmp_path / "resnet18.pth"
    torch.save(models.resnet18().state_dict(), weights)
    write_celeba(tmp_path / "celeba")
    results = train_few_steps("celeba", tmp_path / "celeba", backbone="resnet18",
                              weights=str(weights), image_size=32, attributes=["Male"])
    assert set(results["tasks"]) == {"male"}
    assert results["config"]["benchmark_params"]["backbone"] == "resnet18"
