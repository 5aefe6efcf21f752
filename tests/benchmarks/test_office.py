"""Office-31 / Office-Home: official layouts, per-domain tasks, one sub-batch per domain,
padded evaluation, LibMTL split lists, clear errors; a few training steps end to end."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from fixtures.office import write_office
from mtlkit_plugins.benchmarks._office import PAD, DomainClassification
from mtlkit_plugins.benchmarks.office_31 import Office31
from mtlkit_plugins.benchmarks.office_home import OfficeHome

from mtlkit.config import TrainConfig
from mtlkit.errors import ConfigError, DataError
from mtlkit.trainer import Trainer

SMALL = {"image_size": 16, "backbone_params": {"width": 4, "out_features": 8}, "hidden": 8}


@pytest.fixture(scope="module")
def office31(tmp_path_factory):
    root = tmp_path_factory.mktemp("office")
    return root, write_office(root, "office_31")


def test_office31_reads_the_official_layout_and_splits_every_domain(office31):
    root, written = office31
    bench = Office31(data_root=str(root), **SMALL)
    assert [t.name for t in bench.tasks] == ["amazon", "dslr", "webcam"]
    splits = bench.splits()
    # per class 60/20/20: 7 images -> 4/2/1, 5 -> 3/1/1; 31 classes
    sizes = {d: [len(p) for p in ds.paths] for d, ds in
             zip(("train", "val", "test"), (splits.train, splits.val, splits.test))}
    assert sizes == {"train": [124, 93, 93], "val": [62, 31, 31], "test": [31, 31, 31]}
    # no image is in two splits, and every written image is in one
    for k, d in enumerate(("amazon", "dslr", "webcam")):
        seen = [set(ds.paths[k]) for ds in (splits.train, splits.val, splits.test)]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
        assert set().union(*seen) == {p for ps in written[d].values() for p in ps}
    # labels follow the sorted class folders
    ds = splits.train
    j = 0
    assert ds.labels[0][j] == sorted(written["amazon"]).index(ds.paths[0][j].parent.name)


def test_a_batch_holds_one_sub_batch_per_domain_and_evaluation_is_padded(office31):
    root, _ = office31
    splits = Office31(data_root=str(root), **SMALL).splits()
    train, val = splits.train, splits.val
    assert len(train) == 124 and len(val) == 62
    x, y = train[100]  # dslr and webcam cycle: 100 mod 93
    assert x.shape == (3, 3, 16, 16)
    assert int(y["dslr"]) == int(train.labels[1][100 % 93])
    x, y = val[40]  # only amazon has a 41st validation image
    assert int(y["amazon"]) >= 0 and int(y["dslr"]) == PAD == int(y["webcam"])
    assert torch.equal(x[1], torch.zeros(3, 16, 16))


def test_padding_is_left_out_of_loss_and_metrics():
    head = DomainClassification(3)
    out = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [9.0, 0, 0]])
    target = torch.tensor([0, 2, PAD])
    acc = head.metrics()
    acc.update(out, target)
    assert acc.compute()["accuracy"] == 0.5
    expected = torch.nn.functional.cross_entropy(out[:2], target[:2])
    assert torch.allclose(head.loss(out, target), expected)
    assert float(head.loss(out, torch.full((3,), PAD))) == 0.0


def test_each_task_reads_only_its_own_domain(office31):
    root, _ = office31
    model = Office31(data_root=str(root), **SMALL).build_model().eval()
    x = torch.randn(2, 3, 3, 16, 16)
    out = model(x)
    x2 = x.clone()
    x2[:, 1] = torch.randn(2, 3, 16, 16)  # change the dslr images only
    out2 = model(x2)
    assert torch.equal(out["amazon"], out2["amazon"]) and torch.equal(out["webcam"],
                                                                      out2["webcam"])
    assert not torch.equal(out["dslr"], out2["dslr"])
    z = model.represent(x)
    assert z.shape == (2, 3, 8)
    assert torch.equal(model.heads_forward(z)["dslr"], out["dslr"])


@pytest.mark.parametrize("architecture", [None, "mmoe"])
def test_trains_a_few_steps_with_psn_and_upgrad(office31, architecture):
    root, _ = office31
    params = {**SMALL, "n_train": 12, "n_val": 8, "n_test": 8}
    if architecture:
        params |= {"architecture": architecture, "architecture_params": {"num_experts": 2}}
    cfg = TrainConfig(benchmark="office_31", data_root=str(root), benchmark_params=params,
                      aggregator="upgrad", mask="psn", density=0.5, batch_size=4,
                      max_steps=3, epochs=1, threads=1, checkpoint=False, probes=[])
    trainer = Trainer(cfg, None, progress=False)
    results = trainer.fit()
    assert trainer.step == 3
    assert set(results["tasks"]) == {"amazon", "dslr", "webcam"}
    assert all(math.isfinite(m["accuracy"]) for m in results["tasks"].values())


def test_office_home_layout_with_a_space_in_real_world(tmp_path):
    written = write_office(tmp_path, "office_home", per_class={
        "Art": 5, "Clipart": 5, "Product": 5, "Real World": 5})
    bench = OfficeHome(data_root=str(tmp_path), **SMALL)
    assert [t.name for t in bench.tasks] == ["art", "clipart", "product", "real_world"]
    assert [len(p) for p in bench.splits().test.paths] == [65] * 4
    assert bench.tasks[0].head.num_classes == 65
    # LibMTL's lists say Real_World/...; the official folder has a space
    lists = tmp_path / "data_txt"
    lists.mkdir()
    for folder, name in (("Art", "Art"), ("Clipart", "Clipart"), ("Product", "Product"),
                         ("Real World", "Real_World")):
        for split in ("train", "val", "test"):
            lines = [f"{name}/{c}/{p.name} {i}" for i, c in enumerate(written[folder])
                     for p in written[folder][c][:2]]
            (lists / f"{name}_{split}.txt").write_text("\n".join(lines) + "\n")
    splits = OfficeHome(data_root=str(tmp_path), split_lists=str(lists), **SMALL).splits()
    assert splits.val.paths[3][0] == written["Real World"][sorted(written["Real World"])[0]][0]


def test_libmtl_split_lists(office31, tmp_path):
    root, written = office31
    lists = tmp_path / "data_txt"
    lists.mkdir()
    for d in ("amazon", "dslr", "webcam"):
        for split, take in (("train", slice(0, 3)), ("val", slice(3, 4)), ("test", slice(4, 5))):
            lines = [f"{p.relative_to(root / 'Office31')} {c}"
                     for c, name in enumerate(written[d]) for p in written[d][name][take]]
            (lists / f"{d}_{split}.txt").write_text("\n".join(lines) + "\n")
    splits = Office31(data_root=str(root), split_lists=str(lists), **SMALL).splits()
    assert [len(p) for p in splits.train.paths] == [93, 93, 93]
    (lists / "dslr_val.txt").write_text("dslr/images/nowhere.jpg 0\n")
    with pytest.raises(DataError, match="missing image"):
        Office31(data_root=str(root), split_lists=str(lists), **SMALL).splits()


def test_missing_or_malformed_roots_are_one_clear_error(office31, tmp_path):
    with pytest.raises(DataError, match="needs --data-root"):
        Office31()
    with pytest.raises(DataError, match=r"amazon,dslr,webcam\}/images/<class>"):
        Office31(data_root=str(tmp_path))
    root, _ = office31
    broken = tmp_path / "broken"
    shutil.copytree(root / "Office31", broken / "Office31")
    shutil.rmtree(broken / "Office31" / "webcam" / "images" / "mug")
    with pytest.raises(DataError, match="30 class folders, expected 31"):
        Office31(data_root=str(broken), **SMALL).splits()
    with pytest.raises(ConfigError, match="split_lists"):
        Office31(data_root=str(root), split_lists=str(tmp_path / "none"))


def test_cross_stitch_splits_the_backbone_then_the_hidden_layer(office31):
    root, _ = office31
    model = Office31(data_root=str(root), architecture="cross_stitch", **SMALL).build_model()
    assert model.inner.encoder.depth == 5  # small_cnn's 4 stages, then the hidden layer
    out = model.eval()(torch.randn(2, 3, 3, 16, 16))
    assert out["webcam"].shape == (2, 31)


def test_a_domain_loss_reaches_no_other_domain_parameters(office31):
    root, _ = office31
    model = Office31(data_root=str(root), architecture="cgc", **SMALL).build_model()
    owned = {t: {id(p) for _, p in model.task_named_parameters(t)} for t in model.task_names}
    shared = {id(p) for _, p in model.shared_named_parameters()}
    assert shared | set().union(*owned.values()) == {id(p) for p in model.parameters()}
    x = torch.randn(4, 3, 3, 16, 16)
    params = list(model.parameters())
    for t in model.task_names:
        grads = torch.autograd.grad(model(x)[t].sum(), params, allow_unused=True)
        reached = {id(p) for p, g in zip(params, grads) if g is not None and bool(g.any())}
        assert owned[t] <= reached and shared <= reached
        assert all(not reached & owned[u] for u in model.task_names if u != t)


def _torchvision_or_reason() -> str | None:
    try:
        import torchvision.models  # noqa: F401
    except Exception as exc:
        return (f"torchvision cannot import ({type(exc).__name__}: {exc}); install the vision "
                "extra (docs/backbones.md)")
    return None


_TV = _torchvision_or_reason()


@pytest.mark.skipif(_TV is not None, reason=_TV or "")
def test_libmtl_model_resnet18_with_cross_stitch_columns(office31):
    # LibMTL's Office model (ResNet-18 + hidden layer) rebuilt as cross-stitch columns split at
    # the ResNet stages (+ the hidden layer); random weights (no file needed), small images
    root, _ = office31
    bench = Office31(data_root=str(root), backbone="resnet18", image_size=32,
                     architecture="cross_stitch")
    model = bench.build_model().eval()
    assert model.inner.encoder.depth == 5  # 4 ResNet stages, then the hidden layer
    out = model(torch.randn(2, 3, 3, 32, 32))
    assert {t: o.shape for t, o in out.items()} == {t: (2, 31) for t in
                                                    ("amazon", "dslr", "webcam")}
