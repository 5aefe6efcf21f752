"""backbone_weights: a pre-trained encoder state_dict loaded strictly, errors naming keys."""

from __future__ import annotations

import pytest
import torch
from mtlkit_plugins.backbones.small_resnet import SmallResNet

from mtlkit.errors import ConfigError
from mtlkit.models import MultiTaskModel
from mtlkit.pretrained import load_backbone_weights


def _model(seed: int, **kw) -> MultiTaskModel:
    torch.manual_seed(seed)
    enc = SmallResNet(width=4, stem_stride=2, out_features=8, **kw)
    return MultiTaskModel(enc, {"a": torch.nn.Linear(8, 2), "b": torch.nn.Linear(8, 2)})


@pytest.mark.parametrize("prefix", ["", "encoder."])
def test_encoder_or_whole_model_state_dict_loads_and_heads_stay(tmp_path, prefix):
    src, dst = _model(0), _model(1)
    state = src.state_dict() if prefix else src.encoder.state_dict()
    torch.save(state, tmp_path / "w.pt")
    head = dst.heads["a"].weight.clone()
    load_backbone_weights(dst, tmp_path / "w.pt")
    for (n, p), (_, q) in zip(src.encoder.state_dict().items(),
                              dst.encoder.state_dict().items()):
        assert torch.equal(p, q), n
    assert torch.equal(dst.heads["a"].weight, head)
    x = torch.rand(3, 1, 28, 28)
    src.eval(), dst.eval()
    assert torch.equal(src.encoder(x), dst.encoder(x))


def test_missing_keys_and_shape_mismatch_are_named(tmp_path):
    state = _model(0).encoder.state_dict()
    del state["fc.bias"]
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(ConfigError, match=r"missing keys fc\.bias"):
        load_backbone_weights(_model(1), tmp_path / "m.pt")
    torch.manual_seed(0)
    other = SmallResNet(width=4, stem_stride=2, out_features=16).state_dict()
    torch.save(other, tmp_path / "s.pt")
    with pytest.raises(ConfigError, match=r"shape mismatch for fc.weight \(file \(16, 16\)"):
        load_backbone_weights(_model(1), tmp_path / "s.pt")


def test_not_a_state_dict_and_no_file(tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(ConfigError, match=r"weights_only=True"):
        load_backbone_weights(_model(0), tmp_path / "x.pt")
    with pytest.raises(ConfigError, match="no such file"):
        load_backbone_weights(_model(0), tmp_path / "nope.pt")
