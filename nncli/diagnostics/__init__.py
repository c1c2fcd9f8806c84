"""Looking inside a model: gradcheck (central differences), the per-module trace of one batch,
per-module timing and the model summary that ``nncli inspect`` prints.
"""
