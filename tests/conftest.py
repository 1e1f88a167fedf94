# --- Triton mode and the `gpu` marker (first: must run before `minitf.kernels` is imported) ---
import os

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's CPU interpreter. The interpreter is chosen when
# each @triton.jit decorator runs, i.e. when `minitf.kernels` is first imported: set it here, first.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption("--fuzz-cases", type=int, default=None,
                     help="cases per fuzzed loader (default: a quick slice for make test)")


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` on machines without CUDA."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# --- Shared fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other work for cores).
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fuzz_cases(request) -> int | None:
    """--fuzz-cases N from the command line, or None for each fuzz test's quick default."""
    return request.config.getoption("--fuzz-cases")
