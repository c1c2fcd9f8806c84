"""Training without files: the loop, optimisers, learning-rate schedules, data sources and the
chain's state as named arrays. It reports to callbacks and never prints or writes.
"""
