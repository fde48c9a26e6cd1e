"""`flywheel`: validate manifests, print the CRDs, and run manifests on this machine."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from flywheel import entrypoints, manifests, plan, redaction


def main(argv: Sequence[str] | None = None) -> int:
    """Everything a command prints passes through `redaction.redact`; an unexpected error
    ends in one `error:` line and exit 1, not a traceback."""
    with redacted_output():
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
            handler: Callable[[argparse.Namespace], int] = args.handler
            return handler(args)
        except SystemExit as exc:
            if isinstance(exc.code, str):  # a message for the user
                print(exc.code, file=sys.stderr)
                return 1
            return exc.code or 0
        except KeyboardInterrupt:
            return 130
        except Exception as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            if os.environ.get(DEBUG_ENV):
                import traceback

                traceback.print_exc()
            return 1


DEBUG_ENV = "FLYWHEEL_DEBUG"  # set to print the traceback of an unexpected error


class _RedactingStream(io.TextIOBase):
    """A text stream that writes whole lines, each through `redaction.redact`."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        if "\n" in self.pending:
            complete, _, self.pending = self.pending.rpartition("\n")
            self.target.write(redaction.redact(complete + "\n"))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.target.write(redaction.redact(self.pending))
            self.pending = ""
        self.target.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.target, "isatty", lambda: False)())

    def fileno(self) -> int:
        fileno: int = self.target.fileno()
        return fileno


@contextlib.contextmanager
def redacted_output() -> Iterator[None]:
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _RedactingStream(saved[0]), _RedactingStream(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flywheel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check manifests against the flywheel.dev models")
    p.add_argument("-f", "--filename", action="append", required=True, help="file or directory")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser("crds", help="print the CustomResourceDefinitions")
    p.add_argument("--out", type=Path, help="write one file per kind into this directory")
    p.add_argument("--check", type=Path, help="exit 1 if this directory differs from the models")
    p.set_defaults(handler=cmd_crds)

    p = sub.add_parser("run", help="run manifests on this machine, in dependency order")
    p.add_argument("-f", "--filename", action="append", required=True, help="file or directory")
    p.add_argument(
        "--artifact-root",
        type=Path,
        default=Path(os.environ.get(entrypoints.HOME_ENV, entrypoints.DEFAULT_ARTIFACT_ROOT)),
        help="where snapshots, models and stores go (default: $FLYWHEEL_HOME or ./.flywheel)",
    )
    p.add_argument("--plan-only", action="store_true", help="print the plan, run nothing")
    p.set_defaults(handler=cmd_run)

    # Each group's module registers its own commands; the modules import their heavy
    # dependencies only inside the commands, so `flywheel validate` stays fast.
    for target in entrypoints.COMMAND_GROUPS.values():
        entrypoints.import_target(target)(sub)
    return parser


def _load_or_report(paths: list[str]) -> manifests.ManifestSet | None:
    loaded = manifests.load(paths)
    for error in loaded.errors:
        print(f"error: {error}", file=sys.stderr)
    return None if loaded.errors else loaded


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args.filename)
    if loaded is None:
        return 1
    _, errors = plan.order(loaded.resources)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 1
    for item in loaded.resources:
        print(f"{item.source}: {item.resource.key} valid")
    return 0


def cmd_crds(args: argparse.Namespace) -> int:
    from flywheel.api import crdgen

    rendered = {name: crdgen.render(obj) for name, obj in crdgen.all_crds().items()}
    if args.check:
        stale = sorted(
            n
            for n, text in rendered.items()
            if not (args.check / n).is_file() or (args.check / n).read_text() != text
        )
        extra = sorted(p.name for p in args.check.glob("*.yaml") if p.name not in rendered)
        for name in stale + extra:
            print(
                f"error: {args.check / name} differs from the models; run `make crds`",
                file=sys.stderr,
            )
        return 1 if stale or extra else 0
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (args.out / name).write_text(text)
            print(f"wrote {args.out / name}")
        return 0
    print("---\n".join(rendered.values()), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from flywheel.local import executor

    loaded = _load_or_report(args.filename)
    if loaded is None:
        return 1
    steps, errors = plan.order(loaded.resources)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 1
    rows = [
        [str(i + 1), s.key, ", ".join(s.depends_on) or "-", plan.describe(s.resource)]
        for i, s in enumerate(steps)
    ]
    print(table(["STEP", "OBJECT", "DEPENDS ON", "ACTION"], rows))
    if args.plan_only:
        return 0
    context = entrypoints.RunContext(artifact_root=args.artifact_root.resolve())
    outcomes = executor.execute(steps, context)
    print()
    print(status_tables(outcomes))
    return 1 if any(o.error or (o.status and o.status.phase == "Failed") for o in outcomes) else 0


def status_tables(outcomes: list[Any]) -> str:
    """What `kubectl get <kind>` would print for each kind, from the printer columns."""
    blocks: list[str] = []
    kinds: dict[str, list[Any]] = {}
    for o in outcomes:
        kinds.setdefault(o.step.resource.kind_name, []).append(o)
    for group in kinds.values():
        model = type(group[0].step.resource)
        columns = [c for c in model.printer_columns if c["name"] != "Age"]
        header = ["NAME"] + [c["name"].upper() for c in columns] + ["MESSAGE"]
        rows = []
        for o in group:
            wire = o.step.resource.to_wire()
            wire["status"] = o.status.to_wire() if o.status else {"phase": "Planned"}
            if o.error:
                wire["status"]["phase"] = "Failed"
            cells = [_cell(jsonpath(wire, c["jsonPath"])) for c in columns]
            rows.append([o.step.resource.name, *cells, o.error or _message(o.status)])
        blocks.append(f"{model.kind_name}:\n" + table(header, rows))
    return "\n\n".join(blocks)


def _message(status: Any) -> str:
    if status is None:
        return "no local runner yet"
    failing = [c for c in status.conditions if c.status != "True"]
    return failing[0].message if failing else ""


def jsonpath(obj: Any, path: str) -> Any:
    """The value at a simple `.a.b.c` path, where a part may pick a list item by a field
    (`conditions[?(@.type=="Ready")]`), or None.

    >>> jsonpath({"s": {"c": [{"type": "A", "v": 1}]}}, '.s.c[?(@.type=="A")].v')
    1
    """
    for part in re.findall(r'[^.\[]+|\[\?\(@\.\w+=="[^"]*"\)\]', path):
        if part.startswith("[?"):
            field, value = re.findall(r'@\.(\w+)=="([^"]*)"', part)[0]
            items = obj if isinstance(obj, list) else []
            obj = next((i for i in items if isinstance(i, dict) and i.get(field) == value), None)
            continue
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _cell(value: Any) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "<none>"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
