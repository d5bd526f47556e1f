"""`vimpac k8s-manifest PRESET`: a pre-training stage as a Kubeflow PyTorchJob (+ its ConfigMap), as YAML.

The stage comes from the preset (``--stage 2`` for a preset's second stage); the job from the flags,
K8sJobConfig's fields (generated from the model; ``--pvc``/``--mount`` are checkpoint_pvc/_mount):
image, nodes, GPUs per node, the shared checkpoint PVC, pod resources. ``--submit`` creates the objects on the
cluster of the current kubeconfig and follows the job until it ends (needs the ``kubernetes``
client: ``pip install 'vimpac-pipeline[k8s]'``). See infra/README.md.
"""

from __future__ import annotations

import argparse
import json

from vimpac_cli.common import find_preset
from vimpac_cli.flags import ConfigFlags, flat_model


def register(sub: argparse._SubParsersAction) -> None:
    """Add `k8s-manifest` to the `vimpac` parser."""
    from vimpac_core.k8s import K8sJobConfig

    p = sub.add_parser("k8s-manifest", help="render (or submit) a multi-node training stage for Kubernetes",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage="vimpac k8s-manifest PRESET --name NAME --image IMAGE --pvc CLAIM [--FIELD VALUE ...] "
                             "[--stage N] [--submit]")
    p.add_argument("preset", help="pre-training preset YAML, e.g. configs/pretrain/large.yaml")
    p.add_argument("--stage", type=int, default=1, help="which stage of the preset (default: 1)")
    p.add_argument("--submit", action="store_true", help="create the objects and follow the job to its end")
    fields = p.add_argument_group("K8sJobConfig fields")
    flags = ConfigFlags(fields, flat_model("K8sJobFlags", K8sJobConfig), aliases={"checkpoint-pvc": "pvc", "checkpoint-mount": "mount"},
                        enforce_required=True, prog=p.prog)
    p.set_defaults(func=cmd_k8s_manifest, config_flags=flags)


def cmd_k8s_manifest(args: argparse.Namespace) -> int:
    from vimpac_core.errors import ConfigError
    from vimpac_core.k8s import K8sJobConfig, render_stage_job, run_stage_on_cluster, to_yaml
    from vimpac_core.train.config import parse_stages

    stages = parse_stages(find_preset(args.preset, "pretrain"))
    if not 1 <= args.stage <= len(stages):
        raise ConfigError(f"stage: {args.preset} has {len(stages)} stage(s), not {args.stage}")
    stage = stages[args.stage - 1]
    job = K8sJobConfig(**args.config_flags.values(args))
    if args.submit:
        print(json.dumps(run_stage_on_cluster(stage, job)))
    else:
        print(to_yaml(render_stage_job(stage, job)), end="")
    return 0
