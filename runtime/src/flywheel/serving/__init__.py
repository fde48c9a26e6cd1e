"""Serving: model versions behind one router with shadow, canary and bandit rollout.

    oip.py         the Open Inference Protocol v2 codec (JSON and binary tensors)
    service.py     the `InferenceService` both servers implement, and its v2 HTTP routes
    predictor.py   the `Predictor` protocol and the model artifact loader
    modelserver.py Flywheel's own v2 model server (ASGI) over a Predictor
    grpcserver.py  the same service over v2 gRPC (what `tritonclient.grpc` speaks)
    backends.py    where a version runs: plain HTTP (v2), Triton (tritonclient), Ray Serve
    policies/      pure routing policies: split (canary), shadow, bandit, ejection
    router.py      the router core: policies + backends + resilience + metrics + logs
    routerapp.py   the standalone router (Starlette on uvicorn)
    rayserve.py    the Ray Serve layout: one application per version and a router app
    commands.py    `flywheel serve router | model`

Heavy dependencies (torch, ray, tritonclient) are imported only by the modules that use
them, so importing `flywheel.serving.commands` costs nothing.
"""
