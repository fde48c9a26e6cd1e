"""Online feature lookups: a Python API and a small HTTP endpoint.

`get_online_features` answers what a training set gives a label at `now`: the entity's
latest materialized row, if it is not older than the ttl, with its windows combined from
their tiles as of `now`. Entity values are read by the type of their key column, so
`{"id": "7"}` and `{"id": 7}` name the same entity when the column holds strings.

HTTP (stdlib `http.server`, one thread per connection):

    POST /v1/features/<view>   {"entities": [{"customer_id": "C000001"}], "at": "<ISO time>"?}
      -> 200 {"view": ..., "features": [{"plan": "basic", ...} | null per entity]}
    GET  /healthz              -> 200 {"status": "ok", "views": [...]}
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flywheel.api.featureview import FeatureView
from flywheel.features import materialize, online, pit, tiles


@dataclasses.dataclass
class OnlineView:
    """An open online store and what is needed to answer lookups from it."""

    view: FeatureView
    store: online.OnlineStore
    # join key -> "string" | "integer" | "float" | "other": the key columns' types
    key_kinds: dict[str, str] = dataclasses.field(default_factory=dict)

    # Cached: parsed once per open view, not once per lookup.
    @functools.cached_property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.view.spec.features]

    @functools.cached_property
    def ttl_micros(self) -> int:
        return pit.duration_micros(self.view.spec.ttl)

    @functools.cached_property
    def windows(self) -> list[tiles.Window]:
        return tiles.of_spec(self.view.spec)

    def keys_of(self, entities: Sequence[online.Entity]) -> list[str]:
        join_keys = self.view.spec.join_keys
        missing = [k for k in join_keys for e in entities if k not in e]
        if missing:
            raise ValueError(f"entities must give {', '.join(join_keys)}; missing {missing[0]}")
        return [
            online.entity_key_json([key_value(e[k], self.key_kinds.get(k)) for k in join_keys])
            for e in entities
        ]

    def get(
        self, entities: Sequence[online.Entity], now: datetime | None = None
    ) -> list[online.Row | None]:
        """Per entity: {feature: value}, or None when unknown or older than the ttl."""
        now_micros = materialize.to_micros(now or datetime.now(UTC))
        documents = self.store.read(self.keys_of(entities))
        ttl, windows, names = self.ttl_micros, self.windows, self.feature_names
        rows = [online.decode(d, now_micros, ttl, windows) for d in documents]
        if not windows:  # stored in feature order already
            return rows
        return [None if r is None else {n: r[n] for n in names} for r in rows]


def key_kind(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    return "other"


def key_value(value: Any, kind: str | None) -> Any:
    """An entity value as its key column holds it: text from a command line or JSON
    numbers become strings for a string column and numbers for a numeric one.

    >>> key_value(7, "string"), key_value("007", "integer"), key_value("007", "string")
    ('7', 7, '007')
    """
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if kind == "integer" and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an integer key") from None
    if kind == "float" and isinstance(value, str | int) and not isinstance(value, bool):
        return float(value)
    return value


def serve(views: dict[str, OnlineView], host: str, port: int) -> http.server.ThreadingHTTPServer:
    """A started-but-not-running server; call `serve_forever()` on it."""
    handler = type("Handler", (_Handler,), {"views": views})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


class _Handler(http.server.BaseHTTPRequestHandler):
    views: dict[str, OnlineView]
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._reply(200, {"status": "ok", "views": sorted(self.views)})
        else:
            self._reply(404, {"error": "not found; POST /v1/features/<view>"})

    def do_POST(self) -> None:
        prefix = "/v1/features/"
        name = self.path.removeprefix(prefix) if self.path.startswith(prefix) else None
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if name not in self.views:
            self._reply(404, {"error": f"unknown view {name!r}; served: {sorted(self.views)}"})
            return
        try:
            request = json.loads(body or b"{}")
            entities = request["entities"]
            at = request.get("at")
            now = datetime.fromisoformat(at) if at else None
            features = self.views[name].get(entities, now)
        except (ValueError, KeyError, TypeError) as exc:
            self._reply(400, {"error": f"bad request: {exc}"})
            return
        except ArithmeticError as exc:
            self._reply(500, {"error": f"feature error: {exc}"})
            return
        self._reply(200, {"view": name, "features": features})

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request is noise at feature-serving rates
