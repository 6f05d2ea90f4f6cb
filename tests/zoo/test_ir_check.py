"""Checks before a pull is published: a truncated ``.bin`` and outputs that a description names
but the model lacks are refused (found by the faults suite: both used to be published, and the
infer worker crashed with SIGSEGV mapping the truncated weights); a full disk is ``no_space``."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from ovbus.errors import ErrorCode, FetchError, ModelError
from services.zoo.ir_check import check_outputs, check_weights, ir_outputs
from services.zoo.pull import _store_error
from tests.models import BLAZEFACE, POSE
from tests.zoo.conftest import Site


def test_weights_must_cover_the_topology(site: Site, tmp_path: Path) -> None:
    check_weights(site.ir_xml, site.ir_bin)
    short = tmp_path / "model.bin"
    short.write_bytes(site.ir_bin.read_bytes()[:-1])
    with pytest.raises(FetchError) as refused:
        check_weights(site.ir_xml, short)
    assert refused.value.code == ErrorCode.BAD_PAYLOAD
    assert f"the topology needs {site.ir_bin.stat().st_size}" in refused.value.message


def test_outputs_named_by_the_description_must_exist(site: Site, tmp_path: Path) -> None:
    names = ir_outputs(site.ir_xml)
    assert names == {"regressors", "classificators"}
    check_outputs("face", BLAZEFACE, names)
    with pytest.raises(ModelError) as refused:
        check_outputs("face", POSE, names)
    assert refused.value.code == ErrorCode.MODEL_OUTPUT_MISMATCH
    assert "boxes_output='Identity'" in refused.value.message
    garbled = tmp_path / "model.xml"
    shutil.copyfile(site.ir_xml, garbled)
    garbled.write_bytes(garbled.read_bytes()[:100])
    with pytest.raises(FetchError):
        ir_outputs(garbled)


def test_full_disk_is_no_space() -> None:
    error = _store_error("face", OSError(errno.ENOSPC, "No space left on device"))
    assert error.code == ErrorCode.NO_SPACE
    assert _store_error("face", OSError(errno.EIO, "I/O error")).code == ErrorCode.INTERNAL
