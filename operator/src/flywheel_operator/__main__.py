"""`flywheel-operator`: run the operator (kopf) with Flywheel's handlers;
`flywheel-operator render -f DIR` prints what it would create (see `render`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import kopf
from prometheus_client import start_http_server


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["render"]:
        from flywheel_operator import render

        return render.main(argv[1:])
    parser = argparse.ArgumentParser(prog="flywheel-operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace"
    )
    parser.add_argument("--peering", default=None, help="kopf peering name (one active operator)")
    parser.add_argument("--standalone", action="store_true", help="no peering at all")
    parser.add_argument("--liveness", default=None, help="e.g. http://0.0.0.0:8081/healthz")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port; 0: none")
    parser.add_argument(
        "--metrics-address", default="0.0.0.0", help="address the metrics port listens on"
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # kopf logs every handler success at INFO; our Events say more
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    # Imported here: registering handlers reads the settings from the environment.
    from flywheel_operator import handlers  # noqa: F401

    clusterwide = args.all_namespaces or not args.namespace
    asyncio.run(
        kopf.operator(
            clusterwide=clusterwide,
            namespaces=args.namespace,
            standalone=args.standalone,
            peering_name=args.peering,
            liveness_endpoint=args.liveness,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
