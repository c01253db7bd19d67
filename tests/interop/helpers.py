"""What the interop tests share: the dsk binary under test and a runner that shows its stderr."""

import os
import subprocess

DSK = os.environ.get("DSK", os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "dsk"))


def dsk(*args, cwd=None, input=None, ok=True):
    """Run dsk; unless `ok` is False, fail the test with dsk's stderr when it exits non-zero."""
    r = subprocess.run([DSK, *map(str, args)], cwd=cwd, input=input, capture_output=True)
    if ok and r.returncode != 0:
        raise AssertionError(f"dsk {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr.decode()}")
    return r
