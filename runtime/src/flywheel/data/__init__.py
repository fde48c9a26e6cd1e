"""Datasets: ingest, the schema contract, statistics profiles."""
