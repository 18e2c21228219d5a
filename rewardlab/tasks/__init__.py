"""Tasks, environment cards, proxies and success metrics."""

from rewardlab.tasks.cards import Card, load_card, render_card
from rewardlab.tasks.registry import SuccessSpec, TaskSpec, get_task, list_tasks

__all__ = ["Card", "SuccessSpec", "TaskSpec", "get_task", "list_tasks", "load_card", "render_card"]
