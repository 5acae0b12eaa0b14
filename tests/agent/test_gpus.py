"""nvidia-smi parsing from recorded output, and CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pilotwms.agent import gpus

# Recorded with `nvidia-smi --query-gpu=index,name,memory.total,driver_version,uuid
# --format=csv,noheader,nounits` on a 4-GPU node and on a single-GPU node.
FOUR_A100 = """\
0, NVIDIA A100-SXM4-40GB, 40960, 535.129.03, GPU-6bd8b0f5-3c3e-1b9c-5e5c-2b7c0a8f1e01
1, NVIDIA A100-SXM4-40GB, 40960, 535.129.03, GPU-0c1e2d3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5
2, NVIDIA A100-SXM4-40GB, 40960, 535.129.03, GPU-11111111-2222-3333-4444-555555555555
3, NVIDIA A100-SXM4-40GB, 40960, 535.129.03, GPU-66666666-7777-8888-9999-000000000000
"""
ONE_H100_NO_UUID = "0, NVIDIA H100 80GB HBM3, 81559, 550.54.15\n"


def test_parse_four_gpus() -> None:
    parsed = gpus.parse_nvidia_smi(FOUR_A100)
    assert [g.index for g in parsed] == [0, 1, 2, 3]
    assert parsed[0].name == "NVIDIA A100-SXM4-40GB"
    assert parsed[0].memory_mb == 40960
    assert parsed[0].driver_version == "535.129.03"
    assert parsed[1].uuid.startswith("GPU-0c1e")


def test_parse_without_uuid_column_and_junk_lines() -> None:
    parsed = gpus.parse_nvidia_smi(ONE_H100_NO_UUID + "\nNo devices were found\n")
    assert parsed == [gpus.Gpu(0, "NVIDIA H100 80GB HBM3", 81559, "550.54.15", "")]


def test_unknown_memory_is_zero() -> None:
    parsed = gpus.parse_nvidia_smi("0, NVIDIA A100 MIG, [N/A], 535.1, GPU-x\n")
    assert parsed[0].memory_mb == 0


@pytest.mark.parametrize(
    ("visible", "indices"),
    [
        (None, [0, 1, 2, 3]),
        ("", []),
        ("-1", []),
        ("NoDevFiles", []),
        ("2", [2]),
        ("3,1", [3, 1]),
        ("1,7,2", [1]),  # CUDA stops at the first entry naming no device
        ("GPU-0c1e2d3f", [1]),
        ("GPU-66666666-7777-8888-9999-000000000000,0", [3, 0]),
    ],
)
def test_cuda_visible_devices(visible: str | None, indices: list[int]) -> None:
    chosen = gpus.visible(gpus.parse_nvidia_smi(FOUR_A100), visible)
    assert [g.index for g in chosen] == indices


def test_discover_runs_the_query_only_when_nvidia_smi_exists() -> None:
    calls: list[Sequence[str]] = []

    def run(argv: Sequence[str], timeout: float) -> str | None:
        calls.append(argv)
        return FOUR_A100

    found = gpus.discover_gpus(run, lambda n: "/usr/bin/nvidia-smi", {"CUDA_VISIBLE_DEVICES": "1"})
    assert [g.index for g in found] == [1]
    assert calls == [gpus.QUERY]
    assert gpus.discover_gpus(run, lambda n: None, {}) == []
    assert gpus.discover_gpus(lambda a, t: None, lambda n: "/x", {}) == []
