"""Pure routing policies: state in, a decision out; randomness and the clock passed in.

split.py      canary: a weighted split, optionally sticky by a request key
shadow.py     which requests to mirror, and how a mirrored answer compares
bandit.py     Thompson sampling, epsilon-greedy and UCB1 over versions, with a floor
ejection.py   consecutive-error ejection of a failing version
stats.py      a bounded latency window (p50/p99) per version
"""
