"""The storefront page: signs a customer in with a Django session, then hands over to JS.

The page reads nothing itself beyond who is signed in; products, orders and the
balance come from the API in the browser, so the page shows the lag window as any
API client meets it. With DEBUG on (a local demo) it also stands in for a payment
provider: "Add funds" credits the balance as the provider's callback would.
"""

import re
import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_POST

from orders import commands
from orders.api.base import announce_answered
from orders.money import format_cents
from shop.web.errors import json_error

# One of the customers `load_demo_data` creates (password "demo").
DEMO_LOGIN = {"username": "customer0@example.com", "password": "demo"}
# What one press of "Add funds" credits in the demo.
DEMO_TOP_UP_CENTS = 5_000
PAYMENT_KEY = re.compile(r"[\x21-\x7e]{1,200}")


@login_required(login_url="storefront:login")
@ensure_csrf_cookie
def storefront(request):
    customer = getattr(request.user, "customer", None)
    return render(
        request,
        "storefront/index.html",
        {
            "customer_id": customer.pk if customer else "",
            "customer_name": customer.name if customer else request.user.get_username(),
            "demo_payments": settings.DEBUG,
            "demo_top_up": format_cents(DEMO_TOP_UP_CENTS),
        },
    )


@require_POST
def add_funds(request):
    """The demo's payment provider (DEBUG only): credit the signed-in customer's balance.

    It runs the command the provider's callback runs (a payment event, credited once),
    and answers like an API command: the new balance and the consistency token, which
    the session remembers too, so the customer's next reads wait for the credit.
    """
    if not settings.DEBUG:
        return json_error("not_found", "There is no demo payment provider here.", 404)
    if not request.user.is_authenticated:
        return json_error("not_authenticated", "Sign in first.", 401)
    customer = getattr(request.user, "customer", None)
    if customer is None:
        return json_error("not_a_customer", "Only customers have a balance to add to.", 403)
    # The client's Idempotency-Key names the payment: sent again, it credits nothing twice.
    key = request.headers.get("Idempotency-Key") or uuid.uuid4().hex
    if not PAYMENT_KEY.fullmatch(key):
        return json_error("invalid", "Idempotency-Key must be 1 to 200 printable characters.", 400)
    result = commands.credit_payment(
        event_id=f"storefront-demo:{customer.pk}:{key}", customer_id=customer.pk,
        amount_cents=DEMO_TOP_UP_CENTS,
    )
    if result is None:
        return json_error("already_credited", "This payment was credited already.", 409)
    announce_answered(sender=add_funds, user_id=request.user.pk, token=result.token)
    response = JsonResponse(
        {"amount_cents": DEMO_TOP_UP_CENTS, "balance_cents": result.value.balance_cents}
    )
    response["X-Consistency-Token"] = result.token
    return response


def welcome(request):
    """`/`: where to go, for someone who opened the shop's address."""
    return render(request, "storefront/welcome.html", {"demo_login": DEMO_LOGIN})
