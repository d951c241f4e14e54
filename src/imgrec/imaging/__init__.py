"""Images as uploaded: what one is from its header (`header`, all the web tier needs) and
its pixels prepared for a model (`pixels`, the worker's)."""
