"""Reading the user's own data (.npz and .csv) and the checks every dataset passes before training.

Every problem is a DataError that names the file (and, for CSV, the line) and says what is wrong.
Pickled (object) arrays are refused, never unpickled (the .npz reader below never calls ``np.load``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import cast

import numpy as np

from nncli.config.memory import check_data_fits, check_fits
from nncli.config.schema import DataConfig
from nncli.core.errors import DataError, UserError, did_you_mean
from nncli.core.files import check_regular_file
from nncli.training.tables import fitting
from nncli.training.tables.encode import apply_preprocessing
from nncli.training.tables.prepared import read_prepared
from nncli.training.tables.table_files import is_table

#: labels above this are refused before they are cast to int64 (no model has that many classes)
MAX_LABEL = 2**31 - 1
#: how an .npy member starts (numpy.lib.format.MAGIC_PREFIX)
_NPY_MAGIC = b"\x93NUMPY"
#: a table's float64 values take at most this many bytes of memory per byte of its text
TABLE_MEMORY_PER_BYTE = 4
#: the user files a data.source path may name
USER_SUFFIXES = (".npz", ".csv", ".parquet")


def _file_problem(path: Path, where: str, what: str) -> int:
    """The size of ``path``; DataError for a NUL in the path, a missing file or a device."""
    try:
        return check_regular_file(path, what)
    except UserError as exc:
        msg = "file not found" if exc.message.startswith("no such file") else exc.message
        raise DataError(f"{where}: {msg}") from None


def read_npz(path: Path, cfg: DataConfig, where: str) -> dict[str, np.ndarray]:
    """``x``, ``y`` and, when the archive has both ``<x_key>_test`` and ``<y_key>_test``, ``x_test``, ``y_test``.

    Read without ``np.load``: each member's .npy header is read first, the shapes it declares are
    checked against the member's size in the zip directory and against memory, and only then is the
    data read (never more bytes than declared). Object arrays are refused, never unpickled.
    """
    _file_problem(path, where, "an .npz archive")
    try:
        with open(path, "rb") as fh:
            if fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC:  # a plain .npy renamed .npz
                raise DataError(f"{where}: expected an .npz archive of named arrays, got a single array")
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{where}: not a readable .npz archive ({exc})") from None
    with archive:
        members = {}
        for info in archive.infolist():
            name = info.filename
            members[name[:-4] if name.endswith(".npy") else name] = info
        names = list(members)
        wanted = {"x": cfg.x_key, "y": cfg.y_key}
        tx, ty = f"{cfg.x_key}_test", f"{cfg.y_key}_test"
        if (tx in names) != (ty in names):
            have, lack = (tx, ty) if tx in names else (ty, tx)
            raise DataError(f"{where}: has a test array '{have}' but no '{lack}'; provide both or neither")
        if tx in names:
            wanted.update(x_test=tx, y_test=ty)
        for role, key in wanted.items():
            if key not in names:
                raise DataError(
                    f"{where}: no array named '{key}' (data.{role}_key); the archive has "
                    f"{names}{did_you_mean(key, names)}"
                )
        try:
            heads = {role: _npy_header(archive, members[key], key, where) for role, key in wanted.items()}
            total = sum(int(np.prod(shape, dtype=object)) for shape, _, _, _ in heads.values())
            check_data_fits(total, f"the arrays of {where} ({total:,} values)", error=DataError)
            return {
                role: _npy_data(archive, members[key], key, heads[role], where)
                for role, key in wanted.items()
            }
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a bad CRC, a truncated member
            raise DataError(f"{where}: not a readable .npz archive ({exc})") from None


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, where: str):
    """(shape, fortran order, dtype, offset of the data) of one member, from its header alone."""
    with archive.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        except (ValueError, EOFError) as exc:
            raise DataError(
                f"{where}: member '{info.filename}' is not a .npy array ({exc}); an .npz holds arrays "
                f"saved by numpy.savez"
            ) from None
        offset = fh.tell()
    if dtype.hasobject:
        raise DataError(
            f"{where}: array '{key}' holds Python objects (dtype=object), which would need "
            f"unpickling; save it as a numeric array instead"
        )
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if info.file_size != offset + nbytes:
        raise DataError(
            f"{where}: array '{key}' declares shape {tuple(shape)} ({nbytes:,} bytes of data), but its "
            f"member holds {max(info.file_size - offset, 0):,}; the archive is damaged"
        )
    return shape, fortran, dtype, offset


def _npy_data(archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, head, where: str) -> np.ndarray:
    shape, fortran, dtype, offset = head
    nbytes = info.file_size - offset
    buf = bytearray(nbytes)
    view = memoryview(buf)
    # ZipFile.open returns a ZipExtFile (a BufferedIOBase, with readinto); typeshed says IO[bytes]
    with cast(zipfile.ZipExtFile, archive.open(info)) as fh:
        fh.read(offset)
        got = 0
        while got < nbytes:
            n = fh.readinto(view[got:])
            if not n:
                raise DataError(f"{where}: array '{key}' is truncated ({got:,} of {nbytes:,} bytes)")
            got += n
    arr = np.frombuffer(buf, dtype=dtype)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def check_data_file(path: Path, where: str) -> None:
    """DataError for a missing file or a device; a table whose numbers cannot fit in memory is refused
    before it is read (each value takes at least two bytes of text: a digit and a comma)."""
    size = _file_problem(path, where, "a data file")
    check_fits(size * TABLE_MEMORY_PER_BYTE, f"the {size:,} bytes of {where}", error=DataError)


# -- checks shared by every source ------------------------------------------------------------------


def check_inputs(x: np.ndarray, y: np.ndarray, where: str, part: str = "") -> np.ndarray:
    """Refuse empty, non-numeric, non-finite or length-mismatched data; return x as float64."""
    label = f"{part} " if part else ""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: {label}inputs must be numeric, got dtype {x.dtype}")
    if y.dtype.kind not in "biufUS":  # text labels are mapped to classes (training/tables/labels.py)
        raise DataError(f"{where}: {label}targets must be numeric, got dtype {y.dtype}")
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{where}: {label}inputs are empty (shape {x.shape})")
    if y.ndim == 0 or len(x) != len(y):
        raise DataError(
            f"{where}: {label}inputs have {len(x)} examples but targets have "
            f"{len(y) if y.ndim else 'a single value'}"
        )
    x = x.astype(np.float64, copy=False)
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{where}: {label}inputs contain NaN or Inf in {int(bad.sum())} example(s), "
            f"the first at index {i}"
        )
    return x


def coerce_targets(y: np.ndarray, target_kind: str, where: str, part: str = "") -> np.ndarray:
    """Labels (``class``/``binary`` losses) → int64, refusing fractions; real targets → float64.

    The label range (e.g. 0 ≤ y < C) is the loss's to check: ``loss.check_targets(y, output_shape)``.
    """
    label = f"{part} " if part else ""
    if target_kind in ("class", "binary"):
        if y.dtype.kind == "f":
            bad = ~np.isfinite(y) | (y != np.round(y))
            if bad.any():
                i = int(np.argmax(bad.reshape(-1)))
                raise DataError(
                    f"{where}: {label}labels must be whole numbers for a {target_kind} loss, "
                    f"got {float(y.reshape(-1)[i]):g} at index {i}"
                )
        # checked before the cast, which would turn 1e30 into -9.2e18 and 2⁶⁴−1 into −1
        if y.dtype.kind in "fu" and y.size:
            big = (np.abs(y) if y.dtype.kind == "f" else y) > MAX_LABEL
            if big.any():
                i = int(np.argmax(big.reshape(-1)))
                value = y.reshape(-1)[i]
                shown = f"{float(value):g}" if y.dtype.kind == "f" else str(int(value))
                raise DataError(
                    f"{where}: {label}labels must be class indices 0, 1, 2, …, got {shown} at index "
                    f"{i}, far beyond any class (at most {MAX_LABEL:,})"
                )
        return y.astype(np.int64)
    y = y.astype(np.float64, copy=False)
    if not np.isfinite(y).all():
        raise DataError(f"{where}: {label}targets contain NaN or Inf")
    return y


def fit_input_shape(x: np.ndarray, input_shape: tuple[int, ...], where: str) -> np.ndarray:
    """x (N, ...) reshaped to (N, *input_shape) when the per-example sizes agree, else a DataError."""
    have, want = tuple(x.shape[1:]), tuple(input_shape)
    if have == want:
        return x
    if int(np.prod(have)) == int(np.prod(want)):
        return x.reshape((len(x), *want))
    raise DataError(
        f"{where}: each example has shape {have} ({int(np.prod(have))} values), but the model's "
        f"input_shape is {list(want)} ({int(np.prod(want))} values)"
    )


def load_arrays(path, cfg: DataConfig, target_kind: str = "real") -> tuple[np.ndarray, np.ndarray]:
    """The user file ``path`` (.npz, .csv, .parquet) → (x float64 (N, ...), y (N, ...)), checked; else
    DataError. A table is encoded with statistics from all its rows (no split)."""
    path = Path(path)
    where = str(path)
    if is_table(path):
        check_data_file(path, where)
        prep = read_prepared(path, cfg, where, target_kind)
        spec = fitting.fit(prep, np.arange(len(prep.y)))
        return apply_preprocessing(spec, prep.inputs, where=where, line=prep.line), prep.y
    raw = read_user_file(path, cfg, where)
    return check_inputs(raw["x"], raw["y"], where), raw["y"]


def read_user_file(path: Path, cfg: DataConfig, where: str) -> dict[str, np.ndarray]:
    """An .npz's arrays (tables are read by training/tables/)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path, cfg, where)
    raise DataError(
        f"{where}: unsupported file type '{suffix or path.name}'; expected .npz, .csv or .parquet"
    )
