"""The framework applications that the trap fault (Scripts/faults) and the framework-alone benchmark
(Scripts/bench/alone.py) run two ways: listening by themselves (`--alone on`: one multithreaded process, no
Switchboard) and behind Switchboard (`--workers 2 --mode ...`). One entry per framework; a framework whose binary is
not built is skipped with one line that says how to build it.

Every example takes its flags in pairs (`--name value`): `--host`, `--port`, `--workers`, `--mode`, `--alone on`,
`--test-hooks on` (adds `GET /trap`, which calls `fatalError`), and answers `GET /` with its pid and
`GET <slow_path>` after sleeping the given milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import REPO_ROOT

# Where the measuring scripts build release binaries (and look for them first).
RELEASE_SCRATCH = ".build-faults"


@dataclass(frozen=True)
class App:
    name: str  # the subject's short name in tables and row keys: `hummingbird`
    product: str  # the SwiftPM product: `switchboard-hummingbird-example`
    trait: str  # the package trait that builds it: `Hummingbird`
    slow_path: str = "/slow?ms={ms}"  # a request that sleeps {ms} milliseconds, then answers 200
    trap_path: str = "/trap"  # with --test-hooks on: calls fatalError

    def build_command(self) -> str:
        return (f"swift build -c release --scratch-path {RELEASE_SCRATCH} --traits {self.trait} "
                f"--product {self.product}")

    def candidates(self, beside: str | None = None) -> list[Path]:
        """Where its binary is looked for, in order: beside `beside` (the switchboard binary a script was given, so
        that `--binary .build/debug/switchboard` finds `.build/debug/<product>`), the release build of
        RELEASE_SCRATCH, `.build/release`, `.build/debug`."""
        out = [Path(beside).resolve().parent / self.product] if beside else []
        out += [REPO_ROOT / RELEASE_SCRATCH / "release" / self.product, REPO_ROOT / ".build" / "release" / self.product,
                REPO_ROOT / ".build" / "debug" / self.product]
        return list(dict.fromkeys(out))

    def find_binary(self, beside: str | None = None) -> str | None:
        for path in self.candidates(beside):
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
        return None

    def missing_line(self) -> str:
        return f"{self.product} not built: {self.build_command()}"


APPS = [
    App("hummingbird", "switchboard-hummingbird-example", "Hummingbird"),
    App("vapor", "switchboard-vapor-example", "Vapor"),
]


def by_name(name: str) -> App:
    for app in APPS:
        if app.name == name:
            return app
    raise KeyError(f"unknown application '{name}': choose from {', '.join(a.name for a in APPS)}")


def parse_binaries(items: list[str]) -> dict[str, str]:
    """`--app-binary NAME=PATH` values as {name: path}; ValueError for an unknown name or a missing `=`."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--app-binary takes NAME=PATH, got '{item}'")
        try:
            by_name(name)
        except KeyError as e:
            raise ValueError(e.args[0])
        out[name] = path
    return out


def built_without_trait(log_text: str) -> bool:
    """The examples' line when their package trait was not enabled at build time (they exit 69 at once)."""
    return "was built without the" in log_text and "package trait" in log_text
