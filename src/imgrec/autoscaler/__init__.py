"""The autoscaler: a pure policy (`policy`) and the loop that applies it (`loop`)."""
