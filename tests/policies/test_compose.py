"""The AgentLM compose files start real TGI: check their structure (no GPU or image pull here)."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.mark.parametrize("size, port, gpus", [("7b", 30070, 1), ("13b", 30071, 1), ("70b", 30072, 4)])
def test_agentlm_compose_file_serves_the_model_with_tgi(size, port, gpus):
    compose = yaml.safe_load((DOCKER / f"agentlm-{size}.yml").read_text())
    (name, service), = compose["services"].items()
    assert name == f"agentlm-{size}"
    assert "text-generation-inference" in service["image"]
    args = dict(a.removeprefix("--").split("=", 1) for a in service["command"])
    assert args["model-id"] == f"THUDM/agentlm-{size}" and int(args["num-shard"]) == gpus
    assert int(args["max-total-tokens"]) == 4096 and int(args["max-input-tokens"]) < 4096
    assert service["ports"] == [f"{port}:80"]
    device, = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == gpus and "gpu" in device["capabilities"]
    assert any(v.endswith(":/data") for v in service["volumes"])  # TGI's weight cache
