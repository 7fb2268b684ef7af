"""`lnn-nav scene stats|show`: statistics and pictures of a scene family.

FAMILY is a shipped family name (see `envs/`) or a path to a YAML file.
"""

from __future__ import annotations

import argparse
import math


def run_stats(args: argparse.Namespace) -> int:
    from lnn_nav.sim.scenes import split_stats

    st = split_stats(args.family, args.split, n=args.n)
    rows = [
        ("scenes", f"{st.n}"),
        ("line of sight start->target blocked", f"{st.line_blocked:.2f}"),
        ("target outside the initial view (FOV)", f"{st.target_out_of_view:.2f}"),
        ("target out of view or occluded", f"{st.target_hidden:.2f}"),
        ("min gap between trunks [drone diameters]",
         "none" if not math.isfinite(st.min_trunk_gap_d) else f"{st.min_trunk_gap_d:.2f}"),
        ("median per-scene min gap [drone diameters]",
         "none" if not math.isfinite(st.median_min_gap_d) else f"{st.median_min_gap_d:.2f}"),
        ("scenes with a gap < 4 drone diameters", f"{st.narrow_gap:.2f}"),
        ("obstacles at canopy (flight) height", f"{st.canopy_at_flight_height:.2f}"),
        ("start height range [m]", f"{st.start_height_m[0]:.2f} - {st.start_height_m[1]:.2f}"),
        ("target distance range [m]", f"{st.target_distance_m[0]:.2f} - {st.target_distance_m[1]:.2f}"),
        ("obstacle parts per scene (mean)", f"{st.obstacles_mean:.1f}"),
    ]
    print(f"family {st.family}, split {st.split}")
    for name, value in rows:
        print(f"  {name:44s} {value}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from lnn_nav.sim.scene_render import show_scene

    top, strip = show_scene(args.family, args.split, args.seed, args.out, n_frames=args.frames)
    print(f"wrote {top}")
    print(f"wrote {strip}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scene", help="statistics and pictures of a scene family")
    ssub = p.add_subparsers(dest="scene_command", required=True, metavar="ACTION")
    st = ssub.add_parser("stats", help="print how hard a split is (fractions over N scenes)")
    st.add_argument("family", help="shipped family name (envs/NAME.yaml) or path to a YAML file")
    st.add_argument("--split", default="train", help="split name (default: train)")
    st.add_argument("--n", type=int, default=200, help="number of scenes (default: 200)")
    st.set_defaults(func=run_stats)
    sh = ssub.add_parser("show", help="write a top-down map and an onboard frame strip (PNG)")
    sh.add_argument("family", help="shipped family name (envs/NAME.yaml) or path to a YAML file")
    sh.add_argument("--split", default="train", help="split name (default: train)")
    sh.add_argument("--seed", type=int, default=0, help="scene index within the split (default: 0)")
    sh.add_argument("--out", default=".", help="output directory (default: .)")
    sh.add_argument("--frames", type=int, default=8, help="frames in the strip (default: 8)")
    sh.set_defaults(func=run_show)
