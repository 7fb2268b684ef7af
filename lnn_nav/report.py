"""The evaluation report: results.json, a Markdown table, top-down trajectory
plots (PNG) and an mp4 of a few episodes (onboard view beside the top-down view).

`write_report(run, out_dir)` writes, every file atomically (temporary file in
the same folder, then rename):

    results.json                 per condition: metrics with Wilson 95% intervals,
                                 outcome counts, per-episode numbers; nothing
                                 that depends on the machine or the worker count
    results.md                   one table, one row per condition
    trajectories.png             first condition: every episode over its scene
                                 outline (up to `max_panels`), plus all episodes
                                 together in a start-to-target frame; coloured by outcome
    trajectories_<condition>.png the same for each further condition
    episodes.mp4                 the recorded episodes, onboard | top-down (mp4v)
    run.json                     wall time, worker count, package versions

Frames: top-down views are world ENU seen from above (x east to the right,
y north up), metres.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from lnn_nav.atomic import atomic_path, atomic_write, atomic_write_json
from lnn_nav.metrics import OUTCOMES, Interval, difference_interval, wilson_interval

RESULTS_FORMAT = "lnn_nav.eval_results"
RESULTS_VERSION = 1

OUTCOME_COLORS = {
    "success": "#2ca02c",
    "collision": "#d62728",
    "out_of_bounds": "#ff7f0e",
    "timeout": "#7f7f7f",
}
"""Plot colour of each outcome (matplotlib hex)."""


def _bgr(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return (b, g, r)


def _json_safe(obj: Any) -> Any:
    """NaN and inf become None (strict JSON has no NaN); numpy scalars become Python."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def slug(name: str) -> str:
    """A file-name-safe form of a condition name (`forest-dense/unseen` -> `forest-dense_unseen`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "condition"


# ------------------------------------------------------------------ results.json
def results_dict(run: Any) -> dict[str, Any]:
    """The content of results.json for an `lnn_nav.evaluate.EvalRun`.

    Deterministic: the same policy, conditions, seeds and time limit give the
    same dict on any machine and with any number of workers.
    """
    by_name = {r.condition.name: r for r in run.results}
    conditions = []
    for res in run.results:
        summary = res.summary()
        entry: dict[str, Any] = {
            "condition": res.condition.to_dict(),
            "metrics": summary,
            "episodes": [e.summary() for e in res.episodes],
        }
        base_name = res.condition.baseline
        if base_name is not None and base_name in by_name:
            base = by_name[base_name].summary()
            d = success_difference(summary, base)
            entry["success_vs_baseline"] = {"baseline": base_name, **d.__dict__}
        conditions.append(entry)
    cfg = run.config
    return _json_safe({
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "policy": {"path": str(run.policy_path), "weights_sha256": run.policy_sha256},
        "config": {"episodes": cfg.episodes, "first_seed": cfg.first_seed,
                   "time_limit_s": cfg.time_limit_s},
        "conditions": conditions,
    })


def success_difference(a: dict[str, Any], b: dict[str, Any]) -> Interval:
    """Success rate of summary `a` minus that of `b`, with Newcombe's 95% interval.

    The two are treated as independent samples; for conditions flown on the
    same scenes (paired) the interval is conservative (too wide, not too narrow).
    """
    ia = wilson_interval(int(a["counts"]["success"]), int(a["episodes"]))
    ib = wilson_interval(int(b["counts"]["success"]), int(b["episodes"]))
    return difference_interval(ia, ib)


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results.json written by `write_report`, checking its format."""
    import json

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"results file {p} does not exist")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{p}: format={d.get('format') if isinstance(d, dict) else None!r}: "
                         f"expected {RESULTS_FORMAT!r}")
    if d.get("version") != RESULTS_VERSION:
        raise ValueError(f"{p}: version={d.get('version')!r}: expected {RESULTS_VERSION}")
    return d


# ------------------------------------------------------------------ Markdown table
def _pct(iv: dict[str, Any] | Interval) -> str:
    if isinstance(iv, Interval):
        return iv.as_percent()
    return Interval(iv["value"], iv["low"], iv["high"]).as_percent()


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _signed_points(iv: dict[str, Any]) -> str:
    return (f"{100 * iv['value']:+.1f} [{100 * iv['low']:+.1f}, {100 * iv['high']:+.1f}]")


def markdown_table(results: dict[str, Any]) -> str:
    """One Markdown table, one row per condition, from a results.json dict."""
    rows = [
        (
            "| condition | task | episodes | success [95% CI] | vs baseline, points [95% CI] "
            "| collision | timeout | out of bounds | time to target (s) | path efficiency "
            "| final distance (m) | smoothness (1/s) |"
        ),
        "|---|---|---:|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for c in results["conditions"]:
        m = c["metrics"]
        cond = c["condition"]
        delta = c.get("success_vs_baseline")
        rows.append(
            f"| {cond['name']} | {cond['task']} | {m['episodes']} | {_pct(m['success'])} "
            f"| {_signed_points(delta) if delta else '-'} "
            f"| {100 * m['collision']['value']:.1f}% | {100 * m['timeout']['value']:.1f}% "
            f"| {100 * m['out_of_bounds']['value']:.1f}% "
            f"| {_num(m['time_to_target_s'], '.1f')} | {_num(m['path_efficiency'], '.2f')} "
            f"| {_num(m['final_distance_m'], '.2f')} | {_num(m['command_smoothness'], '.2f')} |"
        )
    notes = [f"- `{c['condition']['name']}`: {c['condition']['description']}"
             for c in results["conditions"] if c["condition"].get("description")]
    cfg = results["config"]
    limit = "per family" if cfg["time_limit_s"] is None else f"{cfg['time_limit_s']} s"
    head = [
        (
            f"Policy `{results['policy']['path']}` (weights SHA-256 "
            f"{str(results['policy']['weights_sha256'])[:12]}...), scenes "
            f"{cfg['first_seed']}..{cfg['first_seed'] + cfg['episodes'] - 1} of each split, "
            f"time limit {limit}."
        ),
        "",
        (
            "Success with its Wilson 95% interval; 'vs baseline' is the success difference to the "
            "condition flying the same scenes unchanged (Newcombe interval). Time to target and "
            "path efficiency are over successful episodes; smoothness is the RMS rate of change "
            "of the command (lower is smoother)."
        ),
        "",
    ]
    return "\n".join(head + rows + ([""] + notes if notes else [])) + "\n"


# ------------------------------------------------------------------ trajectory plot
def _box_corners(box: np.ndarray) -> np.ndarray:
    """(4, 2) corners of a top-down box row (x, y, hx, hy, yaw)."""
    x, y, hx, hy, yaw = box
    c, s = math.cos(yaw), math.sin(yaw)
    local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
    return local @ np.array([[c, s], [-s, c]]) + np.array([x, y])


def _draw_outline(ax: Any, outline: Any) -> None:
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle, Polygon, Rectangle

    h = outline.arena_half_m
    ax.add_patch(Rectangle((-h, -h), 2 * h, 2 * h, fill=False, lw=0.5, ls="--", ec="0.5"))
    circ = outline.circles
    ground = [Circle((x, y), r) for x, y, r, k in circ if k == 0]
    over = [Circle((x, y), r) for x, y, r, k in circ if k != 0]
    if over:
        ax.add_collection(PatchCollection(over, fc="#6a9f58", ec="none", alpha=0.25))
    if ground:
        ax.add_collection(PatchCollection(ground, fc="#5a3d22", ec="none"))
    if len(outline.boxes):
        ax.add_collection(PatchCollection([Polygon(_box_corners(b)) for b in outline.boxes],
                                          fc="#8c8c8c", ec="none", alpha=0.8))


def plot_trajectories(result: Any, path: str | Path, max_panels: int = 36) -> Path:
    """PNG of one condition (`ConditionResult`): a panel per episode (the first
    `max_panels`) with its scene outline, start (triangle), target (star) and
    flight coloured by outcome, plus a panel with every episode in the
    start-to-target frame (start at the origin, initial target on the +x axis)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if isinstance(max_panels, bool) or not isinstance(max_panels, int) or max_panels < 0:
        raise ValueError(f"max_panels={max_panels!r}: expected an integer >= 0")
    eps = result.episodes
    if not eps:
        raise ValueError(f"condition {result.condition.name!r} has no episodes to plot")
    shown = eps[:max_panels]
    n = len(shown) + 1
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.3 * cols, 2.3 * rows + 0.4), dpi=110)
    FigureCanvasAgg(fig)
    counts = {k: sum(e.termination == k for e in eps) for k in OUTCOMES}
    fig.suptitle(f"{result.condition.name}: " + ", ".join(
        f"{k} {v}" for k, v in counts.items() if v), fontsize=9)

    ax = fig.add_subplot(rows, cols, 1)
    reach = 1.0
    for e in eps:
        start = e.outline.start_pos_w[:2]
        tgt = e.outline.target_start_w[:2] - start
        ang = math.atan2(tgt[1], tgt[0])
        rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
        p = (e.pos_w[:, :2] - start) @ rot  # rows times R == R^T applied to each point
        d = float(np.hypot(*tgt))
        reach = max(reach, d, float(np.abs(p).max()))
        ax.plot(p[:, 0], p[:, 1], color=OUTCOME_COLORS[e.termination], lw=0.6, alpha=0.7)
        ax.plot([d], [0.0], marker="*", color="#c00000", ms=4)
    ax.plot([0], [0], marker=">", color="k", ms=4)
    ax.set_xlim(-0.3 * reach, 1.15 * reach)
    ax.set_ylim(-0.72 * reach, 0.72 * reach)
    ax.set_aspect("equal")
    ax.set_title("all episodes, start -> target frame", fontsize=6)
    ax.tick_params(labelsize=5)
    handles = [Line2D([], [], color=OUTCOME_COLORS[k], lw=1.5, label=f"{k} ({counts[k]})")
               for k in OUTCOMES]
    ax.legend(handles=handles, fontsize=4.5, loc="lower left", frameon=False)

    for i, e in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 2)
        _draw_outline(ax, e.outline)
        h = e.outline.arena_half_m + 0.5
        color = OUTCOME_COLORS[e.termination]
        ax.plot(e.target_pos_w[:, 0], e.target_pos_w[:, 1], color="#c00000", lw=0.5, alpha=0.6)
        ax.plot(e.pos_w[:, 0], e.pos_w[:, 1], color=color, lw=0.9)
        ax.plot(*e.outline.target_start_w[:2], marker="*", color="#c00000", ms=6)
        yaw0 = float(e.yaw[0])
        ax.plot(*e.outline.start_pos_w[:2], marker=(3, 0, math.degrees(yaw0) - 90), color="k", ms=5)
        if e.termination in ("collision", "out_of_bounds"):
            ax.plot(*e.pos_w[-1, :2], marker="x", color=color, ms=5)
        ax.set_xlim(-h, h)
        ax.set_ylim(-h, h)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"seed {e.seed}: {e.termination}", fontsize=6, color=color)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path


# ------------------------------------------------------------------ video
class _TopDown:
    """Rasteriser of one scene seen from above into a (size, size, 3) BGR image."""

    def __init__(self, outline: Any, size_px: int) -> None:
        import cv2

        self.size = size_px
        self.half = outline.arena_half_m + 0.5
        img = np.full((size_px, size_px, 3), 240, np.uint8)
        h = outline.arena_half_m
        cv2.rectangle(img, self.px(np.array([-h, h])), self.px(np.array([h, -h])), (170, 170, 170), 1)
        overlay = img.copy()
        for x, y, r, k in outline.circles:
            if k != 0:
                cv2.circle(overlay, self.px(np.array([x, y])), max(1, round(r * self.scale)),
                           (88, 159, 106), -1, cv2.LINE_AA)
        img = cv2.addWeighted(overlay, 0.35, img, 0.65, 0.0)
        for x, y, r, k in outline.circles:
            if k == 0:
                cv2.circle(img, self.px(np.array([x, y])), max(1, round(r * self.scale)),
                           (34, 61, 90), -1, cv2.LINE_AA)
        for b in outline.boxes:
            pts = np.array([self.px(c) for c in _box_corners(b)], np.int32)
            cv2.fillConvexPoly(img, pts, (140, 140, 140), cv2.LINE_AA)
        self.background = img

    @property
    def scale(self) -> float:
        """px per m."""
        return self.size / (2 * self.half)

    def px(self, xy: np.ndarray) -> tuple[int, int]:
        """World (x, y) m -> pixel (col, row); y north is up."""
        return (round((xy[0] + self.half) * self.scale),
                round((self.half - xy[1]) * self.scale))

    def draw(self, pos_w: np.ndarray, yaw: float, target_w: np.ndarray, color: tuple[int, int, int]) -> np.ndarray:
        """The background with the flight so far (`pos_w` (k, 3)), the drone at its
        last position heading `yaw` rad, and the target."""
        import cv2

        img = self.background.copy()
        if len(pos_w) > 1:
            pts = np.array([self.px(p) for p in pos_w[:, :2]], np.int32)
            cv2.polylines(img, [pts], False, color, 2, cv2.LINE_AA)
        cv2.circle(img, self.px(target_w[:2]), max(3, round(0.15 * self.scale)), (30, 30, 200), -1, cv2.LINE_AA)
        p = pos_w[-1, :2]
        fwd = np.array([math.cos(yaw), math.sin(yaw)])
        left = np.array([-fwd[1], fwd[0]])
        L = 0.35
        tri = np.array([self.px(p + L * fwd), self.px(p - 0.5 * L * fwd + 0.45 * L * left),
                        self.px(p - 0.5 * L * fwd - 0.45 * L * left)], np.int32)
        cv2.fillConvexPoly(img, tri, (20, 20, 20), cv2.LINE_AA)
        return img


def _video_frames(e: Any, pane_px: int, fps: float, label: str) -> Any:
    """Yield BGR frames (pane_px, 2 * pane_px, 3) of one recorded episode."""
    import cv2

    if e.frames is None or len(e.frames) == 0:
        raise ValueError(f"episode seed {e.seed} of {e.condition!r} has no recorded frames")
    td = _TopDown(e.outline, pane_px)
    color = _bgr(OUTCOME_COLORS[e.termination])
    font = cv2.FONT_HERSHEY_SIMPLEX
    t = np.concatenate([[0.0], np.cumsum(e.dt[1:])])
    frame = None
    for i in range(len(e.frames)):
        onboard = cv2.resize(e.frames[i][:, :, ::-1], (pane_px, pane_px), interpolation=cv2.INTER_NEAREST)
        top = td.draw(e.pos_w[: i + 1], float(e.yaw[i]), e.target_pos_w[i], (180, 90, 20))
        frame = np.concatenate([onboard, top], axis=1)
        cv2.putText(frame, f"{label}  seed {e.seed}  t={t[i]:4.1f} s", (6, 16), font, 0.42,
                    (255, 255, 255), 1, cv2.LINE_AA)
        yield frame
    # hold the end for a second with the outcome, drawn over the whole flight
    top = td.draw(e.pos_w, float(e.yaw[-1]), e.target_pos_w[-1], color)
    end = np.concatenate([frame[:, :pane_px], top], axis=1)
    cv2.putText(end, e.termination, (pane_px + 8, pane_px - 12), font, 0.7, color, 2, cv2.LINE_AA)
    for _ in range(max(1, round(fps))):
        yield end


def write_video(episodes: list[Any], path: str | Path, fps: float = 30.0, pane_px: int = 320) -> Path:
    """mp4 (OpenCV mp4v) of recorded episodes one after another: onboard camera
    (as the policy saw it, upscaled) on the left, top-down view on the right.
    Written to a temporary file and renamed into place."""
    import cv2

    if not episodes:
        raise ValueError("write_video got no episodes: expected at least one recorded episode")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps={fps!r}: expected a finite number > 0")
    if isinstance(pane_px, bool) or not isinstance(pane_px, int) or pane_px < 32 or pane_px % 2:
        raise ValueError(f"pane_px={pane_px!r}: expected an even integer >= 32")
    path = Path(path)
    # the container is chosen from the extension, so the temporary name ends in .mp4
    with atomic_path(path, suffix=".tmp.mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                 (2 * pane_px, pane_px))
        try:
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV could not open an mp4v writer for {tmp}")
            for e in episodes:
                for frame in _video_frames(e, pane_px, fps, e.condition):
                    writer.write(np.ascontiguousarray(frame))
        finally:
            writer.release()
        if os.path.getsize(tmp) == 0:
            raise RuntimeError(f"OpenCV wrote an empty video to {tmp}")
    return path


# ------------------------------------------------------------------ everything
def write_report(run: Any, out_dir: str | Path, max_panels: int = 36) -> dict[str, Path]:
    """Write the whole report of an `EvalRun` into `out_dir` (see the module doc).

    Returns the paths: results, table, run_info, plot (first condition), plots
    (every condition, in order, as `plots/<condition>`), and video if any
    episode was recorded.
    """
    from lnn_nav.cli.info import package_versions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results_dict(run)
    paths: dict[str, Path] = {}
    paths["results"] = out / "results.json"
    atomic_write_json(paths["results"], results)
    paths["table"] = out / "results.md"
    table = markdown_table(results)
    atomic_write(paths["table"], lambda f: f.write(table.encode()))
    for i, res in enumerate(run.results):
        name = "trajectories.png" if i == 0 else f"trajectories_{slug(res.condition.name)}.png"
        p = plot_trajectories(res, out / name, max_panels=max_panels)
        paths[f"plots/{res.condition.name}"] = p
        if i == 0:
            paths["plot"] = p
    recorded = [e for e in run.results[0].episodes if e.frames is not None] if run.results else []
    if recorded:
        paths["video"] = write_video(recorded, out / "episodes.mp4",
                                     fps=float(run.results[0].condition.control_hz))
    paths["run_info"] = out / "run.json"
    atomic_write_json(paths["run_info"], _json_safe({
        "wall_time_s": round(run.wall_time_s, 3),
        "workers": run.config.workers,
        "episodes_total": sum(len(r.episodes) for r in run.results),
        "versions": package_versions(),
    }))
    return paths


# ------------------------------------------------------------------ head comparison
HEAD_LABELS = {"ltc": "LTC-NCP", "cfc": "CfC-NCP", "lstm": "LSTM", "gru": "GRU", "mlp": "feedforward"}
"""Display name of each head kind."""

GROUP_LABELS = {
    "in_distribution": "forest/unseen",
    "ood_family": "OOD families",
    "image_stress": "image stress",
    "control_rate": "15/60 Hz",
    "frame_drops": "frame drops",
    "follow": "follow",
}
"""Column title of each condition group (`lnn_nav.evaluate.GROUPS`)."""


def _group_counts(results: dict[str, Any], group: str) -> tuple[int, int]:
    """(successes, episodes) pooled over the conditions of `group` in one results dict."""
    wins = n = 0
    for c in results["conditions"]:
        if c["condition"]["group"] == group:
            wins += int(c["metrics"]["counts"]["success"])
            n += int(c["metrics"]["episodes"])
    return wins, n


def head_comparison(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Pool evaluation results per head (over its training seeds) and condition group.

    runs: head kind -> results.json dicts, one per training seed, all evaluated on
    the same conditions and scenes (ValueError otherwise, naming the mismatch).
    Returns, per head, per group: pooled successes, episodes and Wilson interval,
    and the success rate of each seed; per condition: pooled intervals.
    Pooling treats every episode as independent, so its interval leaves out the
    seed-to-seed spread; the per-seed rates show that spread.
    """
    if not runs or not any(runs.values()):
        raise ValueError("head_comparison got no results: expected head -> [results.json dicts]")
    reference = None
    heads: dict[str, Any] = {}
    for head, results_list in runs.items():
        if not results_list:
            continue
        for res in results_list:
            key = [(c["condition"]["name"], c["metrics"]["episodes"]) for c in res["conditions"]]
            if reference is None:
                reference = (head, key, res["config"])
            elif key != reference[1] or res["config"] != reference[2]:
                raise ValueError(
                    f"results of head {head!r} were evaluated on conditions {key} with config "
                    f"{res['config']}, but those of {reference[0]!r} on {reference[1]} with "
                    f"{reference[2]}: expected the same conditions, episodes and seeds"
                )
        groups: dict[str, Any] = {}
        present = [g for g in GROUP_LABELS if _group_counts(results_list[0], g)[1] > 0]
        for g in present:
            per_seed = [_group_counts(r, g) for r in results_list]
            wins = sum(w for w, _ in per_seed)
            n = sum(k for _, k in per_seed)
            groups[g] = {"successes": wins, "episodes": n,
                         "success": wilson_interval(wins, n).__dict__,
                         "per_seed": [w / k for w, k in per_seed]}
        conditions = {}
        for i, c in enumerate(results_list[0]["conditions"]):
            wins = sum(int(r["conditions"][i]["metrics"]["counts"]["success"]) for r in results_list)
            n = sum(int(r["conditions"][i]["metrics"]["episodes"]) for r in results_list)
            conditions[c["condition"]["name"]] = wilson_interval(wins, n).__dict__
        heads[head] = {"label": HEAD_LABELS.get(head, head), "seeds": len(results_list),
                       "groups": groups, "conditions": conditions}
    return {"heads": heads, "config": reference[2] if reference else None}


def head_difference(comparison: dict[str, Any], a: str = "ltc", b: str = "lstm",
                    group: str = "ood_family") -> Interval | None:
    """Success of head `a` minus head `b` on the pooled episodes of `group`, with
    Newcombe's 95% interval; None if either head or the group is missing."""
    ha, hb = comparison["heads"].get(a), comparison["heads"].get(b)
    if ha is None or hb is None or group not in ha["groups"] or group not in hb["groups"]:
        return None
    ga, gb = ha["groups"][group], hb["groups"][group]
    return difference_interval(wilson_interval(ga["successes"], ga["episodes"]),
                               wilson_interval(gb["successes"], gb["episodes"]))


def headline_sentence(comparison: dict[str, Any]) -> str:
    """"LTC-NCP minus LSTM on out-of-distribution families: X points [95% CI]", or
    why it cannot be computed yet."""
    d = head_difference(comparison, "ltc", "lstm", "ood_family")
    if d is None:
        return ("LTC-NCP minus LSTM on out-of-distribution families: not available "
                "(needs evaluated ltc and lstm policies on the OOD families)")
    return (f"LTC-NCP minus LSTM on out-of-distribution families: {100 * d.value:+.1f} points "
            f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}] (95% CI)")


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """The head-comparison table (one row per head, one column per condition group),
    the per-seed rates and the headline sentence."""
    heads = comparison["heads"]
    groups = [g for g in GROUP_LABELS if any(g in h["groups"] for h in heads.values())]
    lines = [headline_sentence(comparison), "",
             "| head | seeds | " + " | ".join(GROUP_LABELS[g] for g in groups) + " |",
             "|---|---:|" + "---|" * len(groups)]
    for h in heads.values():
        cells = [(_pct(h["groups"][g]["success"]) + f" (n={h['groups'][g]['episodes']})")
                 if g in h["groups"] else "-" for g in groups]
        lines.append(f"| {h['label']} | {h['seeds']} | " + " | ".join(cells) + " |")
    lines += ["", "Success rate per training seed:", "",
              "| head | " + " | ".join(GROUP_LABELS[g] for g in groups) + " |",
              "|---|" + "---|" * len(groups)]
    for h in heads.values():
        cells = [", ".join(f"{100 * v:.0f}%" for v in h["groups"][g]["per_seed"])
                 if g in h["groups"] else "-" for g in groups]
        lines.append(f"| {h['label']} | " + " | ".join(cells) + " |")
    names = list(next(iter(heads.values()))["conditions"])
    lines += ["", "Success per condition (seeds pooled):", "",
              "| condition | " + " | ".join(h["label"] for h in heads.values()) + " |",
              "|---|" + "---|" * len(heads)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(
            _pct(h["conditions"][name]) if name in h["conditions"] else "-"
            for h in heads.values()) + " |")
    lines += ["", ("Intervals: Wilson 95% over the pooled episodes of all training seeds "
                   "(episodes treated as independent; the per-seed rates show the seed spread). "
                   "The headline difference uses Newcombe's interval.")]
    return "\n".join(lines) + "\n"


def plot_comparison(comparison: dict[str, Any], path: str | Path) -> Path:
    """Grouped bar chart: success per condition group, one bar per head, with
    Wilson 95% error bars and each seed's rate as a dot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    heads = comparison["heads"]
    groups = [g for g in GROUP_LABELS if any(g in h["groups"] for h in heads.values())]
    if not heads or not groups:
        raise ValueError("plot_comparison: nothing to plot (no heads or no condition groups)")
    fig = Figure(figsize=(1.6 + 1.3 * len(groups), 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(heads)
    cmap = ["#1f77b4", "#17becf", "#d62728", "#ff7f0e", "#7f7f7f", "#9467bd", "#8c564b"]
    for i, h in enumerate(heads.values()):
        xs, ys, lo, hi = [], [], [], []
        for j, g in enumerate(groups):
            if g not in h["groups"]:
                continue
            s = h["groups"][g]["success"]
            x = j - 0.4 + width * (i + 0.5)
            xs.append(x)
            ys.append(100 * s["value"])
            lo.append(100 * (s["value"] - s["low"]))
            hi.append(100 * (s["high"] - s["value"]))
            seeds = h["groups"][g]["per_seed"]
            ax.plot([x] * len(seeds), [100 * v for v in seeds], "k.", ms=2.5, alpha=0.6)
        color = cmap[i % len(cmap)]
        ax.bar(xs, ys, width * 0.95, color=color, label=f"{h['label']} ({h['seeds']} seeds)",
               yerr=[lo, hi], capsize=2, error_kw={"lw": 0.8})
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([GROUP_LABELS[g] for g in groups], fontsize=8)
    ax.set_ylabel("success (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=min(len(heads), 5), loc="upper center", bbox_to_anchor=(0.5, -0.1),
              frameon=False)
    ax.set_title(headline_sentence(comparison), fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write(path, lambda f: f.write(buf.getvalue()))
    return path
