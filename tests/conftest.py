import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests on one torch thread: on a machine shared with other jobs, every OpenMP parallel region
    of many small tensors can wait a scheduler time slice, which made such suites several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
