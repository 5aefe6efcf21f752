"""``mtlkit recon`` end to end on a tiny offline Multi-MNIST, resuming, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mtlkit_plugins.transforms.recon import branch_layers

from mtlkit.cli import main
from mtlkit.commands import recon as recon_cmd
from mtlkit.commands.recon import ReconOptions, scores_document, select_layers
from mtlkit.trainer import count_parameters

TINY = ["--benchmark", "multi_mnist", "--benchmark-param", "n_train=384",
        "--benchmark-param", "n_val=64", "--benchmark-param", "n_test=128",
        "--batch-size", "64", "--epochs", "2", "--threads", "1", "--seed", "0", "--quiet"]
ARTIFACTS = ["recon_plan.json", "conflict_scores.json", "selection.json", "recon.json",
             "results.json", "score/results.json", "baseline/results.json", "checkpoint.pt"]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recon") / "run"
    assert main(["recon", *TINY, "--threshold", "0", "--top-k", "1", "--out", str(out)]) == 0
    return out


def test_artifacts_exist_and_agree(run_dir):
    for name in ARTIFACTS:
        assert (run_dir / name).is_file(), name
    results = load(run_dir / "results.json")
    report = load(run_dir / "recon.json")
    assert results["recon"] == report
    assert results["aggregator"] == "mean" and results["tasks"].keys() == {"left", "right"}
    assert report["chosen_layers"] == load(run_dir / "selection.json")["layers"]


def test_scores_rank_layers_consistently_with_the_probe_counts(run_dir):
    scores = load(run_dir / "conflict_scores.json")
    probe = load(run_dir / "score/results.json")["probes"]["layer_conflict"]
    counts = probe["s_conflict_counts"]
    assert list(scores["layers"]) == probe["layers"]  # every layer, model order
    assert {n: v["score"] for n, v in scores["layers"].items()} == counts
    ranked = [counts[n] for n in scores["ranking"]]
    assert ranked == sorted(ranked, reverse=True)
    assert scores["threshold"] == 0.0
    # default length: the first 25% of the final run's 12 steps
    assert scores["observed_steps"] == 3 == load(run_dir / "score/results.json")["steps"]
    chosen = load(run_dir / "selection.json")["layers"]
    assert chosen == scores["ranking"][:1]


def test_parameter_counts_grow_by_copies_of_the_chosen_layers(run_dir):
    from mtlkit_plugins.benchmarks.multi_mnist import MultiMNIST

    selection = load(run_dir / "selection.json")
    params = selection["parameters"]
    sizes = selection["layer_params"]
    assert params["increase"] == (2 - 1) * sum(sizes.values())
    model = MultiMNIST().build_model()
    assert params["before"] == count_parameters(model)
    assert params["after"] == count_parameters(branch_layers(model, selection["layers"]))


def test_conflict_is_measured_on_the_remaining_shared_layers(run_dir):
    remaining = load(run_dir / "selection.json")["remaining_shared_layers"]
    final = load(run_dir / "results.json")["probes"]["layer_conflict"]
    base = load(run_dir / "baseline/results.json")["probes"]["layer_conflict"]
    assert final["layers"] == remaining  # the branched copies left the shared scope
    assert set(base["layers"]) == set(remaining) | set(load(run_dir / "selection.json")["layers"])
    c = load(run_dir / "recon.json")["conflict_remaining_shared"]
    assert c["layers"] == remaining
    for side, summary in (("baseline", base), ("recon", final)):
        assert c[side]["incidence_all"] == summary["subset"]["incidence_all"]
        assert 0 <= c[side]["incidence_all"] <= 1


def test_rerun_skips_finished_stages(run_dir):
    stamps = {n: (run_dir / n).stat().st_mtime_ns for n in
              ("conflict_scores.json", "score/results.json", "baseline/results.json",
               "checkpoint.pt", "selection.json")}
    before = load(run_dir / "recon.json")
    assert main(["recon", *TINY, "--threshold", "0", "--top-k", "1", "--out",
                 str(run_dir)]) == 0
    assert {n: (run_dir / n).stat().st_mtime_ns for n in stamps} == stamps
    assert load(run_dir / "recon.json") == before


def test_changed_inputs_are_refused(run_dir, capsys):
    assert main(["recon", *TINY, "--threshold", "0", "--top-k", "2", "--out",
                 str(run_dir)]) == 2
    assert "holds a recon run with top_k=1, not 2" in capsys.readouterr().err


def test_killed_run_resumes_to_the_same_result(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    real = recon_cmd.Recon._trainer

    def dying(self, config, where, transform=None):
        trainer = real(self, config, where, transform)
        if transform is not None:  # the final training: die after its first epoch
            def die(record, tr):
                raise KeyboardInterrupt
            trainer.on_epoch_end = die
        return trainer

    monkeypatch.setattr(recon_cmd.Recon, "_trainer", dying)
    args = ["recon", *TINY, "--threshold", "0", "--top-k", "1", "--out", str(out)]
    assert main(args) == 130
    assert (out / "checkpoint.pt").is_file() and not (out / "results.json").exists()
    monkeypatch.setattr(recon_cmd.Recon, "_trainer", real)
    assert main(args) == 0
    done, killed = load(run_dir / "results.json"), load(out / "results.json")
    assert killed["steps"] == done["steps"]
    assert killed["tasks"] == done["tasks"]
    assert killed["recon"]["conflict_remaining_shared"] == \
        done["recon"]["conflict_remaining_shared"]


def test_top_k_zero_is_the_identity(tmp_path):
    out = tmp_path / "k0"
    assert main(["recon", *TINY, "--epochs", "1", "--top-k", "0", "--no-baseline",
                 "--out", str(out)]) == 0
    report = load(out / "recon.json")
    assert report["chosen_layers"] == [] and report["parameters"]["increase"] == 0
    assert report["stream_mode"] == "identity"
    assert report["conflict_remaining_shared"]["baseline"] is None


@pytest.mark.parametrize(("flags", "message"), [
    (["--top-k", "4"], "invalid top_k=4: the model has 3 shared layer(s) that can be branched"),
    (["--threshold", "1.5"], "invalid threshold=1.5: must be a number in [-1, 1]"),
    (["--threshold", "-2"], "invalid threshold=-2.0"),
    (["--layers", "encoder.conv9"], "invalid layer 'encoder.conv9': not a shared layer"),
    (["--param-budget", "1.5"], "invalid param_budget=1.5"),
    (["--top-k", "1", "--param-budget", "0.5"], "not allowed with argument"),
])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys, flags, message):
    out = tmp_path / "bad"
    try:
        code = main(["recon", *TINY, *flags, "--out", str(out)])
    except SystemExit as exc:  # argparse's own errors (mutually exclusive flags)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


# -- selection ------------------------------------------------------------------------------

SUMMARY = {"layers": ["e.a", "e.b", "e.c", "e.d"],
           "s_conflict_counts": {"e.a": 3, "e.b": 7, "e.c": 3, "e.d": 0},
           "mean_cosine": {"e.a": 0.1, "e.b": -0.2, "e.c": 0.0, "e.d": 0.5},
           "threshold": -0.1, "observed_steps": 10, "pairs_per_step": 1}
SIZES = {"e.a": 10, "e.b": 100, "e.c": 20, "e.d": 5}


def test_ranking_is_by_count_with_ties_in_model_order():
    scores = scores_document(SUMMARY, SIZES, SIZES)
    assert scores["ranking"] == ["e.b", "e.a", "e.c", "e.d"]
    assert [scores["layers"][n]["rank"] for n in SUMMARY["layers"]] == [2, 1, 3, 4]
    assert scores["layers"]["e.b"]["rate"] == 0.7


def test_top_k_skips_layers_that_cannot_be_branched():
    scores = scores_document(SUMMARY, SIZES, {n: s for n, s in SIZES.items() if n != "e.b"})
    assert select_layers(scores, ReconOptions(threshold=0.0, top_k=2)) == ["e.a", "e.c"]
    with pytest.raises(Exception, match="has 3 shared layer"):
        select_layers(scores, ReconOptions(threshold=0.0, top_k=4))


def test_param_budget_takes_best_ranked_conflicting_layers_that_fit():
    scores = scores_document(SUMMARY, SIZES, SIZES)
    # 0.2 x 135 = 27: e.b (100) does not fit, e.a (10) does, e.c (20) would exceed, e.d never
    # conflicted
    assert select_layers(scores, ReconOptions(threshold=0.0, param_budget=0.2)) == ["e.a"]
    assert select_layers(scores, ReconOptions(threshold=0.0, param_budget=1.0)) == \
        ["e.b", "e.a", "e.c"]
