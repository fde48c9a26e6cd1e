"""Pure builders: a validated spec + settings -> the child manifests, as dicts.

No I/O and no environment reads here; every function is tested with plain dict asserts.
"""
