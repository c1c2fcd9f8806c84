"""``--json`` keeps stdout for the JSON document: ``textout.stdout_kept_for_json`` sends whatever is
written meanwhile (Python's print, a C library's write to file descriptor 1, a library's own thread)
to stderr. A sweep's JSON had been preceded by a Ray cluster message printed to the driver's stdout."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import json, os, sys, threading
    from nncli.cli.textout import stdout_kept_for_json

    with stdout_kept_for_json():
        print("from print")
        os.write(1, b"from fd 1\\n")
        t = threading.Thread(target=lambda: print("from a thread"))
        t.start(); t.join()
    sys.stdout.write(json.dumps({"ok": True}) + "\\n")
    print("after")
    """
)


def test_inside_goes_to_stderr_and_stdout_is_restored_after():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    out_lines = done.stdout.splitlines()
    assert json.loads(out_lines[0]) == {"ok": True} and out_lines[1:] == ["after"]
    assert done.stderr.splitlines() == ["from print", "from fd 1", "from a thread"]


def test_restored_after_an_error():
    child = textwrap.dedent(
        """
        import os, sys
        from nncli.cli.textout import stdout_kept_for_json
        try:
            with stdout_kept_for_json():
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        os.write(1, b"fd 1 again\\n")
        print("print again")
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["fd 1 again", "print again"] and done.stderr == ""


def test_without_a_file_descriptor_1_it_stands_aside():
    child = textwrap.dedent(
        """
        import os, sys
        from nncli.cli.textout import stdout_kept_for_json
        os.close(1)
        with stdout_kept_for_json():
            sys.stderr.write("ran\\n")
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == "ran\n", done.stderr
