"""flywheel-operator: reconciles the flywheel.dev custom resources.

Layers, from the outside in:
    handlers/  kopf registrations; thin: validate -> build -> apply -> observe -> status
    kube/      every call to the Kubernetes API, with the retry policy
    builders/  PURE: a validated spec + settings -> child manifests (dicts)
    status/    PURE: the spec + observed children -> status, conditions, phase, decisions
"""
