"""DriftMonitor: live requests against the training reference; statistics, windows, runs."""
