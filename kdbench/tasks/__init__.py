"""Task families behind one Task interface, and the registry that maps names to tasks."""
from kdbench.tasks.registry import get_task, list_tasks

__all__ = ["get_task", "list_tasks"]
