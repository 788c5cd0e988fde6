"""Issue 12 item 1 through a real worker: a task whose handler raises after its cancellation
was accepted (202) ends cancelled and its handler never starts again (CONTRACT §4)."""

from __future__ import annotations

from queue_core.repositories import TaskRepository
from tests.workers.conftest import Workers, wait_for_status, wait_until


def test_a_cancel_accepted_while_running_is_never_run_again(
    workers: Workers, tasks: TaskRepository
) -> None:
    task_id = tasks.enqueue(
        type="t.sleep_then_raise", payload={"seconds": 0.6}, max_attempts=5
    ).task.task_id
    worker = workers.start("--lease-seconds", "30", env={"PRISMQ_QUEUE_RETRY_BASE_SECONDS": "0"})
    wait_until(lambda: workers.events("start", task_id), what="the handler to start")
    result = tasks.cancel(task_id)
    assert result.immediate is False  # accepted while leased (202)
    wait_for_status(tasks, task_id, "cancelled", timeout=30)
    worker.signal_stop()
    worker.wait(30)
    task = tasks.get(task_id)
    assert (task.status.value, task.attempts) == ("cancelled", 1), worker.output()
    assert len(workers.events("start", task_id)) == 1
