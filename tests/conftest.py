"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Small networks train faster on one thread on the 2-core machine; restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
