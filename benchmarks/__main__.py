"""The runner: `python -m benchmarks [--quick] [--only floors,ar,...] [--json PATH] [--device cpu|cuda] [--threads N]`.

Prints the machine, then each module's report as it finishes, then the targets (MET / MISSED, every ratio measured
within this one run). A module that fails, or a measurement in a module's table that fails, is reported as failed;
the others still run, and the run ends with status 1. An option no run can use ends it before anything is built: one
`error:` line, status 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from valle_hf.errors import ArgumentParser, UsageError, entry_point

from .common import (
    DEFAULTS,
    Context,
    add_arguments,
    check,
    fill_defaults,
    load_average,
    log,
    machine_info,
    machine_lines,
    setup,
    write_json,
)

# The modules, in the order they run and report; each has NAME (its --only key), TITLE, DEFAULTS, add_arguments,
# run(args, context) -> dict, report(result) -> list[str], and optionally check(args) (its options, before anything
# is built) and targets(result) -> list[Target].
# Corpus synthesis throughput runs on its own (`python -m benchmarks.synthesis`): it times the whole command,
# rows and WAVs included, for several batch sizes, about ten minutes.
MODULES = ["floors", "ar_steps", "nar", "end_to_end", "streaming", "host_work", "quality"]


def load_modules() -> list:
    return [importlib.import_module(f"benchmarks.{name}") for name in MODULES]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where there is one: options left at None take theirs from the run (the full run's or
    `--quick`'s, given in their help)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def build_parser(modules) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                            formatter_class=HelpFormatter)
    add_arguments(parser)
    parser.add_argument("--only", default=None,
                        help=f"comma-separated modules to run, of: {', '.join(m.NAME for m in modules)} [all]")
    for module in modules:
        module.add_arguments(parser)
    return parser


def parse(argv=None, only: list[str] | None = None):
    """The run's options (module defaults filled in, checked) and the modules it runs. Raises `UsageError` for an
    option no run can use, before any model is built."""
    modules = load_modules()
    args = build_parser(modules).parse_args(argv)
    if only and args.only is not None:  # a module run alone (python -m benchmarks.host_work) ran itself instead
        raise UsageError(f"--only {args.only}: this command runs {', '.join(only)} alone; run the others with python "
                         f"-m benchmarks --only {args.only}")
    names = only or [name.strip() for name in (args.only or "").split(",") if name.strip()]
    if args.only is not None and not names:  # an unset shell variable ran every module, for an hour
        raise UsageError(f"--only {args.only!r} names no module: choose from {', '.join(m.NAME for m in modules)}")
    unknown = set(names) - {module.NAME for module in modules}
    if unknown:
        raise UsageError(f"--only {args.only}: unknown module(s) {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(m.NAME for m in modules)}")
    fill_defaults(args, DEFAULTS)
    for module in modules:
        fill_defaults(args, getattr(module, "DEFAULTS", {}))
    chosen = [module for module in modules if not names or module.NAME in names]
    check(args)
    for module in chosen:
        getattr(module, "check", lambda _: None)(args)
    return args, chosen


def run_module(module, args, context) -> dict:
    log(f"-- {module.NAME}")
    try:
        return module.run(args, context)
    except Exception as error:  # report it and go on with the other modules
        traceback.print_exc()
        return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"}


@entry_point()
def main(argv=None, only: list[str] | None = None) -> int:
    """Run the benchmarks `argv` asks for; 0, or 1 where a module failed (its traceback is printed above)."""
    args, modules = parse(argv, only)
    device = setup(args)
    output = {}
    try:
        run_all(args, modules, device, output)
    finally:  # also after Ctrl-C: the modules that finished, without the targets
        if args.json and output.get("results"):
            write_json(args.json, output, "--json")
            log(f"wrote {args.json}")
    results = output["results"]
    failed = [name for name, result in results.items() if "error" in result]
    if failed:
        print(f"error: module(s) {', '.join(failed)} failed (their tracebacks are above)", file=sys.stderr)
    partly = [name for name, result in results.items() if name not in failed and _failed_rows(result)]
    if partly:
        print(f"error: some measurements of module(s) {', '.join(partly)} failed (their FAILED lines are above)",
              file=sys.stderr)
    return 1 if failed or partly else 0


def _failed_rows(result: dict) -> bool:
    """Whether a module that ran reported a failed configuration in one of its tables (a row with an "error")."""
    return any(isinstance(row, dict) and "error" in row
               for rows in result.values() if isinstance(rows, list) for row in rows)


def run_all(args, modules, device, output: dict) -> None:
    """Each module's run and report, then the targets; every result into `output`, as `--json` writes it, each module's
    as it finishes."""
    machine = machine_info(device)
    print("=" * 100)
    print("valle-hf benchmarks" + (" (--quick: a smoke run, not a measurement)" if args.quick else ""))
    print("\n".join(machine_lines(machine)), flush=True)
    context = Context(args, device)
    results, found = {}, []
    output.update(machine=machine, args=vars(args), results=results, targets=[])
    for module in modules:
        results[module.NAME] = result = run_module(module, args, context)
        print(f"\n-- {module.TITLE} --")
        if "error" in result:
            print(f"  FAILED: {result['error']}", flush=True)
            continue
        print("\n".join(module.report(result)), flush=True)
        found += getattr(module, "targets", lambda _: [])(result)
    print("\n-- targets (ratios measured in this run) --")
    print("\n".join("  " + target.line(args.max_foreign_load) for target in found) or "  (none measured)")
    print(f"load average at the end {'/'.join(f'{x:.2f}' for x in load_average() or [])}")
    print("=" * 100, flush=True)
    output["targets"] = [{"met": t.met, "text": t.text, "foreign_load": t.load} for t in found]


if __name__ == "__main__":
    sys.exit(main())
