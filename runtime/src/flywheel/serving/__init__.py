"""Serving: the rollout policies, and what a served model version is."""
