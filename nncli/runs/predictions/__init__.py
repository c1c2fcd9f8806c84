"""Predictions of a trained run on new data, chunk by chunk: ``nncli predict RUN DATA``.

predict (``predict_file``: the output written as each chunk is predicted), inputs (the input file
read chunk by chunk: an .npz, a Parquet file, or CSV through csv_inputs), rows (a chunk's
predictions as output rows: class names or ids, ``--proba``'s probabilities).
"""
