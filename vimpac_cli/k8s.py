"""`vimpac k8s-manifest PRESET`: a pre-training stage as a Kubeflow PyTorchJob (+ its ConfigMap), as YAML.

The stage comes from the preset (``--stage 2`` for a preset's second stage); the job from the flags:
image, nodes, GPUs per node, the shared checkpoint PVC. ``--submit`` creates the objects on the
cluster of the current kubeconfig and follows the job until it ends (needs the ``kubernetes``
client: ``pip install 'vimpac-pipeline[k8s]'``). See infra/README.md.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add `k8s-manifest` to the `vimpac` parser."""
    p = sub.add_parser("k8s-manifest", help="render (or submit) a multi-node training stage for Kubernetes",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", help="pre-training preset YAML, e.g. configs/pretrain/large.yaml")
    p.add_argument("--stage", type=int, default=1, help="which stage of the preset (default: 1)")
    p.add_argument("--name", required=True, help="job name (a DNS label), also the rendezvous id")
    p.add_argument("--image", required=True, help="container image of this project (infra/Dockerfile)")
    p.add_argument("--namespace", default="default")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=1)
    p.add_argument("--pvc", required=True, help="ReadWriteMany PersistentVolumeClaim for checkpoints")
    p.add_argument("--mount", default="/checkpoints", help="where the PVC is mounted (default: /checkpoints)")
    p.add_argument("--submit", action="store_true", help="create the objects and follow the job to its end")
    p.set_defaults(func=cmd_k8s_manifest)


def cmd_k8s_manifest(args: argparse.Namespace) -> int:
    from vimpac_core.errors import ConfigError
    from vimpac_core.k8s import K8sJobConfig, render_stage_job, run_stage_on_cluster, to_yaml
    from vimpac_core.train.config import parse_stages

    stages = parse_stages(args.preset)
    if not 1 <= args.stage <= len(stages):
        raise ConfigError(f"stage: {args.preset} has {len(stages)} stage(s), not {args.stage}")
    stage = stages[args.stage - 1]
    job = K8sJobConfig(name=args.name, image=args.image, namespace=args.namespace, nodes=args.nodes,
                       gpus_per_node=args.gpus_per_node, checkpoint_pvc=args.pvc, checkpoint_mount=args.mount)
    if args.submit:
        print(json.dumps(run_stage_on_cluster(stage, job)))
    else:
        print(to_yaml(render_stage_job(stage, job)), end="")
    return 0
