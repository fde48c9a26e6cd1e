"""Serving: model versions behind one router with shadow, canary and bandit rollout.

    oip.py         the Open Inference Protocol v2 codec (JSON and binary tensors)
    service.py     the `InferenceService` both servers implement, and its v2 HTTP routes
    predictor.py   the `Predictor` protocol and the model artifact loader
    modelserver.py Flywheel's own v2 model server (ASGI) over a Predictor
    grpcserver.py  the same service over v2 gRPC (what `tritonclient.grpc` speaks)
    backends.py    where a version runs: plain HTTP (v2), Triton (tritonclient), Ray Serve
    policies/      pure routing policies: split (canary), shadow, bandit, ejection
    config.py      the router config (what the operator writes), validated whole
    router.py      the router core: policies + backends + resilience + metrics + logs
    metrics.py     its Prometheus metrics; state.py: bandit state in SQLite
    requestlog.py  sampled requests to Parquet, for drift and skew checks
    routerapp.py   the standalone router (Starlette on uvicorn)
    server.py      uvicorn with a graceful drain on SIGTERM, and gRPC beside it
    rayserve.py    the Ray Serve layout: one application per version and a router app
    commands.py    `flywheel serve router | model`
    rollout.py     the rollout policy (canary steps, analysis, shadow, bandit promotion),
                   shared by `flywheel run` and the operator; versions.py: a served version

Heavy dependencies (torch, ray, tritonclient) are imported only by the modules that use
them, so importing `flywheel.serving.commands` costs nothing.
"""
