"""The points mall: a per-tenant catalog (in the rule config), stock, and redemptions in three
exchange modes — all points, points + cash, cash — with held points captured only after a
signed payment callback. See ``gateway/README.md``, "The points mall"."""
