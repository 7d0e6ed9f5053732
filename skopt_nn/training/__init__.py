"""How one fit runs: the shared estimator logic over skorch, data batches, threads and device, progress.

Imports the specs; never the searches, persistence or the command line.
"""
