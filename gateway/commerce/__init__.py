"""Orders: idempotent upsert with forward-only status, the paid → earn hook, refunds with
proportional reversal, and batch reads. The public surface is :mod:`gateway.orders`."""
