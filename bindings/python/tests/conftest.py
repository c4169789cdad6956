"""Which lamina the tests run against.

By default, this checkout's package (each test module puts bindings/python first on sys.path)
and so the library of this checkout's target directory. With LAMINA_TEST_INSTALLED=1, the
package installed in the running interpreter (scripts/python-package-test.sh): it is imported
here, before any test module, so that every test gets that one, and a run that would import
the checkout's package instead stops at once.
"""

import os
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent

if os.environ.get("LAMINA_TEST_INSTALLED") == "1":
    try:
        import lamina
    except ImportError as e:
        raise pytest.UsageError("LAMINA_TEST_INSTALLED=1, but lamina cannot be imported: {}".format(e)) from None
    if PYTHON_DIR in Path(lamina.__file__).resolve().parents:
        raise pytest.UsageError(
            "LAMINA_TEST_INSTALLED=1, but lamina was imported from the checkout ({}) rather "
            "than from an installed package".format(lamina.__file__)
        )


@pytest.fixture(scope="module")
def model():
    """The default model, loaded once per test module (files may define their own)."""
    import lamina

    path = lamina.default_model_path()
    if not os.path.isfile(path):
        pytest.fail(
            "the default model is missing at {} - run scripts/fetch-model.sh (or set "
            "LAMINA_MODEL) before running these tests".format(path)
        )
    m = lamina.Model(path)
    yield m
    m.close()
