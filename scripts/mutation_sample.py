"""Mutation testing of the modules where a silent fault changes what users hear or train, on a seeded sample.

    python scripts/mutation_sample.py list              # the sample, per module, and what mutmut cannot reach
    python scripts/mutation_sample.py run [--max-children N] [MUTANT ...]   # mutmut on the sample (or the named)
    python scripts/mutation_sample.py report            # per module: sampled, killed, survived, ... (tests/MUTATION.md)

The modules are setup.cfg's `[mutmut] only_mutate`. Every mutant of them is generated with mutmut's own generator (so
the names are the ones `mutmut run` uses), then each module gets its share of `--size` mutants (proportional, at least
`--minimum`), drawn with `random.Random(f"{seed}:{path}")` from its sorted names: the same source and settings always
give the same sample. The full set (over 5,000 mutants, each running its covering tests) would take days on 2 cores.

`run` is `mutmut run` (mutmut 3, which runs each mutant against the tests that called its function in a first, full
run of the suite) with what the tests need in mutmut's `mutants/` copy of the tree, where `../shared` is not beside
it: `VALLE_FIXTURES` and `VALLE_VOCOS_FIXTURES` as absolute paths (defaults: `../shared/fixtures/{tiny,vocos-tiny}`
beside the repository), and `VALLE_REQUIRE_FIXTURES=1`, which makes a missing fixture set an error, not a skip (a
skipped test kills nothing).

mutmut 3 cannot mutate decorated functions (but for `@staticmethod` / `@classmethod`: `@torch.no_grad()`,
`@property`, `@functools.cache`, ...), module-level code or class bodies (constants, dataclass fields); `list` names
them per module. Mutants whose function no test calls are reported as "no tests".
"""

from __future__ import annotations

import argparse
import ast
import configparser
import importlib.util
import os
import random
import re
import sys
from collections import Counter
from pathlib import Path

from valle_hf.errors import ArgumentParser, MissingDependencyError, entry_point

REPO = Path(__file__).resolve().parents[1]
SEED = 22  # the issue that asked for the run
SIZE = 320
MINIMUM = 5
MUTATION_MD = REPO / "tests" / "MUTATION.md"


def target_paths() -> list[str]:
    """The mutated modules, as setup.cfg's `[mutmut] only_mutate` lists them (paths relative to the repository)."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return [line.strip() for line in parser.get("mutmut", "only_mutate").splitlines() if line.strip()]


def module_mutants(path: str) -> list[str]:
    """Every mutant mutmut makes of one module, by the name `mutmut run` gives it."""
    from mutmut.mutation.file_mutation import mutate_file_contents
    from mutmut.utils.format_utils import get_mutant_name

    mutated = mutate_file_contents(path, (REPO / path).read_text(encoding="utf-8"))
    return sorted(get_mutant_name(Path(path), name) for name in mutated.mutant_names)


def draw(seed: int, size: int, minimum: int) -> dict[str, tuple[int, list[str]]]:
    """Per module: (how many mutants it has, its sampled names)."""
    everything = {path: module_mutants(path) for path in target_paths()}
    total = sum(len(names) for names in everything.values())
    sample = {}
    for path, names in everything.items():
        share = min(len(names), max(minimum, round(size * len(names) / total)))
        sample[path] = (len(names), sorted(random.Random(f"{seed}:{path}").sample(names, share)))
    return sample


def unreachable(path: str) -> list[str]:
    """What mutmut 3 leaves alone in one module: decorated functions, module-level code and class bodies."""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    found = []

    def decorated(node, owner=""):
        names = [ast.unparse(d) for d in node.decorator_list]
        if names and names not in (["staticmethod"], ["classmethod"]):
            found.append(f"{owner}{node.name} (@{', @'.join(names)})")

    def statements(body, where):
        names = []
        for node in body:
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names += [ast.unparse(target) for target in targets if ast.unparse(target) not in ("__all__", "logger")]
            elif not isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef | ast.Expr):
                names.append(type(node).__name__.lower())
        if names:
            found.append(f"{where}: {', '.join(names)}")

    statements(tree.body, "module level")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            decorated(node)
        elif isinstance(node, ast.ClassDef):
            statements(node.body, f"class {node.name} body")
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    decorated(item, f"{node.name}.")
                elif isinstance(item, ast.ClassDef):
                    found.append(f"nested class {node.name}.{item.name}")
    return found


def equivalent_mutants() -> set[str]:
    """The mutants tests/MUTATION.md's survivor table marks equivalent (a row `| `name` | ... | equivalent | ...`)."""
    if not MUTATION_MD.is_file():
        return set()
    rows = re.findall(r"^\| `([\w.ǁ]+__mutmut_\d+)` \|.*\| equivalent \|", MUTATION_MD.read_text(), re.MULTILINE)
    return set(rows)


def command_list(args) -> int:
    for path, (count, names) in draw(args.seed, args.size, args.minimum).items():
        print(f"{path}: {count} mutants, {len(names)} sampled")
        for name in names:
            print(f"    {name}")
        for what in unreachable(path):
            print(f"    not mutated: {what}")
    return 0


def command_run(args) -> int:
    environment = {"VALLE_REQUIRE_FIXTURES": "1"}
    for variable, default in (("VALLE_FIXTURES", "tiny"), ("VALLE_VOCOS_FIXTURES", "vocos-tiny")):
        root = Path(os.environ.get(variable, REPO.parent / "shared" / "fixtures" / default)).resolve()
        if not root.is_dir():
            print(f"error: fixture set {root} not found (set {variable})", file=sys.stderr)
            return 1
        environment[variable] = str(root)
    names = args.mutants or [name for _, sample in draw(args.seed, args.size, args.minimum).values() for name in sample]
    os.environ.update(environment)
    os.chdir(REPO)
    from mutmut.__main__ import cli

    options = ["--max-children", str(args.max_children)] if args.max_children else []
    return cli.main(["run", *options, *names], prog_name="mutmut", standalone_mode=False) or 0


def command_report(args) -> int:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    equivalent = equivalent_mutants()
    print("| module | mutants | sampled | killed | timeout | survived | no tests | equivalent | killed of the rest |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals = Counter()
    os.chdir(REPO)
    for path, (count, names) in draw(args.seed, args.size, args.minimum).items():
        data = SourceFileMutationData(path=path)
        data.load()
        status = Counter(status_by_exit_code[data.exit_code_by_key.get(name)] for name in names)
        row = Counter(mutants=count, sampled=len(names), killed=status["killed"], timeout=status["timeout"],
                      survived=status["survived"], no_tests=status["no tests"],
                      equivalent=len(equivalent & set(names)), other=len(names) - sum(status[s] for s in (
                          "killed", "timeout", "survived", "no tests")))
        totals.update(row)
        print(report_row(Path(path).name, row))
        for name in names:
            if status_by_exit_code[data.exit_code_by_key.get(name)] not in ("killed", "timeout"):
                mark = " (equivalent)" if name in equivalent else ""
                print(f"|   `{name}` | {status_by_exit_code[data.exit_code_by_key.get(name)]}{mark} |", file=sys.stderr)
    print(report_row("**all**", totals))
    return 0


def report_row(name: str, row: Counter) -> str:
    rest = row["sampled"] - row["equivalent"]
    score = f"{(row['killed'] + row['timeout']) / rest:.0%}" if rest else "-"
    other = f" ({row['other']} not run)" if row["other"] else ""
    return (f"| {name} | {row['mutants']} | {row['sampled']}{other} | {row['killed']} | {row['timeout']} | "
            f"{row['survived']} | {row['no_tests']} | {row['equivalent']} | {score} |")


def count(minimum: int):
    """An argparse type: an integer >= `minimum`."""

    def read(text: str) -> int:
        if not text.lstrip("-").isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return int(text)

    return read


@entry_point()
def main(argv=None) -> int:
    parser = ArgumentParser(prog="scripts/mutation_sample.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--size", type=count(1), default=SIZE, help="mutants in the sample, shared between the modules")
    parser.add_argument("--minimum", type=count(0), default=MINIMUM, help="mutants per module at least")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list")
    run = commands.add_parser("run")
    run.add_argument("--max-children", type=count(1), help="mutants run at once (default: mutmut's, the CPU count)")
    run.add_argument("mutants", nargs="*", help="re-run these mutants instead of the sample")
    commands.add_parser("report")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("mutmut") is None:  # each command reads mutmut's internals
        raise MissingDependencyError('scripts/mutation_sample.py needs mutmut: pip install -e ".[dev]"')
    return {"list": command_list, "run": command_run, "report": command_report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
