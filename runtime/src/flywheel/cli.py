"""`flywheel`: validate manifests, print the CRDs, and run manifests on this machine."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    p.add_argument(
        "-o",
        "--output",
        choices=["table", "json"],
        default="table",
        help="json: print the objects with their status as `kubectl get -o json` does",
    )
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
    from flywheel.local import executor, story, storyreport

    loaded = _load_or_report(args.filename)
    if loaded is None:
        return 1
    steps, errors = plan.order(loaded.resources)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 1
    as_json = args.output == "json"
    rows = [
        [str(i + 1), s.key, ", ".join(s.depends_on) or "-", plan.describe(s.resource)]
        for i, s in enumerate(steps)
    ]
    # With -o json, stdout carries only the JSON; the plan and progress go to stderr.
    text_out = sys.stderr if as_json else sys.stdout
    print(table(["STEP", "OBJECT", "DEPENDS ON", "ACTION"], rows), file=text_out)
    if args.plan_only:
        return 0
    # The timeline: one line per step and per rollout analysis, as the run goes.
    told = story.Story({s.key: s.resource for s in steps})
    with Progress(sys.stderr, told.record) as progress:
        context = entrypoints.RunContext(
            artifact_root=args.artifact_root.resolve(), progress=progress.update
        )
        outcomes = executor.execute(steps, context)
    if as_json:
        print(json.dumps(as_list(outcomes), indent=2, default=str))
    else:
        print()
        print(status_tables(outcomes))
        summary = training_summary(outcomes)
        if summary:
            print()
            print(summary)
    if told.rollouts or told.finished("DriftMonitor"):
        report = storyreport.write(told, context.artifact_root)
        print(file=text_out)
        print(told.summary(str(report)), file=text_out)
    return 1 if any(o.error or (o.status and o.status.phase == "Failed") for o in outcomes) else 0


def as_list(outcomes: list[Any]) -> dict[str, Any]:
    """The objects with their status, as a `kubectl get -o json` List."""
    items = []
    for o in outcomes:
        wire: dict[str, Any] = o.step.resource.to_wire()
        wire["status"] = o.status.to_wire() if o.status else {"phase": "Planned"}
        if o.error:
            wire["status"] = {"phase": "Failed", "message": o.error}
        items.append(wire)
    return {"apiVersion": "v1", "kind": "List", "items": items}


def training_summary(outcomes: list[Any]) -> str:
    """Metrics and model card of every trained model."""
    lines = []
    for o in outcomes:
        status = o.status
        if o.step.resource.kind_name != "TrainingJob" or status is None:
            continue
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(status.metrics.items()))
        lines.append(f"{o.step.key}: {status.phase} {status.model_version or ''}".rstrip())
        if metrics:
            lines.append(f"  metrics: {metrics}")
        if status.model_card_uri:
            lines.append(f"  model card: {status.model_card_uri}")
    return "\n".join(lines)


class Progress:
    """Live progress of long steps (epoch, loss, elapsed) on a terminal, with `rich`;
    one line per report elsewhere. Steps starting and ending and rollout analyses go to
    `timeline`, which returns the line to keep in the scrollback (or None)."""

    def __init__(
        self,
        stream: Any,
        timeline: Callable[[str, Mapping[str, Any]], str | None] | None = None,
    ) -> None:
        self.stream = stream
        self.timeline = timeline
        self.live: Any = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Progress:
        if self.stream.isatty():
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:
                return self
            self.live = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, key: str, fields: Mapping[str, Any]) -> None:
        if "message" in fields or "step" in fields:  # one line each, kept in the scrollback
            if self.timeline is not None:
                line = self.timeline(key, fields)
            elif "message" in fields:
                line = f"{key}: {fields['message']}"
            else:
                line = None
            if line is None:
                return
            if self.live is None:
                print(line, file=self.stream)
            else:
                self.live.console.print(line, markup=False, highlight=False)
            return
        epoch, epochs = fields.get("epoch"), fields.get("epochs")
        detail = " ".join(
            f"{name}={fields[name]:.4f}" for name in ("loss", "val_loss") if name in fields
        )
        if self.live is None:
            elapsed = fields.get("elapsed", 0.0)
            print(f"{key}: epoch {epoch}/{epochs} {detail} ({elapsed:.0f}s)", file=self.stream)
            return
        if key not in self.tasks:
            self.tasks[key] = self.live.add_task(key, total=epochs, detail="")
        self.live.update(self.tasks[key], completed=epoch, total=epochs, detail=detail)


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
