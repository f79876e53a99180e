"""Shared by the vendor-client checks: argument parsing and a clear failure for missing packages."""
import importlib
import json
import sys


def args():
    return json.loads(sys.argv[1])


def require(*modules):
    """Imports the modules or exits 3 naming the pip packages to install."""
    loaded = []
    for module, package in modules:
        try:
            loaded.append(importlib.import_module(module))
        except ImportError as e:
            sys.stderr.write(
                f"missing Python package {package!r} ({e}); install it with "
                f"`.venv/bin/pip install {package}` (scripts/test.sh does this)\n"
            )
            sys.exit(3)
    return loaded


def expect_raises(exc_type, fn, what):
    try:
        fn()
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{what}: expected {exc_type.__name__}, got {type(e).__name__}: {e}")
    raise AssertionError(f"{what}: expected {exc_type.__name__}, got no error")
