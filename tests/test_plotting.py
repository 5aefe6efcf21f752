"""mtlkit plot: conflict incidence curves and the per-layer profile (synthetic run folders)."""

from __future__ import annotations

import pytest

from mtlkit import plotting
from mtlkit.cli import main
from mtlkit.results import write_csv, write_json

pytest.importorskip("matplotlib")


def _run(tmp_path, name, mask, incidences, layer=True):
    run = tmp_path / name
    rows = [{"step": i, "epoch": 0, "cosine.incidence": v, "cosine.incidence_trainable": v / 2}
            for i, v in enumerate(incidences)]
    write_csv(run / "steps.csv", rows)
    results = {"aggregator": "mean", "mask": mask, "seed": 0,
               "trainable_fraction": 1.0 if mask == "dense" else 0.3, "probes": {}}
    if layer:
        results["probes"]["layer_conflict"] = {
            "layers": ["encoder.conv1", "encoder.conv2", "encoder.fc"],
            "s_conflict_counts": {"encoder.conv1": 3, "encoder.conv2": 7, "encoder.fc": 1},
            "mean_cosine": {"encoder.conv1": 0.1, "encoder.conv2": -0.05, "encoder.fc": 0.3},
            "threshold": 0.0, "observed_steps": 5, "pairs_per_step": 1}
    write_json(run / "results.json", results)
    return run


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _png_size_dpi(path):
    """(width, height, dpi) from the PNG's IHDR and pHYs chunks (no image library needed)."""
    import struct

    data = path.read_bytes()
    width, height = struct.unpack(">II", data[16:24])
    at = data.index(b"pHYs")
    ppm_x, _, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    assert unit == 1  # pixels per metre
    return width, height, ppm_x * 0.0254


def _check_formats(first, size_in):
    """PNG (header, >= 200 dpi, pixel size = inches x dpi), PDF header, SVG root element."""
    import xml.etree.ElementTree as ET

    png, pdf, svg = (first.with_suffix(f".{x}") for x in ("png", "pdf", "svg"))
    assert _is_png(png)
    width, height, dpi = _png_size_dpi(png)
    assert dpi >= 200 and round(dpi) == plotting.DPI
    assert (width, height) == (round(size_in[0] * plotting.DPI), round(size_in[1] * plotting.DPI))
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_seeds_sharing_a_label_are_averaged_and_smoothed(tmp_path):
    a = _run(tmp_path, "a", "psn", [1, 0, 1, 0])
    b = _run(tmp_path, "b", "psn", [0, 0, 1, 1])
    d = _run(tmp_path, "d", "dense", [1, 1, 1, 1])
    curves = plotting.conflict_curves([a, b, d], window=2)
    sparse = curves["mean + psn (30% trainable)"]
    assert sparse["runs"] == 2
    assert sparse["full"] == pytest.approx([0.5, 0.25, 0.5, 0.75])
    assert sparse["trainable"] == pytest.approx([0.25, 0.125, 0.25, 0.375])
    assert curves["mean + dense"]["trainable"] is None  # same as full for a dense mask


def test_cli_draws_both_charts(tmp_path, capsys):
    runs = [str(_run(tmp_path, "dense", "dense", [1, 0] * 10)),
            str(_run(tmp_path, "psn", "psn", [0, 0, 1] * 7))]
    assert main(["plot", "conflict", *runs, "--out", str(tmp_path / "c.png")]) == 0
    assert main(["plot", "layers", *runs, "--out", str(tmp_path / "l.png"),
                 "--label", "dense", "--label", "psn 30%"]) == 0
    assert _is_png(tmp_path / "c.png") and _is_png(tmp_path / "l.png")


@pytest.mark.parametrize("chart, extra, match", [
    ("layers", [], "no probes.layer_conflict"),
    ("conflict", ["--window", "0"], "--window"),
    ("conflict", ["--label", "x", "--label", "y"], "2 labels for 1 runs"),
])
def test_bad_input(tmp_path, capsys, chart, extra, match):
    run = _run(tmp_path, "r", "psn", [0, 1], layer=False)
    rc = main(["plot", chart, str(run), "--out", str(tmp_path / "o.png"), *extra])
    assert rc == 2 and match in capsys.readouterr().err


def test_missing_run_is_named(tmp_path, capsys):
    rc = main(["plot", "conflict", str(tmp_path / "nope"), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope" in err


def test_every_chart_kind_writes_png_pdf_svg_at_print_resolution(tmp_path):
    runs = [_run(tmp_path, f"{m}{i}", m, [1, 0, 1, 0, 0, 1][i:] + [0] * i)
            for m in ("dense", "psn") for i in range(2)]
    labels = ["dense", "dense", "psn", "psn"]
    c = plotting.plot_conflict(runs, tmp_path / "c.png", labels=labels, window=2)
    _check_formats(c, (6.5, 4.2))
    d = plotting.plot_conflict_depth(runs, tmp_path / "d", labels=labels)
    assert d.suffix == ".png"
    _check_formats(d, (6.5, 6))
    layers = plotting.plot_layer_profile(runs[:1], tmp_path / "l.svg", formats="svg,png,pdf")
    assert layers.suffix == ".svg"
    _check_formats(layers, (6.0, 6))


def test_save_png_of_other_modules_writes_every_format_with_the_legend_outside(tmp_path):
    plt = plotting.pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.legend()  # inside the axes, as the search report draws it
    path = plotting.save_png(fig, plt, tmp_path / "x.png")
    _check_formats(path, (5, 4))
    assert "a line" in path.with_suffix(".svg").read_text()


def test_single_run_says_n_1_and_draws_no_band(tmp_path):
    run = _run(tmp_path, "one", "psn", [1, 0, 1])
    curves = plotting.conflict_curves([run], window=1)
    (curve,) = curves.values()
    assert curve["full_std"] is None and curve["runs"] == 1
    plotting.plot_conflict([run], tmp_path / "one.svg", formats="svg")
    text = (tmp_path / "one.svg").read_text()
    assert "n = 1" in text and "± 0" not in text


def test_seed_band_is_the_pointwise_sample_std(tmp_path):
    a = _run(tmp_path, "a", "dense", [1, 0, 1, 1])
    b = _run(tmp_path, "b", "dense", [0, 0, 1, 0])
    (curve,) = plotting.conflict_curves([a, b], labels=["x", "x"], window=1).values()
    # two values u, v have sample std |u - v| / sqrt(2)
    assert curve["full_std"] == pytest.approx([2 ** -0.5, 0, 0, 2 ** -0.5])


def test_a_layer_a_run_does_not_share_is_marked_not_drawn_as_an_empty_bar(tmp_path):
    """Recon's branched layers leave the shared set: the old chart drew count 0 for them."""
    base = _run(tmp_path, "base", "dense", [1, 0])
    branched = _run(tmp_path, "branched", "dense", [1, 0])
    results = plotting.load_results(branched)
    profile = results["probes"]["layer_conflict"]
    profile["layers"].remove("encoder.conv2")
    del profile["s_conflict_counts"]["encoder.conv2"], profile["mean_cosine"]["encoder.conv2"]
    write_json(branched / "results.json", results)
    plotting.plot_layer_profile([base, branched], tmp_path / "l.svg", formats="svg")
    text = (tmp_path / "l.svg").read_text()
    assert "encoder.conv2" in text and "not shared" in text


def test_bad_format_is_one_clear_error(tmp_path, capsys):
    run = _run(tmp_path, "r", "psn", [0, 1])
    rc = main(["plot", "conflict", str(run), "--out", str(tmp_path / "o"), "--format", "gif"])
    assert rc == 2 and "--format" in capsys.readouterr().err
