"""The machinery behind the three homework scripts (the data, the pruning rounds' schedule),
one import away from them; `net/` holds what graders drop in."""
