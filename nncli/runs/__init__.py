"""Run folders on disk: creation, metrics, checkpoints, the lock, the training session that ties a
config to a folder, listing and comparing runs, and sweeps.
"""
