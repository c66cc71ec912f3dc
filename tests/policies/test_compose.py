"""The AgentLM compose files start real TGI: check their structure (no GPU or image pull here)."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
DOCKER = Path(__file__).resolve().parents[2] / "docker"


# AgentTuning's own docker/agentlm-*.yml publish 30007, 30013 and 30070; the second instance takes the next port
@pytest.mark.parametrize("size, port, gpus", [("7b", 30007, 1), ("13b", 30013, 1), ("70b", 30070, 4)])
def test_agentlm_compose_file_serves_the_model_with_tgi(size, port, gpus):
    compose = yaml.safe_load((DOCKER / f"agentlm-{size}.yml").read_text())
    services = compose["services"]
    assert list(services) == [f"agentlm-{size}", f"agentlm-{size}-2"]
    first, second = services.values()
    assert "profiles" not in first and second["profiles"] == ["multi"]  # `up` starts one, `--profile multi` two
    assert first["ports"] == [f"{port}:80"] and second["ports"] == [f"{port + 1}:80"]
    gpus_used = []
    for service in services.values():
        assert "text-generation-inference" in service["image"]
        args = dict(a.removeprefix("--").split("=", 1) for a in service["command"])
        assert args["model-id"] == f"THUDM/agentlm-{size}" and int(args["num-shard"]) == gpus
        assert int(args["max-total-tokens"]) == 4096 and int(args["max-input-tokens"]) < 4096
        device, = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and len(device["device_ids"]) == gpus and "gpu" in device["capabilities"]
        gpus_used += device["device_ids"]
        assert any(v.endswith(":/data") for v in service["volumes"])  # TGI's weight cache
    assert len(set(gpus_used)) == 2 * gpus  # the instances do not share a GPU
