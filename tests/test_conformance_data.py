"""The copy of the real server's recordings in tests/data/conformance is byte-identical to
the shared originals (when those are present next to the repository)."""

from __future__ import annotations

import pytest
from conftest import CONFORMANCE, ROOT

SHARED = ROOT.parent / "shared" / "conformance"


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared conformance directory here")
def test_copy_is_identical() -> None:
    shared = sorted(p.name for p in SHARED.iterdir() if p.is_file())
    local = sorted(p.name for p in CONFORMANCE.iterdir() if p.is_file())
    assert shared == local
    for name in shared:
        assert (SHARED / name).read_bytes() == (CONFORMANCE / name).read_bytes(), name
