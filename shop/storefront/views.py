"""The storefront page: signs a customer in with a Django session, then hands over to JS.

The page reads nothing itself beyond who is signed in; products, orders and the
balance come from the API in the browser, so the page shows the lag window as any
API client meets it.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

# One of the customers `load_demo_data` creates (password "demo").
DEMO_LOGIN = {"username": "customer0@example.com", "password": "demo"}


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
        },
    )


def welcome(request):
    """`/`: where to go, for someone who opened the shop's address."""
    return render(request, "storefront/welcome.html", {"demo_login": DEMO_LOGIN})
