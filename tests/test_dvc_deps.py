"""dvc.yaml's code deps are exact: every project module a stage runs is covered by the stage's deps.

The modules a stage runs are found statically (``ast``): its command function in
``cli/stages.py`` (and that module, the console-script entry ``cli/main.py``),
then every project module those import, transitively, whether the import sits at
the top of a module or inside a function.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path, PurePosixPath

import pytest
import yaml

from helpers import ROOT

PACKAGE = "peru_sentiment"
SOURCE = ROOT / "src"
CLI_ENTRY = f"{PACKAGE}.cli.main"  # the console script: the app with every command module registered
STAGE_COMMANDS = f"{PACKAGE}.cli.stages"  # the command of every DVC stage
TOOL_COMMANDS = f"{PACKAGE}.cli.tools"  # the other commands: registered by the entry, never run by a stage
# Modules of pipeline stages: the server must import none of them (it loads an export bundle).
STAGE_PACKAGES = ("data", "training", "evaluation", "report")
STAGE_MODULES = (f"{PACKAGE}.model.pretrained", f"{PACKAGE}.model.embedded_e5")
SERVER_MODULES = (f"{PACKAGE}.serving.app",)


def module_file(module: str) -> Path | None:
    """The source file of a project module, or None when `module` is not one (a package or outside)."""
    path = SOURCE.joinpath(*module.split("."))
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_names(tree: ast.AST, module: str, nested: bool = True) -> set[str]:
    """Every project module name an import in `tree` may load: ``from a import b`` gives ``a`` and ``a.b``.

    With ``nested=False`` only the imports at the top of a module count, not those inside its functions.
    """
    names = set()
    for node in ast.walk(tree) if nested else tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == PACKAGE}


@cache
def module_imports(module: str) -> frozenset[str]:
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    return frozenset(name for name in imported_names(tree, module) if module_file(name))


def closure(modules: set[str]) -> set[str]:
    """`modules` and every project module they import, transitively."""
    seen, pending = set(), list(modules)
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(module_imports(module))
    return seen


def command_function(command: str) -> ast.FunctionDef:
    """The function in cli/stages.py behind ``peru-sentiment <command>``."""
    for node in ast.parse(module_file(STAGE_COMMANDS).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and node.name == command.replace("-", "_"):
            return node
    raise AssertionError(f"cli/stages.py has no command {command!r}: every DVC stage's command lives there")


def stage_modules(cmd: str) -> set[str]:
    """The project modules a stage's command runs: the entry and cli/stages.py, their top-level imports, and
    the command's own imports.

    The other stage commands' imports do not count: they run only with their command. Nor does the tool
    commands' module: the entry imports it to register its commands, none of which a stage runs.
    """
    program, command = cmd.split()[:2]
    assert program == "peru-sentiment", f"unexpected stage command {cmd!r}"
    names = imported_names(command_function(command), STAGE_COMMANDS)
    for module in (CLI_ENTRY, STAGE_COMMANDS):
        names |= imported_names(ast.parse(module_file(module).read_text(encoding="utf-8")), module, nested=False)
    names -= {STAGE_COMMANDS, TOOL_COMMANDS}
    return {CLI_ENTRY, STAGE_COMMANDS} | closure({name for name in names if module_file(name)})


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or PurePosixPath(dep) in PurePosixPath(path).parents for dep in deps)


def dvc_stages(dvc_file: Path = ROOT / "dvc.yaml") -> dict[str, dict]:
    return yaml.safe_load(dvc_file.read_text(encoding="utf-8"))["stages"]


def produced_paths(stages: dict[str, dict]) -> list[str]:
    """Every path some stage writes (outs, metrics, plots)."""
    paths = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                paths.extend(entry if isinstance(entry, dict) else [entry])
    return paths


def uncovered_modules(stage: dict) -> list[str]:
    files = sorted(relative(module_file(module)) for module in stage_modules(stage["cmd"]))
    return [path for path in files if not covered(path, stage.get("deps", []))]


def missing_deps(stages: dict[str, dict]) -> list[str]:
    """Deps that neither exist in the repository nor are written by a stage."""
    produced = produced_paths(stages)
    return [
        f"{name}: {dep}"
        for name, stage in stages.items()
        for dep in stage.get("deps", [])
        if not (ROOT / dep).exists() and not covered(dep, produced)
    ]


STAGES = dvc_stages()


@pytest.mark.parametrize("name", list(STAGES))
def test_every_module_a_stage_runs_is_a_dep_of_the_stage(name):
    missing = uncovered_modules(STAGES[name])
    assert not missing, f"add to the deps of stage {name!r} in dvc.yaml: {missing}"


def test_deps_point_at_files_that_exist_or_that_a_stage_writes():
    assert not missing_deps(STAGES)


def test_the_check_sees_a_removed_dep_and_a_missing_file():
    train = STAGES["train"]
    without_cli = {**train, "deps": [dep for dep in train["deps"] if dep != "src/peru_sentiment/cli/stages.py"]}
    assert uncovered_modules(without_cli) == ["src/peru_sentiment/cli/stages.py"]
    stages = {
        "make": {"cmd": "peru-sentiment split", "outs": ["data/made"]},
        "use": {"cmd": "peru-sentiment train", "deps": ["src/peru_sentiment/nowhere.py", "data/made/x.parquet"]},
    }
    assert missing_deps(stages) == ["use: src/peru_sentiment/nowhere.py"]


def test_imports_inside_functions_and_relative_imports_count():
    tree = ast.parse("def f():\n    from peru_sentiment.model import embedded_e5\nfrom . import paths\n")
    names = imported_names(tree, f"{PACKAGE}.cli")
    assert {f"{PACKAGE}.model.embedded_e5", f"{PACKAGE}.paths"} <= names


def test_package_inits_hold_no_code():
    """Package __init__ files run on every import but are not deps: they must stay empty (a docstring at most)."""
    for init in (SOURCE / PACKAGE).rglob("__init__.py"):
        body = ast.parse(init.read_text(encoding="utf-8")).body
        code = [node for node in body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        assert not code, f"{relative(init)} holds code; move it into a module"


def test_the_server_imports_no_pipeline_stage_module():
    stage_prefixes = tuple(f"{PACKAGE}.{package}." for package in STAGE_PACKAGES)
    loaded = closure(set(SERVER_MODULES))
    assert f"{PACKAGE}.export.bundle" in loaded  # the check follows the server's real imports
    offending = sorted(module for module in loaded if module.startswith(stage_prefixes) or module in STAGE_MODULES)
    assert not offending, f"the server imports pipeline stage modules: {offending}"
