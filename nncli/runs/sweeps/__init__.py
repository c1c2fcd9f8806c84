"""Sweeps: many ``nncli train`` runs of one config in one folder, with ``sweep.json`` as their record.

    grid_sweep.run_sweep(config, ["optimizer.lr=0.1,0.03"])        every --grid combination (× seeds)
    search.search_sweep(config, sampler="tpe", trials=20, param_items=["optimizer.lr=loguniform(1e-4,1e-1)"])
    grid_sweep.resume_sweep(sweep_dir)                             either kind, continued

A grid sweep: grid (``--grid`` values → trials), checks (what is refused before any trial runs),
trial (one trial: its name, its command, its result read back), record (``sweep.json``: the Sweep,
ranked). Trials run as local processes (processes) or as Ray tasks (ray_tasks). A search on Optuna
adds params (``--param`` distributions), study (sampler, pruner, budget), search_loop (ask, run,
tell) and pruning (a running trial's evaluations reported).
"""
