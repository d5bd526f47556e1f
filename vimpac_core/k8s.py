"""A training stage on Kubernetes: a Kubeflow Training Operator ``PyTorchJob`` (kubeflow.org/v1).

`render_stage_job` turns a stage config and a `K8sJobConfig` (image, nodes, GPUs per node, the
shared checkpoint volume) into two objects: a ConfigMap holding the stage's ``run_config.json``
and a PyTorchJob of one Master and ``nodes - 1`` Workers. Every pod runs the same torchrun
command, a c10d rendezvous at the Master's address and port, which the operator passes to each pod
as MASTER_ADDR / MASTER_PORT (and its index as RANK); Kubernetes expands ``$(VAR)`` in the command.
Checkpoints go to a PersistentVolumeClaim (ReadWriteMany) mounted on every node, and the stage runs
with ``resume`` on: a pod the operator restarts after a lost node continues from the latest
checkpoint instead of starting over.

`submit` creates both objects with the ``kubernetes`` client (``pip install kubernetes``; the
``k8s`` extra) and `follow` polls the job's conditions until it succeeds or fails. Neither has run
against a cluster in this project (none was available): only the rendering and the API calls'
arguments are tested.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from vimpac_core.errors import ConfigError, PermanentError, TransientError
from vimpac_core.train.config import TrainConfigBase
from vimpac_core.train.launch import torchrun_command

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
CONTAINER = "pytorch"  # the operator looks for the container of this name
CONFIG_DIR, CONFIG_FILE = "/etc/vimpac", "run_config.json"
ENTRY_MODULE = "vimpac_core.train.pretrain"
# The operator gives every pod the Master's address and port and the pod's index; Kubernetes expands them.
RDZV_ENDPOINT, RANK = "$(MASTER_ADDR):$(MASTER_PORT)", "$(RANK)"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


class ClusterJobFailed(PermanentError):
    """The PyTorchJob ended in the Failed condition (after the operator's own restarts)."""


class ClusterJobTimeout(TransientError):
    """The PyTorchJob did not finish within the time allowed; it is left running on the cluster."""


class K8sJobConfig(BaseModel):
    """Where and how a stage runs on Kubernetes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="The job's name and rendezvous id: a DNS label (lowercase letters, digits, '-'), at most 52 "
        "characters (the operator appends pod suffixes)."
    )
    image: str = Field(description="Container image holding this project (infra/Dockerfile).")
    namespace: str = Field("default", description="Kubernetes namespace of the job and its ConfigMap.")
    nodes: int = Field(1, ge=1, description="Pods (one per node), each running gpus_per_node ranks.")
    gpus_per_node: int = Field(1, ge=0, description="GPUs each pod requests (nvidia.com/gpu); 0: CPU ranks (gloo).")
    checkpoint_pvc: str = Field(description="A ReadWriteMany PersistentVolumeClaim shared by every pod.")
    checkpoint_mount: str = Field(
        "/checkpoints", description="Absolute path where the claim is mounted; the stage's output goes under it."
    )
    cpu: str = Field("8", description="CPU request and limit of each pod (Kubernetes quantity).")
    memory: str = Field("64Gi", description="Memory request and limit of each pod (Kubernetes quantity).")
    shm_size: str = Field("16Gi", description="Size of the in-memory /dev/shm volume (DataLoader workers share it).")
    backoff_limit: int = Field(3, ge=0, description="Pod restarts the operator allows before the job fails.")
    service_account: str | None = Field(None, description="Service account of the pods; None: the namespace's default.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables of the container.")

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"name {value!r} must be a DNS label: lowercase letters, digits and '-', "
                             "starting and ending with a letter or digit, at most 52 characters")
        return value

    @field_validator("checkpoint_mount")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"checkpoint_mount {value!r} must be an absolute path inside the container")
        return value.rstrip("/") or "/"


def _under(path: str, root: str) -> bool:
    return PurePosixPath(path).is_relative_to(root)


def stage_for_cluster(stage: TrainConfigBase, job: K8sJobConfig) -> TrainConfigBase:
    """The stage as the pods run it: output on the shared volume, one rank per GPU, resume on.

    A relative ``output`` moves under the mount (``runs/x`` -> ``/checkpoints/runs/x``); an absolute
    one must already be on it, and so must ``load`` (another stage's checkpoint), or ConfigError.
    A relative local ``data`` folder is read from the shared volume too; URLs (s3://...) stay as they are.
    """
    data = stage.data
    if "://" not in data and not data.startswith("/"):
        data = f"{job.checkpoint_mount}/{data}"
    output = stage.output if stage.output.startswith("/") else f"{job.checkpoint_mount}/{stage.output}"
    if not _under(output, job.checkpoint_mount):
        raise ConfigError(f"output {stage.output!r} is not on the shared volume {job.checkpoint_mount}; "
                          "give a relative output or one under checkpoint_mount")
    load = stage.load
    if load is not None:
        load = load if load.startswith("/") else f"{job.checkpoint_mount}/{load}"
        if not _under(load, job.checkpoint_mount):
            raise ConfigError(f"load {stage.load!r} is not on the shared volume {job.checkpoint_mount}; "
                              "the pods cannot read it")
    device = "cuda" if job.gpus_per_node else "cpu"
    return stage.model_copy(update={"data": data, "output": output, "load": load, "resume": True, "device": device,
                                    "nproc_per_node": max(job.gpus_per_node, 1), "nnodes": job.nodes, "node_rank": 0,
                                    "rdzv_endpoint": RDZV_ENDPOINT, "rdzv_id": job.name})


def torchrun_args(stage: TrainConfigBase, config_path: str) -> list[str]:
    """The pods' command: the stage's torchrun command (launch.torchrun_command) with the image's python."""
    return ["python", *torchrun_command(config_path, stage.nproc_per_node, stage.ENTRY or ENTRY_MODULE,
                                        nnodes=stage.nnodes, node_rank=RANK, rdzv_endpoint=stage.rdzv_endpoint,
                                        rdzv_id=stage.rdzv_id)[1:]]


def _pod_template(job: K8sJobConfig, config_map: str, command: list[str]) -> dict[str, Any]:
    resources = {"cpu": job.cpu, "memory": job.memory}
    if job.gpus_per_node:
        resources["nvidia.com/gpu"] = str(job.gpus_per_node)
    container = {
        "name": CONTAINER,
        "image": job.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}] + [{"name": k, "value": v} for k, v in job.env.items()],
        "resources": {"limits": resources, "requests": dict(resources)},
        "volumeMounts": [
            {"name": "checkpoints", "mountPath": job.checkpoint_mount},
            {"name": "stage-config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {"name": "checkpoints", "persistentVolumeClaim": {"claimName": job.checkpoint_pvc}},
            {"name": "stage-config", "configMap": {"name": config_map}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": job.shm_size}},
        ],
    }
    if job.service_account:
        spec["serviceAccountName"] = job.service_account
    return {"metadata": {"labels": {"app": "vimpac", "vimpac/job": job.name}}, "spec": spec}


def render_stage_job(stage: TrainConfigBase, job: K8sJobConfig) -> list[dict[str, Any]]:
    """[ConfigMap with the stage's run_config.json, PyTorchJob]: the objects to create, in order.

    The pods run the stage's entry module (``ENTRY``: pre-training, fine-tuning)."""
    cluster_stage = stage_for_cluster(stage, job)
    command = torchrun_args(cluster_stage, f"{CONFIG_DIR}/{CONFIG_FILE}")
    config_map = f"{job.name}-config"
    meta = {"name": config_map, "namespace": job.namespace, "labels": {"app": "vimpac", "vimpac/job": job.name}}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
          "data": {CONFIG_FILE: json.dumps(cluster_stage.to_flat())}}
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": _pod_template(job, config_map, command)}}
    if job.nodes > 1:  # the same pod; its own copy, so the YAML has no anchors
        replicas["Worker"] = {"replicas": job.nodes - 1, "restartPolicy": "OnFailure",
                              "template": _pod_template(job, config_map, command)}
    pytorch_job = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": job.name, "namespace": job.namespace, "labels": {"app": "vimpac"}},
        "spec": {"runPolicy": {"backoffLimit": job.backoff_limit, "cleanPodPolicy": "None"},
                 "pytorchReplicaSpecs": replicas},
    }
    return [cm, pytorch_job]


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def api_calls(objects: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(API class, method, keyword arguments) of the kubernetes client calls that create ``objects``."""
    calls = []
    for obj in objects:
        namespace = obj["metadata"]["namespace"]
        if obj["kind"] == "ConfigMap":
            calls.append(("CoreV1Api", "create_namespaced_config_map", {"namespace": namespace, "body": obj}))
        elif obj["kind"] == KIND:
            calls.append(("CustomObjectsApi", "create_namespaced_custom_object",
                          {"group": GROUP, "version": VERSION, "namespace": namespace, "plural": PLURAL, "body": obj}))
        else:
            raise ConfigError(f"kind {obj['kind']!r}: only ConfigMap and {KIND} are created here")
    return calls


def _client():
    try:
        from kubernetes import client, config
    except ImportError:
        raise ConfigError("kubernetes: the client is not installed; pip install 'vimpac-pipeline[k8s]'") from None
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client


def submit(objects: list[dict[str, Any]]) -> None:
    """Create ``objects`` on the cluster of the current kubeconfig (or the pod's service account)."""
    client = _client()
    for api, method, kwargs in api_calls(objects):
        getattr(getattr(client, api)(), method)(**kwargs)


def job_condition(job: dict[str, Any]) -> tuple[str, str]:
    """(type, message) of the job's latest true condition (Created, Running, Restarting, Succeeded, Failed)."""
    conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    if not conditions:
        return "Pending", ""
    last = conditions[-1]
    return last.get("type", "Unknown"), last.get("message", "")


def follow(name: str, namespace: str, *, poll_s: float = 30.0, timeout_s: float | None = None,
           on_status: Callable[[str], None] = print) -> dict[str, Any]:
    """Poll the PyTorchJob until it succeeds (-> its status) or fails (ClusterJobFailed)."""
    api = _client().CustomObjectsApi()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    seen = None
    while True:
        job = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        kind, message = job_condition(job)
        if kind != seen:
            on_status(f"{KIND} {namespace}/{name}: {kind} {message}".rstrip())
            seen = kind
        if kind == "Succeeded":
            return job.get("status") or {}
        if kind == "Failed":
            raise ClusterJobFailed(f"{KIND} {namespace}/{name} failed: {message}; see `kubectl logs` of its pods")
        if deadline is not None and time.monotonic() > deadline:
            raise ClusterJobTimeout(f"{KIND} {namespace}/{name} still {kind} after {timeout_s:.0f} s; "
                                    "it keeps running on the cluster (`kubectl delete pytorchjob` to stop it)")
        time.sleep(poll_s)


def run_stage_on_cluster(stage: TrainConfigBase, job: K8sJobConfig, *, poll_s: float = 30.0,
                         timeout_s: float | None = None, on_status: Callable[[str], None] = print) -> dict[str, Any]:
    """Render, submit and follow one stage; returns the job's final status."""
    objects = render_stage_job(stage, job)
    submit(objects)
    on_status(f"submitted {KIND} {job.namespace}/{job.name}: {job.nodes} node(s) x {job.gpus_per_node} GPU(s)")
    return follow(job.name, job.namespace, poll_s=poll_s, timeout_s=timeout_s, on_status=on_status)
