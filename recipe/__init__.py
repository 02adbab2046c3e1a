"""The machinery behind the three homework scripts (data, training, the pruning rounds),
one import away from them; `net/` holds what graders drop in."""
