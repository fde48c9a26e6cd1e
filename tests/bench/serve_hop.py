"""The least a Serve application in front of a model can do: read the v2 body, make one
`DeploymentHandle` call to the model (by value, pickle, like the router's backend), write
the answer. No routing, no metrics, no policies.

The Ray Serve bench deploys it next to the router application, with the router's
replica settings (`rayserve.ROUTER_SERVE_ENV`), so that the router's cost can be told
apart from the cost of the hop itself.
"""

from __future__ import annotations

from typing import Any

from flywheel.serving import oip, rayserve

DEPLOYMENT = "Forward"


def app(args: dict[str, Any]) -> Any:
    from ray import serve

    @serve.deployment(name=DEPLOYMENT)
    @serve.ingress()
    class Forward:
        def __init__(self, application: str) -> None:
            handle = serve.get_deployment_handle(
                rayserve.MODEL_DEPLOYMENT, application, _check_exists=False
            )
            self.infer = handle.options(
                method_name="infer",
                _by_reference=False,
                request_serialization="pickle",
                response_serialization="pickle",
            )

        def __serve_build_asgi_app__(self) -> Any:
            async def asgi(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] != "http":
                    return
                chunks = []
                while True:
                    message = await receive()
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
                request = oip.decode_request(b"".join(chunks), None)
                response = await self.infer.remote(request)
                payload, headers = oip.encode_response(response, request.outputs, False)
                raw = [(b"content-length", b"%d" % len(payload))]
                raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
                await send({"type": "http.response.start", "status": 200, "headers": raw})
                await send({"type": "http.response.body", "body": payload})

            return asgi

    deployment: Any = Forward  # a Serve Deployment, whatever its decorators say it is
    return deployment.bind(str(args["application"]))
