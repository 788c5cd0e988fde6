"""A three-step pipeline with dependencies: ideas → scripts → audio, each step fanning out.

Every idea becomes several scripts, and each script becomes one audio track; the final
``pipeline.publish`` task waits for every audio track. Nothing here waits in Python: each task
is enqueued up front with ``depends_on``, and the queue runs a task only once every task it
depends on has completed (CONTRACT §4). The GPU-bound audio step is limited to two at a time
over every worker (``types limit pipeline.audio --max-running 2``).

Run it against a queue::

    prismq-queue db upgrade
    python -m examples.pipeline plan "space elevators" "tidal power"   # enqueue the graph
    prismq-queue worker --import examples.pipeline --burst              # run it

``run_pipeline`` (below) does both in one process, for the tests.
"""

from __future__ import annotations

import sys
from typing import Any

from queue_core.database import Database
from queue_core.repositories import TaskRepository, TypeRepository
from workers import TaskContext, task

SCRIPTS_PER_IDEA = 3
AUDIO_MAX_RUNNING = 2


@task("pipeline.idea")
def idea(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"idea": payload["topic"], "angle": f"why {payload['topic']} matter"}


@task("pipeline.script")
def script(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"script": f"{payload['topic']} #{payload['take']}: a {payload['words']}-word script"}


@task("pipeline.audio")
def audio(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"audio": f"{payload['topic']}-{payload['take']}.wav", "style": payload["style"]}


@task("pipeline.publish")
def publish(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"published": payload["topics"]}


def plan(db: Database, topics: list[str], *, style: str = "calm") -> dict[str, Any]:
    """Enqueue the whole graph; returns the task ids by step."""
    tasks = TaskRepository(db)
    TypeRepository(db).set_limits("pipeline.audio", max_running=AUDIO_MAX_RUNNING)
    ids: dict[str, Any] = {"idea": [], "script": [], "audio": []}
    for topic in topics:
        idea_id = tasks.enqueue(type="pipeline.idea", payload={"topic": topic}).task.task_id
        ids["idea"].append(idea_id)
        for take in range(1, SCRIPTS_PER_IDEA + 1):
            script_id = tasks.enqueue(
                type="pipeline.script",
                payload={"topic": topic, "take": take, "words": 150 * take},
                depends_on=[idea_id],
            ).task.task_id
            ids["script"].append(script_id)
            audio_id = tasks.enqueue(
                type="pipeline.audio",
                payload={"topic": topic, "take": take, "style": style},
                depends_on=[script_id],
            ).task.task_id
            ids["audio"].append(audio_id)
    ids["publish"] = tasks.enqueue(
        type="pipeline.publish", payload={"topics": topics}, depends_on=ids["audio"]
    ).task.task_id
    return ids


def run_pipeline(db: Database, topics: list[str]) -> dict[str, Any]:
    """Plan the graph and run it with one in-process worker until nothing is left."""
    from workers import Worker, WorkerConfig

    ids = plan(db, topics)
    Worker(WorkerConfig(concurrency=4, burst=True), db=db).run(install_signal_handlers=False)
    return ids


if __name__ == "__main__":  # pragma: no cover - the CLI use shown above
    if len(sys.argv) < 3 or sys.argv[1] != "plan":
        sys.exit("usage: python -m examples.pipeline plan TOPIC [TOPIC ...]")
    with Database() as database:
        print(plan(database, sys.argv[2:]))
