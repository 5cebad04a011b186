"""A small storefront page: a consumer of the shop's own API, showing the lag window.

It is wiring and presentation only (templates and plain JavaScript modules, no build
step): every read and command goes through the public API, exactly as any other front
end's would. `static/storefront/shop-client.js` is the part other front ends can copy.
"""
