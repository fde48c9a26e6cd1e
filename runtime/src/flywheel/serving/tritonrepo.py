"""A Triton model repository from a registry version: what a Triton Pod's init container
lays out before `tritonserver --model-repository` starts.

    <version uri>/triton/<entry>/config.pbtxt     what training wrote: backend, inputs,
    <version uri>/triton/<entry>/1/model.pt       outputs (the model's signature)
        + the deployment's serving settings        instance_group, max_batch_size,
          (the operator's ConfigMap)               dynamic_batching
        -> <out>/<model>/config.pbtxt  <out>/<model>/1/model.pt

The signature comes from training and the serving settings from the ModelDeployment, so
neither has to know the other: `merge_config` replaces the top-level fields the settings
name and keeps every other one. Re-running it (a restarted init container) gives the same
repository; each file is written beside its name and renamed.
"""

from __future__ import annotations

import re
from pathlib import Path

from flywheel.storage import uris

TRITON_DIR = "triton"
CONFIG_FILE = "config.pbtxt"

_KEY = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)")


def fields(text: str) -> list[tuple[str, str]]:
    """The top-level fields of a protobuf text-format message, in order, as (key, text).

    >>> fields('name: "m"\\ninstance_group [ { count: 1 } ]\\n')
    [('name', 'name: "m"'), ('instance_group', 'instance_group [ { count: 1 } ]')]
    """
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text[i] == "#":  # a comment runs to the end of the line
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        match = _KEY.match(text, i)
        if match is None:
            raise ValueError(f"config.pbtxt: expected a field name at {text[i : i + 30]!r}")
        start, key = i, match.group(1)
        i = _end_of_field(text, match.end())
        out.append((key, text[start:i].strip()))
    return out


def _end_of_field(text: str, i: int) -> int:
    """Where the field whose value starts at `i` ends: a bracketed value closes at depth
    0, a scalar at the end of its line. Brackets inside strings do not count."""
    depth, quote, n = 0, "", len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":  # a comment: its brackets do not count
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "[{<":
            depth += 1
        elif c in "]}>":
            depth -= 1
            if depth < 0:
                raise ValueError("config.pbtxt: unbalanced brackets")
            if depth == 0:
                return i + 1
        elif c == "\n" and depth == 0 and not _continues(text, i):
            return i
        i += 1
    if depth or quote:
        raise ValueError("config.pbtxt: unbalanced brackets or an unterminated string")
    return n


def _continues(text: str, newline: int) -> bool:
    """Whether the field goes on past this line break (`key:` or `key` then `{` below)."""
    before = text[:newline].rstrip()
    after = text[newline:].lstrip()
    return before.endswith(":") or after[:1] in ("{", "[", "<")


def merge_config(base: str, settings: str, name: str) -> str:
    """`base` with every top-level field that `settings` names replaced by the settings'
    ones (repeated fields replaced as a whole), and the model named `name`.

    >>> print(merge_config('name: "a"\\nbackend: "pytorch"\\nmax_batch_size: 8',
    ...                    'max_batch_size: 32', "churn"), end="")
    name: "churn"
    backend: "pytorch"
    max_batch_size: 32
    """
    replaced = fields(settings)
    keys = {k for k, _ in replaced} | {"name"}
    kept = [text for key, text in fields(base) if key not in keys]
    lines = [f'name: "{name}"', *kept, *(text for key, text in replaced if key != "name")]
    return "\n".join(lines) + "\n"


def lay_out(uri: str, model: str, settings_file: Path | None, out: Path) -> Path:
    """Write `<out>/<model>/` from the version at `uri`; returns that directory."""
    root = uris.resolve(uri)
    fs = root.filesystem
    if fs is None:
        raise ValueError(f"--uri {uri}: a model version directory is needed, not a URL")
    triton = root.join(TRITON_DIR)
    entry = triton.join(model)
    if fs.get_file_info(entry.join(CONFIG_FILE).path).size is None:
        # One entry under another name (the training's): serve it under `model`.
        from pyarrow import fs as pafs

        found = fs.get_file_info(pafs.FileSelector(triton.path, allow_not_found=True))
        dirs = [f.base_name for f in found if f.type == pafs.FileType.Directory]
        if len(dirs) != 1:
            raise ValueError(
                f"--uri {uri}: no Triton entry {TRITON_DIR}/{model}/{CONFIG_FILE} "
                f"(found {sorted(dirs) or 'none'}); train the model with a Flywheel "
                "TrainingJob, which exports it, or pass --model with the entry's name"
            )
        entry = triton.join(dirs[0])
    target = out / model
    _copy_tree(fs, entry.path, target)
    base = (target / CONFIG_FILE).read_text()
    extra = settings_file.read_text() if settings_file is not None else ""
    _write(target / CONFIG_FILE, merge_config(base, extra, model).encode())
    return target


def _copy_tree(fs: object, source: str, target: Path) -> None:
    from pyarrow import fs as pafs

    assert isinstance(fs, pafs.FileSystem)
    for info in fs.get_file_info(pafs.FileSelector(source, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(source.rstrip("/")) + 1 :]
        with fs.open_input_stream(info.path) as f:
            _write(uris.inside(target, *relative.split("/")), f.read())


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
