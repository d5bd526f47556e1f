"""Helpers shared by the commands: presets found from any working directory."""

from __future__ import annotations

from pathlib import Path

from vimpac_core.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent / "configs"  # the presets, packaged (a checkout links ./configs here)


def find_preset(name: str, kind: str) -> str:
    """A preset path as given, else a packaged preset (``configs/<kind>/tiny.yaml``, ``tiny.yaml`` or
    just ``tiny``), so a preset is found from any working directory, in a checkout or an installed wheel.

    Raises:
        ConfigError: no such file; the message lists the presets of ``kind``.
    """
    given = Path(name)
    if given.is_file():
        return str(given)
    candidates = [CONFIGS.parent / given, CONFIGS / kind / given, CONFIGS / kind / f"{given}.yaml"]
    for path in candidates:
        if path.is_file():
            return str(path)
    known = sorted(p.stem for p in (CONFIGS / kind).glob("*.yaml"))
    raise ConfigError(f"preset {name!r} not found here nor in {CONFIGS / kind} (presets: {', '.join(known)})")
