"""The lab: what measures and models imgrec, apart from what serves.

Benchmarks (`bench`: the engine, the service end to end, load checks), the scaling
simulator with its traces and models of other autoscalers (`scaling`), and the
harness that starts the service as a user does (`harness`), shared with the tests.
The lab imports the product; nothing in the product imports the lab (import-linter
holds both to it). Its commands reach `imgrec` as plugins; its dependencies come
with the `bench` extra.
"""
