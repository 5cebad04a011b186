"""The lag-window demo: what a client sees between a commit and the moment a view shows it.

Tells the story over HTTP, as clients would, against a running `make run` (or starts
its own stack when BASE_URL does not answer), in plain words first and the response
headers second, every time on one clock (milliseconds since the demo began).

On a quiet machine the window closes within milliseconds, before any read could see
it. So the demo holds it open on purpose: it takes the segment locks of the order
views' projectors for about a second (a rebuild's last step takes the same locks),
places an order meanwhile, and lets the projector go while a read waits.

  act 1  the customer places an order while order_summary is held. Another user reads
         it (answers at once, without it); the customer reads it asking for no wait (the
         answer says it is stale); the customer reads it with the order's token (waits;
         the demo lets the projector go meanwhile); then with no token at all (the
         session remembered the token).
  act 2  the customer pays while the dashboard is held, and reads the balance sending
         nothing: the session makes that read wait for the payment. The live consistency
         stream says when each view has it.

It creates nothing new on a second run: it signs in as a customer of the demo data
(customer0@example.com / demo), reuses one demo product (restocked when low) and tops
the customer up only when the balance is short. Holding the projector needs the
stack's PostgreSQL (the same DATABASE_URL as `make run`); without it the reads race
the projector, and the demo says so.

    make demo                      # or: .venv/bin/python bench/lag_window_demo.py
    BASE_URL=http://host:8000 make demo
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")  # as `make run`: the local stack's settings

BASE_URL = os.environ.get("BASE_URL", f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
CUSTOMER = (os.environ.get("DEMO_CUSTOMER", "customer0@example.com"),
            os.environ.get("DEMO_CUSTOMER_PASSWORD", "demo"))
STAFF = (os.environ.get("DEMO_USER", "admin"), os.environ.get("DEMO_PASSWORD", "admin"))
PRODUCT_SKU = "DEMO-LAG-KETTLE"
# Long enough to read the window, well under the views' 2 s lag SLO (past it a summary
# read would answer from PostgreSQL instead, and there would be no window to show).
HOLD_SECONDS = 1.0
HEADERS = ["X-Consistency", "X-Read-Model-Lag-Ms", "X-Stale", "X-Consistency-Source",
           "X-Consistency-Wait-Ms"]
T0 = time.monotonic()  # the one time origin of everything printed

GLOSSARY = """\
The headers, for reference:
  X-Consistency          strong: from PostgreSQL; eventual: from a projected view
  X-Read-Model-Lag-Ms    how old the oldest change the view does not show yet is (0 = caught up)
  X-Stale                true: the read had a token to wait for and answered before the view had it
  X-Consistency-Source   which token the read waited for: request (sent by the client),
                         session (the user's latest command, remembered by the server), none
  X-Consistency-Wait-Ms  how long the read waited for that token
"""


def clock() -> str:
    return f"t={(time.monotonic() - T0) * 1000:6,.0f} ms"


def say(text: str = "") -> None:
    print(text, flush=True)


def step(what: str, plain: str, headers=None) -> None:
    """One line of the story: what happened, what it means, then the headers."""
    say(f"  {clock()}  {what}")
    for line in textwrap.wrap(plain, width=78):
        say(f"               {line}")
    if headers is not None:
        shown = ", ".join(f"{name}: {headers[name]}" for name in HEADERS if name in headers)
        say(f"               headers: {shown}")


class Client:
    def __init__(self, base: str, token: str | None = None):
        self.url = urlparse(base)
        self.token = token

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port or 80, timeout=30)
        all_headers = {"Accept": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Token {self.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body)
            all_headers["Content-Type"] = "application/json"
        if method == "POST":
            all_headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        conn.close()
        data = json.loads(raw) if raw and raw[:1] in b"{[" else None
        # Header names are case-insensitive (HTTPMessage), as servers may send them lowercase.
        return response.status, response.headers, data


def answers(base: str) -> bool:
    url = urlparse(base)
    try:
        with socket.create_connection((url.hostname, url.port or 80), timeout=0.5):
            return True
    except OSError:
        return False


def start_stack() -> subprocess.Popen:
    say(f"No shop answers at {BASE_URL}: starting one (make run) for the demo...")
    process = subprocess.Popen(
        [sys.executable, "-m", "shop.devstack", "run"],
        cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not answers(BASE_URL):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the stack did not start; try `make run` yourself")
        time.sleep(0.5)
    return process


def sign_in(username: str, password: str) -> Client:
    status, _, data = Client(BASE_URL).call(
        "POST", "/api/auth/token", {"username": username, "password": password}
    )
    if status != 200:
        raise SystemExit(f"cannot sign in as {username}: {status} {data}")
    return Client(BASE_URL, data["token"])


def demo_product(staff: Client) -> dict:
    """The one demo product, found by its SKU or created once; restocked when low."""
    path = "/api/products/search?" + urlencode({"q": PRODUCT_SKU})
    status, headers, found = staff.call("GET", path)
    if status in (429, 503):  # throttled, or the view is beyond its SLO: it says when
        time.sleep(float(headers.get("Retry-After") or 1))
        status, headers, found = staff.call("GET", path)
    if status != 200:
        raise SystemExit(f"cannot search for the demo product: {status} {found}")
    for hit in (found or {}).get("results", []):
        if hit.get("sku") == PRODUCT_SKU:
            product_id = hit.get("id", hit.get("product_id"))
            _, _, product = staff.call("GET", f"/api/products/{product_id}")
            if product["stock"] < 5:
                staff.call("POST", f"/api/products/{product_id}/restock", {"quantity": 20})
            return product
    status, _, product = staff.call(
        "POST", "/api/products",
        {"sku": PRODUCT_SKU, "name": "Lag-window demo kettle", "category": "demo",
         "price_cents": 2_500, "stock": 20},
    )
    if status != 201:
        raise SystemExit(
            f"cannot create the demo product: {status} {product} (if it exists but search "
            "does not show it yet, run the demo again in a moment)"
        )
    return product


class ProjectorHold:
    """Every segment lock of some read models' projectors, taken from this process.

    A worker that finds a segment locked skips it and the beat sweep tries again every
    second, so while the locks are held the views do not move; released, they catch up.
    """

    def __init__(self):
        self.error: str | None = None
        try:
            import django

            django.setup()
        except Exception as exc:  # noqa: BLE001 - the demo goes on, and says so
            self.error = f"{type(exc).__name__}: {exc}"

    def hold(self, *names: str) -> ExitStack | None:
        if self.error:
            return None
        from readmodels import config
        from readmodels.pipeline import locks

        held = ExitStack()
        try:
            for name in names:
                segments = config.segments(name)
                for segment in range(segments):
                    # Waits for a batch under way to end, as a rebuild's last step does.
                    held.enter_context(locks.lock(locks.segment_key(name, segment, segments), 10))
        except Exception as exc:  # noqa: BLE001 - PostgreSQL unreachable: no hold
            held.close()
            self.error = f"{type(exc).__name__}: {exc}"
            return None
        return held

    def wait_until_caught_up(self, names, users, seconds: float = 15) -> None:
        """So that the story starts from views that show everything written before it,
        the setup's own writes (a restock, a top-up) included: a user's read waits for
        their latest command, and a held view would make it wait for the setup."""
        if self.error:
            return
        from readmodels import sessions
        from readmodels.pipeline import progress

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            states = [progress.state(name) for name in names]
            latest = [p for p in (sessions.remembered(u) for u in users) if p is not None]
            if all(s.lag_ms == 0 and all(s.covers(p) for p in latest) for s in states):
                return
            time.sleep(0.1)


def outcome(status: int, headers) -> str:
    if headers.get("X-Consistency") == "strong-fallback":
        return ("shows the order from PostgreSQL: the view was past its lag SLO, so the read"
                " fell back")
    return "shows the order" if status == 200 else f"does not show it ({status}: not in the view yet)"


def read_with_release(client: Client, path: str, headers: dict, held: ExitStack | None,
                      note: list):
    """A read that waits, while the demo lets the projector go HOLD_SECONDS later.

    The read runs in a thread: the locks belong to this thread's PostgreSQL session, so
    only this thread can let them go.
    """
    answer: list = []
    reader = threading.Thread(target=lambda: answer.append(client.call("GET", path, headers=headers)))
    reader.start()
    if held is not None:
        time.sleep(HOLD_SECONDS)  # the window the demo keeps open on purpose
        held.close()
        note.append(clock())
    reader.join()
    return answer[0]


def watch(client: Client, token: str, views: list[str]) -> None:
    """Print the consistency stream's events as they come."""
    conn = http.client.HTTPConnection(client.url.hostname, client.url.port or 80, timeout=30)
    query = urlencode({"token": token, "views": ",".join(views), "max_wait_ms": 10_000})
    conn.request("GET", f"/api/consistency/stream?{query}")
    response = conn.getresponse()
    name = None
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            data = json.loads(line[6:])
            if name == "caught_up":
                step(f"stream: {data['view']} now shows the payment",
                     f"({data['waited_ms']} ms after the stream opened)")
            elif name == "timeout":
                step("stream: gave up", f"still waiting for {', '.join(data['views'])}")
            if name in ("end", "error"):
                break
    conn.close()


def user_id(client: Client) -> int:
    return client.call("GET", "/api/me")[2]["id"]


def act_one(customer: Client, staff: Client, product: dict, hold: ProjectorHold) -> dict:
    say("Act 1: an order, read four ways while its view is behind.")
    held = hold.hold("order_summary")
    if held is not None:
        step("the demo holds the order_summary projector",
             f"(its segment locks, for about {HOLD_SECONDS:g} s: the window stays open)")
    else:
        step("the demo cannot hold the projector", f"({hold.error}); the reads below race it")
    status, headers, order = customer.call(
        "POST", "/api/orders", {"lines": [{"product_id": product["id"], "quantity": 1}]}
    )
    if status != 201:
        if held is not None:
            held.close()
        raise SystemExit(f"the order was refused: {status} {order}")
    token = headers["X-Consistency-Token"]
    step("customer: POST /api/orders",
         f"{status} Created: order {order['id'][:8]}… is in PostgreSQL, and the answer carries "
         "its X-Consistency-Token.")
    summary = f"/api/orders/{order['id']}/summary"

    status, headers, _ = staff.call("GET", summary)
    why = ("Their own latest write is already in the view, so the read waited for nothing"
           if headers.get("X-Consistency-Source") == "session"
           else "Nothing of theirs is pending, so nothing makes them wait")
    step("another user (staff) reads the order's summary",
         f"It {outcome(status, headers)}. {why}: the view answers at once with what it has.",
         headers)

    status, headers, _ = customer.call("GET", summary + "?consistency=none")
    stale = headers.get("X-Stale") == "true"
    step("the customer reads it asking for the fastest answer (?consistency=none)",
         f"It {outcome(status, headers)}, and the answer says so: "
         + ("stale, the view lacks the customer's latest write." if stale else
            "not stale: the view had caught up already."),
         headers)

    note: list = []
    status, headers, _ = read_with_release(
        customer, summary + "?max_wait_ms=5000", {"X-Consistency-Token": token}, held, note
    )
    released = f" The demo let the projector go at {note[0]}." if note else ""
    step("the customer reads it again, sending the order's token",
         f"It {outcome(status, headers)}, after waiting {headers.get('X-Consistency-Wait-Ms', '?')} ms:"
         f" the read waited until the view had that write.{released}",
         headers)

    status, headers, _ = customer.call("GET", summary)
    step("the customer reads it once more, sending no token at all",
         f"It {outcome(status, headers)}. The server remembered the customer's latest command and"
         " waited for it (session consistency): a browser sends nothing and still reads"
         " its own writes.",
         headers)
    return order


def act_two(customer: Client, staff: Client, order: dict, hold: ProjectorHold) -> None:
    _, _, me = customer.call("GET", f"/api/customers/{order['customer_id']}")
    if me["balance_cents"] < order["total_cents"]:
        staff.call("POST", f"/api/customers/{order['customer_id']}/top-ups",
                   {"amount_cents": 50_000})
        step("staff top the customer's balance up by 500.00", "(it was short for this order)")
    hold.wait_until_caught_up(["customer_dashboard"], [user_id(customer), user_id(staff)])
    say("\nAct 2: pay, then read the balance sending nothing, while the dashboard is behind.")
    held = hold.hold("customer_dashboard")
    if held is not None:
        step("the demo holds the customer_dashboard projector", f"(for about {HOLD_SECONDS:g} s)")
    status, headers, paid = customer.call("POST", f"/api/orders/{order['id']}/pay")
    if status != 200:
        if held is not None:
            held.close()
        raise SystemExit(f"the payment was refused: {status} {paid}")
    pay_token = headers["X-Consistency-Token"]
    step("customer: POST /api/orders/{id}/pay", f"{status}: the order is {paid['status']}.")
    watcher = threading.Thread(
        target=watch,
        args=(customer, pay_token, ["order_summary", "customer_dashboard", "orders_search"]),
    )
    watcher.start()
    note: list = []
    status, headers, dash = read_with_release(
        customer, f"/api/customers/{order['customer_id']}/dashboard?max_wait_ms=5000", {},
        held, note,
    )
    released = f" (the demo let the projector go at {note[0]})" if note else ""
    step("the customer reads the dashboard, sending no token",
         f"Balance {dash.get('balance_cents', 0) / 100:,.2f}, the payment included: the session"
         f" made the read wait {headers.get('X-Consistency-Wait-Ms', '?')} ms for it{released}.",
         headers)
    watcher.join(15)


def main() -> int:
    own = None if answers(BASE_URL) else start_stack()
    signed_in: list[Client] = []
    try:
        hold = ProjectorHold()
        staff = sign_in(*STAFF)
        signed_in.append(staff)
        customer = sign_in(*CUSTOMER)
        signed_in.append(customer)
        product = demo_product(staff)
        hold.wait_until_caught_up(["order_summary", "customer_dashboard"],
                                  [user_id(customer), user_id(staff)])
        global T0
        T0 = time.monotonic()  # the story's clock starts here, once, for both acts
        say("The lag window, shown on purpose\n")
        say("A command commits to PostgreSQL at once; the views that answer most reads")
        say("(Elasticsearch, Redis) show it a moment later. On a quiet machine that moment")
        say("lasts milliseconds, so this demo holds a view's projector for about a second")
        say("and lets it go while you watch. t is milliseconds since the story began.")
        say(f"The customer ({CUSTOMER[0]}) buys one '{product['name']}' and pays for it;")
        say(f"another user ({STAFF[0]}, staff) looks at the same order.\n")
        order = act_one(customer, staff, product, hold)
        act_two(customer, staff, order, hold)
        say("\nWhat to take away: a view may lag behind a write, and every answer says how far"
            " (the headers).\nA read that carries the writer's token, sent or remembered by"
            " the session, never shows a state\nolder than the writer's own change; one that"
            " asks for no wait is told when it is stale.\n")
        say(GLOSSARY)
        return 0
    finally:
        # Sign out again: each run's login tokens end with it instead of piling up.
        for client in signed_in:
            client.call("POST", "/api/auth/logout")
        if own is not None:
            os.killpg(own.pid, signal.SIGINT)
            own.wait(30)


if __name__ == "__main__":
    sys.exit(main())
