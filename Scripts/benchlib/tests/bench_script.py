"""Loads one of Scripts/bench/'s scripts (their names have hyphens, so `import` cannot) as a module for its tests."""

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(file_name: str, module_name: str):
    """Scripts/bench/<file_name> as the module `module_name` (registered in sys.modules, as dataclasses need)."""
    spec = importlib.util.spec_from_file_location(module_name, BENCH / file_name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
