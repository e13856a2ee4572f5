"""Torch threads for the organism tests: both cores when pytest runs alone, one under pytest-xdist
(``make test`` runs two workers on two cores; two threads per worker would oversubscribe them)."""
import os

THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
