"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensor problems: torch's thread pool only adds wake-up latency, which on a busy
    2-core machine made them 10–60× slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``; the setting is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
