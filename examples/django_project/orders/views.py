"""The headline feature: the order row and its job commit together, or neither does."""

import json

from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Order
from .tasks import send_receipt, ship_order


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body or b"{}")
    with transaction.atomic():
        order = Order.objects.create(item=body["item"])
        # written on Django's connection, inside the atomic block: rolls back with the order
        result = ship_order.apply_async((order.pk,), connection=connection)
        order.job_id = result.id
        order.save(update_fields=["job_id"])
        receipt = send_receipt.enqueue(order.pk)  # django.tasks: the same transaction
        if body.get("fail"):
            transaction.set_rollback(True)  # e.g. payment declined: no order, no job
            return JsonResponse({"error": "declined"}, status=402)
    return JsonResponse({"order": order.pk, "job": result.id, "receipt": receipt.id}, status=201)


def order_status(request: HttpRequest, order_id: int) -> HttpResponse:
    order = Order.objects.get(pk=order_id)
    return JsonResponse({"order": order.pk, "status": order.status, "tracking": order.tracking})
