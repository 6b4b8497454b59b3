"""The sweep stage: train and evaluate every point of a grid of hyperparameters, and rank them.

A grid file (YAML) names values per parameter, with the config verb's names (aliases
such as ``batch_size`` or dotted paths)::

    fixed:                      # applied to every point (optional)
      num_steps: 600
    grid:                       # every combination is one point
      batch_size: [8, 16]
      aspect_ratios: [[1.0, 2.0, 0.5], [1.0, 3.0, 0.333]]
    points:                     # and/or points listed one by one (one factor at a time)
      - {backbone: faster_rcnn_resnet50_fpn_keras}
      - {backbone: faster_rcnn_resnet101_fpn_keras}
      - {min_dimension: 800, max_dimension: 800}

A file has ``grid:``, ``points:`` or both (the listed points first); all of them are
ranked in one table, where a parameter a point leaves alone reads ``base``.

Each point gets ``OUT/<name>/`` with its pipeline.config, its model folder and its
evaluation; ``result.json`` is written last and marks the point done. With
``eval_every``, each point is evaluated as it trains and ranked by its best checkpoint
(mAP@0.5:0.95, kept in ``model/best/``), early-stopped after ``early_stop_patience``
evaluations without improvement; the table shows the step it came from. A rerun skips
done points and resumes an interrupted one from its latest checkpoint (training
resumes by itself). ``results.csv``, ``results.md`` (ranked by mAP@0.5:0.95) and
``results.png`` (mAP against each swept parameter) are rewritten after every point.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines import defaults
from pipelines.atomic import refuse_overlap, write_text_atomically
from pipelines.config.pipeline_config import patch_config
from pipelines.errors import OdliteError

BASE = "base"  # a parameter a listed point leaves as the base config has it


@dataclass
class Grid:
    fixed: dict
    grid: dict[str, list]
    listed: list[dict] = field(default_factory=list)

    def points(self) -> list[dict]:
        names = list(self.grid)
        combined = [dict(zip(names, values)) for values in itertools.product(*(self.grid[n] for n in names))]
        return [*self.listed, *(combined if names else [])]

    @property
    def parameters(self) -> list[str]:
        return list(dict.fromkeys([name for point in self.listed for name in point] + list(self.grid)))


def read_grid(path: str | Path) -> Grid:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise OdliteError.at(path, f"cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise OdliteError.at(path, f"not valid YAML: {getattr(error, 'problem', error)}", where) from None
    expected = "a mapping with a non-empty 'grid:' of parameter: [values] and/or 'points:', a list of settings"
    if not isinstance(data, dict) or not (data.get("grid") or data.get("points")):
        raise OdliteError.at(path, f"expected {expected}")
    unknown = sorted(set(data) - {"grid", "points", "fixed"})
    if unknown:
        raise OdliteError.at(path, f"unknown key(s) {', '.join(unknown)}; expected 'grid', 'points' and 'fixed'")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise OdliteError.at(path, "'grid' must be a mapping of parameter: [values]", "grid")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise OdliteError.at(path, f"'{name}' needs a non-empty list of values", f"grid.{name}")
    listed = data.get("points") or []
    if not isinstance(listed, list):
        raise OdliteError.at(path, "'points' must be a list of settings, e.g. - {backbone: ...}", "points")
    for index, point in enumerate(listed):
        if not isinstance(point, dict) or not point:
            raise OdliteError.at(path, "each point is a non-empty mapping of parameter: value", f"points[{index}]")
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise OdliteError.at(path, "'fixed' must be a mapping of parameter: value", "fixed")
    return Grid(fixed, grid, listed)


def _text(value) -> str:
    """A grid value as the config verb reads it (a list becomes ``1.0,2.0``)."""
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def point_name(index: int, point: dict) -> str:
    parts = [f"{name.rsplit('.', 1)[-1]}={_text(value)}" for name, value in point.items()]
    return f"{index:03d}_" + re.sub(r"[^A-Za-z0-9=.,_-]+", "_", "_".join(parts))[:120]


@dataclass
class SweepResult:
    out: Path
    rows: list[dict] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)  # points trained (or resumed) in this run
    interrupted: bool = False


def sweep(
    base_config: str | Path,
    grid_path: str | Path,
    out: str | Path,
    seed: int | None = defaults.SWEEP_SEED,
    progress: bool = True,
    say=print,
    eval_every: int = 0,
    early_stop_patience: int = 0,
) -> SweepResult:
    from pipelines.artifacts import config_inputs
    from pipelines.config.experiment import load_train_spec
    from pipelines.evaluate import evaluate
    from pipelines.train import train
    from pipelines.training.best_checkpoint import best_metrics

    grid, out = read_grid(grid_path), Path(out)
    read = [("base config", base_config), ("grid", grid_path)]
    refuse_overlap(out, read + config_inputs(load_train_spec(base_config)))
    points = grid.points()
    out.mkdir(parents=True, exist_ok=True)
    # Check every point's config before training any, so a typo fails in seconds, not hours.
    for index, point in enumerate(points):
        config = out / point_name(index, point) / "pipeline.config"
        assignments = [f"{k}={_text(v)}" for k, v in {**grid.fixed, **point}.items()]
        patch_config(base_config, config, assignments, overwrite=True)
    result = SweepResult(out)
    for index, point in enumerate(points):
        name = point_name(index, point)
        folder = out / name
        done = folder / "result.json"
        if done.exists():
            say(f"[{index + 1}/{len(points)}] {name}: done before, skipped")
            result.rows.append(json.loads(done.read_text()))
            continue
        say(f"[{index + 1}/{len(points)}] {name}: training")
        trained = train(
            folder / "pipeline.config",
            folder / "model",
            seed=seed,
            progress=progress,
            eval_every=eval_every,
            early_stop_patience=early_stop_patience,
        )
        result.trained.append(name)
        if trained.interrupted:
            result.interrupted = True
            break
        metrics = best_metrics(folder / "model") if eval_every else None
        metrics = metrics or evaluate(None, folder / "model", out=folder / "eval", progress=progress)
        row = {"point": name, **{k: _text(v) for k, v in point.items()}, "AP": metrics["AP"], "AP50": metrics["AP50"]}
        row.update(step=metrics["step"], trained_steps=trained.step)
        write_text_atomically(done, json.dumps(row, indent=2) + "\n")
        result.rows.append(row)
        say(f"    mAP@0.5:0.95 {metrics['AP']:.3f}  mAP@0.5 {metrics['AP50']:.3f}  (step {metrics['step']})")
        write_tables(out, result.rows, grid.parameters)
    write_tables(out, result.rows, grid.parameters)
    return result


def write_tables(out: Path, rows: list[dict], parameters: list[str]) -> None:
    if not rows:
        return
    ranked = sorted(rows, key=lambda r: -r["AP"])
    columns = ["rank", "point", *parameters, "AP", "AP50", "step", "trained_steps"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for rank, row in enumerate(ranked, start=1):
        writer.writerow({**{p: BASE for p in parameters}, **row, "rank": rank})
    write_text_atomically(out / "results.csv", buffer.getvalue())
    from tabulate import tabulate

    table = [
        [rank, *(row.get(p, BASE) for p in parameters), f"{row['AP']:.3f}", f"{row['AP50']:.3f}", row["step"]]
        + [row.get("trained_steps", row["step"]), row["point"]]
        for rank, row in enumerate(ranked, start=1)
    ]
    headers = ["rank", *parameters, "mAP@0.5:0.95", "mAP@0.5", "step", "trained", "folder"]
    text = "# Sweep results\n\nRanked by mAP@0.5:0.95 on the validation split, at each point's best checkpoint "
    text += "(the step it came from; its last one when evaluated only at the end).\n\n"
    text += tabulate(table, headers=headers, tablefmt="github") + "\n\n![mAP per parameter](results.png)\n"
    write_text_atomically(out / "results.md", text)
    _plot(out / "results.png", rows, parameters)


def _plot(path: Path, rows: list[dict], parameters: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(parameters), figsize=(4 * len(parameters), 3.2), squeeze=False)
    for axis, parameter in zip(axes[0], parameters):
        values = list(dict.fromkeys(row.get(parameter, BASE) for row in rows))
        positions = {v: i for i, v in enumerate(values)}
        for metric, marker in (("AP", "o"), ("AP50", "s")):
            xs = [positions[row.get(parameter, BASE)] for row in rows]
            axis.scatter(xs, [row[metric] for row in rows], marker=marker, label=metric, alpha=0.8)
        axis.set_xticks(range(len(values)), values, rotation=20, fontsize=8)
        axis.set_xlabel(parameter)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("mAP")
    axes[0][0].legend(["mAP@0.5:0.95", "mAP@0.5"], fontsize=8)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    temporary.replace(path)
