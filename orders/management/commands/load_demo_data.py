"""Load a demo catalogue, customers and orders through the commands, if the shop is empty."""

import random

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from orders import commands, errors
from orders.models import Customer, Product

CATEGORIES = {
    "books": ["Novel", "Cookbook", "Atlas", "Field Guide", "Poetry Collection"],
    "kitchen": ["Chef Knife", "Cast Iron Pan", "Teapot", "Cutting Board", "Espresso Cup"],
    "garden": ["Pruning Shears", "Watering Can", "Seed Kit", "Trowel", "Hose Reel"],
    "toys": ["Puzzle", "Kite", "Wooden Train", "Board Game", "Yo-yo"],
    "outdoor": ["Tent", "Headlamp", "Water Bottle", "Trail Map", "Sleeping Bag"],
    "office": ["Notebook", "Fountain Pen", "Desk Lamp", "Stapler", "Letter Tray"],
}
ADJECTIVES = ["Classic", "Compact", "Deluxe", "Everyday", "Handmade", "Light", "Sturdy", "Blue"]
FIRST = ["Ada", "Ben", "Cleo", "Dan", "Eva", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena"]
LAST = ["Lovelace", "Okafor", "Novak", "Silva", "Tanaka", "Weber", "Rossi", "Kim", "Berg"]


class Command(BaseCommand):
    help = "Load demo data (products, customers with balances, orders) if the shop is empty."

    def add_arguments(self, parser):
        parser.add_argument("--products", type=int, default=300)
        parser.add_argument("--customers", type=int, default=40)
        parser.add_argument("--orders", type=int, default=120)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, products, customers, orders, seed, **options):
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("created the demo admin (admin / admin)")
        if Product.objects.exists() or Customer.objects.exists():
            self.stdout.write("the shop already has data; demo data not loaded")
            return
        rng = random.Random(seed)
        product_ids = []
        for n in range(products):
            category = rng.choice(sorted(CATEGORIES))
            noun = rng.choice(CATEGORIES[category])
            name = f"{rng.choice(ADJECTIVES)} {noun}"
            result = commands.create_product(
                sku=f"{category[:3].upper()}-{n:05d}",
                name=name,
                description=f"A {name.lower()} from our {category} range.",
                category=category,
                price_cents=rng.randrange(199, 19999),
                stock=rng.randrange(0, 200),
            )
            product_ids.append(result.value.pk)
        customer_ids = []
        for n in range(customers):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            email = f"customer{n}@example.com"
            result = commands.register_customer(email=email, name=name, password="demo")
            commands.top_up_balance(
                customer_id=result.value.pk, amount_cents=rng.randrange(5_000, 200_000)
            )
            customer_ids.append(result.value.pk)
        placed = 0
        for _ in range(orders):
            lines = [
                commands.LineRequest(product_id=pid, quantity=rng.randrange(1, 4))
                for pid in rng.sample(product_ids, rng.randrange(1, 4))
            ]
            try:
                order = commands.place_order(customer_id=rng.choice(customer_ids), lines=lines)
                placed += 1
                fate = rng.random()
                if fate < 0.6:
                    commands.pay_order(order_id=order.value.pk)
                    if fate < 0.3:
                        commands.ship_order(order_id=order.value.pk)
                elif fate < 0.7:
                    commands.cancel_order(order_id=order.value.pk)
            except errors.Conflict:
                continue  # out of stock or balance: the demo just moves on
        self.stdout.write(
            f"loaded {products} products, {customers} customers (password: demo), "
            f"{placed} orders"
        )
