"""Test set-up: 8 simulated CPU devices (set before JAX starts) and tiny configs."""

import hashlib
import importlib.util
import os
import tempfile

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests compile many small programs and run each a few steps: a lower LLVM optimisation level
# cuts CPU compile time by ~40% (subprocesses started by tests inherit it).
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()
# Many tests (and the CLI subprocesses they start) compile the same small programs: a persistent
# compilation cache, keyed by the program, lets later compiles load from disk. One directory per
# checkout, outside it; safe to delete at any time.
_checkout = hashlib.sha1(os.path.abspath(__file__).encode()).hexdigest()[:10]
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"jepa-jax-test-cache-{_checkout}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TINY_CONFIG = os.path.join(REPO, "tests", "configs", "tiny.py")


def load_config(path: str, arg: str | None = None):
    """get_config(arg) of a config file, as the CLI would load it."""
    spec = importlib.util.spec_from_file_location("_test_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def tiny_video_config():
    """V-JEPA on 4-frame 32x32 clips: a 2x8x8 token grid, 2-block encoder, 1-block predictor."""
    return load_config(TINY_CONFIG)


def tiny_image_config():
    """I-JEPA on 32x32 images: an 8x8 token grid."""
    return load_config(TINY_CONFIG, "image")


@pytest.fixture
def video_config():
    return tiny_video_config()


@pytest.fixture
def image_config():
    return tiny_image_config()


@pytest.fixture(scope="session")
def devices():
    devs = jax.devices()
    assert len(devs) == 8, f"tests expect 8 simulated CPU devices, got {len(devs)}"
    return devs
