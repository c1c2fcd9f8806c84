"""A training session: a run's config, data and model checked before its folder is touched, then
the folder's lifecycle.

prepare (``prepare``: a new run's ``Session``, whose ``open``, ``finish`` and ``fail`` create and
close the folder), resume (``--resume``: a session refused unless it continues exactly), extend (a
larger budget for a resumed run), init_from (another run's weights), preflight (the disk checked,
the run's lock), config_compare (a config's hash, the values two configs differ in), data_checks
(splits against the model, the training data's fingerprint), datafile (the data file's path and
SHA-256 a run saves).
"""
