"""Blocks run with numpy's own BLAS at one thread, even when another BLAS was loaded before it.

scikit-learn loads scipy's OpenBLAS; threadpoolctl may list it first. Holding only that one at one
thread left numpy's GEMMs threaded inside the blocks, and the convolution's ∂J/∂W differed in its last
bits between one and two threads whenever the test suite had imported scikit-learn first.
"""

import numpy as np
import pytest

from nncli.core.kernels import threads

threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl reads the BLAS thread settings")


def _numpys_threads() -> int:
    info = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    mine = [i for i in info if threads._is_numpys(i.get("filepath"))]
    assert mine, info  # numpy's wheel bundles its BLAS in numpy.libs (or numpy/.dylibs)
    return mine[0]["num_threads"]


def test_numpys_blas_is_held_at_one_thread_inside_blocks_whatever_else_is_loaded(monkeypatch):
    pytest.importorskip("scipy.linalg", reason="scipy brings a second BLAS library")
    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # numpy's BLAS is loaded
    monkeypatch.setattr(threads, "_blas", None)  # found afresh, now that scipy's BLAS is loaded too
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert _numpys_threads() == 2 and threads._blas_threads() == 2
        during = []
        threads.run_blocks(lambda k, slot: during.append(_numpys_threads()), 3, 1)
        assert during == [1, 1, 1]
        assert _numpys_threads() == 2  # restored


def test_numpys_library_is_recognised_by_its_folder():
    assert threads._is_numpys("/env/site-packages/numpy.libs/libscipy_openblas64_-32a4.so")
    assert threads._is_numpys("/env/site-packages/numpy/.dylibs/libscipy_openblas64_.dylib")
    assert not threads._is_numpys("/env/site-packages/scipy.libs/libscipy_openblas-6cdc.so")
    assert not threads._is_numpys(None)
