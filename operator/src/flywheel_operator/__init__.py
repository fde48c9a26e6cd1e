"""flywheel-operator: reconciles the flywheel.dev custom resources.

Layers (import contracts in pyproject.toml), from the outside in:
    handlers/  kopf registrations; one reconcile per kind: parse -> build -> apply -> status
    builders/  pure: a validated spec + settings -> child manifests (dicts)
    status/    pure: the spec + observed children -> status, conditions, phase, decisions
    kube/      every call to the Kubernetes API, with the retry policy; used by handlers only
"""
