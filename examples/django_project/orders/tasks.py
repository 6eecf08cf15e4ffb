"""The app's tasks, with Celery's ``shared_task`` (a reusable app does not import the project)."""

from django.tasks import task

from sqlq import shared_task

from .models import Order


@shared_task
def ship_order(order_id: int) -> str:
    """Runs in the worker once the order's transaction committed (the job is part of it)."""
    order = Order.objects.get(pk=order_id)
    order.status = "shipped"
    order.tracking = f"TRACK-{order_id:06d}"
    order.save(update_fields=["status", "tracking"])
    return order.tracking


@task(queue_name="emails", priority=10)
def send_receipt(order_id: int) -> str:
    """A ``django.tasks`` task: the project's TASKS backend (sqlq) makes it a sqlq job."""
    order = Order.objects.get(pk=order_id)
    return f"receipt for {order.item}"
