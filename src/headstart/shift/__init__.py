"""Domain shift: how far the target domain is from the source data, as the backbone sees them."""

from headstart.shift.distance import SHIFT_READINGS, measure_shift, proxy_a_distance, shift_reading

__all__ = ["SHIFT_READINGS", "measure_shift", "proxy_a_distance", "shift_reading"]
