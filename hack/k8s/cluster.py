#!/usr/bin/env python3
"""Start/stop the local control plane: `cluster.py up|down|env|status` (see --help).

The implementation lives in tests/cluster/controlplane.py so the pytest fixtures start
exactly the same cluster; this file only makes it runnable without installing anything.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.cluster.controlplane import main

if __name__ == "__main__":
    sys.exit(main())
