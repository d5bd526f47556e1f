"""The Kubernetes manifest of a multi-node stage: rendered from a preset's stage config and checked
field by field, against the kubernetes client's own pod model, and the client calls that submit it.
(No cluster here: submission and following are not exercised.)"""

from __future__ import annotations

import inspect
import json

import pytest
import yaml

from vimpac_core.errors import ConfigError
from vimpac_core.k8s import CONFIG_DIR, CONFIG_FILE, K8sJobConfig, api_calls, render_stage_job, to_yaml
from vimpac_core.train.config import PretrainConfig, parse_stages

JOB = dict(name="vimpac-large-s1", image="registry.example/vimpac:1.0", namespace="ml", nodes=4, gpus_per_node=8,
           checkpoint_pvc="vimpac-checkpoints")


def _render(**kw):
    stage = parse_stages("configs/pretrain/large.yaml")[0]
    return stage, render_stage_job(stage, K8sJobConfig(**{**JOB, **kw}))


def _flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_pytorchjob_of_four_nodes_with_eight_gpus():
    stage, (cm, job) = _render()
    assert (cm["apiVersion"], cm["kind"], cm["metadata"]["namespace"]) == ("v1", "ConfigMap", "ml")
    ran = PretrainConfig.from_flat(json.loads(cm["data"][CONFIG_FILE]))  # the pods read a valid stage config
    assert ran.output == "/checkpoints/runs/large/stage1" and ran.resume and ran.device == "cuda"
    assert ran.data == "/checkpoints/data/howto100m-128"  # a relative data folder is read from the shared volume
    assert ran.nproc_per_node == 8 and ran.model == stage.model and ran.epochs == stage.epochs
    assert (ran.nnodes, ran.rdzv_id, ran.rdzv_endpoint) == (4, "vimpac-large-s1", "$(MASTER_ADDR):$(MASTER_PORT)")
    assert ran.accumulation_steps() == 1024 // (16 * 8 * 4)  # the batch of 1024 videos over 32 GPUs

    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["metadata"] == {"name": "vimpac-large-s1", "namespace": "ml", "labels": {"app": "vimpac"}}
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"}
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 3)
    for role in specs.values():
        assert role["restartPolicy"] == "OnFailure"
        pod = role["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch" and container["image"] == JOB["image"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert container["resources"]["requests"] == container["resources"]["limits"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert set(mounts) == set(volumes)  # every mount has its volume
        assert volumes["checkpoints"]["persistentVolumeClaim"]["claimName"] == "vimpac-checkpoints"
        assert mounts["checkpoints"] == "/checkpoints"
        assert volumes["stage-config"]["configMap"]["name"] == cm["metadata"]["name"]
        assert mounts["stage-config"] == CONFIG_DIR
        cmd = container["command"]
        assert cmd[:3] == ["python", "-m", "torch.distributed.run"] and "--standalone" not in cmd
        assert (_flag(cmd, "--nnodes"), _flag(cmd, "--nproc_per_node")) == ("4", "8")
        assert _flag(cmd, "--rdzv_backend") == "c10d"
        assert _flag(cmd, "--rdzv_endpoint") == "$(MASTER_ADDR):$(MASTER_PORT)"  # the operator's env per pod
        assert _flag(cmd, "--node_rank") == "$(RANK)" and _flag(cmd, "--rdzv_id") == "vimpac-large-s1"
        assert cmd[-4:] == ["-m", "vimpac_core.train.pretrain", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    assert list(yaml.safe_load_all(to_yaml([cm, job]))) == [cm, job]


def test_one_cpu_node_has_no_workers_and_no_gpus():
    _, (_, job) = _render(nodes=1, gpus_per_node=0)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert list(specs) == ["Master"]
    container = specs["Master"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert (_flag(container["command"], "--nnodes"), _flag(container["command"], "--nproc_per_node")) == ("1", "1")


def test_paths_the_pods_cannot_reach_are_refused():
    stage = parse_stages("configs/pretrain/large.yaml")[0]
    job = K8sJobConfig(**JOB)
    with pytest.raises(ConfigError, match=r"output '/data/run' is not on the shared volume /checkpoints"):
        render_stage_job(stage.model_copy(update={"output": "/data/run"}), job)
    with pytest.raises(ConfigError, match=r"load '/home/me/ckpt' is not on the shared volume"):
        render_stage_job(stage.model_copy(update={"load": "/home/me/ckpt"}), job)
    with pytest.raises(ValueError, match=r"must be a DNS label"):
        K8sJobConfig(**{**JOB, "name": "Large_Run"})


def test_pod_template_is_a_valid_kubernetes_pod_and_the_calls_fit_the_client():
    client = pytest.importorskip("kubernetes.client")
    _, objects = _render()
    api = client.ApiClient()
    for role in objects[1]["spec"]["pytorchReplicaSpecs"].values():
        # Deserialised into the client's V1PodTemplateSpec and back: a misspelt or misplaced field is dropped.
        model = api._ApiClient__deserialize(role["template"], "V1PodTemplateSpec")
        assert api.sanitize_for_serialization(model) == role["template"]
    calls = api_calls(objects)
    assert [(a, m) for a, m, _ in calls] == [("CoreV1Api", "create_namespaced_config_map"),
                                           ("CustomObjectsApi", "create_namespaced_custom_object")]
    for api_name, method, kwargs in calls:
        inspect.signature(getattr(getattr(client, api_name), method)).bind(None, **kwargs)
    assert calls[1][2]["plural"] == "pytorchjobs" and calls[1][2]["body"] is objects[1]


def test_stage_two_loads_stage_one_from_the_shared_volume():
    stage2 = parse_stages("configs/pretrain/large.yaml", {"data": "s3://bucket/h128", "stage2.data": "s3://bucket/h256"})[1]
    cm, _ = render_stage_job(stage2, K8sJobConfig(**{**JOB, "name": "vimpac-large-s2"}))
    ran = PretrainConfig.from_flat(json.loads(cm["data"][CONFIG_FILE]))
    assert ran.load == "/checkpoints/runs/large/stage1/checkpoints/final" and ran.data == "s3://bucket/h256"
    assert ran.output == "/checkpoints/runs/large/stage2" and ran.model.frame_size == 256


def test_cli_prints_the_manifest(capsys):
    from vimpac_cli import main

    assert main(["k8s-manifest", "configs/pretrain/large.yaml", "--stage", "2", "--name", "large-s2", "--image", "img:1",
                 "--nodes", "2", "--gpus-per-node", "4", "--pvc", "ckpt"]) == 0
    cm, job = yaml.safe_load_all(capsys.readouterr().out)
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
    assert json.loads(cm["data"][CONFIG_FILE])["frame_size"] == 256
    assert main(["k8s-manifest", "configs/pretrain/large.yaml", "--stage", "3", "--name", "x", "--image", "i",
                 "--pvc", "p"]) == 2
    assert "has 2 stage(s), not 3" in capsys.readouterr().err
