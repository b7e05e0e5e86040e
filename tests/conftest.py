import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

from tests.layer_test_case import restart_rng  # noqa: E402

# Each test session trains at most one model (CONTRIBUTING.md): a test
# that trains one is marked `trains(NAME)` and runs only in the session whose
# Makefile line passes `--trains NAME`. The names, and the session of each:
TRAINING_RUNS = {
    "reversal-demo": "make test-torch",
    "generate-demo": "make test-oldest",
}


def pytest_addoption(parser):
    parser.addoption(
        "--trains",
        metavar="NAME",
        default=None,
        choices=sorted(TRAINING_RUNS),
        help="run the one test marked trains(NAME); the other tests marked "
        "`trains` are skipped (each session trains at most one model)",
    )


def pytest_collection_modifyitems(config, items):
    chosen = config.getoption("trains")
    for item in items:
        marker = item.get_closest_marker("trains")
        if marker is None:
            continue
        name = marker.args[0] if len(marker.args) == 1 else None
        if name not in TRAINING_RUNS:
            raise pytest.UsageError(
                f"{item.nodeid}: `trains` must name one training run of "
                f"{sorted(TRAINING_RUNS)}. Received: args={marker.args}"
            )
        if name != chosen:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"trains a model: runs only with `--trains {name}` "
                    f"({TRAINING_RUNS[name]})"
                )
            )
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="needs the TensorFlow backend")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    restart_rng()
    yield
    keras.config.set_dtype_policy("float32")
