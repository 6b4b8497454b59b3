"""Where training runs: the CPU, one GPU, every GPU of a machine, or several machines.

Several machines are TensorFlow's own ``MultiWorkerMirroredStrategy``, configured by the
``TF_CONFIG`` cluster spec that Kubernetes, Vertex AI and Slurm launchers set; every
worker runs the same ``odlite train`` command. Only the chief writes checkpoints and
summaries to the model directory, yet every worker takes part in saving (the variables
are read collectively), so the others save into a scratch folder that is then removed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from pipelines.errors import OdliteError


@dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster (one worker, the chief, when there is none)."""

    workers: int = 1
    task_type: str = "chief"
    task_index: int = 0
    no_chief: bool = True  # then worker 0 is the chief

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0 and self.no_chief)

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_index}"


def read_cluster(environ=os.environ) -> Cluster:
    """The cluster TF_CONFIG names, checked: parameter servers and evaluator tasks are refused."""
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return Cluster()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise OdliteError(f"TF_CONFIG is not valid JSON: {error}") from None
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise OdliteError('TF_CONFIG: expected {"cluster": {"worker": [...]}, "task": {"type": ..., "index": ...}}')
    unsupported = sorted(set(cluster) - {"chief", "worker"})
    if unsupported:
        raise OdliteError(
            f"TF_CONFIG: cluster job(s) {', '.join(unsupported)} are not supported; odlite trains with "
            "MultiWorkerMirroredStrategy, whose cluster has only 'chief' and 'worker' tasks"
        )
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    task_type, task_index = task.get("type"), task.get("index", 0)
    if workers and (task_type not in cluster or not 0 <= int(task_index) < len(cluster[task_type])):
        raise OdliteError(f"TF_CONFIG: task {task_type!r} {task_index!r} is not in the cluster {sorted(cluster)}")
    return Cluster(max(workers, 1), task_type or "chief", int(task_index), no_chief="chief" not in cluster)


def gpu_available() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def pick_strategy(cluster: Cluster, cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """Several workers, all GPUs mirrored, one GPU, or the CPU; ``cpu_replicas`` splits the CPU to
    exercise mirroring. Call before any other TensorFlow op: collectives are set up at start."""
    if cluster.workers > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpu_replicas)])
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if gpus:
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    return tf.distribute.get_strategy()


def save_folder(model_dir: Path, cluster: Cluster) -> Path:
    """Where this worker saves: the model directory for the chief, a scratch folder for the others."""
    return model_dir if cluster.is_chief else model_dir / f".worker-{cluster.task_index}"


def drop_scratch(folder: Path, cluster: Cluster) -> None:
    if not cluster.is_chief:
        shutil.rmtree(folder, ignore_errors=True)


def agreed_code(strategy: tf.distribute.Strategy, cluster: Cluster):
    """code (0, 1 or 2) -> the highest code any worker gave. Workers stop together: Ctrl-C reaches
    each at its own step, and early stopping is decided by the chief alone. Alone, a code is its own answer."""
    if cluster.workers == 1:
        return int

    @tf.function
    def gather(code):
        votes = strategy.run(lambda c: tf.one_hot(c, 3), args=(code,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)

    return lambda code: max(i for i, votes in enumerate(gather(tf.constant(code)).numpy()) if votes > 0)
