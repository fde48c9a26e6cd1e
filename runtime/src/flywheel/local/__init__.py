"""The local executor: runs the manifests' work on one machine."""
