"""This repository's tests, a regular package on purpose.

Microsoft's worker library (a dev dependency on Python 3.13+) installs a top-level `tests` folder into
site-packages (it carries the generated `tests.protos` classes). As a regular package found first on `sys.path`
(pytest puts the repository root there: `pythonpath = ["."]`), this one is always the `tests` that
`from tests.helpers import ...` means; the devserver loads the worker's protos by file, not by that name.
`tests/test_imports.py` checks both.
"""
