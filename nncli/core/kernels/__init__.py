"""The fast paths the layers call: im2col/col2im for convolutions and pooling, and the small
thread pool that runs large blocks. Plain numpy; no knowledge of configs, files or runs.
"""
