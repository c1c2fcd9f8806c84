"""A run folder's files: what nncli writes there, and how it reads them back as untrusted input.

run_dir (the layout, the one run-folder test, a new folder made in one rename), own_files (the files
nncli writes there; outputs kept off them), safe_read (a folder's files read as untrusted input),
run_info (run.json, its fields type-checked), metrics_log (metrics.jsonl), watch_log (watch.jsonl),
recorder (the training callback writing metrics and checkpoints). Checkpoints
(``nncli.runs.checkpoint``) and whole-file writes (``nncli.runs.atomic``) sit one level up: loading
a run reads checkpoints too, and exports and plots write through atomic.
"""
