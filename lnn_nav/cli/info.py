"""`lnn-nav info`: versions of the stack and the default policy's architecture."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata

PACKAGES = ("lnn-nav", "torch", "numpy", "gymnasium", "pybullet", "opencv-python-headless")


def package_versions() -> dict[str, str]:
    """Installed version of each runtime dependency ("not installed" if absent)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def default_policy_description() -> str:
    """Architecture and parameter counts (dense and effective) of the default NavPolicy."""
    from lnn_nav.models.policy import NavPolicy, default_policy_config

    return NavPolicy(default_policy_config()).describe()


def run(args: argparse.Namespace) -> int:
    for name, version in package_versions().items():
        print(f"{name:24s} {version}")
    print("\ndefault policy")
    print(default_policy_description())
    if args.wiring:
        from lnn_nav.models.wiring_plot import default_wiring, draw_wiring

        print(f"\nwiring diagram written to {draw_wiring(default_wiring(), args.wiring)}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions and the default policy's architecture")
    p.add_argument("--wiring", metavar="PATH", default=None,
                   help="also draw the default policy's NCP wiring diagram to PATH (e.g. out.png)")
    p.set_defaults(func=run)
