"""The fast paths the layers call; plain numpy, no knowledge of configs, files or runs.

- ``im2col``: convolution geometry, padding, im2col/col2im (convolutions and pooling)
- ``conv``: the convolution's blocked im2col/GEMM/col2im forward and backward
- ``layernorm``: LN's blocked forward and backward
- ``threads``: the small thread pool that runs row blocks
- ``workspace``: the one home of scratch buffers (by name, thread slot and dtype)

Each kernel computes what its layer's ``reference_forward``/``reference_backward`` (in
``core/layers/``) write as the notes' equations; ``tests/unit/test_reference_kernels.py`` checks
that they agree.
"""
