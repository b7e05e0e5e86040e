import gc
import itertools
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


# Keras collects garbage (`gc.collect()`) each time a layer deletes a
# variable, as quantization does, and a full collection walks every object:
# late in a session, with the backends' caches, about a million, which made
# an int8 test spend most of its time there. So every FREEZE_EVERY tests the
# objects that survive a collection are moved out of the collector's sight
# (`gc.freeze()`; they are the long-lived ones: modules, compiled programs,
# shared fixtures), and a collection walks what the latest tests made.
FREEZE_EVERY = 50
_tests_run = itertools.count(1)


def _freeze_survivors():
    gc.collect()
    gc.freeze()


def pytest_collection_finish(session):
    _freeze_survivors()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.set_random_seed(0)
    restart_rng()
    yield
    keras.config.set_dtype_policy("float32")
    if next(_tests_run) % FREEZE_EVERY == 0:
        _freeze_survivors()
