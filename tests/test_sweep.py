"""sweep: every point trained and evaluated, ranked tables and plot, resume, bad grids."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import copy_model
from PIL import Image

from pipelines.config.pipeline_config import load_pipeline_config, patch_config
from pipelines.errors import OdliteError
from pipelines.sweep import point_name, read_grid, sweep

GRID = """
fixed:
  num_steps: 4
points:
  - {localization_weight: 2.0}
grid:
  classification_weight: [1.0, 2.0]
"""


def test_sweep_trains_each_point_ranks_them_and_resumes(tiny_config, tiny_model, tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    out = tmp_path / "sweep"
    # A first run was interrupted in the middle of the first grid point, at step 2.
    first = out / point_name(1, {"classification_weight": 1.0})
    patch_config(tiny_config, first / "pipeline.config", ["num_steps=4", "classification_weight=1.0"])
    copy_model(tiny_model, first / "model")  # the same network, stopped at step 2

    result = sweep(tiny_config, grid, out, progress=False, eval_every=2)
    assert "resuming from" in capsys.readouterr().out  # the interrupted point went on from its checkpoint
    assert not result.interrupted and len(result.trained) == 3 and len(result.rows) == 3
    listed = load_pipeline_config(out / point_name(0, {"localization_weight": 2.0}) / "pipeline.config")
    assert listed.get("model.ssd.loss.localization_weight") == 2.0
    assert listed.get("model.ssd.loss.classification_weight") == 1.0  # the base config's
    for index, weight in enumerate([1.0, 2.0], start=1):
        folder = out / point_name(index, {"classification_weight": weight})
        config = load_pipeline_config(folder / "pipeline.config")
        assert config.get("model.ssd.loss.classification_weight") == weight
        assert (folder / "model" / "ckpt-4.index").exists()
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert float(rows[0]["AP"]) >= float(rows[1]["AP"]) >= float(rows[2]["AP"])
    assert set(rows[0]) >= {"point", "localization_weight", "classification_weight", "AP", "AP50", "step"}
    by_point = {r["point"]: r for r in rows}
    for name, row in by_point.items():  # ranked by each point's best evaluation, and its step shown
        evaluated = [json.loads(p.read_text()) for p in (out / name / "model" / "eval").glob("step-*/metrics.json")]
        best = max(evaluated, key=lambda m: (m["AP"], -m["step"]))
        assert (float(row["AP"]), int(row["step"]), row["trained_steps"]) == (best["AP"], best["step"], "4")
    assert by_point[point_name(0, {"localization_weight": 2.0})]["classification_weight"] == "base"
    assert "mAP@0.5:0.95" in (out / "results.md").read_text()
    with Image.open(out / "results.png") as plot:
        plot.load()  # a whole picture, not an empty or cut-off file
        assert min(plot.size) > 100

    again = sweep(tiny_config, grid, out, progress=False, say=lambda message: None)
    assert again.trained == [] and len(again.rows) == 3  # finished points are skipped


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("grid: [1, 2", "not valid YAML"),
        ("fixed: {num_steps: 4}", "non-empty 'grid:'"),
        ("points: [5]", "each point is a non-empty mapping"),
        ("points: {backbone: x}", "'points' must be a list"),
        ("grid: {batch_size: []}", "'batch_size' needs a non-empty list"),
        ("grid: {batch_size: [2]}\nextra: 1", "unknown key(s) extra"),
    ],
)
def test_bad_grids_are_refused_with_the_reason(tmp_path, text, words):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    with pytest.raises(OdliteError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_grid(grid)


def test_an_unknown_parameter_fails_before_any_training(tiny_config, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  batch_sise: [2, 4]\n")
    with pytest.raises(OdliteError, match="did you mean"):
        sweep(tiny_config, grid, tmp_path / "sweep", progress=False, say=lambda message: None)
    assert not list((tmp_path / "sweep").glob("*/model"))


def test_shipped_grids_name_known_parameters(tmp_path):
    from conftest import FASTER_RCNN_CONFIG, REPO, TOOTH_CONFIG

    for path in sorted((REPO / "configs" / "sweeps").glob("*.yaml")):
        grid = read_grid(path)
        base = FASTER_RCNN_CONFIG if path.stem == "backbones" else TOOTH_CONFIG
        for index, point in enumerate(grid.points()):
            values = {**grid.fixed, **point}
            assignments = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in values.items()]
            patch_config(base, tmp_path / f"{path.stem}-{index}.config", assignments)
    assert len(read_grid(REPO / "configs" / "sweeps" / "tooth_grid.yaml").points()) == 64


def test_tables_rank_points_by_map_whatever_order_they_finished_in(tmp_path):
    from pipelines.sweep import write_tables

    rows = [
        {"point": "000-a", "classification_weight": 1.0, "AP": 0.41, "AP50": 0.90, "step": 600},
        {"point": "001-b", "classification_weight": 2.0, "AP": 0.73, "AP50": 0.95, "step": 600},
        {"point": "002-c", "classification_weight": 0.5, "AP": 0.12, "AP50": 0.30, "step": 600},
    ]
    write_tables(tmp_path, rows, ["classification_weight"])
    with (tmp_path / "results.csv").open() as f:
        ranked = list(csv.DictReader(f))
    assert [(r["rank"], r["point"]) for r in ranked] == [("1", "001-b"), ("2", "000-a"), ("3", "002-c")]
    table = (tmp_path / "results.md").read_text()
    assert table.index("001-b") < table.index("000-a") < table.index("002-c")
