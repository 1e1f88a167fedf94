"""The shape of the package: imports point one way, and every shared flag is declared once.

Rooms, bottom to top (docs/architecture.md): the model (with minitf.kernels) ← tokenizers ←
data ← the training engine (train) and using a model (tasks) ← study ← recipes ← cli. A room
imports only rooms below it; `tasks` never imports `train`, so `minitf predict` does not load
the training engine.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minitf.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "minitf"
BASE = {"errors", "paths", "io", "run_folder"}
# room → the rooms it may import (besides itself and BASE)
ALLOWED = {
    "kernels": set(),
    "model": {"kernels"},
    "tokenizers": set(),
    "data": {"model", "tokenizers"},
    "train": {"model", "tokenizers", "data"},
    "tasks": {"model", "tokenizers", "data"},
    "study": {"model", "tokenizers", "data", "tasks"},
    "recipes": {"model", "kernels", "tokenizers", "data", "train", "tasks"},
    "cli": {"model", "kernels", "tokenizers", "data", "train", "tasks", "study", "recipes"},
}


def room_of(module: str) -> str:
    """minitf.model.bert → model; minitf.errors → errors; minitf → the facade."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "minitf"


def imported_modules(path: Path) -> set[str]:
    """Every minitf module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("minitf")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minitf"):
            found.add(node.module)
            # `from minitf.data import examples` imports minitf.data.examples
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").exists()}
    return found


def package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_lives_in_a_known_room():
    rooms = {room_of("minitf." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts))
             for p in package_files()}
    assert rooms <= set(ALLOWED) | BASE | {"__init__", "__main__"}, rooms - set(ALLOWED)


def test_imports_point_down():
    wrong = []
    for path in package_files():
        module = "minitf." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        room = room_of(module)
        if room in BASE | {"__init__", "__main__"}:
            allowed = BASE | ({"cli"} if room == "__main__" else set())
            if room == "__init__":  # the facade re-exports the model and the tokenizer
                allowed = BASE | {"model", "tokenizers"}
        else:
            allowed = ALLOWED[room] | BASE | {room}
        for target in imported_modules(path):
            if target != "minitf" and room_of(target) not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports {target}")
    assert not wrong, "imports against the direction of docs/architecture.md:\n" + \
        "\n".join(wrong)


@pytest.mark.parametrize("entry", ["minitf.tasks.classify", "minitf.tasks.fill_mask",
                                   "minitf.tasks.export", "minitf.tasks.peft_format",
                                   "minitf.cli.predict", "minitf.cli.evaluate",
                                   "minitf.cli.encode", "minitf.study.explorer"])
def test_using_a_model_does_not_load_the_training_engine(entry):
    script = (f"import sys, {entry}; print(sorted(m for m in sys.modules "
              "if m.startswith(('minitf.train', 'minitf.recipes.finetune', "
              "'minitf.recipes.pretrain'))))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"{entry} loads {done.stdout.strip()}"


def test_the_model_loads_nothing_above_it():
    script = ("import sys, minitf.model.bert, minitf.model.weights, minitf.model.lora, "
              "minitf.model.freeze, minitf.model.precision; print(sorted({m.split('.')[1] "
              "for m in sys.modules if m.startswith('minitf.')}))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(eval(done.stdout)) <= {"model", "kernels", "errors", "paths", "io"}


# --- flags ---------------------------------------------------------------------------------


def command_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each command's parser (subcommands of `tokenizer` included), built as `minitf` does."""
    parsers = {}
    for name, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser(prog=f"minitf {name}")
        importlib.import_module(module).add_arguments(parser)
        parsers[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers |= {f"{name} {k}": p for k, p in action.choices.items()}
    return parsers


# Flags two commands spell alike for two different things (documented, not shared options).
HOMONYMS = {"--format": "the data file's format (csv/tsv/jsonl) vs export's target (onnx)"}


def test_a_flag_shared_by_commands_is_one_declared_option():
    """A flag that two commands accept comes from one declaration in minitf/recipes/options.py
    (commands may change its default or help text with Option.but)."""
    sources: dict[str, dict[str, object]] = {}
    for command, parser in command_parsers().items():
        for action in parser._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    origin = getattr(action, "minitf_option", None) or f"raw in {command}"
                    sources.setdefault(flag, {})[command] = origin
    wrong = []
    for flag, by_command in sources.items():
        origins = {id(o) if not isinstance(o, str) else o for o in by_command.values()}
        if len(by_command) > 1 and len(origins) > 1 and flag not in HOMONYMS:
            wrong.append(f"{flag}: {by_command}")
    assert not wrong, "flags declared in more than one place:\n" + "\n".join(wrong)


def test_no_declared_option_is_written_out_again():
    """No `add_argument("--x"` in minitf/ for a flag that options.py declares."""
    from minitf.recipes import options as O
    declared = {flag for o in vars(O).values() if isinstance(o, O.Option) for flag in o.flags
                if flag.startswith("--")}
    written = re.compile(r"add_argument\(\s*(?:\"-\w\",\s*)?\"(--[\w-]+)\"")
    again = [f"{path.relative_to(PACKAGE.parent)}: {flag}" for path in package_files()
             for flag in written.findall(path.read_text()) if flag in declared
             and not (flag in HOMONYMS and path.name == "export.py")]
    assert not again, "declared in minitf/recipes/options.py and written out again:\n" + \
        "\n".join(again)


def test_option_names_are_declared_once():
    from minitf.recipes import options as O
    names = [o.name for o in vars(O).values() if isinstance(o, O.Option) and o.base is None]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
